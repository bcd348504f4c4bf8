//! `jepsen-tests`: Sluice's fault-injection suite.
//!
//! `check HISTORY` re-checks a recorded history offline. Exit status: 0 valid,
//! 1 invalid, 2 unknown, 3 the history could not be read or is malformed.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use jepsen_tests::{CheckOptions, History, Validity, check_with, summary};

#[derive(Parser)]
#[command(name = "jepsen-tests", about = "Sluice's fault-injection suite")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
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

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
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
            Ok(match result.valid {
                Validity::Valid => ExitCode::SUCCESS,
                Validity::Invalid => ExitCode::from(1),
                Validity::Unknown => ExitCode::from(2),
            })
        }
    }
}
