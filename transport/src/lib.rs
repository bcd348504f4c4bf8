//! Sluice's QUIC transport.
//!
//! Every Sluice connection is QUIC with TLS 1.3 and a per-cluster CA. This
//! crate owns that plumbing and nothing else: [`tls`] creates and loads the
//! certificates and builds quinn configurations, [`endpoint`] binds listeners
//! and dials (and caches) connections, [`frame`] moves length-prefixed
//! byte frames over streams, and [`exchange`](fn@exchange) sends one request and reads its
//! answer, the one request/response exchange that clients and nodes share.
//! Frames are opaque here; the codec in `sluice-proto` gives them meaning.

pub mod endpoint;
pub mod exchange;
pub mod frame;
pub mod timeouts;
pub mod tls;

pub use endpoint::{
    Connector, TransportError, bind_node_server, bind_server, client_endpoint, peer_identity,
};
pub use exchange::{ExchangeError, exchange};
pub use frame::{
    FrameError, read_end_if_arrived, read_frame, read_frame_body, read_frame_len, write_frame,
    write_frame_owned, write_frame_parts,
};
/// The connection type `Connector::connect` returns, for callers without their own quinn dependency.
pub use quinn::Connection;
pub use tls::{
    ALPN, CA_CERT_FILE, CA_KEY_FILE, CertKeyPair, ClientAuth, ClusterCa, IdentityError,
    NODE_SERVER_NAME, PeerIdentity, TlsError, check_principal_name, client_config,
    peer_client_config, server_config,
};
