//! Credentials taken out of a connector's file before it is shown
//! (`connector list` and `describe`), as Kafka masks sensitive settings in
//! `kafka-configs --describe`: a url's password, `password=` pairs,
//! secret-looking YAML keys and authorization headers become `***`. The
//! stored file keeps them (the node running the connector reads it from the
//! metadata, not from this answer).
//!
//! Works on the text, not on parsed YAML, so comments and layout survive
//! and a file in either of the accepted formats is covered alike.

/// What a hidden value is shown as.
const HIDDEN: &str = "***";

/// YAML keys whose values are hidden: a key naming one of these (any case,
/// any part: `db_password`, `apiToken`).
const SECRET_KEYS: [&str; 5] = ["password", "passwd", "secret", "token", "api_key"];

/// Header names whose values are hidden wherever `Name: value` appears.
const SECRET_HEADERS: [&str; 5] = [
    "authorization:",
    "proxy-authorization:",
    "x-api-key:",
    "api-key:",
    "cookie:",
];

/// Keys of `key=value` pairs (libpq connection strings, url queries).
const SECRET_PAIRS: [&str; 3] = ["password=", "passwd=", "pwd="];

/// `config` with every credential it recognises replaced by `***`.
pub(super) fn credentials_hidden(config: &str) -> String {
    config
        .split_inclusive('\n')
        .map(|line| {
            let line = hide_url_passwords(line);
            let line = hide_after_markers(&line, &SECRET_PAIRS, |c| {
                c.is_whitespace() || matches!(c, '&' | ';' | '"' | '\'')
            });
            let line = hide_after_markers(&line, &SECRET_HEADERS, |c| {
                matches!(c, '"' | '\'' | '\n' | '\r')
            });
            hide_secret_key(&line)
        })
        .collect()
}

/// `scheme://user:password@host` -> `scheme://user:***@host`.
fn hide_url_passwords(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut rest = line;
    while let Some(at) = rest.find("://") {
        let (before, after) = rest.split_at(at + 3);
        out.push_str(before);
        let authority_end = after
            .find(|c: char| c.is_whitespace() || matches!(c, '/' | '?' | '#' | '"' | '\''))
            .unwrap_or(after.len());
        let authority = &after[..authority_end];
        match authority.rfind('@').map(|i| &authority[..i]) {
            Some(userinfo) if userinfo.contains(':') => {
                let user = &userinfo[..userinfo.find(':').expect("checked")];
                out.push_str(user);
                out.push(':');
                out.push_str(HIDDEN);
                out.push_str(&authority[userinfo.len()..]);
            }
            _ => out.push_str(authority),
        }
        rest = &after[authority_end..];
    }
    out.push_str(rest);
    out
}

/// The text after each `marker` (any case), up to `ends`, hidden.
fn hide_after_markers(line: &str, markers: &[&str], ends: impl Fn(char) -> bool) -> String {
    let lower = line.to_ascii_lowercase();
    let mut out = String::with_capacity(line.len());
    let mut copied = 0;
    let mut from = 0;
    while let Some((start, marker)) = markers
        .iter()
        .filter_map(|m| lower[from..].find(m).map(|i| (from + i, *m)))
        .min()
    {
        let value_start = start + marker.len();
        let leading = line[value_start..]
            .find(|c: char| c != ' ')
            .unwrap_or(line.len() - value_start);
        let value_start = value_start + leading;
        let value_end = line[value_start..]
            .find(&ends)
            .map_or(line.len(), |i| value_start + i);
        out.push_str(&line[copied..value_start]);
        if value_end > value_start {
            out.push_str(HIDDEN);
        }
        copied = value_end;
        from = value_end.max(start + marker.len());
    }
    out.push_str(&line[copied..]);
    out
}

/// `  db_password: hunter2` -> `  db_password: ***` (also `- key: value`).
fn hide_secret_key(line: &str) -> String {
    let body = line.trim_start().trim_start_matches("- ");
    let Some(colon) = body.find(':') else {
        return line.to_string();
    };
    let key = body[..colon].trim_matches(|c| c == '"' || c == '\'');
    let plain = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    let lower = key.to_ascii_lowercase();
    if !plain || !SECRET_KEYS.iter().any(|s| lower.contains(s)) {
        return line.to_string();
    }
    let value = body[colon + 1..].trim();
    if value.is_empty() || value == HIDDEN {
        return line.to_string();
    }
    let value_at = line.len() - body.len() + colon + 1;
    let newline = if line.ends_with('\n') { "\n" } else { "" };
    format!("{} {HIDDEN}{newline}", &line[..value_at])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_in_urls_pairs_keys_and_headers_are_hidden() {
        let config = "\
name: orders-to-pg
type: sql-sink
# the app's role
url: postgres://app:s3cr%40t@127.0.0.1:5433/metrics?sslmode=disable
backup: \"host=db.local user=app password=hunter2 dbname=x\"
query: https://api.example/v1?user=me&password=letmein&page=2
db_password: correct horse
  - apiToken: 'abc123'
headers: [\"Authorization: Bearer eyJhbGciOi\", \"Accept: text/plain\"]
headers2:
  - \"X-Api-Key: k-42\"
endpoint: http://example.org:8080/path
topic: orders
";
        let shown = credentials_hidden(config);
        for secret in [
            "s3cr",
            "hunter2",
            "letmein",
            "correct horse",
            "abc123",
            "eyJhbGciOi",
            "k-42",
        ] {
            assert!(!shown.contains(secret), "{secret} left in:\n{shown}");
        }
        for kept in [
            "name: orders-to-pg\n",
            "# the app's role\n",
            "url: postgres://app:***@127.0.0.1:5433/metrics?sslmode=disable\n",
            "host=db.local user=app password=*** dbname=x",
            "?user=me&password=***&page=2",
            "db_password: ***\n",
            "  - apiToken: ***\n",
            "\"Authorization: ***\", \"Accept: text/plain\"",
            "\"X-Api-Key: ***\"",
            "endpoint: http://example.org:8080/path\n",
            "topic: orders\n",
        ] {
            assert!(shown.contains(kept), "{kept:?} not in:\n{shown}");
        }
        assert_eq!(shown.lines().count(), config.lines().count());
    }

    #[test]
    fn a_file_without_credentials_is_unchanged() {
        let config = "name: tail\ntype: file-source\npath: /var/log/app.log\ntopic: logs\n\
                      url: postgres://app@127.0.0.1/db\nmaps: [a:b]\n";
        assert_eq!(credentials_hidden(config), config);
        assert_eq!(credentials_hidden(""), "");
        assert_eq!(credentials_hidden("password:"), "password:");
    }
}
