//! TLS material for Sluice: the per-cluster CA, issued certificates, and the
//! quinn configurations that use them. TLS is never optional.

mod ca;
mod config;
mod der;
mod error;
mod files;
mod identity;
mod pem;

pub use ca::{CA_CERT_FILE, CA_KEY_FILE, CertKeyPair, ClusterCa, NODE_SERVER_NAME};
pub use config::{
    ALPN, CONNECTION_RECEIVE_WINDOW, ClientAuth, IDLE_TIMEOUT, KEEP_ALIVE_INTERVAL,
    MAX_CONCURRENT_BIDI_STREAMS, PEER_IDLE_TIMEOUT, PEER_KEEP_ALIVE_INTERVAL, SEND_WINDOW,
    STREAM_RECEIVE_WINDOW, client_config, clock_outside_validity, peer_client_config,
    peer_transport_config, server_config, server_transport_config, transport_config,
};
pub use error::TlsError;
pub use identity::{IdentityError, PRINCIPAL_NAME_BYTES_MAX, PeerIdentity, check_principal_name};
