//! `sluice`: the command line of a Sluice cluster, in the style of Fluvio's.
//!
//! Each subcommand's clap arguments live in its module and are turned into a
//! validated configuration before any connection is made, so bad flags fail
//! fast with a clear message and the commands themselves work on checked
//! values only.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

mod acl;
mod bench;
mod cert;
mod cluster;
mod connector;
mod consume;
mod consumer_cmd;
mod derived_topic;
mod logfile;
mod node;
mod output;
mod partition;
mod produce;
mod profile;
mod progress;
mod read_only;
mod small_file;
mod smartmodule_cmd;
mod smartmodule_dev;
mod smartmodule_flags;
mod smartmodule_registry;
mod suggest;
mod table_format;
mod timeouts;
mod topic;
mod topic_file;
mod units;

pub use output::OutputFormat;

/// Sluice: a distributed streaming platform with programmable SmartModules.
#[derive(Debug, Parser)]
#[command(name = "sluice", version, about, propagate_version = true)]
struct Cli {
    #[command(flatten)]
    globals: GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

/// Connection flags, accepted before or after the subcommand.
#[derive(Debug, clap::Args)]
struct GlobalArgs {
    /// Connection profile of $SLUICE_HOME/config.toml to use (default: the current one).
    #[arg(long, global = true, value_name = "NAME")]
    profile: Option<String>,
    /// Node to connect to, overriding the profile's endpoint (the profile still provides the CA).
    #[arg(long, global = true, value_name = "HOST:PORT")]
    endpoint: Option<String>,
    /// The cluster's CA certificate (PEM): with --endpoint, connect without a
    /// profile.
    #[arg(long, global = true, value_name = "FILE", requires = "endpoint")]
    ca_cert: Option<PathBuf>,
    /// Client certificate (PEM) to present, with --ca-cert; needs --client-key.
    /// (Not `--cert`/`--key`: `--key` is a record's key in produce and test.)
    #[arg(long, global = true, value_name = "FILE", requires_all = ["ca_cert", "client_key"])]
    client_cert: Option<PathBuf>,
    /// The client certificate's private key (PEM), with --client-cert.
    #[arg(long, global = true, value_name = "FILE", requires = "client_cert")]
    client_key: Option<PathBuf>,
    /// Log lines (on stderr; a node's in its node.log) as text or as one JSON
    /// object each. `RUST_LOG` sets what is logged.
    #[arg(long, global = true, value_enum, default_value = "text")]
    log_format: LogFormat,
}

/// `--log-format`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

impl LogFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        }
    }
}

/// What a node logs when `RUST_LOG` is not set: its own progress, and only
/// openraft's warnings (its info and debug lines are per-group state dumps
/// that drowned everything else: 343 of a node's 355 lines once).
pub const NODE_LOG_FILTER_DEFAULT: &str = "info,openraft=warn";

#[derive(Debug, Subcommand)]
enum Command {
    /// Start, inspect and stop a cluster.
    #[command(subcommand)]
    Cluster(cluster::ClusterCmd),
    /// Run a node in the foreground.
    #[command(subcommand)]
    Node(node::NodeCmd),
    /// Create, list, describe and delete topics.
    #[command(subcommand)]
    Topic(topic::TopicCmd),
    /// Inspect partitions.
    #[command(subcommand)]
    Partition(partition::PartitionCmd),
    /// Write records to a topic.
    Produce(Box<produce::ProduceArgs>),
    /// Read records from a topic.
    Consume(Box<consume::ConsumeArgs>),
    /// Committed offsets of named consumers (`consume -c NAME`) and their lag.
    #[command(subcommand)]
    Consumer(consumer_cmd::ConsumerCmd),
    /// Measure produce and consume throughput and latency.
    #[command(subcommand)]
    Bench(bench::BenchCmd),
    /// Register, list and delete SmartModules; generate, build and test them.
    #[command(subcommand, name = "smart-module", visible_aliases = ["sm", "smartmodule"])]
    SmartModule(smartmodule_cmd::SmartModuleCmd),
    /// Grant, list and withdraw permissions (admin only).
    #[command(subcommand)]
    Acl(acl::AclCmd),
    /// List, show, switch and delete connection profiles.
    #[command(subcommand)]
    Profile(profile::ProfileCmd),
    /// Keep the table formats that `consume --table-format` prints JSON records with.
    #[command(subcommand)]
    TableFormat(table_format::TableFormatCmd),
    /// Run a source connector (http) in the foreground, SmartModules applied.
    #[command(subcommand)]
    Connector(connector::ConnectorCmd),
    /// Print this binary's version, git commit and build profile.
    Version(OutputArgs),
    /// Print a shell completion script: `sluice completions bash > /etc/bash_completion.d/sluice`.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

/// What `sluice version` reports.
#[derive(serde::Serialize)]
struct VersionInfo {
    version: &'static str,
    commit: &'static str,
    build_profile: &'static str,
    protocol_version: u16,
}

impl VersionInfo {
    const THIS: VersionInfo = VersionInfo {
        version: env!("CARGO_PKG_VERSION"),
        commit: env!("SLUICE_GIT_COMMIT"),
        build_profile: env!("SLUICE_BUILD_PROFILE"),
        protocol_version: sluice_proto::PROTOCOL_VERSION,
    };
}

fn version(output: OutputFormat) -> anyhow::Result<()> {
    let v = VersionInfo::THIS;
    match output {
        OutputFormat::Table => {
            println!(
                "sluice {} (commit {}, {} build, protocol version {})",
                v.version, v.commit, v.build_profile, v.protocol_version
            );
            Ok(())
        }
        other => output::print_structured(&v, other),
    }
}

/// Settings every command shares, resolved once in `main`.
#[derive(Clone, Debug)]
pub struct Globals {
    /// `$SLUICE_HOME`, default `~/.sluice`.
    pub home: PathBuf,
    /// `--profile`.
    pub profile: Option<String>,
    /// `--endpoint`.
    pub endpoint: Option<String>,
    /// `--log-format`, passed on to the nodes `cluster start` runs.
    pub log_format: LogFormat,
    /// `--ca-cert` (and `--client-cert`, `--client-key`): connect to `--endpoint` with
    /// these instead of a profile's.
    pub tls: Option<TlsFiles>,
}

/// Certificate files given on the command line.
#[derive(Clone, Debug)]
pub struct TlsFiles {
    pub ca_cert: PathBuf,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

fn read_pem(path: &std::path::Path, what: &str) -> anyhow::Result<String> {
    use anyhow::Context;
    std::fs::read_to_string(path).with_context(|| format!("cannot read {what} {}", path.display()))
}

/// `-O/--output` of list and describe commands.
#[derive(clap::Args, Debug, Clone, Copy)]
pub struct OutputArgs {
    /// Output format.
    #[arg(short = 'O', long = "output", value_enum, default_value = "table")]
    pub output: OutputFormat,
}

impl Cli {
    /// Parses the command line. Module flags (`--filter`, `--map`, ...)
    /// apply in the order given, which only clap's matches keep: each
    /// command that takes them records it here, where the subcommand is known.
    fn parse_with_module_order() -> Self {
        Self::try_parse_ordered(std::env::args_os()).unwrap_or_else(|e| e.exit())
    }

    fn try_parse_ordered<I, T>(args: I) -> Result<Self, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        use clap::{CommandFactory, FromArgMatches};
        let matches = Cli::command().try_get_matches_from(args)?;
        let mut cli = Cli::from_arg_matches(&matches).map_err(|e| e.format(&mut Cli::command()))?;
        cli.note_module_order(&matches);
        Ok(cli)
    }

    fn note_module_order(&mut self, matches: &clap::ArgMatches) {
        let Some((_, sub)) = matches.subcommand() else {
            return;
        };
        match &mut self.command {
            Command::Produce(args) => args.smartmodules.note_order(sub),
            Command::Consume(args) => args.smartmodules.note_order(sub),
            Command::Bench(bench::BenchCmd::Consume(args)) => {
                if let Some((_, bench)) = sub.subcommand() {
                    args.smartmodules.note_order(bench);
                }
            }
            _ => {}
        }
    }
}

/// jemalloc for every Rust allocation of the CLI and the node. RocksDB, a C++
/// library, keeps glibc's malloc: jemalloc's symbols are prefixed. (Exported
/// as `malloc`, jemalloc would take RocksDB's allocations too, but under
/// libfaketime, which the fault suite's clock nemesis preloads into nodes,
/// the process then deadlocks before `main`: jemalloc's first `malloc`, from
/// a C++ library's constructor, reads the clock, and libfaketime, not yet
/// initialised, allocates while looking itself up.)
///
/// Why, measured on 3 local nodes (BENCHMARKS.md, session 30): idle
/// partitions. openraft preallocates about 1.5 MB of queues per Raft group,
/// of which an idle group touches a few pages; an idle replica keeps
/// 0.12-0.15 MB resident under glibc's malloc, 0.10-0.12 MB under jemalloc,
/// which serves large allocations from their own page runs. Its background
/// thread (the `background_threads` feature) gives freed pages back to the
/// system while a node idles; without it, arenas no thread allocates from
/// again keep theirs. Throughput and CPU per record measured the same.
#[cfg(feature = "jemalloc")]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    let cli = Cli::parse_with_module_order();
    let node_log = match &cli.command {
        Command::Node(node::NodeCmd::Run(args)) => Some(
            args.log_file
                .as_ref()
                .map(|path| (path.as_path(), args.log_file_max_size)),
        ),
        _ => None,
    };
    if let Err(e) = init_logging(node_log, cli.globals.log_format) {
        eprintln!("error: {e}");
        return ExitCode::FAILURE;
    }
    let globals = Globals {
        home: sluice_client::config::sluice_home(),
        profile: cli.globals.profile,
        endpoint: cli.globals.endpoint,
        log_format: cli.globals.log_format,
        tls: cli.globals.ca_cert.map(|ca_cert| TlsFiles {
            ca_cert,
            cert: cli.globals.client_cert,
            key: cli.globals.client_key,
        }),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(run(cli.command, &globals));
    // Do not wait for background tasks (e.g. a fetch blocked on the network).
    runtime.shutdown_background();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", error_chain(&e));
            ExitCode::FAILURE
        }
    }
}

/// Connects with the profile and endpoint the user chose. The client's
/// errors already say what to do, so no context is added.
pub async fn connect(globals: &Globals) -> anyhow::Result<sluice_client::Client> {
    connect_to(globals, globals.endpoint.as_deref()).await
}

/// A client talking to the node at `addr` only (with the profile's CA, or
/// `--ca-cert`'s), for commands that ask every node about itself; `None` if
/// it does not answer.
pub async fn connect_node(globals: &Globals, addr: &str) -> Option<sluice_client::Client> {
    connect_to(globals, Some(addr)).await.ok()
}

/// `--ca-cert` (with `--client-cert`/`--client-key`) and an endpoint need no profile;
/// otherwise the profile provides the CA, the identity and, unless
/// overridden, the endpoint.
async fn connect_to(
    globals: &Globals,
    endpoint: Option<&str>,
) -> anyhow::Result<sluice_client::Client> {
    if let (Some(tls), Some(endpoint)) = (&globals.tls, endpoint) {
        let ca_pem = read_pem(&tls.ca_cert, "the CA certificate")?;
        let identity = match (&tls.cert, &tls.key) {
            (Some(cert), Some(key)) => Some(sluice_client::CertKeyPair {
                cert_pem: read_pem(cert, "the client certificate")?,
                key_pem: read_pem(key, "the client key")?,
            }),
            _ => None,
        };
        let options = sluice_client::ConnectOptions {
            ca_source: tls.ca_cert.display().to_string(),
            ..sluice_client::ConnectOptions::default()
        };
        return Ok(
            sluice_client::Client::connect_with(endpoint, &ca_pem, identity, options).await?,
        );
    }
    // An exported profile named by the environment stands in for
    // config.toml, unless --profile names one of its profiles.
    if globals.profile.is_none()
        && let Some(path) = sluice_client::config::ExportedProfile::path_from_env()
    {
        let profile = sluice_client::config::ExportedProfile::load(&path)?;
        let options = sluice_client::ConnectOptions {
            profile: Some(path.display().to_string()),
            ca_source: path.display().to_string(),
            ..sluice_client::ConnectOptions::default()
        };
        return Ok(sluice_client::Client::from_exported(&profile, endpoint, options).await?);
    }
    let client =
        sluice_client::Client::from_profile(&globals.home, globals.profile.as_deref(), endpoint)
            .await?;
    Ok(client)
}

async fn run(command: Command, globals: &Globals) -> anyhow::Result<()> {
    match command {
        Command::Cluster(cmd) => cluster::run(cmd, globals).await,
        Command::Node(cmd) => node::run(cmd).await,
        Command::Topic(cmd) => topic::run(cmd, globals).await,
        Command::Partition(cmd) => partition::run(cmd, globals).await,
        Command::Produce(args) => produce::run(*args, globals).await,
        Command::Consume(args) => consume::run(*args, globals).await,
        Command::Consumer(cmd) => consumer_cmd::run(cmd, globals).await,
        Command::SmartModule(cmd) => smartmodule_cmd::run(cmd, globals).await,
        Command::Bench(cmd) => bench::run(cmd, globals).await,
        Command::Acl(cmd) => acl::run(cmd, globals).await,
        Command::Profile(cmd) => profile::run(cmd, globals).await,
        Command::TableFormat(cmd) => table_format::run(cmd, globals),
        Command::Connector(cmd) => connector::run(cmd, globals).await,
        Command::Version(out) => version(out.output),
        Command::Completions { shell } => {
            use clap::CommandFactory;
            clap_complete::generate(shell, &mut Cli::command(), "sluice", &mut std::io::stdout());
            Ok(())
        }
    }
}

/// Logs go to stderr so they never mix with records on stdout. Client
/// commands only show warnings by default; a node shows its progress.
/// `node` is `Some` for `node run`, with its `--log-file` if given: a node
/// with a log file writes there, bounded (see [`logfile`]), and logs a panic
/// there too before the default hook prints it on stderr.
fn init_logging(node: Option<Option<(&Path, u64)>>, format: LogFormat) -> anyhow::Result<()> {
    let default = if node.is_some() {
        NODE_LOG_FILTER_DEFAULT
    } else {
        "warn"
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    let _ = match node.flatten() {
        Some((path, max_bytes)) => {
            let file = logfile::BoundedLogFile::open(path, max_bytes)
                .with_context(|| format!("cannot open the log file {}", path.display()))?;
            let builder = builder.with_writer(file).with_ansi(false);
            log_panics();
            match format {
                LogFormat::Text => builder.try_init(),
                LogFormat::Json => builder.json().try_init(),
            }
        }
        None => {
            let builder = builder.with_writer(std::io::stderr);
            match format {
                LogFormat::Text => builder
                    .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
                    .try_init(),
                LogFormat::Json => builder.json().try_init(),
            }
        }
    };
    Ok(())
}

/// A panic is logged (so it lands in the node's log file with everything
/// else), then printed as usual.
fn log_panics() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        tracing::error!(panic = %info, "a thread panicked");
        previous(info);
    }));
}

/// The error and its causes as one line, skipping a cause whose text the
/// previous message already contains (thiserror's `transparent` and
/// `{source}` interpolation would otherwise repeat it).
pub(crate) fn error_chain(error: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn clap_tree_is_valid() {
        Cli::command().debug_assert();
    }

    #[test]
    fn every_command_with_module_flags_keeps_their_order() {
        let names = |cli: Cli| -> Vec<String> {
            let modules = match cli.command {
                Command::Produce(args) => args.smartmodules,
                Command::Consume(args) => args.smartmodules,
                Command::Bench(bench::BenchCmd::Consume(args)) => args.smartmodules,
                _ => panic!("not a command with module flags"),
            };
            modules
                .chain()
                .unwrap()
                .iter()
                .map(|m| m.module.name().to_string())
                .collect()
        };
        let flags = [
            "--map",
            "m1",
            "--filter",
            "f1",
            "--smartmodule",
            "s1",
            "--map=m2",
        ];
        for command in [
            &["produce", "t"][..],
            &["consume", "t"],
            &["bench", "consume"],
        ] {
            let line = std::iter::once("sluice")
                .chain(command.iter().copied())
                .chain(flags);
            let cli = Cli::try_parse_ordered(line).unwrap();
            assert_eq!(names(cli), ["m1", "f1", "s1", "m2"], "{command:?}");
        }
    }

    #[test]
    fn error_chain_joins_causes_once() {
        let e = anyhow::anyhow!("inner").context("outer");
        assert_eq!(error_chain(&e), "outer: inner");
        let e = anyhow::anyhow!("boom").context("it went boom");
        assert_eq!(error_chain(&e), "it went boom");
    }

    #[test]
    fn globals_before_or_after_the_subcommand() {
        let cli = Cli::try_parse_from(["sluice", "--profile", "p", "topic", "list"]).unwrap();
        assert_eq!(cli.globals.profile.as_deref(), Some("p"));
        let cli = Cli::try_parse_from(["sluice", "topic", "list", "--endpoint", "h:1"]).unwrap();
        assert_eq!(cli.globals.endpoint.as_deref(), Some("h:1"));
    }
}
