//! The transport's deadlines, with the relations between them checked when
//! the crate compiles. A test of the workspace (`cli/tests/it/tidy.rs`)
//! keeps `Duration` constants and literals out of the rest of
//! `transport/src`. (Re-exported where they were: `endpoint` and `tls`.)

use std::time::Duration;

/// Connect timeout used by [`crate::endpoint::Connector::new`]. A QUIC handshake takes one or
/// two round trips; a node that has not answered in a second is treated as
/// down, so clients and peers move on to another node quickly (a failover is
/// otherwise dominated by waiting on the dead one).
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// How often an otherwise idle connection sends a keep-alive, so that NAT
/// bindings stay open and a dead peer is noticed.
pub const KEEP_ALIVE_INTERVAL: Duration = Duration::from_millis(200);
/// How long a connection may go without hearing from its peer before it is
/// considered dead. Several keep-alive intervals, so one lost packet is
/// harmless; short, because a request in flight to a killed node waits this
/// long before the client retries elsewhere (it bounds failover as a producer
/// sees it). A connection dropped by mistake costs a reconnect and an
/// idempotent resend, nothing else.
pub const IDLE_TIMEOUT: Duration = Duration::from_millis(1_000);

/// How often an otherwise idle connection between two nodes sends a
/// keep-alive. Nodes do not need a quiet connection to tell them a peer
/// died: every Raft RPC and leader probe has its own deadline, and a
/// restarted peer resets the connections of its previous run at once (its
/// stateless-reset key survives restarts, see
/// [`crate::endpoint::bind_node_server`]). So the keep-alive only has to keep
/// a connection open, and at 1 s an idle node pair costs two datagrams a
/// second per connection instead of ten (issue 15: idle partitions must cost
/// almost nothing).
pub const PEER_KEEP_ALIVE_INTERVAL: Duration = Duration::from_millis(1_000);
/// How long a connection between two nodes may stay silent before it is
/// dropped; also what a node's listener advertises, so that a connection's
/// idle timeout is the shorter of its client's ([`IDLE_TIMEOUT`] for
/// clients, this for nodes) and this.
pub const PEER_IDLE_TIMEOUT: Duration = Duration::from_millis(3_000);

const _: () = {
    // One lost keep-alive is harmless: the idle timeout spans several.
    assert!(IDLE_TIMEOUT.as_millis() >= 3 * KEEP_ALIVE_INTERVAL.as_millis());
    // A handshake gives up no later than a live connection would be
    // declared dead, so a dead node costs a new connection no more than an
    // old one.
    assert!(DEFAULT_CONNECT_TIMEOUT.as_millis() <= IDLE_TIMEOUT.as_millis());
    // The same between nodes.
    assert!(PEER_IDLE_TIMEOUT.as_millis() >= 3 * PEER_KEEP_ALIVE_INTERVAL.as_millis());
    // A listener never cuts a client's connection before the client's own
    // idle timeout would: clients keep theirs (the negotiated timeout is
    // the shorter of the two sides').
    assert!(PEER_IDLE_TIMEOUT.as_millis() >= IDLE_TIMEOUT.as_millis());
};
