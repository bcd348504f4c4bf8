//! Batches a peer copies to us (`append_raw`, the replica catch-up path) and
//! segments read back from disk, fed mutated input for a bounded time (see
//! `sluice-fuzzing`). Mutated batches get a fresh CRC, as a hostile peer
//! would send them, so the record walker behind the CRC sees them too.

use sluice_proto::Record;

use crate::batch::{self, HEADER_LEN};
use crate::{LogConfig, PartitionLog};

fn records(n: u8) -> Vec<Record> {
    (0..n)
        .map(|i| Record {
            key: (i % 3 == 0).then(|| vec![i; 2]),
            value: vec![i; usize::from(i) * 3],
            timestamp_ms: 1_700_000_000_000 + i64::from(i) * 7 - i64::from(i % 2) * 100,
            // Some batches with headers (formats 3 and 4), some without.
            headers: (0..i % 4)
                .map(|h| sluice_proto::RecordHeader::new(format!("h{h}"), vec![h; 3]))
                .filter(|_| n % 2 == 1)
                .collect(),
        })
        .collect()
}

/// Rewrites the CRC so that only the content decides the batch's fate.
fn with_fresh_crc(mut batch: Vec<u8>) -> Vec<u8> {
    if batch.len() >= HEADER_LEN {
        let mut hasher = crc32fast::Hasher::new();
        hasher.update(&batch[8..HEADER_LEN]);
        hasher.update(&batch[HEADER_LEN..]);
        let crc = hasher.finalize();
        batch[4..8].copy_from_slice(&crc.to_le_bytes());
    }
    batch
}

#[test]
fn fuzz_batches_copied_from_a_peer() {
    // Plain batches, and compressed ones of every codec (format 2), so the
    // expansion behind the CRC meets mutated codec data too; odd sizes carry
    // headers (formats 3 and 4), so the header decoder meets mutations.
    let seeds: Vec<Vec<u8>> = sluice_proto::Compression::ALL
        .iter()
        .flat_map(|&codec| {
            [1u8, 2, 5, 9]
                .iter()
                .map(move |&n| batch::encode(0, 1, &records(n), codec).unwrap())
        })
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        segment_size_bytes: 4096,
        ..LogConfig::default()
    };
    let mut attempt = 0u64;
    sluice_fuzzing::run("storage::append_raw", &seeds, |input| {
        attempt += 1;
        // A fresh log per input: each batch is judged on its own.
        let path = dir.path().join(attempt.to_string());
        let (mut log, _) = PartitionLog::open(&path, 0, config.clone()).unwrap();
        let batch = with_fresh_crc(input.to_vec());
        if log.append_raw(&batch).is_ok() {
            // Accepted bytes must read back (or be refused with an error).
            let _ = log.read(0, 1 << 20);
            let _ = log.read_raw(0, 1 << 20);
            let _ = log.verify();
        }
        log.destroy().unwrap();
    });
}

#[test]
fn fuzz_segments_read_back_from_disk() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        segment_size_bytes: 1 << 20,
        ..LogConfig::default()
    };
    let source = dir.path().join("source");
    let (mut log, _) = PartitionLog::open(&source, 0, config.clone()).unwrap();
    for (entry, n) in [3u8, 1, 6].iter().enumerate() {
        log.append(entry as u64 + 1, &records(*n)).unwrap();
    }
    log.sync().unwrap();
    let segment = std::fs::read_dir(&source)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "log"))
        .unwrap();
    let name = segment.file_name().unwrap().to_owned();
    let seeds = vec![std::fs::read(&segment).unwrap()];
    drop(log);
    let mut attempt = 0u64;
    sluice_fuzzing::run("storage::segment", &seeds, |bytes| {
        attempt += 1;
        let path = dir.path().join(attempt.to_string());
        std::fs::create_dir_all(&path).unwrap();
        std::fs::write(path.join(&name), bytes).unwrap();
        // Recovery truncates what it cannot read; what remains must read.
        if let Ok((mut log, _)) = PartitionLog::open(&path, 0, config.clone()) {
            let _ = log.read(0, 1 << 20);
            let _ = log.verify();
            log.destroy().unwrap();
        } else {
            std::fs::remove_dir_all(&path).unwrap();
        }
    });
}
