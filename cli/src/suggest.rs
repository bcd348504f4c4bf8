//! "Did you mean": a name that is not there, answered with the closest one
//! that is (a typo costs a user a `topic list` and a second try otherwise).

use sluice_client::proto::{TopicInfo, WireError};
use sluice_client::{Client, ClientError};

/// Names at most this many edits away are offered; beyond, a guess is noise.
const EDITS_MAX: usize = 2;

/// Describes `name`; if the topic does not exist, the error also names the
/// closest topic the caller may see, when one is close enough.
pub async fn describe_topic(client: &Client, name: &str) -> anyhow::Result<TopicInfo> {
    match client.describe_topic(name).await {
        Ok(topic) => Ok(topic),
        Err(e) => Err(topic_hint(client, name, e).await),
    }
}

/// `error` as is, or, when it says topic `name` does not exist, with the
/// closest existing name added.
pub async fn topic_hint(client: &Client, name: &str, error: ClientError) -> anyhow::Error {
    let ClientError::Server(e @ WireError::UnknownTopic { .. }) = error else {
        return error.into();
    };
    let names: Vec<String> = match client.list_topics().await {
        Ok(topics) => topics.into_iter().map(|t| t.spec.name).collect(),
        Err(_) => Vec::new(),
    };
    match closest(name, names.iter().map(String::as_str)) {
        Some(close) => anyhow::anyhow!("{e} (did you mean {close:?}?)"),
        None => e.into(),
    }
}

/// The candidate fewest edits from `name` (ties: the first), if within
/// [`EDITS_MAX`] and not `name` itself.
pub fn closest<'a>(name: &str, candidates: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .filter(|c| *c != name)
        .map(|c| (edits(name, c), c))
        .filter(|(d, _)| *d <= EDITS_MAX)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Levenshtein distance over characters.
fn edits(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (above + 1)
                .min(row[j] + 1)
                .min(diagonal + usize::from(ca != *cb));
            diagonal = above;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edits_count_insertions_deletions_and_substitutions() {
        assert_eq!(edits("events", "events"), 0);
        assert_eq!(edits("evnts", "events"), 1);
        assert_eq!(edits("eventz", "events"), 1);
        assert_eq!(edits("event", "events"), 1);
        assert_eq!(edits("", "abc"), 3);
        assert_eq!(edits("kitten", "sitting"), 3);
    }

    #[test]
    fn the_closest_name_within_two_edits_is_offered() {
        let names = ["events", "orders", "event-log"];
        assert_eq!(closest("evnts", names.into_iter()), Some("events"));
        assert_eq!(closest("order", names.into_iter()), Some("orders"));
        assert_eq!(closest("payments", names.into_iter()), None);
        assert_eq!(closest("events", ["events"].into_iter()), None);
    }
}
