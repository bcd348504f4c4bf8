//! A topic's settings beyond its [`TopicSpec`](crate::TopicSpec): how its
//! replicas store batches, how producers place keyed records, and whether
//! it is a system topic.
//!
//! The spec's encoding was fixed by the first release, so settings travel
//! and are stored beside it. Each shape of the settings keeps its encoding
//! once released: [`TopicSettingsV1`] is what the requests and metadata of
//! the release that introduced settings carry; [`TopicSettings`] is the
//! current shape, carried by the requests added with it.

use serde::{Deserialize, Serialize};

use crate::TopicCompression;

/// How producers place a keyed record: `hash(key) % partitions`. A topic
/// keeps the rule it was created with, so a key never moves to another
/// partition (which would break its order) because a client was upgraded.
/// The variant order is the encoding: append, never reorder.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum KeyHash {
    /// 32-bit FNV-1a of the key's bytes: every topic created before key
    /// hashes were a setting (a topic without settings has this one).
    #[default]
    Fnv1a,
    /// SipHash-2-4 (key 0, 0) of the key as Rust's `Hash` of a byte slice
    /// feeds it (the length as a little-endian u64, then the bytes): the
    /// rule of Fluvio's producers, so a keyed record lands on the partition
    /// a Fluvio client would pick. Topics are created with it.
    SipHash24,
}

impl KeyHash {
    /// The rule a topic gets when it is created now.
    pub const FOR_NEW_TOPICS: KeyHash = KeyHash::SipHash24;

    /// The partition, below `partitions` (0 stands for 1), of a record with `key`.
    pub fn partition(self, key: &[u8], partitions: u32) -> u32 {
        let partitions = partitions.max(1);
        match self {
            KeyHash::Fnv1a => fnv1a(key) % partitions,
            KeyHash::SipHash24 => (siphash24_of_slice(key) % u64::from(partitions)) as u32,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            KeyHash::Fnv1a => "fnv1a",
            KeyHash::SipHash24 => "siphash",
        }
    }
}

impl std::fmt::Display for KeyHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// 32-bit FNV-1a: stable across platforms and releases (unlike std's hasher).
pub fn fnv1a(bytes: &[u8]) -> u32 {
    let mut hash: u32 = 0x811c_9dc5;
    for &b in bytes {
        hash ^= u32::from(b);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    hash
}

/// SipHash-2-4 with key (0, 0) of `key`'s length as a little-endian u64
/// followed by its bytes (what `<[u8] as Hash>::hash` writes into a hasher
/// on a 64-bit target). The length is exactly one word, so it is hashed
/// first and the key after it, without copying the two together (this runs
/// for every keyed record a producer sends).
fn siphash24_of_slice(key: &[u8]) -> u64 {
    let mut state = SipState::new(0, 0);
    state.word((key.len() as u64).to_le_bytes());
    state.finish(key, 8 + key.len())
}

/// SipHash-2-4 (Aumasson and Bernstein) of `message` under the key (k0, k1).
pub fn siphash24(k0: u64, k1: u64, message: &[u8]) -> u64 {
    SipState::new(k0, k1).finish(message, message.len())
}

/// SipHash-2-4's state between words.
struct SipState([u64; 4]);

impl SipState {
    fn new(k0: u64, k1: u64) -> Self {
        Self([
            k0 ^ 0x736f_6d65_7073_6575,
            k1 ^ 0x646f_7261_6e64_6f6d,
            k0 ^ 0x6c79_6765_6e65_7261,
            k1 ^ 0x7465_6462_7974_6573,
        ])
    }

    fn round(&mut self) {
        let v = &mut self.0;
        v[0] = v[0].wrapping_add(v[1]);
        v[1] = v[1].rotate_left(13) ^ v[0];
        v[0] = v[0].rotate_left(32);
        v[2] = v[2].wrapping_add(v[3]);
        v[3] = v[3].rotate_left(16) ^ v[2];
        v[0] = v[0].wrapping_add(v[3]);
        v[3] = v[3].rotate_left(21) ^ v[0];
        v[2] = v[2].wrapping_add(v[1]);
        v[1] = v[1].rotate_left(17) ^ v[2];
        v[2] = v[2].rotate_left(32);
    }

    /// Two compression rounds over one 8-byte word of the message.
    fn word(&mut self, bytes: [u8; 8]) {
        let m = u64::from_le_bytes(bytes);
        self.0[3] ^= m;
        self.round();
        self.round();
        self.0[0] ^= m;
    }

    /// The rest of the message, then the finalization; `total_len` is the
    /// whole message's length (its low byte goes into the last word).
    fn finish(mut self, rest: &[u8], total_len: usize) -> u64 {
        let mut words = rest.chunks_exact(8);
        for word in &mut words {
            self.word(word.try_into().expect("chunks of 8"));
        }
        let mut last = [0u8; 8];
        let tail = words.remainder();
        last[..tail.len()].copy_from_slice(tail);
        last[7] = total_len as u8;
        self.word(last);
        self.0[2] ^= 0xff;
        for _ in 0..4 {
            self.round();
        }
        self.0[0] ^ self.0[1] ^ self.0[2] ^ self.0[3]
    }
}

/// A topic's settings beyond its spec. A topic without an entry in the
/// metadata has the defaults, which are what topics created before settings
/// existed behave as ([`KeyHash::Fnv1a`], compression `any`, not a system
/// topic); a topic created now gets [`TopicSettings::for_new_topic`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicSettings {
    pub compression: TopicCompression,
    pub key_hash: KeyHash,
    /// Serves the cluster itself (its audit trail): listed only by `topic
    /// list --system`, deleted only by a forced deletion.
    pub system: bool,
}

impl TopicSettings {
    /// The settings of a topic created now without any option.
    pub fn for_new_topic() -> Self {
        TopicSettings {
            key_hash: KeyHash::FOR_NEW_TOPICS,
            ..TopicSettings::default()
        }
    }

    /// These settings in the shape of the release that introduced settings,
    /// if that shape can hold them.
    pub fn to_v1(&self) -> Option<TopicSettingsV1> {
        (self.key_hash == KeyHash::Fnv1a && !self.system).then_some(TopicSettingsV1 {
            compression: self.compression,
        })
    }
}

/// [`TopicSettings`] as the release that introduced them encoded them
/// (compression only): carried by [`Request::CreateTopicWith`](crate::Request::CreateTopicWith),
/// [`Response::TopicSettings`](crate::Response::TopicSettings) and metadata format 4.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicSettingsV1 {
    pub compression: TopicCompression,
}

impl From<TopicSettingsV1> for TopicSettings {
    /// A topic created with V1 settings hashes keys as every topic did then.
    fn from(v1: TopicSettingsV1) -> Self {
        TopicSettings {
            compression: v1.compression,
            key_hash: KeyHash::Fnv1a,
            system: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn siphash24_matches_the_reference_vectors() {
        // The paper's test key 00..0f, messages 00, 00 01, ... (its appendix
        // lists the 64 outputs; these are the first, an 8-byte and the 15-byte one).
        let k0 = u64::from_le_bytes([0, 1, 2, 3, 4, 5, 6, 7]);
        let k1 = u64::from_le_bytes([8, 9, 10, 11, 12, 13, 14, 15]);
        let message: Vec<u8> = (0..64).collect();
        assert_eq!(siphash24(k0, k1, &message[..0]), 0x726f_db47_dd0e_0e31);
        assert_eq!(siphash24(k0, k1, &message[..8]), 0x93f5_f579_9a93_2462);
        assert_eq!(siphash24(k0, k1, &message[..15]), 0xa129_ca61_49be_45e5);
    }

    #[test]
    fn siphash_placement_is_the_one_rusts_hash_of_a_slice_gives() {
        // The `siphasher` crate (Fluvio's producers use it) fed through
        // `Hash`: the same partition for keys short, word-sized and long.
        use std::hash::{Hash, Hasher};
        for key in [
            &b""[..],
            b"a",
            b"user-42",
            b"12345678",
            b"a longer key of 33 bytes, at least",
        ] {
            let mut reference = siphasher::sip::SipHasher::new();
            key.hash(&mut reference);
            assert_eq!(siphash24_of_slice(key), reference.finish(), "key {key:?}");
            for partitions in [1, 2, 3, 7, 1000] {
                assert_eq!(
                    KeyHash::SipHash24.partition(key, partitions) as u64,
                    reference.finish() % partitions as u64
                );
            }
        }
    }

    #[test]
    fn fnv1a_matches_reference_values_and_places_as_before() {
        assert_eq!(fnv1a(b""), 0x811c_9dc5);
        assert_eq!(fnv1a(b"a"), 0xe40c_292c);
        assert_eq!(fnv1a(b"foobar"), 0xbf9c_f968);
        assert_eq!(KeyHash::Fnv1a.partition(b"foobar", 7), 0xbf9c_f968 % 7);
        assert_eq!(KeyHash::SipHash24.partition(b"x", 0), 0);
    }

    #[test]
    fn only_settings_a_v1_holds_convert_to_v1() {
        let v1 = TopicSettingsV1 {
            compression: TopicCompression::Zstd,
        };
        assert_eq!(TopicSettings::from(v1).to_v1(), Some(v1));
        assert_eq!(TopicSettings::for_new_topic().to_v1(), None);
        let system = TopicSettings {
            system: true,
            ..TopicSettings::default()
        };
        assert_eq!(system.to_v1(), None);
    }
}
