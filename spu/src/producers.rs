//! Idempotent produce: which batch each producer last wrote to a partition.
//!
//! A producer numbers its batches per partition and sends a retried batch
//! with the same number. The partition's state machine remembers, per
//! producer, the last number it appended and where; a batch numbered at or
//! below that is a retry of something already in the log and is answered
//! without appending. The table is part of the replicated state: every
//! replica applies the same entries and reaches the same verdicts, so a retry
//! that lands on a new leader after a failover is caught too.
//!
//! Persistence: the table is written next to the segments whenever the Raft
//! layer asks for a synced point, together with the index it reflects and the
//! log's end offset then. After a restart, entries after that index are
//! re-applied from the Raft log and rebuild the rest (see
//! `PartitionStateMachine::apply`).

use std::collections::HashMap;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sluice_proto::ProducerSeq;

/// Producers remembered per partition; beyond this the one idle longest is forgotten.
pub(crate) const PRODUCERS_PER_PARTITION_MAX: usize = 10_000;

const FILE_NAME: &str = "producers.bin";

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
    /// Not seen: append it.
    New,
    /// The producer's last batch again: answer with its offset.
    Retry { base_offset: u64 },
    /// Older than the producer's last batch: already in the log, long acknowledged.
    Stale { last_sequence: u64 },
}

/// The replicated part of a partition's state besides its records.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ProducerTable {
    /// Raft index of the last command reflected here.
    pub applied_index: u64,
    /// Offset the next appended record gets (the log's end offset).
    pub next_offset: u64,
    producers: HashMap<u64, LastBatch>,
}

impl ProducerTable {
    pub(crate) fn path(dir: &Path) -> PathBuf {
        dir.join(FILE_NAME)
    }

    /// The table saved in `dir`, or an empty one for a new partition.
    pub(crate) fn load(dir: &Path) -> io::Result<Self> {
        match std::fs::read(Self::path(dir)) {
            Ok(bytes) => crate::partition::decode(&bytes).map_err(|e| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{} is unreadable: {e}", Self::path(dir).display()),
                )
            }),
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
        std::fs::File::open(dir)?.sync_all()
    }

    pub(crate) fn verdict(&self, producer: Option<ProducerSeq>) -> Verdict {
        let Some(p) = producer else {
            return Verdict::New;
        };
        match self.producers.get(&p.producer_id) {
            Some(last) if p.sequence == last.sequence => Verdict::Retry {
                base_offset: last.base_offset,
            },
            Some(last) if p.sequence < last.sequence => Verdict::Stale {
                last_sequence: last.sequence,
            },
            _ => Verdict::New,
        }
    }

    /// Records that the batch `producer` sent was written at `base_offset`
    /// by the entry at `index`.
    pub(crate) fn record(&mut self, producer: Option<ProducerSeq>, base_offset: u64, index: u64) {
        let Some(p) = producer else { return };
        self.producers.insert(
            p.producer_id,
            LastBatch {
                sequence: p.sequence,
                base_offset,
                index,
            },
        );
        if self.producers.len() > PRODUCERS_PER_PARTITION_MAX {
            // Deterministic on every replica: the oldest by Raft index goes.
            if let Some((&oldest, _)) = self.producers.iter().min_by_key(|(_, b)| b.index) {
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

    #[test]
    fn retries_and_stale_batches_are_recognised() {
        let mut t = ProducerTable::default();
        assert_eq!(t.verdict(seq(7, 0)), Verdict::New);
        t.record(seq(7, 0), 0, 1);
        assert_eq!(t.verdict(seq(7, 0)), Verdict::Retry { base_offset: 0 });
        assert_eq!(t.verdict(seq(7, 1)), Verdict::New);
        t.record(seq(7, 1), 10, 2);
        assert_eq!(t.verdict(seq(7, 0)), Verdict::Stale { last_sequence: 1 });
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
    fn the_table_survives_save_and_load_and_stays_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let mut t = ProducerTable {
            applied_index: 9,
            next_offset: 42,
            ..Default::default()
        };
        for p in 0..(PRODUCERS_PER_PARTITION_MAX as u64 + 5) {
            t.record(seq(p, 3), p, p + 1);
        }
        assert_eq!(t.producers.len(), PRODUCERS_PER_PARTITION_MAX);
        assert_eq!(
            t.verdict(seq(0, 3)),
            Verdict::New,
            "the oldest producer was forgotten"
        );
        t.save(dir.path()).unwrap();
        assert_eq!(ProducerTable::load(dir.path()).unwrap(), t);
        let empty = tempfile::tempdir().unwrap();
        assert_eq!(
            ProducerTable::load(empty.path()).unwrap(),
            ProducerTable::default()
        );
    }
}
