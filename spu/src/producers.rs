//! Idempotent produce: the last batches each producer wrote to a partition,
//! and the sequence rule that keeps a pipelining producer's records in order.
//!
//! A producer numbers its batches per partition (0, 1, 2, ...) and sends a
//! retried batch with the same number. It may have up to
//! [`PRODUCER_IN_FLIGHT_PER_PARTITION_MAX`] batches on the wire to one
//! partition at once, so the partition's state machine decides, when it
//! applies a batch (the same decision on every replica), whether it goes in:
//!
//! - the number right after the producer's last written batch (or 0 for a
//!   producer the partition does not know): appended;
//! - a number among the producer's last [`DEDUP_WINDOW`] written batches: a
//!   resend of a batch already in the log (its acknowledgement was lost, or a
//!   later batch's failure made the producer resend it): answered with the
//!   offsets it was written at, not appended again;
//! - a number further back: [`Verdict::Stale`], long acknowledged;
//! - a number past the next one: [`Verdict::OutOfOrder`], not appended. Its
//!   predecessor failed or has not been applied yet, and writing it first
//!   would reorder the producer's records; the producer resends it after the
//!   predecessor. So records of one producer and partition are stored in the
//!   order they were sent, each batch exactly once.
//!
//! The window must reach back to the oldest batch a producer may still
//! resend: after a failure the producer resends its oldest unacknowledged
//! batch and all later ones, and every one of them that was written must
//! still be recognised. So a producer never numbers a batch more than
//! [`PRODUCER_IN_FLIGHT_PER_PARTITION_MAX`] - 1 past its oldest
//! unacknowledged one (a bound on the span of numbers, not only on how many
//! are unacknowledged: later batches may be acknowledged while an earlier
//! one is resent).
//!
//! The table is part of the replicated state: every replica applies the same
//! entries and reaches the same verdicts, so a resend that lands on a new
//! leader after a failover is caught too.
//!
//! Persistence: the table is written next to the segments whenever the Raft
//! layer asks for a synced point, together with the index it reflects and the
//! log's end offset then. After a restart, entries after that index are
//! re-applied from the Raft log and rebuild the rest (see
//! `PartitionStateMachine::apply`).

use std::collections::{HashMap, VecDeque};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sluice_proto::ProducerSeq;
use sluice_proto::limits::PRODUCER_IN_FLIGHT_PER_PARTITION_MAX;

/// Producers remembered per partition; beyond this the one idle longest is forgotten.
pub(crate) const PRODUCERS_PER_PARTITION_MAX: usize = 10_000;

/// Written batches remembered per producer and partition.
pub(crate) const DEDUP_WINDOW: usize = PRODUCER_IN_FLIGHT_PER_PARTITION_MAX;
const _: () = assert!(DEDUP_WINDOW >= PRODUCER_IN_FLIGHT_PER_PARTITION_MAX);

/// The table's file. Format 2 keeps a window of batches per producer.
const FILE_NAME: &str = "producers.v2.bin";
/// Format 1 (one batch per producer), converted when found.
const LEGACY_FILE_NAME: &str = "producers.bin";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct LastBatch {
    pub sequence: u64,
    pub base_offset: u64,
    /// Raft index of the entry that wrote it (also the eviction order).
    pub index: u64,
}

/// What the table says about an incoming batch.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// The producer's next batch (or one without a producer): append it.
    New,
    /// One of the producer's last written batches again: answer with its offset.
    Retry { base_offset: u64 },
    /// Older than the window: already in the log, long acknowledged.
    Stale { last_sequence: u64 },
    /// Past the producer's next batch: a predecessor is missing. Not written.
    OutOfOrder { last_sequence: Option<u64> },
}

/// The replicated part of a partition's state besides its records.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ProducerTable {
    /// Raft index of the last command reflected here.
    pub applied_index: u64,
    /// Offset the next appended record gets (the log's end offset).
    pub next_offset: u64,
    /// Per producer, its last written batches, oldest first, consecutive
    /// sequences, at most [`DEDUP_WINDOW`].
    producers: HashMap<u64, VecDeque<LastBatch>>,
}

/// Format 1 of the table, for conversion.
#[derive(Deserialize)]
struct LegacyTable {
    applied_index: u64,
    next_offset: u64,
    producers: HashMap<u64, LastBatch>,
}

impl ProducerTable {
    pub(crate) fn path(dir: &Path) -> PathBuf {
        dir.join(FILE_NAME)
    }

    /// The table saved in `dir` (converting a format 1 table), or an empty
    /// one for a new partition.
    pub(crate) fn load(dir: &Path) -> io::Result<Self> {
        let unreadable = |path: PathBuf, e: String| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{} is unreadable: {e}", path.display()),
            )
        };
        match std::fs::read(Self::path(dir)) {
            Ok(bytes) => {
                return crate::partition::decode(&bytes)
                    .map_err(|e| unreadable(Self::path(dir), e));
            }
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            Err(_) => {}
        }
        let legacy = dir.join(LEGACY_FILE_NAME);
        match std::fs::read(&legacy) {
            Ok(bytes) => {
                let old: LegacyTable =
                    crate::partition::decode(&bytes).map_err(|e| unreadable(legacy, e))?;
                Ok(Self {
                    applied_index: old.applied_index,
                    next_offset: old.next_offset,
                    producers: old
                        .producers
                        .into_iter()
                        .map(|(id, last)| (id, VecDeque::from([last])))
                        .collect(),
                })
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Self::default()),
            Err(e) => Err(e),
        }
    }

    /// Writes the table so that a crash leaves the old or the new one.
    pub(crate) fn save(&self, dir: &Path) -> io::Result<()> {
        let path = Self::path(dir);
        let tmp = path.with_extension("tmp");
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(&crate::partition::encode(self))?;
        file.sync_all()?;
        std::fs::rename(&tmp, &path)?;
        std::fs::File::open(dir)?.sync_all()?;
        // The new format is durable: the old file would only mislead.
        match std::fs::remove_file(dir.join(LEGACY_FILE_NAME)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    pub(crate) fn verdict(&self, producer: Option<ProducerSeq>) -> Verdict {
        let Some(p) = producer else {
            return Verdict::New;
        };
        let Some(window) = self.producers.get(&p.producer_id) else {
            // A producer starts at 0. A later number means its first batches
            // are not written yet (overtaken), or the partition forgot the
            // producer (evicted); either way the producer must resend.
            return if p.sequence == 0 {
                Verdict::New
            } else {
                Verdict::OutOfOrder {
                    last_sequence: None,
                }
            };
        };
        let Some(last) = window.back() else {
            // Never stored empty.
            return Verdict::New;
        };
        if p.sequence == last.sequence + 1 {
            Verdict::New
        } else if p.sequence > last.sequence {
            Verdict::OutOfOrder {
                last_sequence: Some(last.sequence),
            }
        } else if let Some(batch) = window.iter().find(|b| b.sequence == p.sequence) {
            Verdict::Retry {
                base_offset: batch.base_offset,
            }
        } else {
            Verdict::Stale {
                last_sequence: last.sequence,
            }
        }
    }

    /// Records that the batch `producer` sent was written at `base_offset`
    /// by the entry at `index` (after [`Self::verdict`] said [`Verdict::New`]).
    pub(crate) fn record(&mut self, producer: Option<ProducerSeq>, base_offset: u64, index: u64) {
        let Some(p) = producer else { return };
        let window = self.producers.entry(p.producer_id).or_default();
        window.push_back(LastBatch {
            sequence: p.sequence,
            base_offset,
            index,
        });
        if window.len() > DEDUP_WINDOW {
            window.pop_front();
        }
        if self.producers.len() > PRODUCERS_PER_PARTITION_MAX {
            // Deterministic on every replica: the one whose last write is
            // oldest by Raft index goes.
            let oldest = self
                .producers
                .iter()
                .min_by_key(|(_, w)| w.back().map_or(0, |b| b.index))
                .map(|(&id, _)| id);
            if let Some(oldest) = oldest {
                self.producers.remove(&oldest);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seq(producer_id: u64, sequence: u64) -> Option<ProducerSeq> {
        Some(ProducerSeq {
            producer_id,
            sequence,
        })
    }

    /// Applies `sequence` of producer 7 as the state machine does: records it
    /// when new (each batch one record, so its offset is its number here).
    fn apply(t: &mut ProducerTable, sequence: u64, index: u64) -> Verdict {
        let verdict = t.verdict(seq(7, sequence));
        if verdict == Verdict::New {
            let offset = t.next_offset;
            t.next_offset += 1;
            t.record(seq(7, sequence), offset, index);
        }
        verdict
    }

    #[test]
    fn batches_in_order_are_appended() {
        let mut t = ProducerTable::default();
        for s in 0..20 {
            assert_eq!(apply(&mut t, s, s + 1), Verdict::New, "batch {s}");
        }
        assert_eq!(t.next_offset, 20);
        assert_eq!(
            t.verdict(seq(8, 0)),
            Verdict::New,
            "producers are independent"
        );
        assert_eq!(
            t.verdict(None),
            Verdict::New,
            "batches without a producer are never deduplicated"
        );
    }

    #[test]
    fn a_resend_within_the_window_gets_its_original_offset() {
        let mut t = ProducerTable::default();
        for s in 0..8 {
            apply(&mut t, s, s + 1);
        }
        // The last DEDUP_WINDOW batches (3..=7) are recognised, each with its own offset.
        for s in 3..8 {
            assert_eq!(
                apply(&mut t, s, 100 + s),
                Verdict::Retry { base_offset: s },
                "batch {s}"
            );
        }
        assert_eq!(t.next_offset, 8, "nothing was appended twice");
        // And the producer carries on after its last batch.
        assert_eq!(apply(&mut t, 8, 200), Verdict::New);
    }

    #[test]
    fn a_gap_is_rejected_and_not_recorded() {
        let mut t = ProducerTable::default();
        assert_eq!(
            apply(&mut t, 1, 1),
            Verdict::OutOfOrder {
                last_sequence: None
            },
            "a producer's first batch is 0"
        );
        assert_eq!(apply(&mut t, 0, 2), Verdict::New);
        assert_eq!(
            apply(&mut t, 2, 3),
            Verdict::OutOfOrder {
                last_sequence: Some(0)
            },
            "batch 1 is missing"
        );
        assert_eq!(t.next_offset, 1, "a rejected batch takes no offset");
        // Resent in order, both go in.
        assert_eq!(apply(&mut t, 1, 4), Verdict::New);
        assert_eq!(apply(&mut t, 2, 5), Verdict::New);
        assert_eq!(t.next_offset, 3);
    }

    #[test]
    fn batches_that_left_the_window_are_stale() {
        let mut t = ProducerTable::default();
        for s in 0..(DEDUP_WINDOW as u64 + 2) {
            apply(&mut t, s, s + 1);
        }
        let last_sequence = DEDUP_WINDOW as u64 + 1;
        assert_eq!(apply(&mut t, 0, 50), Verdict::Stale { last_sequence });
        assert_eq!(apply(&mut t, 1, 51), Verdict::Stale { last_sequence });
        assert_eq!(apply(&mut t, 2, 52), Verdict::Retry { base_offset: 2 });
        assert_eq!(t.producers[&7].len(), DEDUP_WINDOW);
    }

    #[test]
    fn the_table_survives_save_and_load_and_stays_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let mut t = ProducerTable {
            applied_index: 9,
            next_offset: 42,
            ..Default::default()
        };
        for p in 0..(PRODUCERS_PER_PARTITION_MAX as u64 + 5) {
            t.record(seq(p, 0), p, p + 1);
        }
        assert_eq!(t.producers.len(), PRODUCERS_PER_PARTITION_MAX);
        assert_eq!(
            t.verdict(seq(0, 1)),
            Verdict::OutOfOrder {
                last_sequence: None
            },
            "the oldest producer was forgotten"
        );
        for s in 1..4 {
            t.record(seq(100, s), 1000 + s, 20_000 + s);
        }
        t.save(dir.path()).unwrap();
        let loaded = ProducerTable::load(dir.path()).unwrap();
        assert_eq!(loaded, t);
        // A restarted replica judges as before.
        assert_eq!(
            loaded.verdict(seq(100, 2)),
            Verdict::Retry { base_offset: 1002 }
        );
        assert_eq!(loaded.verdict(seq(100, 4)), Verdict::New);
        assert_eq!(
            loaded.verdict(seq(100, 5)),
            Verdict::OutOfOrder {
                last_sequence: Some(3)
            }
        );
        let empty = tempfile::tempdir().unwrap();
        assert_eq!(
            ProducerTable::load(empty.path()).unwrap(),
            ProducerTable::default()
        );
    }

    #[test]
    fn a_format_1_table_is_converted() {
        #[derive(Serialize)]
        struct V1 {
            applied_index: u64,
            next_offset: u64,
            producers: HashMap<u64, LastBatch>,
        }
        let dir = tempfile::tempdir().unwrap();
        let last = LastBatch {
            sequence: 4,
            base_offset: 30,
            index: 12,
        };
        let v1 = V1 {
            applied_index: 12,
            next_offset: 31,
            producers: HashMap::from([(7, last)]),
        };
        std::fs::write(
            dir.path().join(LEGACY_FILE_NAME),
            crate::partition::encode(&v1),
        )
        .unwrap();
        let t = ProducerTable::load(dir.path()).unwrap();
        assert_eq!((t.applied_index, t.next_offset), (12, 31));
        assert_eq!(t.verdict(seq(7, 4)), Verdict::Retry { base_offset: 30 });
        assert_eq!(t.verdict(seq(7, 5)), Verdict::New);
        t.save(dir.path()).unwrap();
        assert!(!dir.path().join(LEGACY_FILE_NAME).exists());
        assert_eq!(ProducerTable::load(dir.path()).unwrap(), t);
    }
}
