//! Every size and count limit of the protocol, in one place, with its unit in
//! its name. Relations between limits are checked at compile time below, so
//! raising one without the others fails the build instead of a request.

/// Largest frame (length prefix excluded) a peer accepts; larger is rejected
/// before any allocation. Room for the largest record beside a full fetch
/// response's worth of others.
pub const FRAME_SIZE_BYTES_MAX: usize = 32 * 1024 * 1024;
/// Largest record a node accepts (key, value and headers): Fluvio's CLI
/// tests produce files of up to 15 MB as one record. A producer refuses
/// records above its own limit first, [`RECORD_SIZE_BYTES_DEFAULT`] unless
/// raised (Kafka's `max.request.size`, Fluvio's `--max-request-size`).
pub const RECORD_SIZE_BYTES_MAX: usize = 16 * 1024 * 1024;
/// A producer's default limit on one record (Kafka's and Fluvio's 1 MiB):
/// what most topics hold is far smaller, and a larger record is a deliberate
/// choice (`--max-request-size`, `ProducerConfig::max_request_size_bytes`).
pub const RECORD_SIZE_BYTES_DEFAULT: usize = 1024 * 1024;
/// Headers of one record (`crate::headers`). Kafka sets no count; a bound
/// keeps a record of many tiny headers from costing a reader a loop of
/// millions per record.
pub const RECORD_HEADERS_MAX: usize = 128;
/// Bytes of one header's name (UTF-8): names are identifiers
/// ("content-type", "traceparent"), what is large goes in the value.
pub const RECORD_HEADER_KEY_BYTES_MAX: usize = 256;
/// Largest produce batch (sum of record sizes): at least the largest record.
pub const PRODUCE_BATCH_SIZE_BYTES_MAX: usize = RECORD_SIZE_BYTES_MAX;
/// Records in one produce batch.
pub const PRODUCE_BATCH_RECORDS_MAX: usize = 100_000;
/// Most bytes a compressed produce batch may expand to (its records'
/// encoding): what an uncompressed batch of the largest size and count
/// could take in a frame. Larger is refused while expanding.
pub const PRODUCE_BATCH_EXPANDED_BYTES_MAX: usize =
    PRODUCE_BATCH_SIZE_BYTES_MAX + PRODUCE_BATCH_RECORDS_MAX * RECORD_OVERHEAD_BYTES_MAX;
/// Records a SmartModule's `look_back` may be shown when a stream starts
/// (`consume --lookback-last N`): reading them delays the stream's first
/// record, so the count is bounded (they are read in chunks of
/// [`FETCH_RESPONSE_BYTES_MAX`], each one call into the module).
pub const LOOKBACK_RECORDS_MAX: u64 = 100_000;
/// Default and maximum payload bytes in one fetch response frame.
pub const FETCH_RESPONSE_BYTES_DEFAULT: usize = 1024 * 1024;
pub const FETCH_RESPONSE_BYTES_MAX: usize = 8 * 1024 * 1024;
/// Batches an idempotent producer may have on the wire to one partition at
/// once, counted by number from its oldest unacknowledged batch. A partition
/// remembers this many of each producer's last written batches, so any batch
/// the producer may resend is recognised.
pub const PRODUCER_IN_FLIGHT_PER_PARTITION_MAX: usize = 5;
/// How far ahead of the receiving node's clock a record's timestamp may be.
/// Time-based retention deletes a segment once its newest record is old
/// enough, so a record stamped years ahead would keep its segment, and all
/// after it, for years. Kafka's `message.timestamp.after.max.ms` default.
pub const RECORD_TIMESTAMP_AHEAD_MS_MAX: i64 = 60 * 60 * 1000;
/// Partitions of one topic.
pub const TOPIC_PARTITIONS_MAX: u32 = 1024;
/// Partition replicas one node may hold, over all topics. Every replica is a
/// Raft group with its own timers, heartbeats and openraft's preallocated
/// buffers: 64 idle replicas cost a node about 173 MB and 0.16 of a core
/// (BENCHMARKS.md, "Idle partitions"), so at this many a node spends gigabytes
/// and its cores on groups that do nothing. A topic that would take a node
/// past it is refused when proposed (a soft bound: two creations racing may
/// pass it together), naming the node and the counts.
pub const PARTITION_REPLICAS_PER_NODE_MAX: usize = 1024;
/// Characters in a topic name.
pub const TOPIC_NAME_LEN_MAX: usize = 63;
/// Smallest segment a topic may ask for.
pub const SEGMENT_SIZE_BYTES_MIN: u64 = 1024;
/// Per-record framing overhead we budget for inside a frame (offset, lengths,
/// timestamp, partition), generous on purpose.
pub const RECORD_OVERHEAD_BYTES_MAX: usize = 64;

const _: () = assert!(RECORD_SIZE_BYTES_MAX <= PRODUCE_BATCH_SIZE_BYTES_MAX);
const _: () = assert!(RECORD_SIZE_BYTES_DEFAULT <= RECORD_SIZE_BYTES_MAX);
const _: () = assert!(
    PRODUCE_BATCH_SIZE_BYTES_MAX + PRODUCE_BATCH_RECORDS_MAX * RECORD_OVERHEAD_BYTES_MAX
        < FRAME_SIZE_BYTES_MAX
);
const _: () = assert!(FETCH_RESPONSE_BYTES_MAX + RECORD_SIZE_BYTES_MAX < FRAME_SIZE_BYTES_MAX);
const _: () = assert!(FETCH_RESPONSE_BYTES_DEFAULT <= FETCH_RESPONSE_BYTES_MAX);

/// Largest SmartModule a node accepts, registered or sent ad hoc with a
/// consume request (both travel in one frame; both are refused above this
/// before anything else is done with them).
pub const SMARTMODULE_SIZE_BYTES_MAX: usize = 8 * 1024 * 1024;
const _: () = assert!(SMARTMODULE_SIZE_BYTES_MAX < FRAME_SIZE_BYTES_MAX);

// The pre-compile budget of a SmartModule. Compiling costs time and memory
// out of proportion to a module's size (a 117 KiB module took Cranelift 29 s
// and 1 GB; measured here: a 7.5 KiB module, one function of 50 locals
// inside 1,000 nested loops, took 13 s of CPU), and a compile cannot be
// stopped once started. So a node reads the module's sections first
// (wasmparser, one pass, no compiling: `wasm/src/budget.rs`) and refuses a
// module over any bound below before compiling it. Every node applies the
// same bounds: a module registered through one node is compiled by all of
// them.
//
// Largest figure over the ten example modules (`examples/smartmodules`),
// built with the SDK's release profile (`opt-level = "s"`, what
// `sluice smart-module build` produces) and with the dev profile (an author
// registering a debug build; most of its size is DWARF):
//
// | figure                          |   release |     debug |     bound |
// |---------------------------------|-----------|-----------|-----------|
// | module bytes                    |   170,492 | 4,777,856 |     8 MiB |
// | code bytes                      |   115,673 |   307,584 |   768 KiB |
// | functions                       |       386 |     1,401 |    20,000 |
// | bytes of one function body      |     6,071 |     6,071 |    64 KiB |
// | locals of one function (params) |        39 |       154 |     2,000 |
// | locals of all functions         |     1,211 |     6,511 |   100,000 |
// | types                           |        31 |        47 |     1,000 |
// | exports                         |        10 |        10 |     1,000 |
// | globals                         |         3 |         3 |     1,000 |
// | data segments                   |         2 |         2 |     1,000 |
// | element segments                |         1 |         1 |     1,000 |
// | tables                          |         1 |         1 |         4 |
// | initial elements of one table   |        82 |        87 |   100,000 |
// | memories                        |         1 |         1 |         1 |
// | initial bytes of memory         | 1,114,112 | 1,179,648 |    32 MiB |
// | targets of one br_table         |        40 |        84 |    10,000 |
// | blocks nested in one function   |        42 |        66 |     1,000 |
// | loops nested in one function    |         3 |         3 |        16 |
// | values carried by loop headers  |     6,853 |    10,763 |   200,000 |
//
// The examples compile in 60 to 500 ms of CPU each (about 2 us per byte of
// code). Every bound but the one memory is at least four times the largest
// release figure (checked by `wasm/tests/it/load.rs`), most over ten times;
// the tight ones are what Cranelift's time grows fastest with: loop nesting,
// locals, loop-carried values, and code (long chains of `x + 1` cost its
// e-graph optimizer about 6 us per byte). The worst module found within all
// bounds at once (such chains filling the code, 100,000 locals, 200,000
// loop-carried values in functions of 2,000 locals under 16 nested loops)
// took 5.5 s of CPU and about 100 MB to compile on the 2-core development
// machine (`wasm/src/budget.rs`, the ignored calibration test), within the
// engine's compile time budget (10 s, `EngineConfig::compile_time_max`).

/// Bytes of all function bodies together (the code section): compile time
/// grows with it, 2 to 6 us of CPU per byte.
pub const SMARTMODULE_CODE_BYTES_MAX: usize = 768 * 1024;
/// Functions a module defines.
pub const SMARTMODULE_FUNCTIONS_MAX: u32 = 20_000;
/// Bytes of one function body (its locals declarations and instructions):
/// Cranelift compiles one function at a time, so this bounds the memory of
/// one function's compilation (about 10 MB at the bound).
pub const SMARTMODULE_FUNCTION_BODY_BYTES_MAX: usize = 64 * 1024;
/// Locals of one function, its parameters included (the sum of its local
/// declarations can exceed u32; it is summed wider): each is an SSA variable
/// to the compiler, and the register allocator's time grows faster than
/// linearly with how many are live at once.
pub const SMARTMODULE_LOCALS_PER_FUNCTION_MAX: u32 = 2_000;
/// Locals declared by all functions of a module together (each is
/// initialised to zero in compiled code).
pub const SMARTMODULE_LOCALS_TOTAL_MAX: u32 = 100_000;
/// Types (the type section).
pub const SMARTMODULE_TYPES_MAX: u32 = 1_000;
/// Exports (a module needs about ten).
pub const SMARTMODULE_EXPORTS_MAX: u32 = 1_000;
/// Globals.
pub const SMARTMODULE_GLOBALS_MAX: u32 = 1_000;
/// Data segments.
pub const SMARTMODULE_DATA_SEGMENTS_MAX: u32 = 1_000;
/// Element segments (initialisers of tables of functions).
pub const SMARTMODULE_ELEMENT_SEGMENTS_MAX: u32 = 1_000;
/// Tables (Rust's output has one, for indirect calls); also the most tables
/// an instance may create.
pub const SMARTMODULE_TABLES_MAX: u32 = 4;
/// Initial elements of one table.
pub const SMARTMODULE_TABLE_INITIAL_ELEMENTS_MAX: u64 = 100_000;
/// Memories: a SmartModule has exactly one, the one the host writes batches
/// into.
pub const SMARTMODULE_MEMORIES_MAX: u32 = 1;
/// Initial size of the module's memory, in bytes: what an instance gets
/// before it runs anything (an engine's memory limit per instance must not be
/// below it, or an accepted module could never start).
pub const SMARTMODULE_MEMORY_INITIAL_BYTES_MAX: u64 = 32 * 1024 * 1024;
/// Targets of one `br_table` instruction (a `match` compiles to one).
pub const SMARTMODULE_BR_TABLE_TARGETS_MAX: u32 = 10_000;
/// Blocks (`block`, `loop`, `if`, `try`) open at once in one function.
pub const SMARTMODULE_CONTROL_DEPTH_MAX: u32 = 1_000;
/// Loops open at once in one function. Each loop header may need its own
/// copy of every value live through it, so compile time multiplies with
/// this depth (50 locals under 1,000 nested loops: 13 s of CPU).
pub const SMARTMODULE_LOOP_DEPTH_MAX: u32 = 16;
/// Values carried by loop headers, an upper bound of what the compiler may
/// have to thread through them: every access to a local inside loops, and
/// every parameter of a loop, counted once per loop around it; summed over
/// the module.
pub const SMARTMODULE_LOOP_CARRIED_VALUES_MAX: u64 = 200_000;

/// SmartModules in one consumer's chain: a node loads them one after the
/// other before the stream starts, each may cost a compile.
pub const SMARTMODULE_CHAIN_LEN_MAX: usize = 16;

const _: () = assert!(SMARTMODULE_CODE_BYTES_MAX <= SMARTMODULE_SIZE_BYTES_MAX);
const _: () = assert!(SMARTMODULE_FUNCTION_BODY_BYTES_MAX <= SMARTMODULE_CODE_BYTES_MAX);
const _: () = assert!(SMARTMODULE_LOCALS_PER_FUNCTION_MAX <= SMARTMODULE_LOCALS_TOTAL_MAX);

// Resource bounds of a node's network surface. A peer may hold at most this
// much of a node: every figure below is enforced by the node whatever the
// peer announces, so memory and tasks cannot grow because a peer asked.

/// Requests (bidirectional streams) a connection may have open at once; the
/// QUIC transport refuses to open more (the peer waits for one to finish).
/// Far above what a client pipelines (a producer keeps a handful of batches
/// in flight per partition) and what a node sends a peer.
pub const STREAMS_PER_CONNECTION_MAX: u32 = 512;
/// Raft append streams (pipelined replication, one per group a node leads
/// and follower it replicates to while the group takes writes) a node keeps
/// open to one other node: half of a connection's streams, so one-off
/// requests always find room. A group that finds them all taken sends its
/// appends one by one until one closes.
pub const APPEND_STREAMS_PER_PEER_MAX: usize = STREAMS_PER_CONNECTION_MAX as usize / 2;
/// Unread bytes QUIC buffers for one stream / one connection (its flow
/// control windows): what a peer can make a node hold before the node has
/// read anything.
pub const STREAM_RECEIVE_WINDOW_BYTES: u32 = 16 * 1024 * 1024;
pub const CONNECTION_RECEIVE_WINDOW_BYTES: u32 = 32 * 1024 * 1024;
/// Request bytes a node holds for one connection once read (frames being
/// read, decoded, or served): a stream waits for room before reading its
/// frame's body, so 512 streams announcing 16 MiB each hold this much, not 8 GiB.
pub const REQUEST_BYTES_PER_CONNECTION_MAX: usize = 64 * 1024 * 1024;
/// The same across all connections of a node.
pub const REQUEST_BYTES_PER_NODE_MAX: usize = 1024 * 1024 * 1024;
/// Connections a node serves at once, and from one source IP address.
/// Refused beyond (the peer sees the connection refused and retries).
pub const CONNECTIONS_PER_NODE_MAX: usize = 4096;
pub const CONNECTIONS_PER_SOURCE_IP_MAX: usize = 256;
/// Time from a stream's opening to its request frame fully read: a peer
/// that sends a header (or nothing) and stalls loses its stream.
pub const REQUEST_READ_DEADLINE_MS: u64 = 30_000;
/// Time a frame's body may go without a byte arriving once the node has
/// set its size aside in the budgets above: a peer that announces frames
/// and stops sending holds that room this long, not the whole read deadline.
pub const REQUEST_BODY_STALL_DEADLINE_MS: u64 = 5_000;
/// Time a connection may stay open with no request under way before the
/// node closes it. Clients reconnect on their next request.
pub const CONNECTION_IDLE_DEADLINE_MS: u64 = 300_000;

const _: () = assert!(FRAME_SIZE_BYTES_MAX <= REQUEST_BYTES_PER_CONNECTION_MAX);
const _: () = assert!(REQUEST_BODY_STALL_DEADLINE_MS < REQUEST_READ_DEADLINE_MS);
const _: () = assert!(REQUEST_BYTES_PER_CONNECTION_MAX <= REQUEST_BYTES_PER_NODE_MAX);
const _: () = assert!(CONNECTIONS_PER_SOURCE_IP_MAX <= CONNECTIONS_PER_NODE_MAX);
const _: () = assert!(STREAM_RECEIVE_WINDOW_BYTES <= CONNECTION_RECEIVE_WINDOW_BYTES);
// A whole frame fits in one stream's window, so a stream never waits on a
// window update the node would only send after reading.
const _: () = assert!(FRAME_SIZE_BYTES_MAX <= 2 * STREAM_RECEIVE_WINDOW_BYTES as usize);

/// Bytes of a principal name in an ACL entry; the same bound as client
/// certificate names (`sluice_transport::PRINCIPAL_NAME_BYTES_MAX`, checked
/// equal by a test of the node), so every grantable name can be issued.
pub const ACL_PRINCIPAL_BYTES_MAX: usize = 64;
/// Bytes of a resource name or prefix in an ACL entry.
pub const RESOURCE_NAME_BYTES_MAX: usize = TOPIC_NAME_LEN_MAX;
/// ACL entries the cluster holds: each is checked on requests it may
/// concern, and all of them live in every node's metadata.
pub const ACL_ENTRIES_MAX: usize = 10_000;

/// Checks a topic name: 1..=63 characters of `[a-z0-9-]`, not starting or
/// ending with `-` (the same rule as Fluvio, so names are valid file names).
pub fn validate_topic_name(name: &str) -> Result<(), String> {
    validate_name("topic", name)
}

/// Checks a table format's name (`sluice table-format`) with the same rule
/// as topic names.
pub fn validate_table_format_name(name: &str) -> Result<(), String> {
    validate_name("table format", name)
}

/// Checks a SmartModule name with the same rule as topic names.
pub fn validate_smartmodule_name(name: &str) -> Result<(), String> {
    validate_name("SmartModule", name)
}

/// Offsets committed under consumer names in the controller's metadata,
/// where releases before offsets moved into the partitions kept them (they
/// are still read there, and no longer added to).
pub const CONSUMER_OFFSETS_MAX: usize = 100_000;

/// Consumer names one partition keeps offsets (and group fences) for. A
/// partition's offsets travel in its snapshots and sit in each replica's
/// memory: a commit of one more consumer is refused until consumers are
/// deleted.
pub const CONSUMERS_PER_PARTITION_MAX: usize = 1_000;
/// SmartModule states committed in one partition, together: with the
/// producer table they must fit one snapshot frame.
pub const CONSUMER_STATE_PARTITION_BYTES_MAX: usize = 4 * 1024 * 1024;
const _: () = assert!(CONSUMER_STATE_PARTITION_BYTES_MAX <= FRAME_SIZE_BYTES_MAX / 4);

/// SmartModule state (an aggregate's accumulator) committed with one
/// consumer offset. Kept small because every node holds every offset, and
/// one consumer's states on a topic of `TOPIC_PARTITIONS_MAX` partitions
/// must fit one answer frame.
pub const CONSUMER_STATE_BYTES_MAX: usize = 8 * 1024;
/// All committed SmartModule states together, well within what the
/// controller's metadata may hold.
pub const CONSUMER_STATE_TOTAL_BYTES_MAX: usize = 64 * 1024 * 1024;

/// Members of one consumer group, and consumer groups a coordinator tracks.
pub const GROUP_MEMBERS_MAX: usize = 1024;
pub const CONSUMER_GROUPS_MAX: usize = 10_000;
/// Bounds of a member's session timeout: below the minimum a heartbeat
/// delayed by a loaded machine would drop a live member.
pub const GROUP_SESSION_TIMEOUT_MS_MIN: u64 = 1_000;
pub const GROUP_SESSION_TIMEOUT_MS_MAX: u64 = 300_000;

/// Connectors the cluster runs (`connector create`): each is a process
/// on some node, so the count is what a small cluster's nodes can run.
pub const CONNECTORS_MAX: usize = 256;
/// A connector's file, as stored in the metadata every node holds.
pub const CONNECTOR_CONFIG_BYTES_MAX: usize = 64 * 1024;
/// Most bytes of a connector's log one `connector logs` answer carries
/// (its end).
pub const CONNECTOR_LOG_ANSWER_BYTES_MAX: usize = 1024 * 1024;
const _: () = assert!(CONNECTOR_LOG_ANSWER_BYTES_MAX < FRAME_SIZE_BYTES_MAX / 2);
const _: () = assert!(CONNECTORS_MAX * CONNECTOR_CONFIG_BYTES_MAX < FRAME_SIZE_BYTES_MAX);

/// Checks a connector's name: it names a directory on the node that runs
/// it, so 1 to 63 lowercase letters, digits, '-' and '_'.
pub fn validate_connector_name(name: &str) -> Result<(), String> {
    let fits = (1..=63).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if fits {
        Ok(())
    } else {
        Err(format!(
            "connector name {name:?}: use 1 to 63 lowercase letters, digits, '-' and '_'"
        ))
    }
}

/// Checks a consumer name (`consume -c NAME`): the rules of topic names.
pub fn validate_consumer_name(name: &str) -> Result<(), String> {
    validate_name("consumer", name)
}

fn validate_name(what: &str, name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > TOPIC_NAME_LEN_MAX {
        return Err(format!(
            "{what} name must be 1 to {TOPIC_NAME_LEN_MAX} characters long, got {}",
            name.len()
        ));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Err(format!(
            "{what} name {name:?} may contain only lowercase letters, digits and '-'"
        ));
    }
    if name.starts_with('-') || name.ends_with('-') {
        return Err(format!(
            "{what} name {name:?} must not start or end with '-'"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_names() {
        assert!(validate_topic_name("orders-2").is_ok());
        assert!(validate_topic_name("").is_err());
        assert!(validate_topic_name("Orders").is_err());
        assert!(validate_topic_name("-a").is_err());
        assert!(validate_topic_name(&"a".repeat(64)).is_err());
    }
}
