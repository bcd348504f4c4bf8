//! The node's Prometheus metrics: every name and the exporter; the task
//! that samples state into them is `crate::sampler`.
//!
//! Figures are recorded through the `metrics` facade, which costs an atomic
//! add and does nothing at all until [`install`] has set a recorder, so the
//! data path never waits on a scraper: the exporter renders on its own task
//! from atomics. Counters that the data path moves anyway (records in and
//! out, RPCs, fsyncs) are recorded where the work happens; state that is
//! cheaper to look at now and then (offsets, lag, leadership, memory) is
//! sampled every `METRICS_SAMPLE_INTERVAL`.
//!
//! Label sets are bounded by what the cluster holds (topics x partitions,
//! peers, RPC kinds, module names), never by what a client sends.

use std::net::SocketAddr;
use std::time::Duration;

use metrics::{counter, gauge, histogram};

// Per partition replica on this node; labels `topic`, `partition`.
/// Records appended through this node (as leader), counter.
pub const PARTITION_RECORDS_IN: &str = "sluice_partition_records_in_total";
/// Bytes of records appended through this node, counter.
pub const PARTITION_BYTES_IN: &str = "sluice_partition_bytes_in_total";
/// Records sent to consumers by this node, counter.
pub const PARTITION_RECORDS_OUT: &str = "sluice_partition_records_out_total";
/// Bytes of records sent to consumers by this node, counter.
pub const PARTITION_BYTES_OUT: &str = "sluice_partition_bytes_out_total";
/// First offset still held, gauge.
pub const PARTITION_START_OFFSET: &str = "sluice_partition_start_offset";
/// Offset the next record will take (committed records end here), gauge.
pub const PARTITION_END_OFFSET: &str = "sluice_partition_end_offset";
/// 1 on the replica that leads the partition, 0 elsewhere, gauge.
pub const PARTITION_IS_LEADER: &str = "sluice_partition_is_leader";
/// Leader changes this replica has seen since the node started, counter.
pub const PARTITION_LEADER_CHANGES: &str = "sluice_partition_leader_changes_total";
/// On the leader: Raft log entries a follower is behind (label `replica`), gauge.
pub const PARTITION_REPLICA_LAG_ENTRIES: &str = "sluice_partition_replica_lag_entries";
/// Entries this replica's Raft log holds (appended, not yet purged after a
/// snapshot), gauge. A leader keeps what a lagging follower is being sent.
pub const PARTITION_RAFT_LOG_ENTRIES: &str = "sluice_partition_raft_log_entries";

// Per node.
/// Raft RPCs sent to peers, latency in seconds (labels `kind`, `outcome`), histogram.
pub const RAFT_RPC_SECONDS: &str = "sluice_raft_rpc_seconds";
/// Raft append streams (pipelined replication) to peers, by `outcome`:
/// `opened`, `at_limit` (all of the peer's permits out: the group sent one
/// by one), `refused` (the peer, an older build, does not serve them),
/// counter. An append on a stream is timed as an `append_entries` RPC.
pub const RAFT_APPEND_STREAMS: &str = "sluice_raft_append_streams_total";
/// WAL fsyncs, duration in seconds, histogram (recorded by `sluice-raft`).
pub const WAL_FSYNC_SECONDS: &str = sluice_raft::WAL_FSYNC_SECONDS;
/// A replica's Raft log append, from its write to the fsync that made it
/// durable (see [`sluice_raft::RAFT_LOG_APPEND_SECONDS`]).
pub const RAFT_LOG_APPEND_SECONDS: &str = sluice_raft::RAFT_LOG_APPEND_SECONDS;
/// Writes proposed as leader, proposal to answer in seconds, histogram
/// (recorded by `sluice-raft`).
pub const RAFT_WRITE_SECONDS: &str = sluice_raft::RAFT_WRITE_SECONDS;
/// Writes that renewed their leader's expired lease with a heartbeat round
/// first (a write waking a sleeping partition), counter (recorded by
/// `sluice-raft`).
pub const RAFT_LEASE_RENEWALS: &str = sluice_raft::RAFT_LEASE_RENEWALS;
/// Sleeping Raft groups woken here, by why (label `why`), counter
/// (recorded by `sluice-raft`).
pub const RAFT_GROUP_WAKES: &str = sluice_raft::RAFT_GROUP_WAKES;
/// One committed entry applied by its state machine, seconds, histogram
/// (recorded by `sluice-raft`).
pub const RAFT_APPLY_SECONDS: &str = sluice_raft::RAFT_APPLY_SECONDS;
/// Produce requests on the leader, from the batch's checks to its answer
/// (waiting for the producer's previous batch and the Raft write
/// included), seconds, histogram.
pub const PRODUCE_SECONDS: &str = "sluice_produce_seconds";
/// Requests answered by one response (all but fetches and Raft RPCs), from
/// their stream's opening to the answer written, seconds, histogram (label
/// `kind`: the request's name).
pub const REQUEST_SECONDS: &str = "sluice_request_seconds";
/// QUIC connections being served, gauge.
pub const QUIC_CONNECTIONS: &str = "sluice_quic_connections";
/// Request streams being served, gauge.
pub const QUIC_STREAMS_OPEN: &str = "sluice_quic_streams_open";
/// Resident memory of the node process in bytes, gauge.
pub const RESIDENT_MEMORY_BYTES: &str = "sluice_process_resident_memory_bytes";
/// Partition Raft groups asleep on this node (quiescent: idle, not ticking), gauge.
pub const RAFT_GROUPS_ASLEEP: &str = "sluice_raft_groups_asleep";

// Per SmartModule, by module name (`module`): summed over the streams that ran it.
/// Batch calls into the module, counter.
pub const SMARTMODULE_CALLS: &str = "sluice_smartmodule_calls_total";
/// Records given to the module, counter.
pub const SMARTMODULE_RECORDS_IN: &str = "sluice_smartmodule_records_in_total";
/// Records the module returned, counter.
pub const SMARTMODULE_RECORDS_OUT: &str = "sluice_smartmodule_records_out_total";
/// Time spent inside the module in microseconds, counter.
pub const SMARTMODULE_BUSY_MICROSECONDS: &str = "sluice_smartmodule_busy_microseconds_total";
/// Batches that ended in the module's error (trap, fuel, deadline, ABI), counter.
pub const SMARTMODULE_ERRORS: &str = "sluice_smartmodule_errors_total";
/// Per connector this node runs (or ran: then `running` is 0 and the rest
/// keep their last values), from its process's own counts since it started.
pub const CONNECTOR_RUNNING: &str = "sluice_connector_running";
pub const CONNECTOR_RESTARTS: &str = "sluice_connector_restarts";
pub const CONNECTOR_RECORDS_IN: &str = "sluice_connector_records_in";
pub const CONNECTOR_RECORDS_OUT: &str = "sluice_connector_records_out";
pub const CONNECTOR_FAILURES: &str = "sluice_connector_failures";
pub const CONNECTOR_LAG: &str = "sluice_connector_lag_records";

/// Starts the Prometheus exporter on `listen` (`GET /metrics`). Fails if the
/// address cannot be bound or a recorder is already installed.
pub fn install(listen: SocketAddr) -> Result<(), String> {
    metrics_exporter_prometheus::PrometheusBuilder::new()
        .with_http_listener(listen)
        .install()
        .map_err(|e| e.to_string())?;
    describe();
    Ok(())
}

fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(PARTITION_RECORDS_IN, "Records appended through this node");
    describe_counter!(PARTITION_BYTES_IN, Unit::Bytes, "Bytes of records appended");
    describe_counter!(PARTITION_RECORDS_OUT, "Records sent to consumers");
    describe_counter!(
        PARTITION_BYTES_OUT,
        Unit::Bytes,
        "Bytes of records sent to consumers"
    );
    describe_gauge!(PARTITION_START_OFFSET, "First offset still held");
    describe_gauge!(PARTITION_END_OFFSET, "Offset the next record will take");
    describe_gauge!(PARTITION_IS_LEADER, "1 where this replica leads");
    describe_counter!(PARTITION_LEADER_CHANGES, "Leader changes seen");
    describe_gauge!(
        PARTITION_REPLICA_LAG_ENTRIES,
        "Raft entries a follower is behind (on the leader)"
    );
    describe_gauge!(
        PARTITION_RAFT_LOG_ENTRIES,
        "Raft log entries held, not yet purged after a snapshot"
    );
    describe_histogram!(
        RAFT_RPC_SECONDS,
        Unit::Seconds,
        "Raft RPCs to peers by kind and outcome"
    );
    describe_counter!(
        RAFT_APPEND_STREAMS,
        "Raft append streams to peers by outcome (opened, at_limit, refused)"
    );
    describe_histogram!(WAL_FSYNC_SECONDS, Unit::Seconds, "WAL fsync durations");
    describe_histogram!(
        RAFT_LOG_APPEND_SECONDS,
        Unit::Seconds,
        "Raft log appends, from the write to the WAL fsync that made them durable"
    );
    describe_histogram!(
        RAFT_WRITE_SECONDS,
        Unit::Seconds,
        "Writes proposed as leader, from proposal to the state machine's answer"
    );
    describe_counter!(
        RAFT_LEASE_RENEWALS,
        "Writes that renewed their leader's expired lease first (a sleeping group woken)"
    );
    describe_counter!(RAFT_GROUP_WAKES, "Sleeping Raft groups woken here, by why");
    describe_histogram!(
        RAFT_APPLY_SECONDS,
        Unit::Seconds,
        "One committed entry applied by its state machine"
    );
    describe_histogram!(
        REQUEST_SECONDS,
        Unit::Seconds,
        "Requests by kind, from their stream's opening to the answer written"
    );
    describe_histogram!(
        PRODUCE_SECONDS,
        Unit::Seconds,
        "Produce requests on the leader, from their checks to their answer"
    );
    describe_gauge!(QUIC_CONNECTIONS, "QUIC connections being served");
    describe_gauge!(QUIC_STREAMS_OPEN, "Request streams being served");
    describe_gauge!(
        RESIDENT_MEMORY_BYTES,
        Unit::Bytes,
        "Resident memory of the node"
    );
    describe_gauge!(
        RAFT_GROUPS_ASLEEP,
        "Partition Raft groups asleep here (idle, not ticking)"
    );
    describe_counter!(SMARTMODULE_CALLS, "Batch calls into the module");
    describe_counter!(SMARTMODULE_RECORDS_IN, "Records given to the module");
    describe_counter!(SMARTMODULE_RECORDS_OUT, "Records the module returned");
    describe_counter!(
        SMARTMODULE_BUSY_MICROSECONDS,
        Unit::Microseconds,
        "Time inside the module"
    );
    describe_counter!(SMARTMODULE_ERRORS, "Batches that ended in an error");
    describe_gauge!(
        CONNECTOR_RUNNING,
        "1 while the connector's process runs here"
    );
    describe_gauge!(
        CONNECTOR_RESTARTS,
        "Times the connector's process was started again here"
    );
    describe_gauge!(
        CONNECTOR_RECORDS_IN,
        "Records the connector's process read since it started"
    );
    describe_gauge!(
        CONNECTOR_RECORDS_OUT,
        "Records the connector's process wrote since it started"
    );
    describe_gauge!(
        CONNECTOR_FAILURES,
        "Failed polls or writes (each retried) since it started"
    );
    describe_gauge!(CONNECTOR_LAG, "A sink's records committed but not yet read");
    describe_counter!(
        crate::audit_log::AUDIT_EVENTS_WRITTEN,
        "Audit events this node wrote to the audit topic"
    );
    describe_counter!(
        crate::audit_log::AUDIT_EVENTS_DROPPED,
        "Audit events this node dropped from the audit topic (queue full or topic not writable)"
    );
}

/// Labels of one partition.
pub(crate) fn partition_labels(topic: &str, partition: u32) -> [(&'static str, String); 2] {
    [
        ("topic", topic.to_owned()),
        ("partition", partition.to_string()),
    ]
}

/// Records a successful produce of `records` records, `bytes` bytes.
pub(crate) fn produced(topic: &str, partition: u32, records: u64, bytes: u64) {
    let labels = partition_labels(topic, partition);
    counter!(PARTITION_RECORDS_IN, &labels).increment(records);
    counter!(PARTITION_BYTES_IN, &labels).increment(bytes);
}

/// Records records sent to a consumer (plain or out of its SmartModules).
pub(crate) fn consumed(topic: &str, partition: u32, records: &[sluice_proto::ConsumerRecordRef]) {
    let bytes: usize = records.iter().map(|r| r.size_bytes()).sum();
    let labels = partition_labels(topic, partition);
    counter!(PARTITION_RECORDS_OUT, &labels).increment(records.len() as u64);
    counter!(PARTITION_BYTES_OUT, &labels).increment(bytes as u64);
}

/// Records one request answered by one response (`kind`: its name, from a
/// fixed set).
pub(crate) fn request_served(kind: &'static str, took: Duration) {
    histogram!(REQUEST_SECONDS, "kind" => kind).record(took.as_secs_f64());
}

/// Records one Raft RPC to a peer.
pub(crate) fn raft_rpc(kind: sluice_proto::RaftRpcKind, ok: bool, took: Duration) {
    let kind = match kind {
        sluice_proto::RaftRpcKind::AppendEntries => "append_entries",
        sluice_proto::RaftRpcKind::Vote => "vote",
        sluice_proto::RaftRpcKind::PreVote => "pre_vote",
        sluice_proto::RaftRpcKind::InstallSnapshot => "install_snapshot",
        sluice_proto::RaftRpcKind::TransferLeader => "transfer_leader",
        sluice_proto::RaftRpcKind::Quiesce => "quiesce",
        sluice_proto::RaftRpcKind::LeaderProbe => "leader_probe",
        sluice_proto::RaftRpcKind::CommitWanted => "commit_wanted",
        sluice_proto::RaftRpcKind::PeerProbe => "peer_probe",
        sluice_proto::RaftRpcKind::Batch => "batch",
        sluice_proto::RaftRpcKind::AppendStream => "append_stream",
    };
    let outcome = if ok { "ok" } else { "error" };
    histogram!(RAFT_RPC_SECONDS, "kind" => kind, "outcome" => outcome).record(took.as_secs_f64());
}

/// Counts an attempt at an append stream to a peer (see
/// [`RAFT_APPEND_STREAMS`]).
pub(crate) fn append_stream(outcome: &'static str) {
    counter!(RAFT_APPEND_STREAMS, "outcome" => outcome).increment(1);
}

/// Records a SmartModule chain's work on one batch: `stats` per module, in
/// chain order, and the module that failed, if one did.
pub(crate) fn smartmodule_batch(
    stats: &[(String, sluice_wasm::InstanceStats)],
    failed: Option<&str>,
) {
    for (name, s) in stats {
        let labels = [("module", name.clone())];
        counter!(SMARTMODULE_CALLS, &labels).increment(s.calls);
        counter!(SMARTMODULE_RECORDS_IN, &labels).increment(s.records_in);
        counter!(SMARTMODULE_RECORDS_OUT, &labels).increment(s.records_out);
        counter!(SMARTMODULE_BUSY_MICROSECONDS, &labels)
            .increment(u64::try_from(s.busy.as_micros()).unwrap_or(u64::MAX));
    }
    if let Some(name) = failed {
        counter!(SMARTMODULE_ERRORS, "module" => name.to_owned()).increment(1);
    }
}

/// Counts a value while it lives (a connection, a stream).
pub(crate) struct Live(&'static str);

impl Live {
    pub(crate) fn new(name: &'static str) -> Self {
        gauge!(name).increment(1.0);
        Self(name)
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        gauge!(self.0).decrement(1.0);
    }
}
