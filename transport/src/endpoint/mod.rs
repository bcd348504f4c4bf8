//! QUIC endpoints: binding servers, client endpoints and dialing peers.

mod connector;

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

pub use connector::{Connector, DEFAULT_CONNECT_TIMEOUT};

/// Errors binding endpoints and establishing connections. Every variant names
/// the address concerned.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// Another socket already holds the UDP port.
    #[error(
        "address {addr} is already in use; pick another port or stop the process using it \
         (e.g. another Sluice node started with the same configuration)"
    )]
    AddrInUse {
        /// Address that could not be bound.
        addr: SocketAddr,
    },
    /// Binding a server endpoint failed for another reason.
    #[error(
        "could not listen on {addr}: {source}; check that the IP belongs to this host \
         and that the port is allowed"
    )]
    Bind {
        /// Address that could not be bound.
        addr: SocketAddr,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Binding the local socket for outgoing connections failed.
    #[error(
        "could not open a local UDP socket on {local} to reach {target}: {source}; \
         check that this host has a network interface of that address family"
    )]
    ClientBind {
        /// Local (unspecified) address that could not be bound.
        local: SocketAddr,
        /// The peer we were trying to reach.
        target: SocketAddr,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// quinn refused to start the connection attempt.
    #[error("could not start connecting to {addr}: {source}; check the address")]
    Connect {
        /// Peer address.
        addr: SocketAddr,
        /// What quinn reported.
        #[source]
        source: quinn::ConnectError,
    },
    /// The handshake did not finish in time.
    #[error(
        "connecting to {addr} timed out after {timeout:?}; check that a Sluice node is \
         listening there and that UDP traffic to it is not blocked"
    )]
    ConnectTimeout {
        /// Peer address.
        addr: SocketAddr,
        /// The timeout that expired.
        timeout: Duration,
    },
    /// The TLS handshake failed: certificates did not verify or one was missing.
    #[error(
        "TLS handshake with {addr} failed: {source}; both sides must use certificates issued \
         by the same cluster CA, and servers that require client certificates must be given one"
    )]
    Tls {
        /// Peer address.
        addr: SocketAddr,
        /// What quinn reported.
        #[source]
        source: quinn::ConnectionError,
    },
    /// The connection failed for a non-TLS reason.
    #[error(
        "connection to {addr} failed: {source}; check that a Sluice node is listening there \
         and retry"
    )]
    Connection {
        /// Peer address.
        addr: SocketAddr,
        /// What quinn reported.
        #[source]
        source: quinn::ConnectionError,
    },
}

/// Binds a server endpoint on `addr`. Port 0 picks a free port; read it back
/// with [`quinn::Endpoint::local_addr`].
pub fn bind_server(
    addr: SocketAddr,
    config: quinn::ServerConfig,
) -> Result<quinn::Endpoint, TransportError> {
    bind_server_with(addr, config, quinn::EndpointConfig::default())
}

/// Binds a node's listener: [`bind_server`] with a stateless-reset key
/// derived from the node's private key, so that it is the same in every run
/// of the node.
///
/// When a node restarts, its peers and clients still hold connections to
/// its previous run. The first packet one of them sends on such a
/// connection reaches the new run, which does not know the connection and
/// answers with a stateless reset (RFC 9000, 10.3); the sender believes the
/// reset only if it carries the token the previous run issued, which it does
/// only if both runs derive it from the same key. So the connection fails
/// at once and the next request dials anew, instead of every request timing
/// out until the connection's idle timeout ends it (quinn's default key is
/// random per process). The connection ids a run hands out must also be
/// recognisable by the next run, which otherwise drops a packet naming one
/// as junk before it gets to the reset: so the key of quinn's connection-id
/// check is derived the same way.
pub fn bind_node_server(
    addr: SocketAddr,
    config: quinn::ServerConfig,
    identity: &crate::tls::CertKeyPair,
) -> Result<quinn::Endpoint, TransportError> {
    let reset_key = ring::hmac::Key::new(
        ring::hmac::HMAC_SHA256,
        &derived_secret(identity, b"stateless reset key"),
    );
    let mut endpoint_config = quinn::EndpointConfig::new(std::sync::Arc::new(reset_key));
    let cid_secret = derived_secret(identity, b"connection id key");
    let cid_key = u64::from_le_bytes(cid_secret[..8].try_into().unwrap_or_default());
    endpoint_config.cid_generator(move || {
        Box::new(quinn_proto::HashedConnectionIdGenerator::from_key(cid_key))
    });
    bind_server_with(addr, config, endpoint_config)
}

/// A secret for `purpose` derived from a node's private key: a hash of the
/// key under a label of its own, so it reveals nothing of the private key,
/// is the same in every run of the node, and serves that purpose only.
fn derived_secret(identity: &crate::tls::CertKeyPair, purpose: &[u8]) -> [u8; 32] {
    let mut context = ring::digest::Context::new(&ring::digest::SHA256);
    context.update(b"sluice node endpoint v1\0");
    context.update(purpose);
    context.update(b"\0");
    context.update(identity.key_pem.as_bytes());
    let mut secret = [0; 32];
    secret.copy_from_slice(context.finish().as_ref());
    secret
}

fn bind_server_with(
    addr: SocketAddr,
    config: quinn::ServerConfig,
    endpoint_config: quinn::EndpointConfig,
) -> Result<quinn::Endpoint, TransportError> {
    bind_endpoint(addr, Some(config), endpoint_config).map_err(|source| {
        if source.kind() == std::io::ErrorKind::AddrInUse {
            TransportError::AddrInUse { addr }
        } else {
            TransportError::Bind { addr, source }
        }
    })
}

/// Kernel buffer asked for on each endpoint's UDP socket, both directions.
/// The Linux default (208 KiB) overflows when a node answers a fetch in
/// bursts: every datagram dropped there is a loss to QUIC, which retransmits
/// and shrinks its congestion window. Linux caps the request at
/// `net.core.rmem_max` / `wmem_max`; raise those for the full effect.
pub const SOCKET_BUFFER_BYTES: usize = 4 * 1024 * 1024;

/// Binds a UDP socket on `addr` with [`SOCKET_BUFFER_BYTES`] of kernel
/// buffer (as much of it as the system allows).
fn bind_udp(addr: SocketAddr) -> std::io::Result<std::net::UdpSocket> {
    let socket = std::net::UdpSocket::bind(addr)?;
    let state = quinn::udp::UdpSocketState::new((&socket).into())?;
    for (direction, result) in [
        (
            "receive",
            state.set_recv_buffer_size((&socket).into(), SOCKET_BUFFER_BYTES),
        ),
        (
            "send",
            state.set_send_buffer_size((&socket).into(), SOCKET_BUFFER_BYTES),
        ),
    ] {
        if let Err(error) = result {
            // Not fatal: the endpoint works with the default, only slower.
            tracing::warn!(%addr, direction, %error, "could not enlarge the UDP socket buffer");
        }
    }
    tracing::debug!(
        %addr,
        receive = state.recv_buffer_size((&socket).into()).ok(),
        send = state.send_buffer_size((&socket).into()).ok(),
        "UDP socket buffers"
    );
    Ok(socket)
}

/// A QUIC endpoint on a socket from [`bind_udp`]; a server if `server` is
/// given. Must run inside tokio.
fn bind_endpoint(
    addr: SocketAddr,
    server: Option<quinn::ServerConfig>,
    endpoint_config: quinn::EndpointConfig,
) -> std::io::Result<quinn::Endpoint> {
    let runtime = quinn::default_runtime().ok_or_else(|| {
        std::io::Error::other("no tokio runtime is running; create QUIC endpoints inside one")
    })?;
    quinn::Endpoint::new(endpoint_config, server, bind_udp(addr)?, runtime)
}

/// Binds a client-only endpoint able to reach `target`: on the unspecified
/// address of the same family, with an ephemeral port.
pub fn client_endpoint(target: SocketAddr) -> Result<quinn::Endpoint, TransportError> {
    let local = match target {
        SocketAddr::V4(_) => SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)),
        SocketAddr::V6(_) => SocketAddr::from((Ipv6Addr::UNSPECIFIED, 0)),
    };
    client_endpoint_from(local, target)
}

/// Binds a client-only endpoint on `local` (port 0: ephemeral) to reach `target`.
pub fn client_endpoint_from(
    local: SocketAddr,
    target: SocketAddr,
) -> Result<quinn::Endpoint, TransportError> {
    bind_endpoint(local, None, quinn::EndpointConfig::default()).map_err(|source| {
        TransportError::ClientBind {
            local,
            target,
            source,
        }
    })
}

/// Dials `addr` from `endpoint` with the server name [`crate::NODE_SERVER_NAME`],
/// giving up after `timeout`.
pub async fn connect(
    endpoint: &quinn::Endpoint,
    config: quinn::ClientConfig,
    addr: SocketAddr,
    timeout: Duration,
) -> Result<quinn::Connection, TransportError> {
    let connecting = endpoint
        .connect_with(config, addr, crate::NODE_SERVER_NAME)
        .map_err(|source| TransportError::Connect { addr, source })?;
    match tokio::time::timeout(timeout, connecting).await {
        Ok(Ok(connection)) => Ok(connection),
        Ok(Err(source)) if is_tls_failure(&source) => Err(TransportError::Tls { addr, source }),
        Ok(Err(source)) => Err(TransportError::Connection { addr, source }),
        Err(_) => Err(TransportError::ConnectTimeout { addr, timeout }),
    }
}

/// The identity the peer's certificate names, once the handshake verified
/// it: `None` when the peer presented no certificate (only possible on a
/// listener built with [`ClientAuth::Optional`](crate::ClientAuth::Optional)).
pub fn peer_identity(
    connection: &quinn::Connection,
) -> Option<Result<crate::tls::PeerIdentity, crate::tls::IdentityError>> {
    let any = connection.peer_identity()?;
    let chain = any
        .downcast::<Vec<rustls::pki_types::CertificateDer<'static>>>()
        .ok()?;
    let leaf = chain.first()?;
    Some(crate::tls::PeerIdentity::from_cert_der(leaf))
}

/// Whether a connection error is a TLS alert (QUIC error codes 0x100-0x1ff
/// carry TLS alerts), i.e. a certificate problem rather than a network one.
pub fn is_tls_failure(error: &quinn::ConnectionError) -> bool {
    let code = match error {
        quinn::ConnectionError::TransportError(e) => e.code,
        quinn::ConnectionError::ConnectionClosed(close) => close.error_code,
        _ => return false,
    };
    (0x100..0x200).contains(&u64::from(code))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_sockets_get_the_larger_buffer_the_system_allows() {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
        let socket = bind_udp(addr).unwrap();
        let state = quinn::udp::UdpSocketState::new((&socket).into()).unwrap();
        let granted = state.recv_buffer_size((&socket).into()).unwrap();
        // Linux grants up to net.core.rmem_max (and reports twice what it
        // keeps for data); other systems are only required to grow it.
        let cap = std::fs::read_to_string("/proc/sys/net/core/rmem_max")
            .ok()
            .and_then(|text| text.trim().parse::<usize>().ok());
        let expected = cap.map_or(256 * 1024, |cap| cap.min(SOCKET_BUFFER_BYTES));
        assert!(
            granted >= expected,
            "receive buffer {granted} bytes, expected at least {expected}"
        );
    }
}
