//! `jepsen-tests soak`: runs with fresh random seeds, one after another (each
//! in its own `jepsen-tests run` process, so each gets a fresh namespace and a
//! crash of one cannot hide in the next), until one is invalid or time is up.
//! Valid and unknown runs keep their history and results but not their data;
//! the first invalid run keeps everything and its replay command is printed.

use std::path::Path;
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::RunArgs;

pub fn soak(args: &RunArgs, nemesis: &str, hours: f64, out: &Path) -> anyhow::Result<ExitCode> {
    let exe = std::env::current_exe().context("cannot find the jepsen-tests executable")?;
    // Every run would refuse these: refuse them once, before the first.
    let sluice = jepsen_tests::run::find_sluice()?;
    args.config(nemesis, 0, out.to_path_buf(), sluice.clone())
        .validate()?;
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let until = Instant::now() + Duration::from_secs_f64(hours.max(0.0) * 3600.0);
    let (mut valid, mut unknown) = (0u64, 0u64);
    let mut k = 0u64;
    while Instant::now() < until {
        k += 1;
        let seed = crate::random_seed();
        let dir = out.join(format!("run-{k:04}-seed-{seed}"));
        let cfg = args.config(nemesis, seed, dir.clone(), sluice.clone());
        let mut cmd = Command::new(&exe);
        cmd.arg("run").args(cfg.run_args()).arg("--out").arg(&dir);
        let log = std::fs::File::create(out.join(format!("run-{k:04}.log")))?;
        let status = cmd
            .stdout(log.try_clone()?)
            .stderr(log)
            .status()
            .context("cannot start a run")?;
        let replay = std::fs::read_to_string(dir.join("results.json"))
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            .and_then(|v| v["run"]["replay"].as_str().map(str::to_string));
        match status.code() {
            Some(0) | Some(2) => {
                if status.code() == Some(0) {
                    valid += 1;
                } else {
                    unknown += 1;
                }
                println!(
                    "run {k} seed {seed}: {} ({valid} valid, {unknown} unknown so far)",
                    if status.code() == Some(0) {
                        "valid"
                    } else {
                        "unknown"
                    }
                );
                // Keep the history, results and node logs; drop the bulky data.
                for entry in std::fs::read_dir(dir.join("data"))
                    .into_iter()
                    .flatten()
                    .flatten()
                {
                    for sub in ["raft", "partitions"] {
                        let _ = std::fs::remove_dir_all(entry.path().join(sub));
                    }
                }
            }
            code => {
                let what = if code == Some(1) { "INVALID" } else { "FAILED" };
                println!(
                    "run {k} seed {seed}: {what}; everything is kept in {}",
                    dir.display()
                );
                if let Ok(s) = std::fs::read_to_string(dir.join("summary.txt")) {
                    // The summary ends with the replay command.
                    print!("{s}");
                    return Ok(ExitCode::from(if code == Some(1) { 1 } else { 3 }));
                }
                println!(
                    "replay: {} (its output: {})",
                    replay.unwrap_or_else(|| cfg.replay()),
                    out.join(format!("run-{k:04}.log")).display()
                );
                return Ok(ExitCode::from(if code == Some(1) { 1 } else { 3 }));
            }
        }
    }
    println!("soak done: {k} run(s), {valid} valid, {unknown} unknown, none invalid");
    Ok(ExitCode::SUCCESS)
}
