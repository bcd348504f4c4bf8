//! Bounded-time mutation fuzzing for the decoders a peer can reach, and
//! [`golden`] files that hold the byte formats still.
//!
//! Every decoder of bytes from the network or from disk has a target in its
//! own crate's tests, built on [`run`]: start from valid encodings (the
//! seeds), mutate them the ways corrupt or hostile input differs from valid
//! input (flipped bits, varint length markers, huge lengths, truncation,
//! splices), and feed each result to the decoder. A target fails if the
//! decoder panics, or takes longer than [`INPUT_TIME_MAX`] on one input; an
//! allocation a length field talked it into aborts the test process.
//!
//! Not coverage-guided (that needs a nightly compiler and cargo-fuzz): the
//! seeds do the guiding, so each target seeds with every message kind. The
//! test command runs each target for [`DEFAULT_SECS`]; a campaign sets
//! `SLUICE_FUZZ_SECS` (and `SLUICE_FUZZ_SEED` to vary the inputs), e.g.
//! `SLUICE_FUZZ_SECS=600 cargo test --workspace fuzz -- --test-threads 2`.

pub mod golden;

use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::time::{Duration, Instant};

/// Seconds each target runs by default (in the test command).
pub const DEFAULT_SECS: f64 = 1.0;
/// Longest one input may take: a decoder that loops over a length field's
/// claim instead of the bytes present shows up here.
pub const INPUT_TIME_MAX: Duration = Duration::from_secs(1);
/// Largest mutated input: decoders see frames of any size, but bugs show up
/// on small inputs and small ones run faster.
const INPUT_BYTES_MAX: usize = 64 * 1024;

/// What a run did, for the test's output.
#[derive(Debug, Clone, Copy)]
pub struct Report {
    pub iterations: u64,
    pub seed: u64,
}

/// Feeds `target` mutations of `seeds` (and random bytes) for the budget
/// (`SLUICE_FUZZ_SECS`, default [`DEFAULT_SECS`]). Panics, naming the seed
/// and the input, if `target` panics or is slow on an input.
pub fn run(name: &str, seeds: &[Vec<u8>], mut target: impl FnMut(&[u8])) -> Report {
    let secs = std::env::var("SLUICE_FUZZ_SECS")
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s >= 0.0)
        .unwrap_or(DEFAULT_SECS);
    let seed = std::env::var("SLUICE_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .unwrap_or(0)
        ^ fnv(name.as_bytes());
    let mut rng = Rng(seed | 1);
    let deadline = Instant::now() + Duration::from_secs_f64(secs);
    let mut iterations = 0u64;
    // Seeds themselves first: valid input must decode without trouble too.
    let mut inputs = seeds.iter().cloned();
    loop {
        let input = match inputs.next() {
            Some(seed_input) => seed_input,
            None if Instant::now() >= deadline => break,
            None => mutate(&mut rng, seeds),
        };
        let started = Instant::now();
        if let Err(panic) = catch_unwind(AssertUnwindSafe(|| target(&input))) {
            eprintln!(
                "fuzz target {name} panicked after {iterations} inputs (SLUICE_FUZZ_SEED base {seed}); input ({} bytes): {}",
                input.len(),
                hex(&input)
            );
            resume_unwind(panic);
        }
        let took = started.elapsed();
        assert!(
            took <= INPUT_TIME_MAX,
            "fuzz target {name} took {took:?} on one input of {} bytes: {}",
            input.len(),
            hex(&input)
        );
        iterations += 1;
    }
    eprintln!("fuzz target {name}: {iterations} inputs in {secs} s");
    Report { iterations, seed }
}

/// One mutated input: a seed changed 1 to 8 times, or random bytes.
fn mutate(rng: &mut Rng, seeds: &[Vec<u8>]) -> Vec<u8> {
    if seeds.is_empty() || rng.below(16) == 0 {
        let len = rng.below(256) as usize;
        return (0..len).map(|_| rng.byte()).collect();
    }
    let mut input = seeds[rng.below(seeds.len() as u64) as usize].clone();
    for _ in 0..=rng.below(8) {
        mutate_once(rng, &mut input, seeds);
    }
    input.truncate(INPUT_BYTES_MAX);
    input
}

/// Bytes that mean something to a varint or a length field.
const INTERESTING: [u8; 10] = [0, 1, 0x7f, 0x80, 0xfa, 0xfb, 0xfc, 0xfd, 0xfe, 0xff];

fn mutate_once(rng: &mut Rng, input: &mut Vec<u8>, seeds: &[Vec<u8>]) {
    let len = input.len() as u64;
    let at = |rng: &mut Rng| if len == 0 { 0 } else { rng.below(len) as usize };
    match rng.below(9) {
        0 if len > 0 => {
            let i = at(rng);
            input[i] ^= 1 << rng.below(8);
        }
        1 if len > 0 => {
            let i = at(rng);
            input[i] = INTERESTING[rng.below(INTERESTING.len() as u64) as usize];
        }
        2 => {
            // A varint claiming a huge length, the classic allocation bomb.
            let i = at(rng);
            let marker = [0xfb, 0xfc, 0xfd][rng.below(3) as usize];
            let mut bomb = vec![marker];
            bomb.extend(std::iter::repeat_n(0xff, 8));
            input.splice(i..i, bomb);
        }
        3 => {
            let i = at(rng);
            let n = rng.below(16) as usize;
            let bytes: Vec<u8> = (0..n).map(|_| rng.byte()).collect();
            input.splice(i..i, bytes);
        }
        4 if len > 0 => {
            let i = at(rng);
            let end = (i + 1 + rng.below(32) as usize).min(input.len());
            input.drain(i..end);
        }
        5 if len > 0 => input.truncate(at(rng)),
        6 if len > 0 => {
            // Repeat a slice: nested structures, repeated fields.
            let i = at(rng);
            let end = (i + 1 + rng.below(64) as usize).min(input.len());
            let slice = input[i..end].to_vec();
            let j = at(rng);
            input.splice(j..j, slice);
        }
        7 if !seeds.is_empty() => {
            // Splice the tail of another seed.
            let other = &seeds[rng.below(seeds.len() as u64) as usize];
            if !other.is_empty() {
                let from = rng.below(other.len() as u64) as usize;
                input.truncate(at(rng));
                input.extend_from_slice(&other[from..]);
            }
        }
        _ => {
            let i = at(rng);
            input.insert(i.min(input.len()), rng.byte());
        }
    }
}

/// xorshift64*: fast, seedable, good enough to pick mutations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next() % n }
    }

    fn byte(&mut self) -> u8 {
        self.next() as u8
    }
}

fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The first 256 bytes of `input` in hex, for reproducing a failure.
fn hex(input: &[u8]) -> String {
    let shown: String = input.iter().take(256).map(|b| format!("{b:02x}")).collect();
    if input.len() > 256 {
        format!("{shown}...")
    } else {
        shown
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panicking_decoder_fails_the_run() {
        let result = std::panic::catch_unwind(|| {
            run("self-test", &[vec![1, 2, 3]], |input| {
                assert!(!input.contains(&0xff), "found the byte");
            })
        });
        assert!(result.is_err(), "mutations never produced a 0xff byte");
    }

    #[test]
    fn mutations_are_reproducible_from_the_seed() {
        let mut a = Rng(7);
        let mut b = Rng(7);
        let seeds = vec![vec![1u8, 2, 3, 4]];
        assert_eq!(mutate(&mut a, &seeds), mutate(&mut b, &seeds));
    }
}
