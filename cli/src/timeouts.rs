//! Every deadline and poll interval of the `sluice` command, in one place,
//! with the relations between them checked when the crate compiles. A test
//! of the workspace (`cli/tests/it/tidy.rs`) keeps `Duration` literals out
//! of the rest of `cli/src` (tests excepted). The node's own timers are in
//! the server crates' timeouts modules; the client's in `sluice_client`.

use std::time::Duration;

/// `cluster start --local` waits this long for its nodes to serve (and for
/// a read-only file's topics to be created).
pub const CLUSTER_READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How often it looks again while it waits.
pub const CLUSTER_READY_POLL: Duration = Duration::from_millis(100);
/// `cluster shutdown|delete` waits this long for a node to stop after
/// SIGTERM before it kills it.
pub const NODE_STOP_TIMEOUT: Duration = Duration::from_secs(20);
/// How often it looks whether the node stopped.
pub const NODE_STOP_POLL: Duration = Duration::from_millis(50);
/// `cluster status` gives each node this long to answer its probe: one
/// round of parallel probes, so a dead node costs this once.
pub const NODE_PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// How often `partition reassign --wait` looks at the move.
pub const REASSIGN_POLL: Duration = Duration::from_millis(300);
/// How long `cluster spu unregister` waits for a system topic's partition
/// (the audit trail: small) to move off the leaving node.
pub const SYSTEM_REPLICA_MOVE_TIMEOUT: Duration = Duration::from_secs(120);
/// A spinner's redraw interval.
pub const PROGRESS_TICK: Duration = Duration::from_millis(100);
/// A group member heartbeats every quarter of its session timeout, at most
/// this long apart.
pub const GROUP_HEARTBEAT_INTERVAL_MAX: Duration = Duration::from_secs(1);

/// How long a failing connector source waits before its next try at most;
/// it starts at the connector's interval and doubles per failure in a row.
pub const CONNECTOR_FAILURE_BACKOFF_MAX: Duration = Duration::from_secs(300);
/// Shortest poll interval of a connector source: a source is not a load
/// generator.
pub const CONNECTOR_POLL_INTERVAL_MIN: Duration = Duration::from_millis(100);
/// An http source polls this often unless its file says otherwise.
pub const HTTP_POLL_INTERVAL_DEFAULT: Duration = Duration::from_secs(10);
/// A file source looks for new lines this often unless its file says otherwise.
pub const FILE_POLL_INTERVAL_DEFAULT: Duration = Duration::from_secs(1);
/// How long connecting to an http source's endpoint may take.
pub const HTTP_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one http request may take, connection included.
pub const HTTP_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// How long one read of a streaming http source waits for records before
/// it returns with none, so that its connector sees Ctrl-C and reports.
pub const HTTP_STREAM_POLL_WAIT: Duration = Duration::from_secs(1);
/// A streaming http source that sends nothing for this long is opened
/// again (a connection silently dropped by a middlebox never ends).
pub const HTTP_STREAM_IDLE_TIMEOUT: Duration = Duration::from_secs(300);
/// How often a connector run by a node checks that the node still runs.
pub const CONNECTOR_PARENT_CHECK_INTERVAL: Duration = Duration::from_millis(500);
/// How long a derived topic's copy waits after an append that failed
/// (leader moved, no answer) before it reads where it stands again.
pub const DERIVE_RETRY_WAIT: Duration = Duration::from_millis(500);
/// How long the sql sink waits for a SQLite database another process has
/// locked before the write fails (and the batch is written again).
pub const SQL_BUSY_WAIT: Duration = Duration::from_secs(5);
/// How long connecting to a PostgreSQL server for the sql sink may take.
pub const SQL_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long PostgreSQL may take to write one batch (begin to commit) before
/// the sink fails, naming the server; its batch is written again on restart.
pub const SQL_WRITE_TIMEOUT: Duration = Duration::from_secs(60);
/// How often a derived topic's copy reports its counts.
pub const CONNECTOR_STATUS_INTERVAL: Duration = Duration::from_secs(1);
/// How often a sink measures its lag (one partition list each time).
pub const CONNECTOR_LAG_INTERVAL: Duration = Duration::from_secs(5);

const fn below(a: Duration, b: Duration) -> bool {
    a.as_nanos() < b.as_nanos()
}

const _: () = assert!(below(CLUSTER_READY_POLL, CLUSTER_READY_TIMEOUT));
const _: () = assert!(below(NODE_STOP_POLL, NODE_STOP_TIMEOUT));
const _: () = assert!(below(HTTP_CONNECT_TIMEOUT, HTTP_REQUEST_TIMEOUT));
const _: () = assert!(below(SQL_CONNECT_TIMEOUT, SQL_WRITE_TIMEOUT));
const _: () = assert!(below(HTTP_STREAM_POLL_WAIT, HTTP_STREAM_IDLE_TIMEOUT));
const _: () = assert!(!below(
    HTTP_POLL_INTERVAL_DEFAULT,
    CONNECTOR_POLL_INTERVAL_MIN
));
const _: () = assert!(!below(
    FILE_POLL_INTERVAL_DEFAULT,
    CONNECTOR_POLL_INTERVAL_MIN
));
const _: () = assert!(below(
    CONNECTOR_POLL_INTERVAL_MIN,
    CONNECTOR_FAILURE_BACKOFF_MAX
));
