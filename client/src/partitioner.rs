//! How a [`Producer`](crate::Producer) chooses each record's partition: the
//! built-in rules ([`Keyless`] for records without a key, the topic's key
//! hash for the others) and the [`Partitioner`] trait for callers' own.

use std::sync::Arc;

use sluice_proto::KeyHash;

/// How a [`Producer`](crate::Producer) spreads records that have no key over the partitions.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Keyless {
    /// One partition until its batch closes (full, or sent when its linger
    /// passes), then the next (Kafka's sticky partitioner): under load,
    /// batches fill, so fewer, larger requests.
    #[default]
    Sticky,
    /// The next partition for every record (Fluvio's behaviour): consecutive
    /// records land on consecutive partitions, in smaller batches.
    RoundRobin,
}

/// Chooses the partition of each record a [`Producer`](crate::Producer) sends, in place of
/// the built-in rule (a keyed record by its key's hash, the others by
/// [`Keyless`]): to keep a customer's records on one partition by a field
/// of the value, to pin some keys, to spread by load. Called in `send`, on
/// the caller's task, once per record.
pub trait Partitioner: Send + Sync {
    /// The partition, below `partitions`, of a record with `key` and
    /// `value`. A partition out of range fails that `send`.
    fn partition(&self, key: Option<&[u8]>, value: &[u8], partitions: u32) -> u32;
}

/// A [`Partitioner`] in a [`ProducerConfig`](crate::ProducerConfig): shared, and equal only to
/// itself (configs compare by which partitioner they hold).
#[derive(Clone)]
pub struct CustomPartitioner(pub Arc<dyn Partitioner>);

impl CustomPartitioner {
    pub fn new(partitioner: impl Partitioner + 'static) -> Self {
        Self(Arc::new(partitioner))
    }
}

impl std::fmt::Debug for CustomPartitioner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CustomPartitioner({:p})", Arc::as_ptr(&self.0))
    }
}

impl PartialEq for CustomPartitioner {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for CustomPartitioner {}

/// The built-in rule as a [`Partitioner`] (for wrapping): keyed records by
/// the topic's [`KeyHash`] (see [`Producer::key_hash`](crate::Producer::key_hash); the default one is
/// that of topics created before key hashes were a setting), the others one
/// after the other.
#[derive(Debug, Default)]
pub struct KeyHashPartitioner {
    key_hash: KeyHash,
    next: std::sync::atomic::AtomicU32,
}

impl KeyHashPartitioner {
    pub fn new(key_hash: KeyHash) -> Self {
        Self {
            key_hash,
            next: Default::default(),
        }
    }
}

impl Partitioner for KeyHashPartitioner {
    fn partition(&self, key: Option<&[u8]>, _value: &[u8], partitions: u32) -> u32 {
        match key {
            Some(key) => self.key_hash.partition(key, partitions),
            None => RoundRobinPartitioner::step(&self.next, partitions),
        }
    }
}

/// Every record to the next partition, keys ignored.
#[derive(Debug, Default)]
pub struct RoundRobinPartitioner {
    next: std::sync::atomic::AtomicU32,
}

impl RoundRobinPartitioner {
    fn step(next: &std::sync::atomic::AtomicU32, partitions: u32) -> u32 {
        next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % partitions.max(1)
    }
}

impl Partitioner for RoundRobinPartitioner {
    fn partition(&self, _key: Option<&[u8]>, _value: &[u8], partitions: u32) -> u32 {
        Self::step(&self.next, partitions)
    }
}

/// The partition of a keyed record in a topic created before key hashes
/// were a setting: FNV-1a of the key modulo the partition count (see
/// [`KeyHash::Fnv1a`]; a [`Producer`](crate::Producer) uses its topic's rule).
pub fn partition_for_key(key: &[u8], partitions: u32) -> u32 {
    KeyHash::Fnv1a.partition(key, partitions)
}

pub use sluice_proto::topic_settings::fnv1a;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_in_partitioners_hash_keys_and_take_turns() {
        let hash = KeyHashPartitioner::default();
        assert_eq!(
            hash.partition(Some(b"user-42"), b"v", 8),
            partition_for_key(b"user-42", 8)
        );
        let keyless: Vec<u32> = (0..5).map(|_| hash.partition(None, b"v", 3)).collect();
        assert_eq!(keyless, [0, 1, 2, 0, 1]);
        let sip = KeyHashPartitioner::new(KeyHash::SipHash24);
        assert_eq!(
            sip.partition(Some(b"user-42"), b"v", 8),
            KeyHash::SipHash24.partition(b"user-42", 8)
        );
        let turns = RoundRobinPartitioner::default();
        let chosen: Vec<u32> = (0..4)
            .map(|_| turns.partition(Some(b"k"), b"v", 2))
            .collect();
        assert_eq!(chosen, [0, 1, 0, 1]);
        let a = CustomPartitioner::new(RoundRobinPartitioner::default());
        assert_eq!(a, a.clone());
        assert_ne!(a, CustomPartitioner::new(RoundRobinPartitioner::default()));
    }

    #[test]
    fn keys_map_to_stable_partitions() {
        for partitions in 1..8 {
            let p = partition_for_key(b"user-42", partitions);
            assert!(p < partitions);
            assert_eq!(p, partition_for_key(b"user-42", partitions));
        }
        assert_eq!(partition_for_key(b"x", 0), 0);
    }
}
