//! What peers may hold of a node: connections (in all, and per source
//! address) and the bytes of requests being read or served (per connection
//! and in all). The bounds are named in `sluice_proto::limits`.
//!
//! QUIC's flow control already bounds what a peer can make the node buffer
//! before the node reads; these bounds cover what the node holds after
//! reading: a stream waits for room before it reads its frame's body, so a
//! peer announcing many large frames is slowed down, not served at the cost
//! of the node's memory. Each reservation is released when its request is
//! done, with the request's own memory.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};

use sluice_proto::limits::{
    CONNECTIONS_PER_NODE_MAX, CONNECTIONS_PER_SOURCE_IP_MAX, REQUEST_BYTES_PER_CONNECTION_MAX,
    REQUEST_BYTES_PER_NODE_MAX,
};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The node-wide bounds; one per node, shared by every connection.
pub(crate) struct Admission {
    connections: Mutex<Connections>,
    request_bytes: Arc<Semaphore>,
    connections_max: usize,
    per_ip_max: usize,
}

#[derive(Default)]
struct Connections {
    total: usize,
    per_ip: HashMap<IpAddr, usize>,
}

/// Why a connection was not admitted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Refusal {
    NodeFull { max: usize },
    SourceFull { ip: IpAddr, max: usize },
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::NodeFull { max } => write!(f, "the node serves {max} connections, its limit"),
            Refusal::SourceFull { ip, max } => {
                write!(
                    f,
                    "{ip} holds {max} connections, the limit per source address"
                )
            }
        }
    }
}

impl Admission {
    pub(crate) fn new() -> Arc<Self> {
        Self::with_limits(
            CONNECTIONS_PER_NODE_MAX,
            CONNECTIONS_PER_SOURCE_IP_MAX,
            REQUEST_BYTES_PER_NODE_MAX,
        )
    }

    fn with_limits(connections_max: usize, per_ip_max: usize, request_bytes: usize) -> Arc<Self> {
        Arc::new(Self {
            connections: Mutex::new(Connections::default()),
            request_bytes: Arc::new(Semaphore::new(request_bytes)),
            connections_max,
            per_ip_max,
        })
    }

    /// Admits a connection from `ip`, or says why not. The slot is given
    /// back when the returned value is dropped.
    pub(crate) fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<ConnectionSlot, Refusal> {
        let mut connections = self
            .connections
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if connections.total >= self.connections_max {
            return Err(Refusal::NodeFull {
                max: self.connections_max,
            });
        }
        let from_ip = connections.per_ip.entry(ip).or_default();
        if *from_ip >= self.per_ip_max {
            return Err(Refusal::SourceFull {
                ip,
                max: self.per_ip_max,
            });
        }
        *from_ip += 1;
        connections.total += 1;
        Ok(ConnectionSlot {
            admission: self.clone(),
            ip,
            request_bytes: Arc::new(Semaphore::new(REQUEST_BYTES_PER_CONNECTION_MAX)),
        })
    }
}

/// One admitted connection: its share of the node, and its own byte budget.
pub(crate) struct ConnectionSlot {
    admission: Arc<Admission>,
    ip: IpAddr,
    request_bytes: Arc<Semaphore>,
}

impl ConnectionSlot {
    /// Waits until `bytes` of request may be held by this connection and
    /// by the node, and holds them until the returned value is dropped.
    pub(crate) async fn reserve(&self, bytes: usize) -> Reservation {
        // Frames are at most FRAME_SIZE_BYTES_MAX, far below u32::MAX and
        // both budgets (checked at compile time in the limits module).
        let permits = u32::try_from(bytes).unwrap_or(u32::MAX);
        // Connection first: a connection waiting for its own room does not
        // hold node-wide bytes meanwhile. Neither semaphore is ever closed.
        let connection = self
            .request_bytes
            .clone()
            .acquire_many_owned(permits)
            .await
            .ok();
        let node = self
            .admission
            .request_bytes
            .clone()
            .acquire_many_owned(permits)
            .await
            .ok();
        Reservation {
            _connection: connection,
            _node: node,
        }
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        let mut connections = self
            .admission
            .connections
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        connections.total -= 1;
        if let Some(from_ip) = connections.per_ip.get_mut(&self.ip) {
            *from_ip -= 1;
            if *from_ip == 0 {
                connections.per_ip.remove(&self.ip);
            }
        }
    }
}

/// Request bytes held for one request.
pub(crate) struct Reservation {
    _connection: Option<OwnedSemaphorePermit>,
    _node: Option<OwnedSemaphorePermit>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn connections_are_counted_per_node_and_per_source() {
        let admission = Admission::with_limits(3, 2, 1024);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let first = admission.admit(a).unwrap();
        let _second = admission.admit(a).unwrap();
        assert_eq!(
            admission.admit(a).err(),
            Some(Refusal::SourceFull { ip: a, max: 2 })
        );
        let _third = admission.admit(b).unwrap();
        assert_eq!(admission.admit(b).err(), Some(Refusal::NodeFull { max: 3 }));
        drop(first);
        assert!(
            admission.admit(a).is_ok(),
            "a closed connection gives its slot back"
        );
    }

    #[tokio::test]
    async fn a_reservation_waits_for_room_and_gives_it_back() {
        let admission = Admission::with_limits(8, 8, REQUEST_BYTES_PER_CONNECTION_MAX * 2);
        let one = admission.admit("10.0.0.1".parse().unwrap()).unwrap();
        let held = one.reserve(REQUEST_BYTES_PER_CONNECTION_MAX - 10).await;
        // The connection's budget is spent: the next frame waits...
        let waiting = tokio::time::timeout(Duration::from_millis(50), one.reserve(11)).await;
        assert!(
            waiting.is_err(),
            "a reservation beyond the budget was granted"
        );
        // ...while another connection still has room...
        let other = admission.admit("10.0.0.2".parse().unwrap()).unwrap();
        let _theirs = other.reserve(1_000).await;
        // ...and goes ahead once the first request is done.
        drop(held);
        let granted = tokio::time::timeout(Duration::from_secs(5), one.reserve(11)).await;
        assert!(granted.is_ok());
    }
}
