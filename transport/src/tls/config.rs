//! quinn server and client configurations built from cluster TLS material.
//!
//! Both sides pin TLS 1.3 (QUIC requires it), trust only the cluster CA and use
//! the ring crypto provider explicitly, so nothing depends on a process-wide
//! default provider having been installed.

use std::sync::Arc;
use std::time::Duration;

use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use quinn::{IdleTimeout, TransportConfig, VarInt};
use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;

use super::{CertKeyPair, TlsError, pem};
pub use crate::timeouts::{
    IDLE_TIMEOUT, KEEP_ALIVE_INTERVAL, PEER_IDLE_TIMEOUT, PEER_KEEP_ALIVE_INTERVAL,
};

/// ALPN protocol id spoken by every Sluice endpoint; bumping it makes
/// incompatible peers fail the handshake instead of misparsing frames.
pub const ALPN: &[u8] = b"sluice/1";

/// Per-stream receive window (see `sluice_proto::limits`, where every bound
/// of a node's network surface is named).
pub const STREAM_RECEIVE_WINDOW: u32 = sluice_proto::limits::STREAM_RECEIVE_WINDOW_BYTES;
/// Per-connection receive window, shared by all streams of the connection.
pub const CONNECTION_RECEIVE_WINDOW: u32 = sluice_proto::limits::CONNECTION_RECEIVE_WINDOW_BYTES;
/// Per-connection send buffer limit.
pub const SEND_WINDOW: u64 = 32 * 1024 * 1024;
/// How many bidirectional streams a peer may have open at once; each request
/// uses its own stream, so this bounds in-flight requests per connection.
pub const MAX_CONCURRENT_BIDI_STREAMS: u32 = sluice_proto::limits::STREAMS_PER_CONNECTION_MAX;

/// Whether a server asks connecting peers for a certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ClientAuth {
    /// Certificates are verified against the cluster CA when presented, but
    /// peers without one are admitted (as the anonymous principal, which
    /// holds only what ACLs grant it). An explicit opt-out.
    Optional,
    /// Peers must present a certificate issued by the cluster CA (mutual
    /// TLS). The default: every request is then made by a known identity.
    ///
    /// In TLS 1.3 the client finishes its side of the handshake before the
    /// server has judged its certificate, so a rejected client may see
    /// `connect` succeed and the connection close with a TLS alert right
    /// after; [`crate::endpoint::is_tls_failure`] recognises that close reason.
    #[default]
    Required,
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Transport parameters of a client's connections (the client library, the
/// CLI): keep-alives every [`KEEP_ALIVE_INTERVAL`] and [`IDLE_TIMEOUT`], so a
/// request in flight to a killed node fails over within a second.
pub fn transport_config() -> Arc<TransportConfig> {
    with_liveness(Some(KEEP_ALIVE_INTERVAL), IDLE_TIMEOUT)
}

/// Transport parameters of a node's listener. It sends no keep-alives of its
/// own (each client keeps its connection alive and notices a dead node by
/// itself) and advertises [`PEER_IDLE_TIMEOUT`], so that a client's shorter
/// idle timeout is the one that counts for it.
pub fn server_transport_config() -> Arc<TransportConfig> {
    with_liveness(None, PEER_IDLE_TIMEOUT)
}

/// Transport parameters of a node's connections to other nodes: see
/// [`PEER_KEEP_ALIVE_INTERVAL`] for why they are quieter than a client's.
pub fn peer_transport_config() -> Arc<TransportConfig> {
    with_liveness(Some(PEER_KEEP_ALIVE_INTERVAL), PEER_IDLE_TIMEOUT)
}

fn with_liveness(keep_alive: Option<Duration>, idle_timeout: Duration) -> Arc<TransportConfig> {
    let mut transport = TransportConfig::default();
    transport
        .keep_alive_interval(keep_alive)
        .max_idle_timeout(Some(IdleTimeout::from(VarInt::from_u32(
            u32::try_from(idle_timeout.as_millis()).unwrap_or(u32::MAX),
        ))))
        .stream_receive_window(VarInt::from_u32(STREAM_RECEIVE_WINDOW))
        .receive_window(VarInt::from_u32(CONNECTION_RECEIVE_WINDOW))
        .send_window(SEND_WINDOW)
        .max_concurrent_bidi_streams(VarInt::from_u32(MAX_CONCURRENT_BIDI_STREAMS))
        // Sluice uses bidirectional streams only: a peer may open none of
        // the other kind (each would be state the node keeps for nothing).
        .max_concurrent_uni_streams(VarInt::from_u32(0));
    Arc::new(transport)
}

/// Server configuration presenting `identity` and checking client
/// certificates against the CA in `ca_pem` according to `client_auth`.
pub fn server_config(
    identity: &CertKeyPair,
    ca_pem: &str,
    client_auth: ClientAuth,
) -> Result<quinn::ServerConfig, TlsError> {
    let provider = provider();
    let roots = Arc::new(pem::cluster_roots(ca_pem)?);
    let mut verifier = WebPkiClientVerifier::builder_with_provider(roots, provider.clone());
    if client_auth == ClientAuth::Optional {
        verifier = verifier.allow_unauthenticated();
    }
    let verifier = verifier
        .build()
        .map_err(|source| TlsError::ClientVerifier { source })?;
    let chain = pem::certs(&identity.cert_pem, "server certificate")?;
    let key = pem::private_key(&identity.key_pem, "server private key")?;
    let mut tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|source| TlsError::Rustls {
            what: "TLS 1.3 protocol selection",
            source,
        })?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(|source| TlsError::Rustls {
            what: "server certificate and key",
            source,
        })?;
    tls.alpn_protocols = vec![ALPN.to_vec()];
    let crypto =
        QuicServerConfig::try_from(tls).map_err(|source| TlsError::QuicCrypto { source })?;
    let mut config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    config.transport_config(server_transport_config());
    Ok(config)
}

/// Why `identity`'s certificate fails by this process's clock now, if it
/// does, checked as peers check it. A node whose clock lies outside its
/// certificate's validity fails every handshake, since it cannot check its
/// peers' certificates either, until the clock is right; the node says so
/// at start instead of leaving only handshake errors in its log.
pub fn clock_outside_validity(identity: &CertKeyPair, ca_pem: &str) -> Option<String> {
    outside_validity_at(identity, ca_pem, rustls::pki_types::UnixTime::now())
}

fn outside_validity_at(
    identity: &CertKeyPair,
    ca_pem: &str,
    now: rustls::pki_types::UnixTime,
) -> Option<String> {
    use rustls::CertificateError as E;
    let roots = Arc::new(pem::cluster_roots(ca_pem).ok()?);
    let verifier = WebPkiClientVerifier::builder_with_provider(roots, provider())
        .build()
        .ok()?;
    let chain = pem::certs(&identity.cert_pem, "certificate").ok()?;
    let (leaf, rest) = chain.split_first()?;
    let date = |t: rustls::pki_types::UnixTime| {
        let at = std::time::UNIX_EPOCH + Duration::from_secs(t.as_secs());
        humantime::format_rfc3339_seconds(at).to_string()
    };
    let clock = date(now);
    let bound = match verifier.verify_client_cert(leaf, rest, now) {
        Err(rustls::Error::InvalidCertificate(e)) => match e {
            E::NotValidYetContext { not_before, .. } => {
                format!(
                    "before its certificate is valid (from {})",
                    date(not_before)
                )
            }
            E::ExpiredContext { not_after, .. } => {
                format!("after its certificate expired (at {})", date(not_after))
            }
            E::NotValidYet => "before its certificate is valid".to_string(),
            E::Expired => "after its certificate expired".to_string(),
            _ => return None,
        },
        _ => return None,
    };
    Some(format!(
        "this node's clock reads {clock}, {bound}: every TLS handshake with its peers and \
         clients fails until the clock is right; set it right (NTP), or reissue the \
         certificate if it really expired"
    ))
}

/// Client configuration trusting only the CA in `ca_pem`, presenting
/// `identity` to servers that ask for a certificate.
pub fn client_config(
    ca_pem: &str,
    identity: Option<&CertKeyPair>,
) -> Result<quinn::ClientConfig, TlsError> {
    client_config_with(ca_pem, identity, transport_config())
}

/// Configuration of a node's connections to other nodes: like
/// [`client_config`] with the node's identity, and the quieter
/// [`peer_transport_config`].
pub fn peer_client_config(
    ca_pem: &str,
    identity: &CertKeyPair,
) -> Result<quinn::ClientConfig, TlsError> {
    client_config_with(ca_pem, Some(identity), peer_transport_config())
}

fn client_config_with(
    ca_pem: &str,
    identity: Option<&CertKeyPair>,
    transport: Arc<TransportConfig>,
) -> Result<quinn::ClientConfig, TlsError> {
    let roots = pem::cluster_roots(ca_pem)?;
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|source| TlsError::Rustls {
            what: "TLS 1.3 protocol selection",
            source,
        })?
        .with_root_certificates(roots);
    let mut tls = match identity {
        Some(identity) => {
            let chain = pem::certs(&identity.cert_pem, "client certificate")?;
            let key = pem::private_key(&identity.key_pem, "client private key")?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|source| TlsError::Rustls {
                    what: "client certificate and key",
                    source,
                })?
        }
        None => builder.with_no_client_auth(),
    };
    tls.alpn_protocols = vec![ALPN.to_vec()];
    let crypto =
        QuicClientConfig::try_from(tls).map_err(|source| TlsError::QuicCrypto { source })?;
    let mut config = quinn::ClientConfig::new(Arc::new(crypto));
    config.transport_config(transport);
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::ClusterCa;
    use rustls::pki_types::UnixTime;

    #[test]
    fn a_clock_outside_the_certificates_validity_is_named_with_both_dates() {
        let ca = ClusterCa::generate("c1").unwrap();
        let node = ca.issue_node(2, &[], &[]).unwrap();
        let now = UnixTime::now();
        assert_eq!(outside_validity_at(&node, ca.cert_pem(), now), None);
        let years = |n: u64| Duration::from_secs(n * 366 * 86_400);
        let early = UnixTime::since_unix_epoch(Duration::from_secs(now.as_secs()) - years(3));
        let why = outside_validity_at(&node, ca.cert_pem(), early).unwrap();
        assert!(
            why.contains("before its certificate is valid (from "),
            "{why}"
        );
        assert!(why.contains("set it right"), "{why}");
        let late = UnixTime::since_unix_epoch(Duration::from_secs(now.as_secs()) + years(40));
        let why = outside_validity_at(&node, ca.cert_pem(), late).unwrap();
        assert!(why.contains("after its certificate expired (at "), "{why}");
    }
}
