//! What can go wrong talking to a Sluice cluster.
//!
//! Every variant names what it concerns (endpoint, profile, topic, file) and
//! its message ends with what the user can do, so the CLI can print it as is.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use sluice_proto::{NodeId, WireError};
use sluice_transport::{TlsError, TransportError};

/// Errors of [`crate::Client`], [`crate::Producer`] and [`crate::config`].
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Nothing answered at the endpoint (timeout or refused connection).
    #[error(
        "no Sluice node answers at {endpoint}{}: start a cluster with `sluice cluster start --local`",
        profile_note(profile)
    )]
    NoNode {
        endpoint: String,
        profile: Option<String>,
        #[source]
        source: Box<TransportError>,
    },

    /// The TLS handshake failed: the node's certificate was not issued by our CA,
    /// it requires a client certificate we did not present, or a clock (the
    /// node's or ours) lies outside a certificate's validity.
    #[error(
        "TLS handshake with the node at {endpoint} failed: the CA certificate {ca} does not match \
         the cluster's, the node requires a client certificate, or a clock (the node's or this \
         machine's) lies outside a certificate's validity; use the profile written by \
         `sluice cluster start` for this cluster, and check the clocks"
    )]
    TlsMismatch {
        endpoint: String,
        /// Where the CA came from (a file path or "the given CA certificate").
        ca: String,
        #[source]
        source: Box<TransportError>,
    },

    /// Any other failure to set up a connection (socket, address family...).
    #[error("could not connect to {endpoint}")]
    Transport {
        endpoint: String,
        #[source]
        source: Box<TransportError>,
    },

    /// The CA or client certificate could not be turned into a TLS configuration.
    #[error("the TLS material for {endpoint} is unusable")]
    Tls {
        endpoint: String,
        #[source]
        source: Box<TlsError>,
    },

    /// `host:port` did not resolve.
    #[error(
        "cannot resolve endpoint {endpoint:?}: {reason}; pass it as HOST:PORT, e.g. 127.0.0.1:9003"
    )]
    Resolve { endpoint: String, reason: String },

    /// The connection broke while a request was in flight.
    #[error(
        "the connection to {endpoint} broke during {what}: {reason}; retry when the node is back"
    )]
    ConnectionLost {
        endpoint: String,
        what: &'static str,
        reason: String,
    },

    /// No answer within the request deadline.
    #[error(
        "{what} sent to {endpoint} got no answer within {after:?}; the node may be overloaded or down"
    )]
    Timeout {
        endpoint: String,
        what: &'static str,
        after: Duration,
    },

    /// A request to a partition's leader went unanswered while the
    /// partition's other replicas already follow a new leader: the old one is
    /// dead or cut off, so waiting out the connection timeout is pointless.
    #[error(
        "{what} sent to {endpoint} got no answer while the partition {topic}/{partition} elected node \
         {leader} as its leader; resend it there"
    )]
    LeaderMoved {
        endpoint: String,
        what: &'static str,
        topic: String,
        partition: u32,
        leader: NodeId,
    },

    /// The node speaks another protocol version.
    #[error(
        "the node at {endpoint} speaks protocol version {server} but this client speaks version {client}; \
         use a `sluice` binary of the same release as the cluster"
    )]
    ProtocolVersion {
        endpoint: String,
        client: u16,
        server: u16,
    },

    /// The node answered something this client cannot make sense of.
    #[error("the node at {endpoint} broke the protocol during {what}: {reason}")]
    Protocol {
        endpoint: String,
        what: &'static str,
        reason: String,
    },

    /// The node refused the request; the message says why.
    #[error(transparent)]
    Server(WireError),

    /// No profile is configured at all.
    #[error(
        "no connection profile found in {}: start a local cluster with `sluice cluster start --local` or pass --endpoint",
        config_path(home)
    )]
    NoProfile { home: PathBuf },

    /// `--endpoint` was given, but there is no profile to take the CA from.
    #[error(
        "--endpoint {endpoint} needs the cluster's CA certificate, which comes from a connection profile, \
         and {} has none: give it with --ca-cert FILE (and --client-cert/--client-key for a client \
         certificate), start a local cluster with `sluice cluster start --local`, or add a profile",
        config_path(home)
    )]
    NoProfileForEndpoint { home: PathBuf, endpoint: String },

    /// The named profile does not exist.
    #[error(
        "connection profile {name:?} does not exist in {} (profiles: {}); pick one of them with --profile",
        config_path(home),
        if available.is_empty() { "none".to_string() } else { available.join(", ") }
    )]
    UnknownProfile {
        name: String,
        home: PathBuf,
        available: Vec<String>,
    },

    /// The configuration file or a file it names could not be read, parsed or written.
    #[error("{what} {}: {reason}", path.display())]
    File {
        what: &'static str,
        path: PathBuf,
        reason: String,
    },

    /// A SmartModule run in this process failed to load or to transform.
    #[error("{reason}")]
    SmartModule { reason: String },

    /// A setting is invalid (producer config, profile...).
    #[error("invalid {what}: {reason}")]
    InvalidConfig { what: &'static str, reason: String },

    /// A record is over the protocol's size limit; it was not sent.
    #[error(
        "exceeded maximum request size: record of {size_bytes} bytes for topic {topic:?} exceeds the limit of {max_bytes} bytes; split or shrink it, or raise the producer's max_request_size_bytes (`produce --max-request-size`; the cluster takes records up to {} bytes)",
        sluice_proto::limits::RECORD_SIZE_BYTES_MAX
    )]
    RecordTooLarge {
        topic: String,
        size_bytes: usize,
        max_bytes: usize,
    },

    /// A record's headers break a bound (see `sluice_proto::headers`).
    #[error(
        "record for topic {topic:?} has headers the cluster would refuse: {reason}; use 1 to {} bytes per header name and at most {} headers per record",
        sluice_proto::limits::RECORD_HEADER_KEY_BYTES_MAX,
        sluice_proto::limits::RECORD_HEADERS_MAX
    )]
    InvalidHeaders {
        topic: String,
        reason: sluice_proto::headers::HeaderError,
    },

    /// A batch waited in the producer for its whole delivery timeout without
    /// being sent: its partition's earlier batches were still being retried
    /// (`behind`: why their last attempt failed), or the partition was paused
    /// after a failure.
    #[error("waited {waited:?} to be sent{}", behind.as_ref().map(|b| format!(" behind earlier batches still being retried (last failure: {b})")).unwrap_or_default())]
    NotSent {
        waited: Duration,
        behind: Option<String>,
    },

    /// A batch could not be delivered before the producer's deadline. Its
    /// records may still be stored: an attempt may have reached the leader
    /// and lost only its answer (resent by an idempotent producer, they are
    /// never stored twice).
    #[error("records for {topic}/{partition} were not acknowledged after {attempts} attempt(s)")]
    Delivery {
        topic: String,
        partition: u32,
        attempts: u32,
        /// The last failure; shared by every record of the batch.
        #[source]
        source: Arc<ClientError>,
    },

    /// The producer's background task is gone (the producer was dropped or the runtime is shutting down).
    #[error("the producer for topic {topic:?} is closed; create a new one")]
    ProducerClosed { topic: String },
}

fn profile_note(profile: &Option<String>) -> String {
    profile
        .as_ref()
        .map(|p| format!(" (profile {p:?})"))
        .unwrap_or_default()
}

fn config_path(home: &std::path::Path) -> String {
    home.join(crate::config::CONFIG_FILE).display().to_string()
}

impl ClientError {
    /// Whether retrying the same request (possibly after reconnecting or
    /// redirecting) may succeed.
    pub fn is_retriable(&self) -> bool {
        match self {
            ClientError::Server(e) => e.is_retriable(),
            ClientError::NoNode { .. }
            | ClientError::ConnectionLost { .. }
            | ClientError::LeaderMoved { .. }
            | ClientError::Timeout { .. } => true,
            ClientError::Delivery { source, .. } => source.is_retriable(),
            _ => false,
        }
    }

    /// The error the node reported, if this is one.
    pub fn wire_error(&self) -> Option<&WireError> {
        match self {
            ClientError::Server(e) => Some(e),
            ClientError::Delivery { source, .. } => source.wire_error(),
            _ => None,
        }
    }
}

/// Result with [`ClientError`].
pub type Result<T, E = ClientError> = std::result::Result<T, E>;
