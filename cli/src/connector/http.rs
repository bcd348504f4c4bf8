//! The http source: polls an endpoint over HTTP/1.1, plain or over TLS
//! (`https://`), and turns each answer into one record (its body, or the
//! whole response as JSON).
//!
//! The client is this small one rather than a general HTTP library because
//! a source needs one request shape and strict bounds: connect and answer
//! deadlines, and a response no larger than a record. TLS is rustls (ring,
//! as everywhere in Sluice), checking the endpoint's certificate against the
//! system's CA bundle or the connector's own `ca_file`.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use sluice_client::proto::limits::RECORD_SIZE_BYTES_DEFAULT;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::timeouts::{HTTP_CONNECT_TIMEOUT, HTTP_REQUEST_TIMEOUT};
/// Bytes of a response's status line and headers.
const HTTP_HEAD_BYTES_MAX: usize = 64 * 1024;

/// What becomes of an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    /// The body, as it came.
    Body,
    /// `{"status": 200, "headers": {...}, "body": "..."}`.
    Full,
}

/// Where the source polls: `http[s]://host[:port][/path][?query]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    host: String,
    port: u16,
    /// Path and query, starting with `/`.
    target: String,
    /// `https://`: the exchange goes over TLS.
    tls: bool,
}

/// The TLS settings of an https source: the CAs its endpoint's certificate
/// must chain to, from `ca_file` or the system's bundle.
pub fn tls_config(ca_file: Option<&Path>) -> anyhow::Result<Arc<rustls::ClientConfig>> {
    super::tls::client_config(
        ca_file,
        super::tls::Check::ChainAndName,
        "set parameters.ca_file",
    )
}

impl Endpoint {
    pub fn parse(url: &str) -> anyhow::Result<Self> {
        let (rest, tls) = if let Some(rest) = url.strip_prefix("http://") {
            (rest, false)
        } else if let Some(rest) = url.strip_prefix("https://") {
            (rest, true)
        } else {
            bail!("{url}: give an http:// or https:// URL");
        };
        let (authority, target) = match rest.find(['/', '?']) {
            Some(i) if rest.as_bytes()[i] == b'/' => (&rest[..i], rest[i..].to_string()),
            Some(i) => (&rest[..i], format!("/{}", &rest[i..])),
            None => (rest, "/".to_string()),
        };
        let (host, port) = match authority.rsplit_once(':') {
            Some((host, port)) => (
                host,
                port.parse::<u16>()
                    .with_context(|| format!("{url}: port {port:?} is not a number"))?,
            ),
            None => (authority, if tls { 443 } else { 80 }),
        };
        if host.is_empty() || host.contains(['@', ' ']) {
            bail!("{url}: no host name");
        }
        if target.contains([' ', '\r', '\n']) {
            bail!("{url}: spaces and line breaks must be percent-encoded");
        }
        Ok(Self {
            host: host.to_string(),
            port,
            target,
            tls,
        })
    }

    pub fn is_tls(&self) -> bool {
        self.tls
    }
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scheme = if self.tls { "https" } else { "http" };
        write!(f, "{scheme}://{}:{}{}", self.host, self.port, self.target)
    }
}

/// An http source's settings (see `config`).
pub struct HttpSource {
    pub endpoint: Endpoint,
    pub interval: Duration,
    pub method: String,
    pub headers: Vec<(String, String)>,
    pub body: Option<String>,
    pub output: Output,
    /// For an `https://` endpoint.
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// `stream: true`: one long request whose body is a stream of records
    /// (see `super::http_stream`), split at this delimiter unless it is an
    /// event stream; `None`: a request every `interval`, one record each.
    pub stream: Option<Vec<u8>>,
}

impl std::fmt::Debug for HttpSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpSource")
            .field("endpoint", &self.endpoint)
            .field("interval", &self.interval)
            .field("method", &self.method)
            .field("headers", &self.headers)
            .field("body", &self.body)
            .field("output", &self.output)
            .field("tls", &self.tls.is_some())
            .field("stream", &self.stream)
            .finish()
    }
}

/// A parsed answer.
#[derive(Debug, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    pub reason: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpSource {
    /// One request; the record's value, or why there is none.
    pub async fn poll(&self) -> anyhow::Result<Vec<u8>> {
        let answer = tokio::time::timeout(HTTP_REQUEST_TIMEOUT, self.request())
            .await
            .with_context(|| {
                format!(
                    "{} did not answer within {HTTP_REQUEST_TIMEOUT:?}",
                    self.endpoint
                )
            })??;
        if !(200..300).contains(&answer.status) {
            bail!(
                "{} answered {} {}",
                self.endpoint,
                answer.status,
                answer.reason
            );
        }
        Ok(match self.output {
            Output::Body => answer.body,
            Output::Full => {
                let headers: serde_json::Map<String, serde_json::Value> = answer
                    .headers
                    .iter()
                    .map(|(k, v)| (k.to_ascii_lowercase(), serde_json::Value::from(v.as_str())))
                    .collect();
                serde_json::json!({
                    "status": answer.status,
                    "headers": headers,
                    "body": String::from_utf8_lossy(&answer.body),
                })
                .to_string()
                .into_bytes()
            }
        })
    }

    async fn request(&self) -> anyhow::Result<Answer> {
        let mut stream = self.send().await?;
        let limit = HTTP_HEAD_BYTES_MAX + RECORD_SIZE_BYTES_DEFAULT;
        let mut raw = Vec::new();
        let read = (&mut stream)
            .take(limit as u64 + 1)
            .read_to_end(&mut raw)
            .await;
        match read {
            Ok(_) => {}
            // Servers often close a TLS connection without its close_notify
            // once the answer is sent; what arrived is whole if it parses.
            Err(e) if self.tls.is_some() && e.kind() == std::io::ErrorKind::UnexpectedEof => {}
            Err(e) => {
                return Err(e).with_context(|| format!("reading the answer of {}", self.endpoint));
            }
        }
        if raw.len() > limit {
            bail!(
                "{} answered more than {limit} bytes; a record holds at most {RECORD_SIZE_BYTES_DEFAULT} (a producer's default)",
                self.endpoint
            );
        }
        parse_answer(&raw).with_context(|| format!("the answer of {}", self.endpoint))
    }

    /// Connects to the endpoint (over TLS for `https://`) and sends the
    /// request; the answer is the caller's to read.
    pub(super) async fn send(&self) -> anyhow::Result<Box<dyn Connection>> {
        let Endpoint { host, port, .. } = &self.endpoint;
        let stream = tokio::time::timeout(
            HTTP_CONNECT_TIMEOUT,
            tokio::net::TcpStream::connect((host.as_str(), *port)),
        )
        .await
        .with_context(|| {
            format!(
                "connecting to {} took over {HTTP_CONNECT_TIMEOUT:?}",
                self.endpoint
            )
        })?
        .with_context(|| format!("cannot connect to {}", self.endpoint))?;
        let mut stream: Box<dyn Connection> = match &self.tls {
            None => Box::new(stream),
            Some(config) => {
                let name = rustls::pki_types::ServerName::try_from(host.clone())
                    .with_context(|| format!("{host:?} is not a host name TLS can check"))?;
                Box::new(
                    tokio_rustls::TlsConnector::from(config.clone())
                        .connect(name, stream)
                        .await
                        .with_context(|| format!("TLS with {} failed", self.endpoint))?,
                )
            }
        };
        let mut head = format!(
            "{} {} HTTP/1.1\r\nHost: {host}:{port}\r\nUser-Agent: sluice-connector\r\n\
             Accept: */*\r\nConnection: close\r\n",
            self.method, self.endpoint.target
        );
        for (name, value) in &self.headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        let body = self.body.as_deref().unwrap_or("");
        if self.body.is_some() {
            head.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        head.push_str("\r\n");
        stream.write_all(head.as_bytes()).await?;
        stream.write_all(body.as_bytes()).await?;
        stream.flush().await?;
        Ok(stream)
    }
}

/// A connection to an endpoint, plain or TLS.
pub(super) trait Connection: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Connection for T {}

/// A response's status line and headers.
#[derive(Debug, PartialEq, Eq)]
pub struct Head {
    pub status: u16,
    pub reason: String,
    pub headers: Vec<(String, String)>,
}

impl Head {
    /// The value of header `name` (the first, names compared without case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn is_chunked(&self) -> bool {
        self.header("transfer-encoding")
            .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
    }
}

/// Parses the head at the start of `raw`; `None` if its end has not
/// arrived yet, else the head and where the body starts.
pub fn parse_head(raw: &[u8]) -> anyhow::Result<Option<(Head, usize)>> {
    let Some(split) = raw.windows(4).position(|w| w == b"\r\n\r\n") else {
        if raw.len() > HTTP_HEAD_BYTES_MAX {
            bail!("headers longer than {HTTP_HEAD_BYTES_MAX} bytes");
        }
        return Ok(None);
    };
    if split > HTTP_HEAD_BYTES_MAX {
        bail!("headers longer than {HTTP_HEAD_BYTES_MAX} bytes");
    }
    let head = std::str::from_utf8(&raw[..split]).context("headers are not UTF-8")?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.splitn(3, ' ');
    let (version, code, reason) = (parts.next(), parts.next(), parts.next().unwrap_or(""));
    if !version.is_some_and(|v| v.starts_with("HTTP/1.")) {
        bail!("not an HTTP/1 status line: {status_line:?}");
    }
    let status: u16 = code
        .and_then(|c| c.parse().ok())
        .with_context(|| format!("no status code in {status_line:?}"))?;
    let mut headers = Vec::new();
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            bail!("header line {line:?} has no ':'");
        };
        headers.push((name.trim().to_string(), value.trim().to_string()));
    }
    Ok(Some((
        Head {
            status,
            reason: reason.to_string(),
            headers,
        },
        split + 4,
    )))
}

/// Parses a whole HTTP/1.x response (the connection was closed after it).
pub fn parse_answer(raw: &[u8]) -> anyhow::Result<Answer> {
    let Some((head, at)) = parse_head(raw)? else {
        bail!("no end of headers in {} bytes", raw.len());
    };
    let rest = &raw[at..];
    let body = if head.is_chunked() {
        dechunk(rest)?
    } else if let Some(len) = head.header("content-length") {
        let len: usize = len
            .parse()
            .with_context(|| format!("Content-Length {len:?} is not a number"))?;
        if rest.len() < len {
            bail!("the body ends after {} of {len} bytes", rest.len());
        }
        rest[..len].to_vec()
    } else {
        rest.to_vec()
    };
    Ok(Answer {
        status: head.status,
        reason: head.reason,
        headers: head.headers,
        body,
    })
}

/// The body of a chunked transfer: size lines in hex, each chunk, `0` last.
fn dechunk(mut rest: &[u8]) -> anyhow::Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let Some(eol) = rest.windows(2).position(|w| w == b"\r\n") else {
            bail!("a chunk size line has no end");
        };
        let line = std::str::from_utf8(&rest[..eol]).context("a chunk size is not text")?;
        let size = usize::from_str_radix(line.split(';').next().unwrap_or("").trim(), 16)
            .with_context(|| format!("chunk size {line:?} is not hexadecimal"))?;
        rest = &rest[eol + 2..];
        if size == 0 {
            return Ok(body);
        }
        if rest.len() < size + 2 {
            bail!("a chunk of {size} bytes is cut short");
        }
        body.extend_from_slice(&rest[..size]);
        rest = &rest[size + 2..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_parse_and_print_back() {
        let e = Endpoint::parse("http://127.0.0.1:8080/fact?max=3").unwrap();
        assert_eq!(e.to_string(), "http://127.0.0.1:8080/fact?max=3");
        assert_eq!(
            Endpoint::parse("http://example.org").unwrap().to_string(),
            "http://example.org:80/"
        );
        assert_eq!(
            Endpoint::parse("http://h?x=1").unwrap().to_string(),
            "http://h:80/?x=1"
        );
        let e = Endpoint::parse("https://catfact.ninja/fact").unwrap();
        assert_eq!(e.to_string(), "https://catfact.ninja:443/fact");
        assert!(e.is_tls());
        for (bad, want) in [
            ("ftp://h/", "http:// or https:// URL"),
            ("http://h:port/", "is not a number"),
            ("http:///x", "no host"),
            ("http://h/a b", "percent-encoded"),
        ] {
            let e = format!("{:#}", Endpoint::parse(bad).unwrap_err());
            assert!(e.contains(want), "{bad}: {e}");
        }
    }

    #[test]
    fn answers_parse_by_length_chunks_or_close() {
        let a = parse_answer(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: b\r\n\r\nhelloEXTRA")
            .unwrap();
        assert_eq!((a.status, a.body.as_slice()), (200, &b"hello"[..]));
        assert_eq!(a.headers[1], ("X-A".to_string(), "b".to_string()));
        let a = parse_answer(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nWiki\r\n5;x=y\r\npedia\r\n0\r\n\r\n",
        )
        .unwrap();
        assert_eq!(a.body, b"Wikipedia");
        let a = parse_answer(b"HTTP/1.0 503 Service Unavailable\r\n\r\nbusy").unwrap();
        assert_eq!(
            (a.status, a.reason.as_str(), a.body.as_slice()),
            (503, "Service Unavailable", &b"busy"[..])
        );
        for (raw, want) in [
            (&b"garbage"[..], "no end of headers"),
            (b"SPDY 200 OK\r\n\r\n", "not an HTTP/1"),
            (b"HTTP/1.1 2xx OK\r\n\r\n", "no status code"),
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nshort",
                "ends after 5 of 9",
            ),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
                "not hexadecimal",
            ),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n9\r\nab",
                "cut short",
            ),
        ] {
            let e = format!("{:#}", parse_answer(raw).unwrap_err());
            assert!(e.contains(want), "{e}");
        }
    }
}
