//! Wrong wall clocks, per node, through libfaketime (Debian's `faketime`):
//! in runs with the `clock` nemesis every node starts with the library
//! preloaded, reading its offset from [`CLOCK_FILE`] in its data directory
//! (the node's working directory, so one inherited environment serves them
//! all). The nemesis writes an offset there and the node's `CLOCK_REALTIME`
//! (`SystemTime`, `gettimeofday`) moves by it within [`REREAD`]; writing
//! `+0` gives the node true time back. The system clock is never touched.
//!
//! Only the wall clock moves: `DONT_FAKE_MONOTONIC` keeps `CLOCK_MONOTONIC`
//! (every timer, deadline and election timeout) true, since no real
//! monotonic clock steps, and a faked one would step backwards when an
//! offset is taken away. Clock *rate* is not injected for the same reason:
//! libfaketime applies a rate from the process's start, so changing it
//! mid-run steps the clock, and a node restarted at a rate would need a
//! faked monotonic clock, whose absolute `clock_nanosleep` libfaketime
//! 0.9.10 gets wrong (EINVAL).

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use super::rng::Rng;

/// The file in each node's data directory holding its clock's offset.
pub const CLOCK_FILE: &str = "clock";

/// How often a node re-reads its offset (`FAKETIME_CACHE_DURATION`, whole
/// seconds): a step or its undoing takes hold within this.
pub const REREAD: Duration = Duration::from_secs(1);

/// Where Debian and others put the thread-safe library.
fn candidates() -> Vec<PathBuf> {
    let arch = std::env::consts::ARCH;
    [
        format!("/usr/lib/{arch}-linux-gnu/faketime/libfaketimeMT.so.1"),
        "/usr/lib/faketime/libfaketimeMT.so.1".to_string(),
        "/usr/local/lib/faketime/libfaketimeMT.so.1".to_string(),
    ]
    .into_iter()
    .map(PathBuf::from)
    .collect()
}

/// The libfaketime to preload, or why there is none.
pub fn library() -> Result<PathBuf, String> {
    candidates()
        .into_iter()
        .find(|p| p.exists())
        .ok_or_else(|| {
            "libfaketime is not installed (apt-get install faketime; looked for libfaketimeMT.so.1 \
         under /usr/lib and /usr/local/lib)"
                .to_string()
        })
}

/// The environment that makes every node read its clock's offset from its
/// own [`CLOCK_FILE`] (a relative name: each node runs in its data
/// directory). `sluice cluster start` itself, run elsewhere, finds no such
/// file and keeps true time.
pub fn node_env(library: &Path) -> Vec<(String, String)> {
    vec![
        ("LD_PRELOAD".into(), library.display().to_string()),
        ("FAKETIME_TIMESTAMP_FILE".into(), CLOCK_FILE.into()),
        (
            "FAKETIME_CACHE_DURATION".into(),
            REREAD.as_secs().to_string(),
        ),
        ("DONT_FAKE_MONOTONIC".into(), "1".into()),
    ]
}

/// Offset classes a step draws from, in ms: a slewing NTP client's error,
/// a step NTP would make, a badly set zone or hour, a day or two off, and
/// a clock reset by years (past the certificates' validity either way).
const CLASSES_MS: [(i64, i64); 5] = [
    (20, 1_000),
    (1_000, 120_000),
    (120_000, 6 * 3_600_000),
    (6 * 3_600_000, 48 * 3_600_000),
    (400 * 86_400_000, 1_100 * 86_400_000),
];

/// A clock offset in ms, either way: one of `CLASSES_MS` at random, then
/// a value within it.
pub fn draw_offset_ms(rng: &mut Rng) -> i64 {
    let (lo, hi) = *rng.pick(&CLASSES_MS);
    let magnitude = rng.range(lo as u64, hi as u64 + 1) as i64;
    if rng.range(0, 2) == 0 {
        magnitude
    } else {
        -magnitude
    }
}

/// `ms` as libfaketime's offset syntax: signed seconds with a fraction.
pub fn offset_text(ms: i64) -> String {
    let sign = if ms < 0 { '-' } else { '+' };
    let abs = ms.unsigned_abs();
    format!("{sign}{}.{:03}", abs / 1_000, abs % 1_000)
}

/// `ms` for people: the largest unit that keeps it above one.
pub fn describe(ms: i64) -> String {
    let sign = if ms < 0 { "-" } else { "+" };
    let abs = ms.unsigned_abs();
    let (value, unit) = match abs {
        a if a >= 86_400_000 => (a as f64 / 86_400_000.0, "d"),
        a if a >= 3_600_000 => (a as f64 / 3_600_000.0, "h"),
        a if a >= 60_000 => (a as f64 / 60_000.0, "min"),
        a if a >= 1_000 => (a as f64 / 1_000.0, "s"),
        a => (a as f64, "ms"),
    };
    format!("{sign}{value:.1}{unit}")
}

/// Sets node `dir`'s clock offset; returns the file's new modification
/// time, for [`read_since`].
pub fn set(dir: &Path, ms: i64) -> std::io::Result<SystemTime> {
    let file = dir.join(CLOCK_FILE);
    std::fs::write(&file, format!("{}\n", offset_text(ms)))?;
    std::fs::metadata(&file)?.modified()
}

/// Whether the node of `dir` has read its clock file since it was written
/// at `written`: its access time moved past that (the file system's
/// `relatime` updates an access time older than the last write). A node
/// that asked for no wall-clock time in the meantime has not.
pub fn read_since(dir: &Path, written: SystemTime) -> bool {
    std::fs::metadata(dir.join(CLOCK_FILE))
        .and_then(|m| m.accessed())
        .is_ok_and(|a| a > written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_are_written_as_signed_seconds() {
        assert_eq!(offset_text(250), "+0.250");
        assert_eq!(offset_text(-7_200_000), "-7200.000");
        assert_eq!(offset_text(0), "+0.000");
        assert_eq!(offset_text(-1), "-0.001");
        assert_eq!(describe(-172_800_500), "-2.0d");
        assert_eq!(describe(1_500), "+1.5s");
        assert_eq!(describe(-3_262_100), "-54.4min");
        assert_eq!(describe(-20), "-20.0ms");
    }

    #[test]
    fn drawn_offsets_go_both_ways_and_stay_within_the_classes() {
        let mut rng = Rng::new(7);
        let drawn: Vec<i64> = (0..500).map(|_| draw_offset_ms(&mut rng)).collect();
        assert!(drawn.iter().any(|d| *d < 0) && drawn.iter().any(|d| *d > 0));
        for d in &drawn {
            let a = d.unsigned_abs() as i64;
            assert!(
                CLASSES_MS.iter().any(|(lo, hi)| (*lo..=*hi).contains(&a)),
                "{d}"
            );
        }
        for (lo, hi) in CLASSES_MS {
            assert!(
                drawn
                    .iter()
                    .any(|d| (lo..=hi).contains(&(d.unsigned_abs() as i64))),
                "no offset drawn in {lo}..={hi} ms"
            );
        }
    }

    #[test]
    fn a_read_after_the_write_is_seen() {
        let dir = std::env::temp_dir().join(format!("clock-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let written = set(&dir, -1_000).unwrap();
        assert!(!read_since(&dir, written), "not read yet");
        // File times come from a coarse clock (a few ms): read a tick later.
        std::thread::sleep(Duration::from_millis(30));
        assert_eq!(
            std::fs::read_to_string(dir.join(CLOCK_FILE)).unwrap(),
            "-1.000\n"
        );
        // The read above came after the write: `relatime` records it.
        assert!(read_since(&dir, written));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
