//! The http source: polls an endpoint over plain HTTP/1.1 and turns each
//! answer into one record (its body, or the whole response as JSON).
//!
//! The client is this small one rather than a general HTTP library because
//! a source needs one request shape and strict bounds: connect and answer
//! deadlines, and a response no larger than a record. `https://` endpoints
//! are refused for now, saying so; they come with cluster-run connectors.

use std::time::Duration;

use anyhow::{Context, bail};
use sluice_client::proto::limits::RECORD_SIZE_BYTES_DEFAULT;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

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

/// Where the source polls: `http://host[:port][/path][?query]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    host: String,
    port: u16,
    /// Path and query, starting with `/`.
    target: String,
}

impl Endpoint {
    pub fn parse(url: &str) -> anyhow::Result<Self> {
        let rest = if let Some(rest) = url.strip_prefix("http://") {
            rest
        } else if url.starts_with("https://") {
            bail!(
                "{url}: https endpoints are not supported by `connector run` yet; use an http:// \
                 endpoint (a local proxy can add TLS)"
            );
        } else {
            bail!("{url}: give an http:// URL");
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
            None => (authority, 80),
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
        })
    }
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "http://{}:{}{}", self.host, self.port, self.target)
    }
}

/// An http source's settings (see `config`).
#[derive(Debug)]
pub struct HttpSource {
    pub endpoint: Endpoint,
    pub interval: Duration,
    pub method: String,
    pub headers: Vec<(String, String)>,
    pub body: Option<String>,
    pub output: Output,
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
        let Endpoint { host, port, target } = &self.endpoint;
        let mut stream = tokio::time::timeout(
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
        let mut head = format!(
            "{} {target} HTTP/1.1\r\nHost: {host}:{port}\r\nUser-Agent: sluice-connector\r\n\
             Accept: */*\r\nConnection: close\r\n",
            self.method
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
        let limit = HTTP_HEAD_BYTES_MAX + RECORD_SIZE_BYTES_DEFAULT;
        let mut raw = Vec::new();
        (&mut stream)
            .take(limit as u64 + 1)
            .read_to_end(&mut raw)
            .await
            .with_context(|| format!("reading the answer of {}", self.endpoint))?;
        if raw.len() > limit {
            bail!(
                "{} answered more than {limit} bytes; a record holds at most {RECORD_SIZE_BYTES_DEFAULT} (a producer's default)",
                self.endpoint
            );
        }
        parse_answer(&raw).with_context(|| format!("the answer of {}", self.endpoint))
    }
}

/// Parses a whole HTTP/1.x response (the connection was closed after it).
pub fn parse_answer(raw: &[u8]) -> anyhow::Result<Answer> {
    let Some(split) = raw.windows(4).position(|w| w == b"\r\n\r\n") else {
        bail!("no end of headers in {} bytes", raw.len());
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
    let header = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    };
    let rest = &raw[split + 4..];
    let body = if header("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        dechunk(rest)?
    } else if let Some(len) = header("content-length") {
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
        status,
        reason: reason.to_string(),
        headers,
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
        for (bad, want) in [
            ("https://h/", "https endpoints"),
            ("ftp://h/", "http:// URL"),
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
