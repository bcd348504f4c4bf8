//! `jepsen-tests`: Sluice's fault-injection suite.
//!
//! `run` tests a real cluster once, `soak` runs until the first invalid run,
//! `campaign` runs many seeds through every nemesis family and reports on all
//! of them, `check HISTORY` re-checks a recorded history offline. Exit status:
//! 0 valid, 1 invalid, 2 unknown, 3 the run failed or the history is
//! unreadable (a campaign's is its worst run's).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use jepsen_tests::campaign::{Campaign, run_campaign};
use jepsen_tests::run::{MIN_OPS_DEFAULT, RunConfig, find_sluice, render_run};
use jepsen_tests::{CheckOptions, History, Validity, check_with, summary};

mod soak;

#[derive(Parser)]
#[command(name = "jepsen-tests", about = "Sluice's fault-injection suite")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// The options of one run besides its nemesis, seed and directory (shared by
/// `run`, `soak` and `campaign`).
#[derive(Args, Clone, Debug)]
struct RunArgs {
    /// The workload: `log` (unique values appended and read back),
    /// `smartmodule` (the SmartModule store), `group` (a consumer group
    /// reading the log; with `log`), or several (`log,smartmodule`, `log,group`).
    #[arg(long, default_value = "log")]
    workload: String,
    /// Length of the workload in seconds (faults, then a quiet tail).
    #[arg(long, default_value_t = 60)]
    duration: u64,
    /// Number of nodes.
    #[arg(long, default_value_t = 3)]
    nodes: u32,
    /// Concurrent writer processes.
    #[arg(long, default_value_t = 4)]
    writers: u32,
    /// Partitions of the workload's topic (replication min(3, nodes)).
    #[arg(long, default_value_t = 2)]
    partitions: u32,
    /// Start the nodes with SLUICE_DEBUG_UNSAFE_NO_FSYNC=1 (debug builds
    /// acknowledge without fsync): the suite's self-test, which must be invalid.
    #[arg(long)]
    unsafe_no_fsync: bool,
    /// Fewer successful workload operations make the verdict unknown.
    #[arg(long, default_value_t = MIN_OPS_DEFAULT)]
    min_ops: u64,
    /// The workload topic's compression type (any, none, gzip, snappy, lz4,
    /// zstd): its replicas store compressed segment batches under the faults.
    #[arg(long, default_value = "any", value_parser = sluice_client::proto::TopicCompression::parse)]
    compression: sluice_client::proto::TopicCompression,
    /// Partition groups make a synced snapshot point every EVERY entries and
    /// keep KEPT entries behind it (`EVERY:KEPT`; the nodes' default is
    /// 5,000:5,000, which a short run never reaches): faults then land across
    /// snapshot points, log purges and snapshot installs.
    #[arg(long, value_name = "EVERY:KEPT")]
    log_entries: Option<String>,
    /// The nodes' Raft databases flush their memtables every BYTES (at
    /// least 65536; the nodes' default is 64 MiB): their WAL then changes
    /// files that often, so a disk-full or log-disk-full step reaches the
    /// Raft log within its hold, and the node stops and is restarted.
    #[arg(long, value_name = "BYTES")]
    raft_write_buffer: Option<u64>,
}

impl RunArgs {
    /// The run these options, `nemesis` and `seed` describe, into `out`.
    fn config(&self, nemesis: &str, seed: u64, out: PathBuf, sluice_bin: PathBuf) -> RunConfig {
        RunConfig {
            workload: self.workload.clone(),
            nemesis: nemesis.to_string(),
            duration: std::time::Duration::from_secs(self.duration),
            seed,
            nodes: self.nodes,
            out,
            writers: self.writers,
            partitions: self.partitions,
            unsafe_no_fsync: self.unsafe_no_fsync,
            sluice_bin,
            min_ops: self.min_ops,
            compression: self.compression,
            log_entries: self.log_entries.clone(),
            raft_write_buffer: self.raft_write_buffer,
        }
    }
}

#[derive(Subcommand)]
enum Command {
    /// Start a cluster, run the workload under faults, check the history.
    /// Writes history.jsonl, results.json, summary.txt, node logs and data in --out.
    /// Exit status: 0 valid, 1 invalid, 2 unknown, 3 the run failed.
    Run {
        #[command(flatten)]
        args: RunArgs,
        /// Faults: comma-separated `family[:variant]`: kill, pause, power-loss
        /// [:one|leader|minority|majority|all], partition, part-kill
        /// [:isolate-one|isolate-leader|halves|one-way|bridge|ring],
        /// corruption [:truncate|bitflip], pause-kill, membership,
        /// membership-kill, loss [:one|leader|minority|majority|all] (5-35% of
        /// the target nodes' packets dropped at random), crash-at [:POINT] (a
        /// node aborts at a named crash point; see the README), disk-full
        /// [:one|leader|minority|majority|all] (each node's data on a tmpfs;
        /// the targets' filled), clock [:one|leader|minority|majority|all]
        /// (the targets' wall clocks stepped, through libfaketime), delay
        /// [:one|leader|minority|majority|all] (packets into the targets held
        /// back 2-180 ms), log-disk-full [:one|leader|minority|majority|all]
        /// (each node's Raft log on a tmpfs of its own; the targets' filled),
        /// or all (`all-before-log-disk`: `all` as it was before
        /// log-disk-full, `all-before-clock`: before clock and delay too,
        /// `all-before-loss`: before loss, crash-at and disk-full too, for
        /// seeds recorded then).
        #[arg(long, default_value = "kill,pause,partition")]
        nemesis: String,
        /// Seed of the fault schedule and of the workload's choices.
        #[arg(long)]
        seed: Option<u64>,
        /// The run's directory (must not hold a run yet).
        #[arg(long)]
        out: PathBuf,
    },
    /// Run again and again with random seeds until one run is invalid (its
    /// directory is kept and its replay command printed) or time is up.
    Soak {
        #[command(flatten)]
        args: RunArgs,
        /// Faults of every run, as for `run`.
        #[arg(long, default_value = "kill,pause,partition")]
        nemesis: String,
        /// How long to keep going.
        #[arg(long, default_value_t = 1.0)]
        hours: f64,
        /// Where the runs go (one directory each).
        #[arg(long, default_value = "soak")]
        out: PathBuf,
    },
    /// Many seeded runs in turn, the nemesis rotating through families; goes
    /// on after invalid runs. Writes campaign.md and campaign.json in --out
    /// (after every run), keeps every run that is not valid whole (with its
    /// replay command in the report) and drops valid runs' data.
    /// Exit status: 0 all valid, 1 some invalid, 3 some failed, 2 some unknown.
    Campaign {
        #[command(flatten)]
        args: RunArgs,
        /// What each run gets, in turn: `all` (every family the node count
        /// allows: kill, pause, partition, power-loss, corruption, pause-kill,
        /// part-kill, with 4+ nodes membership, membership-kill, then loss,
        /// crash-at, disk-full, clock, delay, log-disk-full;
        /// `all-before-log-disk` leaves log-disk-full out, `all-before-clock`
        /// clock and delay too and `all-before-loss` the last six, as
        /// campaigns recorded before them rotated) or a comma-separated list of `run --nemesis` values
        /// (`power-loss:all,kill`).
        #[arg(long, default_value = "all")]
        nemesis: String,
        /// How many runs.
        #[arg(long)]
        runs: u64,
        /// Seed of the first run; run n has seed-start + n - 1 (random when
        /// not given, and printed, so the campaign can be repeated).
        #[arg(long)]
        seed_start: Option<u64>,
        /// The campaign's directory (reports and one directory per run).
        #[arg(long)]
        out: PathBuf,
    },
    /// Check a recorded history (JSON lines); print a summary and write results.json.
    /// Exit status: 0 valid, 1 invalid, 2 unknown, 3 unreadable history.
    Check {
        /// The history file (history.jsonl).
        history: PathBuf,
        /// Where to write results.json (default: the history's directory).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Fewer successful workload operations make the verdict unknown.
        #[arg(long, default_value_t = CheckOptions::default().min_ops)]
        min_ops: u64,
        /// Examples kept per anomaly kind in results.json.
        #[arg(long, default_value_t = CheckOptions::default().max_examples)]
        examples: usize,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(3)
        }
    }
}

/// A seed from the clock, for runs given none.
fn random_seed() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    jepsen_tests::run::rng::Rng::new(nanos ^ u64::from(std::process::id())).next_u64() >> 11
}

fn exit_code(v: Validity) -> ExitCode {
    match v {
        Validity::Valid => ExitCode::SUCCESS,
        Validity::Invalid => ExitCode::from(1),
        Validity::Unknown => ExitCode::from(2),
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Run {
            args,
            nemesis,
            seed,
            out,
        } => {
            let cfg = args.config(
                &nemesis,
                seed.unwrap_or_else(random_seed),
                out,
                find_sluice()?,
            );
            let (result, info) = jepsen_tests::run::run(&cfg)?;
            let text = format!("{}{}", summary::render(&result), render_run(&info));
            std::fs::write(cfg.out.join("summary.txt"), &text)
                .with_context(|| format!("cannot write summary.txt in {}", cfg.out.display()))?;
            print!("{text}");
            println!("results: {}", cfg.out.join("results.json").display());
            Ok(exit_code(result.valid))
        }
        Command::Soak {
            args,
            nemesis,
            hours,
            out,
        } => soak::soak(&args, &nemesis, hours, &out),
        Command::Campaign {
            args,
            nemesis,
            runs,
            seed_start,
            out,
        } => {
            let seed_start = seed_start.unwrap_or_else(random_seed);
            let campaign = Campaign {
                // The nemesis and seed of each run are the campaign's to set.
                base: args.config(&nemesis, seed_start, out.clone(), find_sluice()?),
                nemesis,
                runs,
                seed_start,
                out,
            };
            let worst = run_campaign(&campaign)?;
            Ok(ExitCode::from(worst.exit_code()))
        }
        Command::Check {
            history,
            out,
            min_ops,
            examples,
        } => {
            let h = History::read_jsonl(&history)?;
            let result = check_with(
                &h,
                &CheckOptions {
                    min_ops,
                    max_examples: examples,
                },
            );
            let dir = out.unwrap_or_else(|| {
                history
                    .parent()
                    .map(PathBuf::from)
                    .filter(|p| !p.as_os_str().is_empty())
                    .unwrap_or_else(|| PathBuf::from("."))
            });
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("cannot create output directory {}", dir.display()))?;
            let path = result
                .write_json(&dir)
                .with_context(|| format!("cannot write results.json in {}", dir.display()))?;
            print!("{}", summary::render(&result));
            println!("results: {}", path.display());
            Ok(exit_code(result.valid))
        }
    }
}
