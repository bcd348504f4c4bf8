//! [`Client`]: one handle on a cluster, shared by admin calls, producers and
//! consumers.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use sluice_proto::codec::{self, CodecError};
use sluice_proto::{
    Compression, FetchRequest, NodeId, ProduceRequest, ProduceResponse, ProducerSeq, ReadFrom,
    Record, Request, Response, WireError,
};
use sluice_transport::{CertKeyPair, Connector, TransportError};

use crate::config::{ClientConfig, ExportedProfile, Profile};
use crate::error::{ClientError, Result};
use crate::fetch::FetchStream;
use crate::producer::{Producer, ProducerConfig};
use crate::timeouts::{
    ADMIN_RETRY_BUDGET, Backoff, REQUEST_TIMEOUT, RETRY_BACKOFF_FIRST, RETRY_BACKOFF_MAX,
};

mod admin;
mod connectors;
mod leader_watch;
mod nodes;
mod offsets;
mod partitions;
mod produce_at;
mod topics;

/// Redirects followed for one request (`NotLeader` naming another node).
const REDIRECTS_MAX: usize = 3;

/// A connection to a Sluice cluster. Cheap to clone; clones share the
/// connection.
///
/// Requests go to the endpoint the client was created with, except produce and
/// fetch, which follow `NotLeader` redirects to the partition's leader and
/// remember it.
#[derive(Clone, Debug)]
pub struct Client {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// The endpoint as the user wrote it, for messages.
    endpoint: String,
    /// Nodes this client knows, the one it talks to first at the front: the
    /// endpoint(s) it was given, then every node a cluster status named.
    nodes: Mutex<Vec<SocketAddr>>,
    profile: Option<String>,
    /// Where the CA came from, for TLS error messages.
    ca_source: String,
    connector: Connector,
    request_timeout: Duration,
    /// Last known leader address of (topic, partition), learnt from redirects.
    leaders: Mutex<HashMap<(String, u32), SocketAddr>>,
    /// Nodes that just failed to answer, and until when to try others first:
    /// a redirect to a dead leader (nodes name it until an election ends) or a
    /// dead first endpoint would otherwise cost a connect timeout every time.
    unreachable: Mutex<HashMap<SocketAddr, tokio::time::Instant>>,
}

/// Options of [`Client::connect_with`].
#[derive(Clone, Debug)]
pub struct ConnectOptions {
    /// Name of the profile used, quoted in error messages.
    pub profile: Option<String>,
    /// Where the CA came from (e.g. its file), quoted in TLS error messages.
    pub ca_source: String,
    /// Deadline of one request.
    pub request_timeout: Duration,
    /// Deadline of one QUIC handshake.
    pub connect_timeout: Duration,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        Self {
            profile: None,
            ca_source: "given".into(),
            request_timeout: REQUEST_TIMEOUT,
            connect_timeout: sluice_transport::endpoint::DEFAULT_CONNECT_TIMEOUT,
        }
    }
}

impl Client {
    /// Connects to the node at `endpoint` (`host:port`), trusting the cluster
    /// CA in `ca_pem` and presenting `identity` when the node asks for a
    /// client certificate. Fails if no node answers.
    pub async fn connect(
        endpoint: &str,
        ca_pem: &str,
        identity: Option<CertKeyPair>,
    ) -> Result<Client> {
        Self::connect_with(endpoint, ca_pem, identity, ConnectOptions::default()).await
    }

    /// [`Client::connect`] with explicit options.
    pub async fn connect_with(
        endpoint: &str,
        ca_pem: &str,
        identity: Option<CertKeyPair>,
        options: ConnectOptions,
    ) -> Result<Client> {
        let mut nodes = Vec::new();
        for one in endpoint.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            nodes.push(resolve(one).await?);
        }
        if nodes.is_empty() {
            return Err(ClientError::Resolve {
                endpoint: endpoint.to_string(),
                reason: "no address given".into(),
            });
        }
        let tls = sluice_transport::client_config(ca_pem, identity.as_ref()).map_err(|source| {
            ClientError::Tls {
                endpoint: endpoint.to_string(),
                source: Box::new(source),
            }
        })?;
        let client = Client {
            inner: Arc::new(Inner {
                endpoint: endpoint.to_string(),
                nodes: Mutex::new(nodes),
                profile: options.profile,
                ca_source: options.ca_source,
                connector: Connector::with_timeout(tls, options.connect_timeout),
                request_timeout: options.request_timeout,
                leaders: Mutex::new(HashMap::new()),
                unreachable: Mutex::new(HashMap::new()),
            }),
        };
        // Dial now, so a wrong endpoint or CA is reported before any work
        // starts; with several endpoints, the first that answers leads.
        let first = client.dial_first(client.known_nodes()).await?;
        client.promote(first);
        Ok(client)
    }

    /// Connects with a profile of `home/config.toml`: `profile`, else the
    /// current one. `endpoint_override` replaces the profile's endpoint (the
    /// profile still provides the CA).
    pub async fn from_profile(
        home: &Path,
        profile: Option<&str>,
        endpoint_override: Option<&str>,
    ) -> Result<Client> {
        let config = ClientConfig::load(home)?;
        let (name, profile) = match config.profile(profile) {
            Some(found) => found,
            None => {
                return Err(match (profile, endpoint_override) {
                    (Some(name), _) => ClientError::UnknownProfile {
                        name: name.to_string(),
                        home: home.to_path_buf(),
                        available: config.profiles.keys().cloned().collect(),
                    },
                    (None, Some(endpoint)) if config.profiles.is_empty() => {
                        ClientError::NoProfileForEndpoint {
                            home: home.to_path_buf(),
                            endpoint: endpoint.to_string(),
                        }
                    }
                    (None, _) if config.profiles.is_empty() => ClientError::NoProfile {
                        home: home.to_path_buf(),
                    },
                    (None, _) => ClientError::InvalidConfig {
                        what: "connection profile",
                        reason: format!(
                            "{} has several profiles ({}) and no current_profile; pick one with --profile",
                            ClientConfig::path(home).display(),
                            config
                                .profiles
                                .keys()
                                .cloned()
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    },
                });
            }
        };
        let ca_path = Profile::resolve(home, &profile.ca_cert);
        let exported = ExportedProfile::from_profile(home, name, profile)?;
        let options = ConnectOptions {
            profile: Some(name.to_string()),
            ca_source: ca_path.display().to_string(),
            ..ConnectOptions::default()
        };
        Self::from_exported(&exported, endpoint_override, options).await
    }

    /// Connects with an [`ExportedProfile`] (the certificates inline), to
    /// `endpoint_override` or the profile's endpoint.
    pub async fn from_exported(
        profile: &ExportedProfile,
        endpoint_override: Option<&str>,
        options: ConnectOptions,
    ) -> Result<Client> {
        let identity = match (&profile.tls.client_cert, &profile.tls.client_key) {
            (Some(cert), Some(key)) => Some(CertKeyPair {
                cert_pem: cert.clone(),
                key_pem: key.clone(),
            }),
            _ => None,
        };
        let endpoint = endpoint_override.unwrap_or(&profile.endpoint);
        Self::connect_with(endpoint, &profile.tls.ca_cert, identity, options).await
    }

    /// The endpoint this client was created with.
    pub fn endpoint(&self) -> &str {
        &self.inner.endpoint
    }

    /// Sends one request to the endpoint and returns its one response,
    /// following `NotLeader` redirects. A `Response::Error` becomes
    /// [`ClientError::Server`].
    pub async fn request(&self, request: Request) -> Result<Response> {
        let what = request_name(&request);
        let (response, _) = self.routed(None, &request, what).await?;
        Ok(response)
    }

    /// Appends `records` to one partition in one attempt (redirects to the
    /// leader are followed; retries are the [`Producer`]'s job). The records
    /// get contiguous offsets from the returned `base_offset`.
    pub async fn produce(
        &self,
        topic: &str,
        partition: u32,
        records: Vec<Record>,
    ) -> Result<ProduceResponse> {
        self.produce_as(topic, partition, records, None).await
    }

    /// [`Client::produce`] on behalf of an idempotent producer: sending the
    /// same `producer` id and sequence again (a retry after a lost answer)
    /// writes the batch once and answers with its original offsets.
    pub async fn produce_as(
        &self,
        topic: &str,
        partition: u32,
        records: Vec<Record>,
        producer: Option<ProducerSeq>,
    ) -> Result<ProduceResponse> {
        self.produce_compressed(topic, partition, records, producer, Compression::None)
            .await
    }

    /// [`Client::produce_as`] with the records sent compressed with `codec`
    /// (`Compression::None` sends them as they are). The node expands them;
    /// a topic whose compression type is not `any` takes its own codec only.
    pub async fn produce_compressed(
        &self,
        topic: &str,
        partition: u32,
        records: Vec<Record>,
        producer: Option<ProducerSeq>,
        codec: Compression,
    ) -> Result<ProduceResponse> {
        for record in &records {
            check_record_size(topic, record)?;
        }
        // A batch without headers goes in the messages earlier releases
        // read; one with headers in the message that carries them.
        let with_headers = records.iter().any(|r| !r.headers.is_empty());
        let request = if with_headers {
            let encoded = sluice_proto::encoding::to_vec(&records).expect("records always encode");
            let records = match codec {
                Compression::None => encoded,
                codec => sluice_compress::compress(codec, &encoded),
            };
            Request::ProduceWithHeaders(sluice_proto::CompressedProduce {
                topic: topic.to_string(),
                partition,
                compression: codec,
                records,
                producer,
            })
        } else if codec == Compression::None {
            Request::Produce(ProduceRequest {
                topic: topic.to_string(),
                partition,
                records,
                producer,
            })
        } else {
            let encoded =
                sluice_proto::encoding::to_vec(&sluice_proto::record::v1::Records(records))
                    .expect("records without headers always encode");
            Request::ProduceCompressed(sluice_proto::CompressedProduce {
                topic: topic.to_string(),
                partition,
                compression: codec,
                records: sluice_compress::compress(codec, &encoded),
                producer,
            })
        };
        self.produce_to_leader(topic, partition, &request, "produce")
            .await
    }

    /// Starts reading a partition. The node resolves the start offset first
    /// (see [`FetchStream::start_offset`]), then pushes records; with
    /// `follow` it keeps pushing new records as they are committed.
    pub async fn fetch(&self, request: FetchRequest) -> Result<FetchStream> {
        self.fetch_with(request, Vec::new()).await
    }

    /// [`Client::fetch`] with options (e.g. [`sluice_proto::FetchOption::Lookback`]);
    /// without any it sends a plain fetch, which every release understands.
    pub async fn fetch_with(
        &self,
        request: FetchRequest,
        options: Vec<sluice_proto::FetchOption>,
    ) -> Result<FetchStream> {
        let wire = if options.is_empty() {
            Request::Fetch(request.clone())
        } else {
            Request::FetchWith {
                fetch: request.clone(),
                options,
            }
        };
        // Opening a fetch is retried like an admin request: right after a
        // failover or restart the partition may have no leader for a moment.
        let deadline = tokio::time::Instant::now() + ADMIN_RETRY_BUDGET;
        let mut backoff = Backoff::new(RETRY_BACKOFF_FIRST, RETRY_BACKOFF_MAX);
        let (first, addr, recv) = loop {
            match self.open_fetch(&request, &wire).await {
                Err(e)
                    if e.is_retriable()
                        && tokio::time::Instant::now() + backoff.next() < deadline =>
                {
                    tracing::debug!(error = %e, ?backoff, "retrying fetch");
                    backoff.wait().await;
                }
                other => break other?,
            }
        };
        match first {
            Response::FetchStarted {
                partition,
                start_offset,
                end_offset,
            } => Ok(FetchStream::new(
                self.endpoint_name(addr),
                recv,
                partition,
                start_offset,
                end_offset,
            )),
            other => Err(self.unexpected("fetch", &other)),
        }
    }

    /// Sends the fetch to a replica the request allows: the leader (following
    /// redirects), the `replica` asked for, or the partition's replicas in
    /// turn until one serves it (`read_from` follower/any).
    async fn open_fetch(
        &self,
        request: &FetchRequest,
        wire: &Request,
    ) -> Result<(Response, SocketAddr, quinn::RecvStream)> {
        let candidates = match (request.replica, request.read_from) {
            (Some(node), _) => vec![node],
            (None, ReadFrom::Leader) => {
                let route = (request.topic.as_str(), request.partition);
                let (first, stream) = self.routed(Some(route), wire, "fetch").await?;
                let (addr, recv) = stream.expect("routed always returns the stream");
                return Ok((first, addr, recv));
            }
            (None, ReadFrom::Follower | ReadFrom::Any) => {
                let info = self.describe_topic(&request.topic).await?;
                let assignment = info
                    .assignments
                    .get(request.partition as usize)
                    .ok_or_else(|| {
                        ClientError::Server(WireError::UnknownPartition {
                            topic: request.topic.clone(),
                            partition: request.partition,
                            partitions: info.spec.partitions,
                        })
                    })?;
                assignment.replicas.clone()
            }
        };
        let mut last = None;
        for node in candidates {
            let addr = match self.node_addr(node).await {
                Ok(addr) => addr,
                Err(e) => {
                    last = Some(e);
                    continue;
                }
            };
            match self.exchange(addr, wire, "fetch").await {
                Ok((response, recv)) => return Ok((response, addr, recv)),
                // This replica cannot serve it (down, leader when a follower
                // is wanted, still starting): the next one may.
                Err(e)
                    if e.is_retriable()
                        || matches!(e, ClientError::Server(WireError::NotLeader { .. })) =>
                {
                    tracing::debug!(node, error = %e, "replica cannot serve the fetch");
                    last = Some(e);
                }
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| {
            ClientError::Server(WireError::Unavailable {
                what: format!("partition {}/{}", request.topic, request.partition),
                reason: "it has no replica to read from".into(),
            })
        }))
    }

    /// Reads a partition as a [`Consumer`](crate::Consumer): like [`Client::fetch`], but when
    /// the serving node is lost it resumes on another replica from the next
    /// offset, with no gap and no repeat. Must be called within a tokio runtime.
    pub fn consume(&self, request: FetchRequest) -> crate::Consumer {
        crate::Consumer::start(self.clone(), request, Vec::new())
    }

    /// Several partitions read as one [`Consumer`](crate::Consumer): its batches come from
    /// any of them as they arrive, each partition's in order (every record
    /// names its partition); it ends once every read has ended.
    pub fn consume_many(&self, requests: Vec<FetchRequest>) -> crate::Consumer {
        crate::Consumer::start_many(self.clone(), requests, Vec::new())
    }

    /// Every partition of `request.topic` read as `request` says (its
    /// `partition` is replaced by each of the topic's in turn), as one
    /// [`Consumer`](crate::Consumer) (see [`Client::consume_many`]).
    pub async fn consume_topic(&self, request: FetchRequest) -> Result<crate::Consumer> {
        let info = self.describe_topic(&request.topic).await?;
        let requests = (0..info.spec.partitions)
            .map(|partition| FetchRequest {
                partition,
                ..request.clone()
            })
            .collect();
        Ok(self.consume_many(requests))
    }

    /// [`Client::consume`] with fetch options (see [`Client::fetch_with`]).
    pub fn consume_with(
        &self,
        request: FetchRequest,
        options: Vec<sluice_proto::FetchOption>,
    ) -> crate::Consumer {
        crate::Consumer::start(self.clone(), request, options)
    }

    /// A batching producer for `topic`; see [`ProducerConfig`].
    pub async fn producer(&self, topic: &str, config: ProducerConfig) -> Result<Producer> {
        Producer::new(self.clone(), topic, config).await
    }

    /// Closes the connections (pending requests fail).
    pub async fn close(&self) {
        self.inner.connector.close_all().await;
    }

    /// An admin request, retried while the cluster answers with a retriable
    /// error (no leader yet, ...) for up to [`ADMIN_RETRY_BUDGET`].
    async fn admin(&self, request: Request) -> Result<Response> {
        // One id for every attempt: a change that reached the cluster before
        // an answer was lost is not applied twice.
        self.retrying(request.once()).await
    }

    /// `request`, retried while the cluster answers with a retriable error
    /// for up to [`ADMIN_RETRY_BUDGET`].
    async fn retrying(&self, request: Request) -> Result<Response> {
        let deadline = tokio::time::Instant::now() + ADMIN_RETRY_BUDGET;
        let mut backoff = Backoff::new(RETRY_BACKOFF_FIRST, RETRY_BACKOFF_MAX);
        loop {
            match self.request(request.clone()).await {
                Err(ClientError::Server(e))
                    if e.is_retriable()
                        && tokio::time::Instant::now() + backoff.next() < deadline =>
                {
                    tracing::debug!(error = %e, ?backoff, "retrying admin request");
                    backoff.wait().await;
                }
                other => return other,
            }
        }
    }

    /// Sends `request` to the leader of `route` (or the bootstrap node),
    /// following redirects. Returns the first response and the stream it came
    /// on (for fetches).
    async fn routed(
        &self,
        route: Option<(&str, u32)>,
        request: &Request,
        what: &'static str,
    ) -> Result<(Response, Option<(SocketAddr, quinn::RecvStream)>)> {
        self.routed_via(route, request, what, None).await
    }

    /// [`Self::routed`], telling `at` which node the request is sent to now
    /// and since when (it changes as redirects are followed), for
    /// [`Self::watch_leader`].
    async fn routed_via(
        &self,
        route: Option<(&str, u32)>,
        request: &Request,
        what: &'static str,
        at: Option<&Mutex<(SocketAddr, tokio::time::Instant)>>,
    ) -> Result<(Response, Option<(SocketAddr, quinn::RecvStream)>)> {
        let key = route.map(|(t, p)| (t.to_string(), p));
        let cached = key.as_ref().and_then(|k| self.leaders().get(k).copied());
        let mut addr = cached.unwrap_or(self.bootstrap());
        let mut hops = 0;
        loop {
            if let Some(at) = at {
                *at.lock().unwrap_or_else(PoisonError::into_inner) =
                    (addr, tokio::time::Instant::now());
            }
            let result = if addr == self.bootstrap() {
                let result = self.exchange_bootstrap(request, what).await;
                addr = self.bootstrap();
                result
            } else {
                self.exchange(addr, request, what).await
            };
            match result {
                Ok((response, recv)) => {
                    if let Some(key) = key {
                        if addr == self.bootstrap() {
                            self.leaders().remove(&key);
                        } else {
                            self.leaders().insert(key, addr);
                        }
                    }
                    return Ok((response, Some((addr, recv))));
                }
                Err(ClientError::Server(WireError::NotLeader {
                    leader: Some(leader),
                    node,
                    what: w,
                })) if hops < REDIRECTS_MAX => {
                    let original = WireError::NotLeader {
                        leader: Some(leader),
                        node,
                        what: w.clone(),
                    };
                    match self.node_addr(leader).await {
                        // A leader that just failed to answer is probably dead and
                        // still named until the election ends: let the caller
                        // back off and ask again instead of waiting on it.
                        Ok(next) if self.recently_unreachable(next) => {
                            return Err(ClientError::Server(WireError::NotLeader {
                                leader: None,
                                node,
                                what: w,
                            }));
                        }
                        Ok(next) if next != addr => {
                            tracing::debug!(%addr, %next, leader, "following redirect to the leader");
                            addr = next;
                            hops += 1;
                        }
                        _ => return Err(ClientError::Server(original)),
                    }
                }
                Err(e) => {
                    if let Some(key) = &key
                        && e.is_retriable()
                    {
                        // The leader may have moved: start from the bootstrap node next time.
                        self.leaders().remove(key);
                    }
                    return Err(e);
                }
            }
        }
    }

    /// The client address of node `id`, from the cluster status.
    async fn node_addr(&self, id: NodeId) -> Result<SocketAddr> {
        let (response, _) = self
            .exchange_bootstrap(&Request::ClusterStatus, "cluster status")
            .await?;
        let Response::ClusterStatus(status) = response else {
            return Err(self.unexpected("cluster status", &response));
        };
        for n in &status.nodes {
            if let Ok(a) = n.advertised_addr.parse::<SocketAddr>() {
                self.learn(a);
            }
        }
        let node =
            status
                .nodes
                .iter()
                .find(|n| n.id == id)
                .ok_or_else(|| ClientError::Protocol {
                    endpoint: self.inner.endpoint.clone(),
                    what: "redirect",
                    reason: format!("the leader, node {id}, is not in the cluster status"),
                })?;
        resolve(&node.advertised_addr).await
    }

    async fn exchange_inner(
        &self,
        addr: SocketAddr,
        request: &Request,
        what: &'static str,
    ) -> Result<(Response, quinn::RecvStream)> {
        let connection = self.connection(addr).await?;
        let (response, recv) = sluice_transport::exchange(&connection, request)
            .await
            .map_err(|e| self.exchange_error(addr, what, e))?;
        Ok((server_answer(&self.endpoint_name(addr), response)?, recv))
    }

    fn exchange_error(
        &self,
        addr: SocketAddr,
        what: &'static str,
        error: sluice_transport::ExchangeError,
    ) -> ClientError {
        use sluice_transport::ExchangeError;
        match error {
            ExchangeError::Open(e) => self.connection_error(addr, what, e),
            ExchangeError::Frame(e) => self.frame_error(addr, what, e),
            ExchangeError::Unanswered => ClientError::ConnectionLost {
                endpoint: self.endpoint_name(addr),
                what,
                reason: error.to_string(),
            },
            ExchangeError::Encode(e) | ExchangeError::Decode(e) => {
                codec_error(&self.endpoint_name(addr), what, e)
            }
        }
    }

    async fn connection(&self, addr: SocketAddr) -> Result<quinn::Connection> {
        self.inner.connector.connect(addr).await.map_err(|error| {
            let endpoint = self.endpoint_name(addr);
            let source = Box::new(error);
            match *source {
                TransportError::ConnectTimeout { .. } | TransportError::Connection { .. } => {
                    ClientError::NoNode {
                        endpoint,
                        profile: self.inner.profile.clone(),
                        source,
                    }
                }
                TransportError::Tls { .. } => ClientError::TlsMismatch {
                    endpoint,
                    ca: self.inner.ca_source.clone(),
                    source,
                },
                _ => ClientError::Transport { endpoint, source },
            }
        })
    }

    fn connection_error(
        &self,
        addr: SocketAddr,
        what: &'static str,
        error: quinn::ConnectionError,
    ) -> ClientError {
        let endpoint = self.endpoint_name(addr);
        if sluice_transport::endpoint::is_tls_failure(&error) {
            return ClientError::TlsMismatch {
                endpoint,
                ca: self.inner.ca_source.clone(),
                source: Box::new(TransportError::Tls {
                    addr,
                    source: error,
                }),
            };
        }
        ClientError::ConnectionLost {
            endpoint,
            what,
            reason: error.to_string(),
        }
    }

    fn frame_error(
        &self,
        addr: SocketAddr,
        what: &'static str,
        error: sluice_transport::FrameError,
    ) -> ClientError {
        use sluice_transport::FrameError;
        match error {
            FrameError::Read(quinn::ReadError::ConnectionLost(e))
            | FrameError::Write(quinn::WriteError::ConnectionLost(e)) => {
                self.connection_error(addr, what, e)
            }
            FrameError::TooLarge { .. } => ClientError::Protocol {
                endpoint: self.endpoint_name(addr),
                what,
                reason: error.to_string(),
            },
            other => ClientError::ConnectionLost {
                endpoint: self.endpoint_name(addr),
                what,
                reason: other.to_string(),
            },
        }
    }

    fn endpoint_name(&self, addr: SocketAddr) -> String {
        if addr == self.bootstrap() {
            self.inner.endpoint.clone()
        } else {
            addr.to_string()
        }
    }

    fn unexpected(&self, what: &'static str, response: &Response) -> ClientError {
        ClientError::Protocol {
            endpoint: self.inner.endpoint.clone(),
            what,
            reason: format!("unexpected answer {}", response_name(response)),
        }
    }

    fn leaders(&self) -> std::sync::MutexGuard<'_, HashMap<(String, u32), SocketAddr>> {
        self.inner
            .leaders
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// Rejects a record over [`sluice_proto::limits::RECORD_SIZE_BYTES_MAX`]
/// before it costs a round trip.
pub(crate) fn check_record_size(topic: &str, record: &Record) -> Result<()> {
    sluice_proto::headers::check_owned(&record.headers).map_err(|reason| {
        ClientError::InvalidHeaders {
            topic: topic.to_string(),
            reason,
        }
    })?;
    let max_bytes = sluice_proto::limits::RECORD_SIZE_BYTES_MAX;
    if record.size_bytes() > max_bytes {
        return Err(ClientError::RecordTooLarge {
            topic: topic.to_string(),
            size_bytes: record.size_bytes(),
            max_bytes,
        });
    }
    Ok(())
}

/// Decodes one response frame, turning version mismatches and node errors
/// into their [`ClientError`]s.
pub(crate) fn decode_response(
    endpoint: &str,
    what: &'static str,
    frame: &[u8],
) -> Result<Response> {
    match codec::decode::<Response>(frame) {
        Ok(response) => server_answer(endpoint, response),
        Err(e) => Err(codec_error(endpoint, what, e)),
    }
}

/// A node's answer, with its refusals made errors.
fn server_answer(endpoint: &str, response: Response) -> Result<Response> {
    match response {
        Response::Error(WireError::UnsupportedVersion { client, server }) => {
            Err(ClientError::ProtocolVersion {
                endpoint: endpoint.to_string(),
                client,
                server,
            })
        }
        Response::Error(e) => Err(ClientError::Server(e)),
        response => Ok(response),
    }
}

/// Bytes that are not a message of this version, either way.
fn codec_error(endpoint: &str, what: &'static str, error: CodecError) -> ClientError {
    match error {
        CodecError::VersionMismatch { peer, ours } => ClientError::ProtocolVersion {
            endpoint: endpoint.to_string(),
            client: ours,
            server: peer,
        },
        e => ClientError::Protocol {
            endpoint: endpoint.to_string(),
            what,
            reason: e.to_string(),
        },
    }
}

async fn resolve(endpoint: &str) -> Result<SocketAddr> {
    let fail = |reason: String| ClientError::Resolve {
        endpoint: endpoint.to_string(),
        reason,
    };
    let mut addrs = tokio::net::lookup_host(endpoint)
        .await
        .map_err(|e| fail(e.to_string()))?;
    addrs
        .next()
        .ok_or_else(|| fail("it resolves to no address".into()))
}

fn request_name(request: &Request) -> &'static str {
    request.name()
}

pub(crate) fn response_name(response: &Response) -> &'static str {
    match response {
        Response::Error(_) => "Error",
        Response::ClusterStatus(_) => "ClusterStatus",
        Response::TopicCreated(_) => "TopicCreated",
        Response::TopicDeleted => "TopicDeleted",
        Response::Topics(_) => "Topics",
        Response::Topic(_) => "Topic",
        Response::Partitions(_) => "Partitions",
        Response::Produced(_) => "Produced",
        Response::FetchStarted { .. } => "FetchStarted",
        Response::Records { .. } => "Records",
        Response::RecordsWithHeaders { .. } => "RecordsWithHeaders",
        Response::FetchEnd { .. } => "FetchEnd",
        Response::Raft { .. } => "Raft",
        Response::SmartModuleCreated(_) => "SmartModuleCreated",
        Response::SmartModules(_) => "SmartModules",
        Response::SmartModule(_) => "SmartModule",
        Response::SmartModuleDeleted => "SmartModuleDeleted",
        Response::SmartModuleWasm { .. } => "SmartModuleWasm",
        Response::Joined => "Joined",
        Response::NodeIncarnation(_) => "NodeIncarnation",
        Response::NodeUnregistered => "NodeUnregistered",
        Response::PartitionReassigned(_) => "PartitionReassigned",
        Response::ReassignmentFinished => "ReassignmentFinished",
        Response::ReplicaLog { .. } => "ReplicaLog",
        Response::AclAdded => "AclAdded",
        Response::AclRemoved => "AclRemoved",
        Response::Acls(_) => "Acls",
        Response::OffsetCommitted => "OffsetCommitted",
        Response::Consumers(_) => "Consumers",
        Response::ConsumerDeleted => "ConsumerDeleted",
        Response::GroupAssignment(_) => "GroupAssignment",
        Response::GroupLeft => "GroupLeft",
        Response::TopicSettings(_) => "TopicSettings",
        Response::TopicSettingsV2(_) => "TopicSettingsV2",
        Response::ConsumerFenced { .. } => "ConsumerFenced",
        Response::LeaderConsumers(_) => "LeaderConsumers",
        Response::ConsumerForgotten { .. } => "ConsumerForgotten",
        Response::ConnectorCreated(_) => "ConnectorCreated",
        Response::ConnectorDeleted => "ConnectorDeleted",
        Response::Connectors(_) => "Connectors",
        Response::ConnectorLogs { .. } => "ConnectorLogs",
        Response::ConnectorsHere(_) => "ConnectorsHere",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_mismatch_is_reported() {
        let mut frame = codec::encode(&Response::TopicDeleted).unwrap();
        frame[0..2].copy_from_slice(&9u16.to_be_bytes());
        let err = decode_response("h:1", "x", &frame).unwrap_err();
        assert!(
            matches!(err, ClientError::ProtocolVersion { server: 9, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("protocol version 9"));

        let frame = codec::encode(&Response::Error(WireError::UnsupportedVersion {
            client: 2,
            server: 1,
        }))
        .unwrap();
        let err = decode_response("h:1", "x", &frame).unwrap_err();
        assert!(matches!(
            err,
            ClientError::ProtocolVersion {
                client: 2,
                server: 1,
                ..
            }
        ));
    }

    #[test]
    fn node_errors_become_server_errors() {
        let wire = WireError::UnknownTopic { topic: "t".into() };
        let frame = codec::encode(&Response::Error(wire.clone())).unwrap();
        let err = decode_response("h:1", "x", &frame).unwrap_err();
        assert_eq!(err.wire_error(), Some(&wire));
        assert!(!err.is_retriable());
    }

    #[test]
    fn oversized_records_are_refused_locally() {
        let record = Record::new(vec![0u8; sluice_proto::limits::RECORD_SIZE_BYTES_MAX + 1]);
        let err = check_record_size("t", &record).unwrap_err();
        assert!(err.to_string().contains("exceeds the limit"), "{err}");
        assert!(check_record_size("t", &Record::new(vec![0u8; 10])).is_ok());
    }

    #[tokio::test]
    async fn missing_profile_says_what_to_do() {
        let home = tempfile::tempdir().unwrap();
        let err = Client::from_profile(home.path(), None, None)
            .await
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("no connection profile found in "), "{err}");
        assert!(err.contains("sluice cluster start --local"), "{err}");
        let err = Client::from_profile(home.path(), Some("prod"), None)
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("\"prod\" does not exist"), "{err}");
    }
}
