//! A shareable dialer that keeps one live connection per peer address.
//!
//! QUIC multiplexes many streams over one connection, so callers that talk to
//! the same peer repeatedly (replication, controller RPCs, clients) should share
//! a connection instead of paying a handshake per request.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use super::{TransportError, client_endpoint, connect};
pub use crate::timeouts::DEFAULT_CONNECT_TIMEOUT;

/// One cached connection; the async mutex makes concurrent callers for the
/// same address wait for a single handshake instead of racing several.
type Slot = Arc<tokio::sync::Mutex<Option<quinn::Connection>>>;

/// Dials peers and caches one connection per address. Cheap to clone; clones
/// share the endpoints and the cache.
#[derive(Clone)]
pub struct Connector {
    inner: Arc<Inner>,
}

struct Inner {
    config: quinn::ClientConfig,
    connect_timeout: Duration,
    /// Where dials come from (`None`: the unspecified address).
    local_ip: Option<std::net::IpAddr>,
    /// Client endpoints, bound on first use: one per address family.
    v4: Mutex<Option<quinn::Endpoint>>,
    v6: Mutex<Option<quinn::Endpoint>>,
    connections: Mutex<HashMap<SocketAddr, Slot>>,
}

impl std::fmt::Debug for Connector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connector")
            .field("connect_timeout", &self.inner.connect_timeout)
            .finish_non_exhaustive()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // The guarded data stays consistent even if a holder panicked.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Connector {
    /// A connector using `config` (see [`crate::tls::client_config`]) and
    /// [`DEFAULT_CONNECT_TIMEOUT`].
    pub fn new(config: quinn::ClientConfig) -> Self {
        Self::with_timeout(config, DEFAULT_CONNECT_TIMEOUT)
    }

    /// A connector giving up on handshakes after `connect_timeout`.
    pub fn with_timeout(config: quinn::ClientConfig, connect_timeout: Duration) -> Self {
        Self::with_local_ip(config, connect_timeout, None)
    }

    /// Like [`with_timeout`](Self::with_timeout), dialing from `local_ip`
    /// (for targets of its family): a node dials its peers from the address
    /// it listens on, so its traffic carries that source address, which is
    /// what firewalls (and the fault suite's partitions) filter on.
    pub fn with_local_ip(
        config: quinn::ClientConfig,
        connect_timeout: Duration,
        local_ip: Option<std::net::IpAddr>,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                config,
                connect_timeout,
                local_ip: local_ip.filter(|ip| !ip.is_unspecified()),
                v4: Mutex::new(None),
                v6: Mutex::new(None),
                connections: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// The timeout applied to each handshake.
    pub fn connect_timeout(&self) -> Duration {
        self.inner.connect_timeout
    }

    /// Returns the cached connection to `addr` if it is still open, otherwise
    /// establishes (and caches) a new one.
    pub async fn connect(&self, addr: SocketAddr) -> Result<quinn::Connection, TransportError> {
        let slot = lock(&self.inner.connections)
            .entry(addr)
            .or_default()
            .clone();
        let mut cached = slot.lock().await;
        if let Some(connection) = cached.as_ref() {
            match connection.close_reason() {
                None => return Ok(connection.clone()),
                Some(reason) => {
                    tracing::debug!(%addr, %reason, "cached connection closed, reconnecting")
                }
            }
        }
        *cached = None;
        let endpoint = self.endpoint_for(addr)?;
        let connection = connect(
            &endpoint,
            self.inner.config.clone(),
            addr,
            self.inner.connect_timeout,
        )
        .await?;
        tracing::debug!(%addr, id = connection.stable_id(), "connected");
        *cached = Some(connection.clone());
        Ok(connection)
    }

    /// The open connection to `addr`, if one is cached; never dials.
    pub fn cached(&self, addr: SocketAddr) -> Option<quinn::Connection> {
        let slot = lock(&self.inner.connections).get(&addr)?.clone();
        // Busy means a dial is under way: there is no open connection yet.
        let cached = slot.try_lock().ok()?;
        cached
            .as_ref()
            .filter(|c| c.close_reason().is_none())
            .cloned()
    }

    /// Closes and forgets the connection to `addr`, e.g. after a protocol
    /// error that leaves it unusable. The next [`connect`](Self::connect) dials anew.
    pub async fn disconnect(&self, addr: SocketAddr) {
        let slot = lock(&self.inner.connections).remove(&addr);
        if let Some(slot) = slot
            && let Some(connection) = slot.lock().await.take()
        {
            connection.close(0u32.into(), b"disconnected");
        }
    }

    /// Closes every cached connection (e.g. at shutdown).
    pub async fn close_all(&self) {
        let slots: Vec<Slot> = lock(&self.inner.connections)
            .drain()
            .map(|(_, slot)| slot)
            .collect();
        for slot in slots {
            if let Some(connection) = slot.lock().await.take() {
                connection.close(0u32.into(), b"shutting down");
            }
        }
    }

    /// The client endpoint for `addr`'s family, binding it on first use.
    fn endpoint_for(&self, addr: SocketAddr) -> Result<quinn::Endpoint, TransportError> {
        let mutex = match addr {
            SocketAddr::V4(_) => &self.inner.v4,
            SocketAddr::V6(_) => &self.inner.v6,
        };
        let mut endpoint = lock(mutex);
        if let Some(endpoint) = endpoint.as_ref() {
            return Ok(endpoint.clone());
        }
        let bound = match self.inner.local_ip {
            Some(ip) if ip.is_ipv4() == addr.is_ipv4() => {
                super::client_endpoint_from(SocketAddr::new(ip, 0), addr)?
            }
            _ => client_endpoint(addr)?,
        };
        *endpoint = Some(bound.clone());
        Ok(bound)
    }
}
