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
//! - a number among the producer's last [`DEDUP_WINDOW`] written batches,
//!   with the same records: a resend of a batch already in the log (its
//!   acknowledgement was lost, or a later batch's failure made the producer
//!   resend it): answered with the offsets it was written at, not appended
//!   again;
//! - such a number with *other* records: [`Verdict::SequenceReused`], not
//!   appended. Two producers share an id (or one numbered two batches
//!   alike); answering with the first batch's offsets would acknowledge
//!   records that were never written, so the batch is refused instead;
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
//! A resend is told from a different batch by a [`BatchDigest`] of its
//! records, computed from the command in the Raft log (so every replica,
//! and a replay, computes the same one) with a hash whose definition is
//! written out here (so it stays the same across releases, as the saved
//! table requires).
//!
//! The table is part of the replicated state: every replica applies the same
//! entries and reaches the same verdicts, so a resend that lands on a new
//! leader after a failover is caught too.
//!
//! Persistence: the table is written next to the segments whenever the Raft
//! layer asks for a synced point, together with the index it reflects and the
//! log's end offset then. After a restart, entries after that index are
//! re-applied from the Raft log and rebuild the rest (see
//! `PartitionStateMachine::apply`). A partition snapshot carries the table in
//! the same encoding.
//!
//! Tables of formats 1 and 2 (older releases) hold no digest; they are
//! converted with the digest of each remembered batch unknown, and a resend
//! of such a batch is recognised by its number alone, as those releases did.
//! Only the verdict (the answer to the producer) can then differ between a
//! replica that converted an old table and one that rebuilt the entry from
//! its log: neither appends anything nor changes its table for a resend, so
//! the replicas' segments and tables stay the same. Such batches leave the
//! window after [`DEDUP_WINDOW`] more batches of their producer.

use std::collections::{HashMap, VecDeque};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sluice_proto::limits::PRODUCER_IN_FLIGHT_PER_PARTITION_MAX;
use sluice_proto::{ProducerSeq, Record};

use crate::offsets::ConsumerTable;

/// Producers remembered per partition; beyond this the one idle longest is forgotten.
pub(crate) const PRODUCERS_PER_PARTITION_MAX: usize = 10_000;

/// Written batches remembered per producer and partition.
pub(crate) const DEDUP_WINDOW: usize = PRODUCER_IN_FLIGHT_PER_PARTITION_MAX;
const _: () = assert!(DEDUP_WINDOW >= PRODUCER_IN_FLIGHT_PER_PARTITION_MAX);

/// The table's file. Format 3 keeps a digest per remembered batch; format 4
/// (same file: its version byte tells) adds the committed consumer offsets.
const FILE_NAME: &str = "producers.v3.bin";
/// Format 2 (a window of batches per producer, no digest), converted when found.
const V2_FILE_NAME: &str = "producers.v2.bin";
/// Format 1 (one batch per producer, no digest), converted when found.
const V1_FILE_NAME: &str = "producers.bin";

/// Leads a format 3 (or later) table, in its file and in a snapshot. A
/// format 2 table, which a node of an older release puts in its snapshots,
/// starts with its applied index as a varint, whose first byte is never
/// 0xFF (varints use 0..=254): so the two cannot be mistaken for each
/// other, and a table that a future format adds a field to is refused by
/// its version byte rather than decoded into wrong numbers.
const FORMAT_MARK: u8 = 0xFF;
const FORMAT_VERSION: u8 = 4;
/// Written while a partition holds no consumer offsets, so a release that
/// reads only format 3 can still take the table (and snapshots) of a
/// partition that never had a commit.
const FORMAT_VERSION_WITHOUT_OFFSETS: u8 = 3;

/// A 64-bit digest of a batch's records: XXH64 (seed 0) over, in order, the
/// record count (u64 little-endian) and for each record its key (a 0 byte if
/// absent, else a 1 byte, the length as u64 LE and the bytes) and its value
/// (the length as u64 LE and the bytes).
///
/// Defined here byte for byte rather than as the Raft command's encoding or
/// the storage format, so that neither can change it: digests are saved in
/// the table and compared with those of later releases. Lengths are part of
/// it, so records split differently never digest alike by construction.
/// 64 bits because a collision lets a different batch pass as a resend
/// (answered with another batch's offsets, its records dropped).
///
/// Timestamps are left out: a producer stamps its records when it sends
/// them, and a client may stamp a retry anew (the fault suite's workload
/// does); refusing such a retry would report a written batch as failed. A
/// batch of another producer with the same keys and values under the same
/// number is then taken for a resend, and the records it holds are in the
/// log already, only stamped at another time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub(crate) struct BatchDigest(pub u64);

impl BatchDigest {
    pub(crate) fn of(records: &[Record]) -> Self {
        let mut h = Xxh64::new(0);
        h.update(&(records.len() as u64).to_le_bytes());
        for r in records {
            match &r.key {
                None => h.update(&[0]),
                Some(key) => {
                    h.update(&[1]);
                    h.update(&(key.len() as u64).to_le_bytes());
                    h.update(key);
                }
            }
            h.update(&(r.value.len() as u64).to_le_bytes());
            h.update(&r.value);
            // Only for a record with headers, so the digest of a batch
            // without them is what earlier releases stored. Unambiguous:
            // what follows a value is otherwise a key tag (0 or 1) or the end.
            if !r.headers.is_empty() {
                let mut bytes = Vec::new();
                sluice_proto::headers::encode_into(&mut bytes, &r.headers);
                h.update(&[2]);
                h.update(&(bytes.len() as u64).to_le_bytes());
                h.update(&bytes);
            }
        }
        Self(h.finish())
    }
}

/// XXH64 (<https://github.com/Cyan4973/xxHash/blob/dev/doc/xxhash_spec.md>),
/// streaming, written out so that the digest depends on no crate's version;
/// checked against the reference implementation's values in the tests.
struct Xxh64 {
    acc: [u64; 4],
    buf: [u8; 32],
    buf_len: usize,
    total_len: u64,
    seed: u64,
}

const P1: u64 = 0x9E37_79B1_85EB_CA87;
const P2: u64 = 0xC2B2_AE3D_27D4_EB4F;
const P3: u64 = 0x1656_67B1_9E37_79F9;
const P4: u64 = 0x85EB_CA77_C2B2_AE63;
const P5: u64 = 0x27D4_EB2F_1656_67C5;

fn xxh_round(acc: u64, lane: u64) -> u64 {
    acc.wrapping_add(lane.wrapping_mul(P2))
        .rotate_left(31)
        .wrapping_mul(P1)
}

fn xxh_merge(acc: u64, lane: u64) -> u64 {
    (acc ^ xxh_round(0, lane)).wrapping_mul(P1).wrapping_add(P4)
}

fn le64(b: &[u8]) -> u64 {
    u64::from_le_bytes(b[..8].try_into().expect("8 bytes"))
}

impl Xxh64 {
    fn new(seed: u64) -> Self {
        Self {
            acc: [
                seed.wrapping_add(P1).wrapping_add(P2),
                seed.wrapping_add(P2),
                seed,
                seed.wrapping_sub(P1),
            ],
            buf: [0; 32],
            buf_len: 0,
            total_len: 0,
            seed,
        }
    }

    fn stripe(acc: &mut [u64; 4], stripe: &[u8]) {
        for (i, a) in acc.iter_mut().enumerate() {
            *a = xxh_round(*a, le64(&stripe[i * 8..]));
        }
    }

    fn update(&mut self, mut input: &[u8]) {
        self.total_len += input.len() as u64;
        if self.buf_len > 0 {
            let take = (32 - self.buf_len).min(input.len());
            self.buf[self.buf_len..self.buf_len + take].copy_from_slice(&input[..take]);
            self.buf_len += take;
            input = &input[take..];
            if self.buf_len < 32 {
                return;
            }
            Self::stripe(&mut self.acc, &self.buf);
            self.buf_len = 0;
        }
        let mut stripes = input.chunks_exact(32);
        for stripe in &mut stripes {
            Self::stripe(&mut self.acc, stripe);
        }
        let rest = stripes.remainder();
        self.buf[..rest.len()].copy_from_slice(rest);
        self.buf_len = rest.len();
    }

    fn finish(&self) -> u64 {
        let [v1, v2, v3, v4] = self.acc;
        let mut h = if self.total_len >= 32 {
            let h = v1
                .rotate_left(1)
                .wrapping_add(v2.rotate_left(7))
                .wrapping_add(v3.rotate_left(12))
                .wrapping_add(v4.rotate_left(18));
            [v1, v2, v3, v4].into_iter().fold(h, xxh_merge)
        } else {
            self.seed.wrapping_add(P5)
        };
        h = h.wrapping_add(self.total_len);
        let mut rest = &self.buf[..self.buf_len];
        while rest.len() >= 8 {
            h ^= xxh_round(0, le64(rest));
            h = h.rotate_left(27).wrapping_mul(P1).wrapping_add(P4);
            rest = &rest[8..];
        }
        if rest.len() >= 4 {
            let word = u32::from_le_bytes(rest[..4].try_into().expect("4 bytes"));
            h ^= u64::from(word).wrapping_mul(P1);
            h = h.rotate_left(23).wrapping_mul(P2).wrapping_add(P3);
            rest = &rest[4..];
        }
        for &byte in rest {
            h ^= u64::from(byte).wrapping_mul(P5);
            h = h.rotate_left(11).wrapping_mul(P1);
        }
        h ^= h >> 33;
        h = h.wrapping_mul(P2);
        h ^= h >> 29;
        h = h.wrapping_mul(P3);
        h ^ (h >> 32)
    }
}

/// An incoming batch as the table judges it: who sent it under which
/// number, and what it holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SentBatch {
    pub producer: ProducerSeq,
    pub digest: BatchDigest,
}

impl SentBatch {
    /// `None` for a batch without a producer (never deduplicated, so its
    /// records are not digested).
    pub(crate) fn new(producer: Option<ProducerSeq>, records: &[Record]) -> Option<Self> {
        producer.map(|producer| Self {
            producer,
            digest: BatchDigest::of(records),
        })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct LastBatch {
    pub sequence: u64,
    pub base_offset: u64,
    /// Raft index of the entry that wrote it (also the eviction order).
    pub index: u64,
    /// `None` for a batch remembered by a table of format 1 or 2, which kept
    /// no digest: a resend of it is recognised by its number alone.
    pub digest: Option<BatchDigest>,
}

/// What the table says about an incoming batch.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// The producer's next batch (or one without a producer): append it.
    New,
    /// One of the producer's last written batches again: answer with its offset.
    Retry { base_offset: u64 },
    /// The number of one of the producer's last written batches (the one at
    /// `base_offset`), but other records: not written, refused.
    SequenceReused { base_offset: u64 },
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
    /// Committed consumer offsets (`crate::offsets`). Encoded after the
    /// fields above (format 4), so those keep format 3's encoding.
    #[serde(skip)]
    pub consumers: ConsumerTable,
}

/// A remembered batch in formats 1 and 2, for conversion.
#[derive(Deserialize)]
struct LastBatchV2 {
    sequence: u64,
    base_offset: u64,
    index: u64,
}

impl From<LastBatchV2> for LastBatch {
    fn from(b: LastBatchV2) -> Self {
        Self {
            sequence: b.sequence,
            base_offset: b.base_offset,
            index: b.index,
            digest: None,
        }
    }
}

/// Format 2 of the table: its file, and the snapshots of older releases.
#[derive(Deserialize)]
struct TableV2 {
    applied_index: u64,
    next_offset: u64,
    producers: HashMap<u64, VecDeque<LastBatchV2>>,
}

/// Format 1 of the table, for conversion.
#[derive(Deserialize)]
struct TableV1 {
    applied_index: u64,
    next_offset: u64,
    producers: HashMap<u64, LastBatchV2>,
}

impl From<TableV2> for ProducerTable {
    fn from(old: TableV2) -> Self {
        Self {
            applied_index: old.applied_index,
            next_offset: old.next_offset,
            producers: old
                .producers
                .into_iter()
                .map(|(id, w)| (id, w.into_iter().map(LastBatch::from).collect()))
                .collect(),
            consumers: ConsumerTable::default(),
        }
    }
}

impl From<TableV1> for ProducerTable {
    fn from(old: TableV1) -> Self {
        Self {
            applied_index: old.applied_index,
            next_offset: old.next_offset,
            producers: old
                .producers
                .into_iter()
                .map(|(id, last)| (id, VecDeque::from([LastBatch::from(last)])))
                .collect(),
            consumers: ConsumerTable::default(),
        }
    }
}

impl ProducerTable {
    pub(crate) fn path(dir: &Path) -> PathBuf {
        dir.join(FILE_NAME)
    }

    /// The table as saved and as carried in a snapshot: [`FORMAT_MARK`],
    /// the format, then the table; format 4 follows it with the consumer
    /// offsets, format 3 (written while there are none) does not.
    pub(crate) fn encode(&self) -> Vec<u8> {
        let version = if self.consumers.is_empty() {
            FORMAT_VERSION_WITHOUT_OFFSETS
        } else {
            FORMAT_VERSION
        };
        let mut out = vec![FORMAT_MARK, version];
        out.extend_from_slice(&crate::partition::encode(self));
        if !self.consumers.is_empty() {
            out.extend_from_slice(&crate::partition::encode(&self.consumers));
        }
        out
    }

    /// Reads [`Self::encode`]'s output, or a format 2 table (what a node of
    /// an older release puts in a snapshot), converted.
    pub(crate) fn decode(bytes: &[u8]) -> Result<Self, String> {
        match bytes {
            [FORMAT_MARK, FORMAT_VERSION_WITHOUT_OFFSETS, body @ ..] => decode_whole(body),
            [FORMAT_MARK, FORMAT_VERSION, body @ ..] => {
                let (mut table, used): (Self, usize) =
                    sluice_proto::encoding::from_slice(body, crate::partition::DECODE_BYTES_MAX)
                        .map_err(|e| e.to_string())?;
                table.consumers = decode_whole(&body[used..])?;
                Ok(table)
            }
            [FORMAT_MARK, version, ..] => Err(format!(
                "producer table format {version} is not one this release reads (it reads \
                 format {FORMAT_VERSION}; a newer release may have written it)"
            )),
            _ => decode_whole::<TableV2>(bytes).map(Self::from),
        }
    }

    /// The table saved in `dir` (converting a table of format 1 or 2), or
    /// an empty one for a new partition.
    pub(crate) fn load(dir: &Path) -> io::Result<Self> {
        let unreadable = |path: PathBuf, e: String| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{} is unreadable: {e}", path.display()),
            )
        };
        let read = |path: &Path| match std::fs::read(path) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        };
        let path = Self::path(dir);
        if let Some(bytes) = read(&path)? {
            return match bytes.first() {
                Some(&FORMAT_MARK) => Self::decode(&bytes),
                _ => Err("it does not start with the format mark".into()),
            }
            .map_err(|e| unreadable(path, e));
        }
        let v2 = dir.join(V2_FILE_NAME);
        if let Some(bytes) = read(&v2)? {
            return decode_whole::<TableV2>(&bytes)
                .map(Self::from)
                .map_err(|e| unreadable(v2, e));
        }
        let v1 = dir.join(V1_FILE_NAME);
        if let Some(bytes) = read(&v1)? {
            return decode_whole::<TableV1>(&bytes)
                .map(Self::from)
                .map_err(|e| unreadable(v1, e));
        }
        Ok(Self::default())
    }

    /// Writes the table so that a crash leaves the old or the new one.
    pub(crate) fn save(&self, dir: &Path) -> io::Result<()> {
        Self::save_encoded(dir, &self.encode())
    }

    /// Saves a table encoded earlier ([`Self::encode`]) as [`Self::save`]
    /// does: written aside, fsynced, renamed over the old one, the directory
    /// fsynced.
    pub(crate) fn save_encoded(dir: &Path, encoded: &[u8]) -> io::Result<()> {
        let path = Self::path(dir);
        let tmp = path.with_extension("tmp");
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(encoded)?;
        file.sync_all()?;
        std::fs::rename(&tmp, &path)?;
        std::fs::File::open(dir)?.sync_all()?;
        // The new format is durable: an old file would only mislead.
        for old in [V2_FILE_NAME, V1_FILE_NAME] {
            match std::fs::remove_file(dir.join(old)) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        Ok(())
    }

    pub(crate) fn verdict(&self, batch: Option<SentBatch>) -> Verdict {
        let Some(SentBatch {
            producer: p,
            digest,
        }) = batch
        else {
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
            // Unknown digest (converted table): judged by the number alone.
            if batch.digest.is_none_or(|d| d == digest) {
                Verdict::Retry {
                    base_offset: batch.base_offset,
                }
            } else {
                Verdict::SequenceReused {
                    base_offset: batch.base_offset,
                }
            }
        } else {
            Verdict::Stale {
                last_sequence: last.sequence,
            }
        }
    }

    /// Records that `batch` was written at `base_offset` by the entry at
    /// `index` (after [`Self::verdict`] said [`Verdict::New`]).
    pub(crate) fn record(&mut self, batch: Option<SentBatch>, base_offset: u64, index: u64) {
        let Some(SentBatch {
            producer: p,
            digest,
        }) = batch
        else {
            return;
        };
        let window = self.producers.entry(p.producer_id).or_default();
        window.push_back(LastBatch {
            sequence: p.sequence,
            base_offset,
            index,
            digest: Some(digest),
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

/// Decodes `bytes` as exactly one `T`: a table followed by anything is
/// damaged or of another format, not a table.
fn decode_whole<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    // Tables travel in partition snapshots (from the leader) and sit on
    // disk: no length in them is believed beyond what a frame holds.
    sluice_proto::encoding::from_slice_whole(bytes, crate::partition::DECODE_BYTES_MAX)
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Batch `sequence` of `producer_id`, holding `records` values.
    fn sent(producer_id: u64, sequence: u64, records: &[&str]) -> Option<SentBatch> {
        let records: Vec<Record> = records
            .iter()
            .map(|v| Record {
                key: None,
                value: v.as_bytes().to_vec(),
                timestamp_ms: 1_000,
                headers: Vec::new(),
            })
            .collect();
        SentBatch::new(
            Some(ProducerSeq {
                producer_id,
                sequence,
            }),
            &records,
        )
    }

    /// Batch `sequence` of `producer_id` with the records this module's
    /// tests send under that number unless they mean another batch.
    fn seq(producer_id: u64, sequence: u64) -> Option<SentBatch> {
        sent(producer_id, sequence, &[&format!("batch {sequence}")])
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

    /// The reference implementation's values (libxxhash 0.8, `XXH64(data,
    /// len, 0)`) for `(i * 7 + 3) % 256`, `i` in `0..len`.
    const XXH64_REFERENCE: [(usize, u64); 14] = [
        (0, 0xef46db3751d8e999),
        (1, 0x1f25c8d0bc1f4bb6),
        (3, 0x31d2363f52e564c9),
        (4, 0x9bb64b7d66ee9fda),
        (7, 0x9a7b149959ce60d8),
        (8, 0xdab99d95c6f90092),
        (12, 0xd52e407833af5133),
        (31, 0xa2aa5f33cc4a6119),
        (32, 0x23c3c17ef790fd97),
        (33, 0x50a7cfc7ba588784),
        (63, 0x5e3e54b431c7493c),
        (64, 0x0eb64b3ef6eeb01f),
        (100, 0xa61f8d4c170fe531),
        (1000, 0x5f235fa033f1a3fb),
    ];

    #[test]
    fn xxh64_matches_the_reference_in_one_piece_and_in_pieces() {
        for (len, expected) in XXH64_REFERENCE {
            let data: Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8).collect();
            let mut whole = Xxh64::new(0);
            whole.update(&data);
            assert_eq!(whole.finish(), expected, "{len} bytes at once");
            for piece in [1, 3, 8, 31, 33] {
                let mut h = Xxh64::new(0);
                for chunk in data.chunks(piece) {
                    h.update(chunk);
                }
                assert_eq!(h.finish(), expected, "{len} bytes in pieces of {piece}");
            }
        }
        let mut abc = Xxh64::new(0);
        abc.update(b"abc");
        assert_eq!(abc.finish(), 0x44bc2cf5ad770999);
    }

    #[test]
    fn the_digest_is_the_documented_layout_and_tells_batches_apart() {
        let batch = [
            Record {
                key: None,
                value: b"v1".to_vec(),
                timestamp_ms: 1_700_000_000_000,
                headers: Vec::new(),
            },
            Record {
                key: Some(b"k".to_vec()),
                value: Vec::new(),
                timestamp_ms: -5,
                headers: Vec::new(),
            },
        ];
        // Saved tables hold digests: this value must never change. It is
        // the reference XXH64 of the layout described on `BatchDigest`.
        assert_eq!(BatchDigest::of(&batch), BatchDigest(0x23a6acd925eb4c21));

        let digest = |records: &[(Option<&str>, &str, i64)]| {
            let records: Vec<Record> = records
                .iter()
                .map(|&(key, value, timestamp_ms)| Record {
                    key: key.map(|k| k.as_bytes().to_vec()),
                    value: value.as_bytes().to_vec(),
                    timestamp_ms,
                    headers: Vec::new(),
                })
                .collect();
            BatchDigest::of(&records)
        };
        let base = digest(&[(None, "ab", 1), (None, "c", 1)]);
        assert_eq!(base, digest(&[(None, "ab", 1), (None, "c", 1)]));
        assert_eq!(
            base,
            digest(&[(None, "ab", 7), (None, "c", 8)]),
            "a retry stamped anew is the same batch"
        );
        for other in [
            digest(&[(None, "a", 1), (None, "bc", 1)]),
            digest(&[(None, "abc", 1)]),
            digest(&[(Some(""), "ab", 1), (None, "c", 1)]),
            digest(&[(None, "c", 1), (None, "ab", 1)]),
            digest(&[(None, "ab", 1), (None, "c", 1), (None, "", 1)]),
        ] {
            assert_ne!(base, other);
        }
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
    fn other_records_under_a_written_batch_number_are_refused() {
        let mut t = ProducerTable::default();
        for s in 0..3 {
            apply(&mut t, s, s + 1);
        }
        let before = t.clone();
        // Another producer that drew the same id, or a buggy one, numbers
        // its own batch 1: it must not be acknowledged with batch 1's offsets.
        assert_eq!(
            t.verdict(sent(7, 1, &["someone else's record"])),
            Verdict::SequenceReused { base_offset: 1 }
        );
        assert_eq!(
            t.verdict(sent(7, 1, &["batch 1", "and one more"])),
            Verdict::SequenceReused { base_offset: 1 },
            "a batch with a record added is another batch"
        );
        // The genuine resend is still answered with its offset, and the
        // refusal changed nothing.
        assert_eq!(t.verdict(seq(7, 1)), Verdict::Retry { base_offset: 1 });
        assert_eq!(t, before);
        assert_eq!(apply(&mut t, 3, 4), Verdict::New);
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
    fn the_fullest_table_decodes_within_the_decoding_limit() {
        // Every producer the table keeps, each with a full window: what
        // decoding must still accept (it refuses lengths beyond a frame).
        let mut t = ProducerTable::default();
        for p in 0..PRODUCERS_PER_PARTITION_MAX as u64 {
            for s in 0..DEDUP_WINDOW as u64 {
                t.record(seq(u64::MAX - p, s), u64::MAX / 2, u64::MAX / 2);
            }
        }
        let bytes = t.encode();
        assert!(bytes.len() < sluice_proto::limits::FRAME_SIZE_BYTES_MAX / 2);
        assert_eq!(ProducerTable::decode(&bytes).unwrap(), t);
        // And every consumer a partition keeps, with as many states as fit,
        // under the longest names: the whole still fits a snapshot's frame.
        use sluice_proto::limits::{
            CONSUMER_STATE_BYTES_MAX, CONSUMER_STATE_PARTITION_BYTES_MAX,
            CONSUMERS_PER_PARTITION_MAX,
        };
        let at = crate::offsets::Place {
            topic: "t",
            partition: 0,
        };
        let with_state = CONSUMER_STATE_PARTITION_BYTES_MAX / CONSUMER_STATE_BYTES_MAX;
        for c in 0..CONSUMERS_PER_PARTITION_MAX {
            let name = format!("{c:0>63}");
            let state = (c < with_state).then(|| vec![7; CONSUMER_STATE_BYTES_MAX]);
            let commit = crate::offsets::CommitEntry {
                consumer: name,
                offset: 0,
                session: u64::MAX,
                sequence: u64::MAX,
                state: state.map(serde_bytes::ByteBuf::from),
                member: None,
                committed_ms: i64::MAX,
            };
            t.consumers.commit(&at, commit, 0).unwrap();
        }
        let bytes = t.encode();
        assert!(
            bytes.len() < sluice_proto::limits::FRAME_SIZE_BYTES_MAX * 3 / 4,
            "{}",
            bytes.len()
        );
        assert_eq!(ProducerTable::decode(&bytes).unwrap(), t);
    }

    /// Partition commands in the Raft log, their outcomes, snapshots and
    /// producer tables of an earlier build stay readable, byte for byte
    /// (see `sluice_fuzzing::golden`).
    /// Conditional appends (derived topics) and their refusal, in files of
    /// their own.
    #[test]
    fn golden_conditional_appends() {
        use crate::partition::{AppendOutcome, PartitionCommand, decode, encode};
        let dir = env!("CARGO_MANIFEST_DIR");
        let commands = [PartitionCommand::AppendAt {
            records: vec![Record {
                timestamp_ms: 1_700_000_000_000,
                ..Record::new(b"A CAT".to_vec()).header("sluice-source-offset", "7")
            }],
            expected_offset: 41,
        }];
        sluice_fuzzing::golden::check(dir, "partition-append-at", &commands, encode, decode);
        let outcomes = [AppendOutcome::NotAt { end_offset: 42 }];
        sluice_fuzzing::golden::check(dir, "append-at-outcomes", &outcomes, encode, decode);
    }

    #[test]
    fn golden_partition_formats() {
        use crate::partition::{AppendOutcome, PartitionCommand, decode, encode};
        let dir = env!("CARGO_MANIFEST_DIR");
        let commands = [
            PartitionCommand::Append {
                records: vec![
                    Record {
                        key: Some(b"k".to_vec()),
                        value: vec![9; 300],
                        timestamp_ms: -5,
                        headers: Vec::new(),
                    },
                    Record {
                        key: None,
                        value: Vec::new(),
                        timestamp_ms: i64::MAX,
                        headers: Vec::new(),
                    },
                ],
                producer: Some(ProducerSeq {
                    producer_id: u64::MAX,
                    sequence: 1 << 20,
                }),
            },
            PartitionCommand::Append {
                records: Vec::new(),
                producer: None,
            },
        ];
        sluice_fuzzing::golden::check(dir, "partition-commands", &commands, encode, decode);
        let outcomes = [
            AppendOutcome::Appended {
                base_offset: 70_000,
            },
            AppendOutcome::Replayed,
            AppendOutcome::Retry { base_offset: 3 },
            AppendOutcome::Stale { last_sequence: 4 },
            AppendOutcome::OutOfOrder {
                last_sequence: None,
            },
            AppendOutcome::Failed {
                reason: "disk full".into(),
            },
            AppendOutcome::SequenceReused { base_offset: 8 },
        ];
        sluice_fuzzing::golden::check(dir, "append-outcomes", &outcomes, encode, decode);
        let mut table = ProducerTable {
            applied_index: 1 << 33,
            next_offset: 42,
            ..Default::default()
        };
        for s in 0..3 {
            table.record(seq(7, s), 10 + s, 20 + s);
        }
        // One producer only: the table's map has no stable order.
        sluice_fuzzing::golden::check(
            dir,
            "producer-tables",
            &[ProducerTable::default(), table.clone()],
            ProducerTable::encode,
            ProducerTable::decode,
        );
        let snapshot = crate::log_copy::PartitionSnapshot {
            source: 3,
            group: 1 << 32,
            start_offset: 100,
            end_offset: 70_000,
            last_entry_id: Some(69_999),
            producers: table.encode(),
        };
        sluice_fuzzing::golden::check(dir, "partition-snapshots", &[snapshot], encode, decode);

        // Consumer offsets, kept by the partition since: commands, their
        // outcomes and a format 4 table, in files of their own.
        let commands = [
            PartitionCommand::CommitOffset(crate::offsets::CommitEntry {
                consumer: "app".into(),
                offset: 12,
                session: 5,
                sequence: 6,
                state: Some(serde_bytes::ByteBuf::from(vec![1, 2])),
                member: Some(("m1".into(), 3)),
                committed_ms: 1_700_000_000_000,
            }),
            PartitionCommand::FenceConsumer {
                consumer: "g".into(),
                generation: 4,
            },
            PartitionCommand::ForgetConsumer {
                consumer: "app".into(),
            },
        ];
        sluice_fuzzing::golden::check(dir, "partition-offset-commands", &commands, encode, decode);
        let outcomes = [
            AppendOutcome::OffsetCommitted,
            AppendOutcome::Refused {
                error: sluice_proto::WireError::UnknownConsumer {
                    consumer: "x".into(),
                    topic: None,
                },
            },
            AppendOutcome::Fenced {
                offset: Some(12),
                state: None,
            },
            AppendOutcome::Forgotten { found: true },
        ];
        sluice_fuzzing::golden::check(dir, "partition-offset-outcomes", &outcomes, encode, decode);
        let at = crate::offsets::Place {
            topic: "t",
            partition: 0,
        };
        table.consumers.fence(&at, "app".into(), 3).unwrap();
        if let PartitionCommand::CommitOffset(c) = &commands[0] {
            table.consumers.commit(&at, c.clone(), 42).unwrap();
        }
        sluice_fuzzing::golden::check(
            dir,
            "producer-tables-v4",
            &[table],
            ProducerTable::encode,
            ProducerTable::decode,
        );

        // Records with headers, appended since, in a file of its own.
        let headed = Record {
            timestamp_ms: 1_700_000_000_000,
            ..Record::new(b"v".to_vec())
                .header("trace", "abc")
                .header("", vec![0xff])
        };
        let commands = [PartitionCommand::append(
            vec![
                headed.clone(),
                Record {
                    headers: Vec::new(),
                    ..headed
                },
            ],
            Some(ProducerSeq {
                producer_id: 3,
                sequence: 4,
            }),
        )];
        assert!(matches!(
            commands[0],
            PartitionCommand::AppendWithHeaders { .. }
        ));
        sluice_fuzzing::golden::check(dir, "partition-header-commands", &commands, encode, decode);
    }

    #[test]
    fn headers_pick_their_command_and_count_in_the_batch_digest() {
        use crate::partition::PartitionCommand;
        let plain = vec![Record::new(b"v".to_vec())];
        assert!(matches!(
            PartitionCommand::append(plain.clone(), None),
            PartitionCommand::Append { .. }
        ));
        let headed = vec![Record::new(b"v".to_vec()).header("h", "1")];
        assert!(matches!(
            PartitionCommand::append(headed.clone(), None),
            PartitionCommand::AppendWithHeaders { .. }
        ));
        // A resend with other headers under the same number is another batch.
        let other = vec![Record::new(b"v".to_vec()).header("h", "2")];
        let digests = [&plain, &headed, &other].map(|r| BatchDigest::of(r));
        assert_ne!(digests[0], digests[1]);
        assert_ne!(digests[1], digests[2]);
        assert_eq!(digests[1], BatchDigest::of(&headed));
    }

    #[test]
    fn fuzz_tables_and_commands_from_the_leader() {
        let mut t = ProducerTable::default();
        for s in 0..3 {
            t.record(seq(7, s), 10 + s, 20 + s);
        }
        let mut with_offsets = t.clone();
        let at = crate::offsets::Place {
            topic: "t",
            partition: 0,
        };
        with_offsets.consumers.fence(&at, "g".into(), 2).unwrap();
        let seeds = [t.encode(), with_offsets.encode()];
        sluice_fuzzing::run("spu::ProducerTable", &seeds, |bytes| {
            let _ = ProducerTable::decode(bytes);
        });
        let command = crate::partition::PartitionCommand::Append {
            records: vec![Record {
                key: Some(b"k".to_vec()),
                value: b"value".to_vec(),
                timestamp_ms: 5,
                headers: Vec::new(),
            }],
            producer: Some(ProducerSeq {
                producer_id: 1,
                sequence: 2,
            }),
        };
        let commit = crate::partition::PartitionCommand::FenceConsumer {
            consumer: "g".into(),
            generation: 2,
        };
        let seeds = vec![
            crate::partition::encode(&command),
            crate::partition::encode(&commit),
        ];
        sluice_fuzzing::run("spu::PartitionCommand", &seeds, |bytes| {
            let _ = crate::partition::decode::<crate::partition::PartitionCommand>(bytes);
        });
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
        // A restarted replica judges as before, digests included.
        assert_eq!(
            loaded.verdict(seq(100, 2)),
            Verdict::Retry { base_offset: 1002 }
        );
        assert_eq!(
            loaded.verdict(sent(100, 2, &["other"])),
            Verdict::SequenceReused { base_offset: 1002 }
        );
        assert_eq!(loaded.verdict(seq(100, 4)), Verdict::New);
        assert_eq!(
            loaded.verdict(seq(100, 5)),
            Verdict::OutOfOrder {
                last_sequence: Some(3)
            }
        );
        // So does a replica that takes the table from a snapshot.
        assert_eq!(ProducerTable::decode(&t.encode()).unwrap(), t);
        let empty = tempfile::tempdir().unwrap();
        assert_eq!(
            ProducerTable::load(empty.path()).unwrap(),
            ProducerTable::default()
        );
    }

    /// Format 1 and 2 tables as older releases wrote them.
    #[derive(Serialize)]
    struct OldBatch {
        sequence: u64,
        base_offset: u64,
        index: u64,
    }

    #[derive(Serialize)]
    struct V2 {
        applied_index: u64,
        next_offset: u64,
        producers: HashMap<u64, VecDeque<OldBatch>>,
    }

    fn v2_table() -> V2 {
        V2 {
            applied_index: 300,
            next_offset: 70,
            producers: HashMap::from([(
                7,
                (3..5)
                    .map(|s| OldBatch {
                        sequence: s,
                        base_offset: 60 + s,
                        index: 290 + s,
                    })
                    .collect(),
            )]),
        }
    }

    /// What a table converted from `v2_table` must say: resends of the old
    /// batches are recognised by number alone (their digest is unknown),
    /// new batches are digested.
    fn assert_converted_from_v2(t: &ProducerTable) {
        assert_eq!((t.applied_index, t.next_offset), (300, 70));
        for records in [&["batch 3"][..], &["anything at all"][..]] {
            assert_eq!(
                t.verdict(sent(7, 3, records)),
                Verdict::Retry { base_offset: 63 }
            );
        }
        assert_eq!(t.verdict(seq(7, 5)), Verdict::New);
        let mut t = t.clone();
        t.record(seq(7, 5), 70, 301);
        assert_eq!(
            t.verdict(sent(7, 5, &["other"])),
            Verdict::SequenceReused { base_offset: 70 }
        );
    }

    #[test]
    fn a_format_1_table_is_converted() {
        #[derive(Serialize)]
        struct V1 {
            applied_index: u64,
            next_offset: u64,
            producers: HashMap<u64, OldBatch>,
        }
        let dir = tempfile::tempdir().unwrap();
        let last = OldBatch {
            sequence: 4,
            base_offset: 30,
            index: 12,
        };
        let v1 = V1 {
            applied_index: 12,
            next_offset: 31,
            producers: HashMap::from([(7, last)]),
        };
        std::fs::write(dir.path().join(V1_FILE_NAME), crate::partition::encode(&v1)).unwrap();
        let t = ProducerTable::load(dir.path()).unwrap();
        assert_eq!((t.applied_index, t.next_offset), (12, 31));
        assert_eq!(t.verdict(seq(7, 4)), Verdict::Retry { base_offset: 30 });
        assert_eq!(t.verdict(seq(7, 5)), Verdict::New);
        t.save(dir.path()).unwrap();
        assert!(!dir.path().join(V1_FILE_NAME).exists());
        assert_eq!(ProducerTable::load(dir.path()).unwrap(), t);
    }

    #[test]
    fn a_format_2_table_is_converted_from_its_file_and_from_a_snapshot() {
        let dir = tempfile::tempdir().unwrap();
        let bytes = crate::partition::encode(&v2_table());
        std::fs::write(dir.path().join(V2_FILE_NAME), &bytes).unwrap();
        let t = ProducerTable::load(dir.path()).unwrap();
        assert_converted_from_v2(&t);
        t.save(dir.path()).unwrap();
        assert!(!dir.path().join(V2_FILE_NAME).exists());
        assert_eq!(ProducerTable::load(dir.path()).unwrap(), t);
        // A node of an older release sends its table in format 2.
        assert_converted_from_v2(&ProducerTable::decode(&bytes).unwrap());
    }

    #[test]
    fn consumer_offsets_make_the_table_format_4_and_only_they() {
        let mut t = ProducerTable::default();
        t.record(seq(7, 0), 0, 1);
        // No offsets: format 3, which the release before reads.
        assert_eq!(&t.encode()[..2], &[FORMAT_MARK, 3]);
        let at = crate::offsets::Place {
            topic: "t",
            partition: 0,
        };
        t.consumers.fence(&at, "g".into(), 2).unwrap();
        let bytes = t.encode();
        assert_eq!(&bytes[..2], &[FORMAT_MARK, 4]);
        let back = ProducerTable::decode(&bytes).unwrap();
        assert_eq!(back, t);
        let dir = tempfile::tempdir().unwrap();
        t.save(dir.path()).unwrap();
        assert_eq!(ProducerTable::load(dir.path()).unwrap(), t);
        let mut longer = bytes;
        longer.push(0);
        assert!(ProducerTable::decode(&longer).is_err());
    }

    #[test]
    fn a_damaged_or_future_table_is_refused_not_misread() {
        let mut t = ProducerTable::default();
        t.record(seq(7, 0), 0, 1);
        let mut future = t.encode();
        future[1] = FORMAT_VERSION + 1;
        let err = ProducerTable::decode(&future).unwrap_err();
        assert!(err.contains("format 4"), "{err}");
        let mut longer = t.encode();
        longer.push(0);
        assert!(ProducerTable::decode(&longer).is_err());

        let dir = tempfile::tempdir().unwrap();
        std::fs::write(ProducerTable::path(dir.path()), &longer).unwrap();
        let err = ProducerTable::load(dir.path()).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert!(err.to_string().contains(FILE_NAME), "{err}");
    }
}
