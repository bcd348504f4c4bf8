//! A partition's committed consumer offsets, kept by the partition's own
//! Raft group beside its producer table (`crate::producers`).
//!
//! Why here and not in the controller's metadata (where releases before
//! kept them): a commit then costs one write in the group of the partition
//! it is about, so commits spread over the cluster's partitions and leaders
//! as records do, instead of all going through the one controller group;
//! and the checks need nothing from elsewhere: the partition's end is the
//! state machine's own, so a commit past it is refused at apply, the same
//! way on every replica.
//!
//! Fencing, all decided at apply: a commit numbered below the last one of
//! its session is refused (a late copy cannot move the offset back); a
//! group member's commit carries its generation, and a commit of a
//! generation below the highest this partition has seen for the group is
//! refused. The highest rises with every member's commit and with a *fence*
//! (`Request::FenceConsumer`), which the coordinator applies before a member
//! starts reading a partition whose previous owner was dropped (it may still
//! be committing): from then on that member cannot move the offset, and the
//! fence answers with the committed offset, so the new member starts after
//! every commit that was accepted before it. (A partition its owner gave up
//! cleanly, having committed, needs no fence: that owner commits no more.)

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sluice_proto::WireError;
use sluice_proto::limits::{
    CONSUMER_STATE_BYTES_MAX, CONSUMER_STATE_PARTITION_BYTES_MAX, CONSUMERS_PER_PARTITION_MAX,
};

/// A commit as the partition's Raft log carries it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct CommitEntry {
    pub consumer: String,
    pub offset: u64,
    pub session: u64,
    pub sequence: u64,
    pub state: Option<serde_bytes::ByteBuf>,
    /// A group member's commit: its id and the generation it acted on.
    pub member: Option<(String, u64)>,
    /// The proposer's clock, so that every replica stores the same time.
    pub committed_ms: i64,
}

/// A consumer's committed position in this partition.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Committed {
    pub offset: u64,
    pub committed_ms: i64,
    pub session: u64,
    pub sequence: u64,
    pub state: Option<serde_bytes::ByteBuf>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ConsumerEntry {
    pub committed: Option<Committed>,
    /// The latest generation the consumer group of this name was fenced
    /// at here (0: never; a plain consumer).
    pub fence: u64,
}

/// Which partition a table belongs to, for its errors.
pub(crate) struct Place<'a> {
    pub topic: &'a str,
    pub partition: u32,
}

/// The committed offsets of one partition, by consumer name. At most
/// [`CONSUMERS_PER_PARTITION_MAX`] names and
/// [`CONSUMER_STATE_PARTITION_BYTES_MAX`] bytes of states.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ConsumerTable {
    consumers: BTreeMap<String, ConsumerEntry>,
}

fn invalid(reason: String) -> WireError {
    WireError::InvalidArgument {
        what: "offset commit".into(),
        reason,
    }
}

fn state_len(state: &Option<serde_bytes::ByteBuf>) -> usize {
    state.as_ref().map_or(0, |s| s.len())
}

impl ConsumerTable {
    pub(crate) fn is_empty(&self) -> bool {
        self.consumers.is_empty()
    }

    fn state_bytes(&self) -> usize {
        self.consumers
            .values()
            .filter_map(|e| e.committed.as_ref())
            .map(|c| state_len(&c.state))
            .sum()
    }

    /// Applies a commit in a partition whose end is `end`, or says why not.
    pub(crate) fn commit(
        &mut self,
        at: &Place<'_>,
        commit: CommitEntry,
        end: u64,
    ) -> Result<(), WireError> {
        let (topic, partition) = (at.topic, at.partition);
        if commit.offset > end {
            return Err(invalid(format!(
                "offset {} is past the end of {topic}/{partition}, which is {end}: a consumer \
                 commits the offset after the last record it processed, at most the end",
                commit.offset
            )));
        }
        let new_state = state_len(&commit.state);
        if new_state > CONSUMER_STATE_BYTES_MAX {
            return Err(invalid(format!(
                "its SmartModule state is {new_state} bytes; at most {CONSUMER_STATE_BYTES_MAX} \
                 are kept with an offset"
            )));
        }
        let entry = self.consumers.get(&commit.consumer);
        let fence = entry.map_or(0, |e| e.fence);
        match &commit.member {
            Some((member, generation)) if *generation < fence => {
                return Err(WireError::FencedMember {
                    group: commit.consumer,
                    member: member.clone(),
                    reason: format!(
                        "partition {partition} was given to a member in generation {fence}, \
                         and this commit is of generation {generation}"
                    ),
                });
            }
            Some(_) => {}
            None if fence > 0 => {
                return Err(invalid(format!(
                    "{:?} is a consumer group: only its members commit its offsets (consume -g)",
                    commit.consumer
                )));
            }
            None => {}
        }
        let old = entry.and_then(|e| e.committed.as_ref());
        if let Some(last) = old
            && last.session == commit.session
            && commit.sequence < last.sequence
        {
            return Err(invalid(format!(
                "commit {} of this consumer session arrived after its commit {}, which set \
                 offset {}; it was not applied (the newer one stands)",
                commit.sequence, last.sequence, last.offset
            )));
        }
        if entry.is_none() && self.consumers.len() >= CONSUMERS_PER_PARTITION_MAX {
            return Err(invalid(format!(
                "{topic}/{partition} keeps offsets of {CONSUMERS_PER_PARTITION_MAX} consumers, \
                 the limit; delete consumers that are done (`sluice consumer delete NAME`)"
            )));
        }
        let old_state = old.map_or(0, |c| state_len(&c.state));
        let total = self.state_bytes();
        if new_state > old_state
            && total - old_state + new_state > CONSUMER_STATE_PARTITION_BYTES_MAX
        {
            return Err(invalid(format!(
                "committed SmartModule states in {topic}/{partition} take {total} bytes, and \
                 {CONSUMER_STATE_PARTITION_BYTES_MAX} is the limit; delete consumers that are \
                 done (`sluice consumer delete NAME`)"
            )));
        }
        let entry = self.consumers.entry(commit.consumer).or_default();
        // A member's commit fences the generations before its own, as a
        // fence would.
        if let Some((_, generation)) = commit.member {
            entry.fence = entry.fence.max(generation);
        }
        entry.committed = Some(Committed {
            offset: commit.offset,
            committed_ms: commit.committed_ms,
            session: commit.session,
            sequence: commit.sequence,
            state: commit.state,
        });
        Ok(())
    }

    /// Fences group `consumer` at `generation` (a later fence stands) and
    /// returns its committed position.
    pub(crate) fn fence(
        &mut self,
        at: &Place<'_>,
        consumer: String,
        generation: u64,
    ) -> Result<Option<Committed>, WireError> {
        if !self.consumers.contains_key(&consumer)
            && self.consumers.len() >= CONSUMERS_PER_PARTITION_MAX
        {
            return Err(WireError::InvalidArgument {
                what: "consumer group".into(),
                reason: format!(
                    "{}/{} keeps offsets of {CONSUMERS_PER_PARTITION_MAX} consumers, the limit; \
                     delete consumers that are done (`sluice consumer delete NAME`)",
                    at.topic, at.partition
                ),
            });
        }
        let entry = self.consumers.entry(consumer).or_default();
        entry.fence = entry.fence.max(generation);
        Ok(entry.committed.clone())
    }

    pub(crate) fn entry(&self, consumer: &str) -> Option<&ConsumerEntry> {
        self.consumers.get(consumer)
    }

    /// Sets (or removes) one entry as another table holds it: for a copy
    /// kept in step with the replicated table.
    pub(crate) fn set_entry(&mut self, consumer: &str, entry: Option<ConsumerEntry>) {
        match entry {
            Some(e) => {
                self.consumers.insert(consumer.to_string(), e);
            }
            None => {
                self.consumers.remove(consumer);
            }
        }
    }

    /// Forgets `consumer`; whether it was known here.
    pub(crate) fn forget(&mut self, consumer: &str) -> bool {
        self.consumers.remove(consumer).is_some()
    }

    /// Committed positions, of `consumer` or of all, by name.
    pub(crate) fn committed<'a>(
        &'a self,
        consumer: Option<&'a str>,
    ) -> impl Iterator<Item = (&'a str, &'a Committed)> + 'a {
        self.consumers
            .iter()
            .filter(move |(name, _)| consumer.is_none_or(|c| c == name.as_str()))
            .filter_map(|(name, e)| Some((name.as_str(), e.committed.as_ref()?)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const AT: Place<'static> = Place {
        topic: "t",
        partition: 0,
    };

    fn commit(consumer: &str, offset: u64, session: u64, sequence: u64) -> CommitEntry {
        CommitEntry {
            consumer: consumer.into(),
            offset,
            session,
            sequence,
            state: None,
            member: None,
            committed_ms: 1,
        }
    }

    fn offset(table: &ConsumerTable, consumer: &str) -> Option<u64> {
        table
            .committed(Some(consumer))
            .next()
            .map(|(_, c)| c.offset)
    }

    #[test]
    fn a_commit_past_the_end_or_late_in_its_session_is_refused() {
        let mut table = ConsumerTable::default();
        table.commit(&AT, commit("a", 5, 1, 2), 10).unwrap();
        let past = table.commit(&AT, commit("a", 11, 1, 3), 10).unwrap_err();
        assert!(
            past.to_string()
                .contains("past the end of t/0, which is 10"),
            "{past}"
        );
        let late = table.commit(&AT, commit("a", 3, 1, 1), 10).unwrap_err();
        assert!(
            late.to_string().contains("arrived after its commit 2"),
            "{late}"
        );
        assert_eq!(offset(&table, "a"), Some(5));
        // A new session may move it anywhere: a consumer starting over.
        table.commit(&AT, commit("a", 1, 2, 0), 10).unwrap();
        assert_eq!(offset(&table, "a"), Some(1));
    }

    #[test]
    fn a_fence_refuses_commits_of_earlier_generations_and_plain_consumers() {
        let mut table = ConsumerTable::default();
        // Each member commits in a session of its own.
        let member = |m: &str, generation, offset, sequence| CommitEntry {
            member: Some((m.into(), generation)),
            ..commit("g", offset, u64::from(m.as_bytes()[1]), sequence)
        };
        assert_eq!(table.fence(&AT, "g".into(), 1).unwrap(), None);
        table.commit(&AT, member("m1", 1, 4, 1), 10).unwrap();
        // Given to m2 in generation 3: m1's commit of generation 2 is late.
        let at = table.fence(&AT, "g".into(), 3).unwrap().unwrap();
        assert_eq!(at.offset, 4);
        let stale = table.commit(&AT, member("m1", 2, 9, 2), 10).unwrap_err();
        assert!(
            stale
                .to_string()
                .contains("given to a member in generation 3"),
            "{stale}"
        );
        // An older fence arriving late does not lower it.
        table.fence(&AT, "g".into(), 2).unwrap();
        assert!(table.commit(&AT, member("m1", 2, 9, 3), 10).is_err());
        table.commit(&AT, member("m2", 3, 6, 0), 10).unwrap();
        assert_eq!(offset(&table, "g"), Some(6));
        // A member's commit of a later generation fences the earlier ones
        // by itself (a partition handed over cleanly is not fenced first).
        table.commit(&AT, member("m3", 5, 7, 0), 10).unwrap();
        let late = table.commit(&AT, member("m2", 4, 8, 1), 10).unwrap_err();
        assert!(late.to_string().contains("generation 5"), "{late}");
        assert_eq!(offset(&table, "g"), Some(7));
        let plain = table.commit(&AT, commit("g", 8, 9, 0), 10).unwrap_err();
        assert!(plain.to_string().contains("is a consumer group"), "{plain}");
        assert!(table.forget("g"));
        assert!(!table.forget("g"));
        table.commit(&AT, commit("g", 8, 9, 0), 10).unwrap();
    }

    #[test]
    fn names_and_state_bytes_are_bounded() {
        let mut table = ConsumerTable::default();
        for i in 0..CONSUMERS_PER_PARTITION_MAX {
            table
                .commit(&AT, commit(&format!("c{i}"), 0, 1, 0), 0)
                .unwrap();
        }
        let full = table
            .commit(&AT, commit("one-more", 0, 1, 0), 0)
            .unwrap_err();
        assert!(full.to_string().contains("the limit"), "{full}");
        assert!(table.fence(&AT, "one-more".into(), 1).is_err());
        // Known names still commit.
        table.commit(&AT, commit("c0", 0, 1, 1), 0).unwrap();

        let mut table = ConsumerTable::default();
        let with_state = |c: &str, len| CommitEntry {
            state: Some(serde_bytes::ByteBuf::from(vec![1; len])),
            ..commit(c, 0, 1, 0)
        };
        let big = table
            .commit(&AT, with_state("a", CONSUMER_STATE_BYTES_MAX + 1), 0)
            .unwrap_err();
        assert!(big.to_string().contains("SmartModule state"), "{big}");
        let fits = CONSUMER_STATE_PARTITION_BYTES_MAX / CONSUMER_STATE_BYTES_MAX;
        for i in 0..fits {
            table
                .commit(
                    &AT,
                    with_state(&format!("s{i}"), CONSUMER_STATE_BYTES_MAX),
                    0,
                )
                .unwrap();
        }
        let over = table.commit(&AT, with_state("x", 1), 0).unwrap_err();
        assert!(over.to_string().contains("take"), "{over}");
        // Replacing a state with one no larger is always possible.
        table
            .commit(&AT, with_state("s0", CONSUMER_STATE_BYTES_MAX), 0)
            .unwrap();
    }
}
