//! A tiny seeded random generator (SplitMix64), so one `--seed` replays the
//! same fault schedule and the same choices of nodes and files. Not for
//! cryptography; just small, fast and stable across releases (a dependency's
//! generator could change its stream and silently break replays).

/// SplitMix64 (Steele, Lea, Flood 2014).
///
/// Its state only ever moves by the constant `GAMMA`, so two generators
/// whose seeds differ by a small multiple of it produce the *same* values,
/// shifted by a few draws. Seeds of sub-streams must therefore never be the
/// run's seed plus or xor some multiple of it: use [`Rng::derive`].
#[derive(Debug, Clone)]
pub struct Rng(u64);

/// SplitMix64's increment (the golden ratio in 64 bits).
const GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

/// MurmurHash3's 64-bit finalizer, a bijection on `u64` with good avalanche.
/// [`Rng::derive`] mixes with it rather than with SplitMix64's own finalizer
/// so a derived seed is not, by construction, a value some stream draws.
fn fmix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 33)).wrapping_mul(0xFF51_AFD7_ED55_8CCD);
    z = (z ^ (z >> 33)).wrapping_mul(0xC4CE_B9FE_1A85_EC53);
    z ^ (z >> 33)
}

/// FNV-1a over a stream's label: stable across releases (unlike std's hasher),
/// so a derived stream, and the replay of a seed, never changes.
fn label_hash(label: &str) -> u64 {
    label.bytes().fold(0xCBF2_9CE4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01B3)
    })
}

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    /// The generator of sub-stream `(label, index)` of the run's `seed`
    /// (e.g. `("log-writer", 3)`): the three are hashed together, so the streams
    /// of one seed start at unrelated states instead of being shifts of one
    /// another (and of the seed's own stream, which the schedule draws from).
    /// Deterministic: the same seed, label and index give the same stream;
    /// for a given label, distinct seeds (or distinct indexes) give distinct
    /// starting states (each step is a bijection).
    pub fn derive(seed: u64, label: &str, index: u64) -> Rng {
        let z = fmix64(seed ^ label_hash(label));
        Rng(fmix64(z.wrapping_add(index).wrapping_add(GAMMA)))
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(GAMMA);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..hi` (`lo` when the range is empty).
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        if hi <= lo {
            return lo;
        }
        lo + self.next_u64() % (hi - lo)
    }

    /// An index into a slice of `len` elements (`len` > 0).
    pub fn index(&mut self, len: usize) -> usize {
        self.range(0, len as u64) as usize
    }

    /// One element of a non-empty slice.
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.index(items.len())]
    }

    /// Fisher-Yates shuffle.
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.index(i + 1);
            items.swap(i, j);
        }
    }

    /// A generator for a sub-task, independent of how much this one is used later.
    pub fn fork(&mut self) -> Rng {
        Rng(self.next_u64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_stream_and_ranges_hold() {
        let a: Vec<u64> = (0..5)
            .map({
                let mut r = Rng::new(7);
                move |_| r.next_u64()
            })
            .collect();
        let b: Vec<u64> = (0..5)
            .map({
                let mut r = Rng::new(7);
                move |_| r.next_u64()
            })
            .collect();
        assert_eq!(a, b);
        assert_ne!(
            a,
            (0..5)
                .map({
                    let mut r = Rng::new(8);
                    move |_| r.next_u64()
                })
                .collect::<Vec<_>>()
        );
        let mut r = Rng::new(1);
        for _ in 0..1000 {
            let v = r.range(3, 9);
            assert!((3..9).contains(&v));
        }
        let mut v = vec![1, 2, 3, 4, 5];
        r.shuffle(&mut v);
        v.sort();
        assert_eq!(v, vec![1, 2, 3, 4, 5]);
    }

    #[test]
    fn derived_streams_replay_and_differ_by_seed_label_and_index() {
        let first = |mut r: Rng| (0..4).map(|_| r.next_u64()).collect::<Vec<_>>();
        let a = first(Rng::derive(6, "log-writer", 1));
        assert_eq!(a, first(Rng::derive(6, "log-writer", 1)));
        assert_ne!(a, first(Rng::derive(7, "log-writer", 1)));
        assert_ne!(a, first(Rng::derive(6, "log-writer", 2)));
        assert_ne!(a, first(Rng::derive(6, "sm-worker", 1)));
        // Not the seed's own stream from some later point: none of the
        // derived stream's values is among the seed stream's first 10,000.
        let mut root = Rng::new(6);
        let root: std::collections::HashSet<u64> = (0..10_000).map(|_| root.next_u64()).collect();
        assert!(a.iter().all(|v| !root.contains(v)), "{a:x?}");
        // Pinned (computed by an independent implementation of the same
        // formulas): a change to the derivation changes every replay of every
        // seed, so it must be deliberate (update this value with it).
        assert_eq!(
            Rng::derive(0, "log-writer", 0).next_u64(),
            0xB156_99FD_CA3F_4463
        );
    }
}
