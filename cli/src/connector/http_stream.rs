//! The http source's streaming mode (`stream: true`): one request whose
//! answer never really ends, its body cut into records as it arrives: at
//! `delimiter` (a newline unless the file says otherwise), or, when the
//! server answers `Content-Type: text/event-stream`, one record per
//! server-sent event (its `data` lines joined by newlines; comments and the
//! other fields ignored).
//!
//! Each poll returns the records that arrived within
//! [`HTTP_STREAM_POLL_WAIT`] (possibly none), so the connector's loop sees
//! Ctrl-C and reports its counts while a stream is quiet. A stream the
//! server ends is opened again after the source's `interval`; one that
//! fails (refused, cut mid-chunk, silent past [`HTTP_STREAM_IDLE_TIMEOUT`])
//! counts as a failure and is retried with the connector's backoff. Bytes
//! are bounded: a record larger than a record may be, or a head larger than
//! a head may be, fails the stream rather than growing a buffer.

use std::time::Duration;

use anyhow::{Context, bail};
use sluice_client::proto::limits::RECORD_SIZE_BYTES_DEFAULT;
use tokio::io::AsyncReadExt;
use tokio::time::Instant;

use super::http::{Connection, HttpSource, parse_head};
use crate::timeouts::{HTTP_REQUEST_TIMEOUT, HTTP_STREAM_IDLE_TIMEOUT, HTTP_STREAM_POLL_WAIT};

/// Bytes read from the connection at a time.
const READ_CHUNK_BYTES: usize = 16 * 1024;
/// Longest chunk-size or trailer line of a chunked body.
const CHUNK_LINE_BYTES_MAX: usize = 1024;

/// A streaming http source and its open answer, if any.
pub struct Stream {
    source: HttpSource,
    open: Option<Open>,
}

/// An answer being read.
struct Open {
    io: Box<dyn Connection>,
    framing: Framing,
    split: Split,
    /// Bytes read but not yet decoded from the body's framing.
    raw: Vec<u8>,
    /// Body bytes not yet cut into records.
    body: Vec<u8>,
    last_read: Instant,
}

/// How the body is delimited on the wire.
#[derive(Debug, PartialEq, Eq)]
enum Framing {
    Chunked(Chunk),
    /// Bytes left of a `Content-Length` body.
    Length(u64),
    /// Until the server closes the connection.
    Close,
}

#[derive(Debug, PartialEq, Eq)]
enum Chunk {
    Size,
    Data(usize),
    DataEnd,
    Trailer,
    Done,
}

/// How the body is cut into records.
#[derive(Debug)]
enum Split {
    Delimited(Vec<u8>),
    /// Server-sent events: the `data` of the event being read.
    Events(Option<Vec<u8>>),
}

impl Stream {
    pub fn new(source: HttpSource) -> Self {
        Stream { source, open: None }
    }

    /// How long to wait before the next poll: none while an answer is open;
    /// the source's interval before it is opened again.
    pub fn interval(&self) -> Duration {
        if self.open.is_some() {
            Duration::ZERO
        } else {
            self.source.interval
        }
    }

    /// The records that arrive within [`HTTP_STREAM_POLL_WAIT`], opening
    /// the stream first if it is not open.
    pub async fn poll(&mut self) -> anyhow::Result<Vec<Vec<u8>>> {
        let endpoint = self.source.endpoint.to_string();
        // Taken out while read: put back only where the answer stays open,
        // so an error or the answer's end leaves the next poll to open anew.
        let mut open = match self.open.take() {
            Some(open) => open,
            None => self.start().await?,
        };
        let mut records = open.records(false)?;
        let deadline = Instant::now() + HTTP_STREAM_POLL_WAIT;
        let mut buf = vec![0u8; READ_CHUNK_BYTES];
        while records.is_empty() {
            let read = match tokio::time::timeout_at(deadline, open.io.read(&mut buf)).await {
                Err(_) if open.last_read.elapsed() >= HTTP_STREAM_IDLE_TIMEOUT => bail!(
                    "{endpoint} sent nothing for {HTTP_STREAM_IDLE_TIMEOUT:?}; opening the stream again"
                ),
                Err(_) => {
                    self.open = Some(open);
                    return Ok(records);
                }
                Ok(read) => read,
            };
            let n = match read {
                Ok(n) => n,
                // A TLS server may close without close_notify.
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => 0,
                Err(e) => {
                    return Err(e).with_context(|| format!("reading the stream of {endpoint}"));
                }
            };
            if n == 0 {
                let last = open.ended(&endpoint)?;
                eprintln!("{endpoint} ended its stream; it is opened again after the interval");
                return Ok(last);
            }
            open.last_read = Instant::now();
            open.raw.extend_from_slice(&buf[..n]);
            open.decode()?;
            if open.framing.done() {
                return open.ended(&endpoint);
            }
            records = open.records(false)?;
        }
        self.open = Some(open);
        Ok(records)
    }

    /// Sends the request and reads the answer's head.
    async fn start(&self) -> anyhow::Result<Open> {
        let endpoint = &self.source.endpoint;
        let mut io = self.source.send().await?;
        let mut raw = Vec::new();
        let mut buf = vec![0u8; READ_CHUNK_BYTES];
        let deadline = Instant::now() + HTTP_REQUEST_TIMEOUT;
        let (head, at) = loop {
            if let Some(found) =
                parse_head(&raw).with_context(|| format!("the answer of {endpoint}"))?
            {
                break found;
            }
            let n = tokio::time::timeout_at(deadline, io.read(&mut buf))
                .await
                .with_context(|| {
                    format!("{endpoint} sent no answer within {HTTP_REQUEST_TIMEOUT:?}")
                })?
                .with_context(|| format!("reading the answer of {endpoint}"))?;
            if n == 0 {
                bail!("{endpoint} closed the connection before its answer's head");
            }
            raw.extend_from_slice(&buf[..n]);
        };
        if !(200..300).contains(&head.status) {
            bail!("{endpoint} answered {} {}", head.status, head.reason);
        }
        let framing = if head.is_chunked() {
            Framing::Chunked(Chunk::Size)
        } else if let Some(len) = head.header("content-length") {
            Framing::Length(
                len.parse()
                    .with_context(|| format!("Content-Length {len:?} is not a number"))?,
            )
        } else {
            Framing::Close
        };
        let events = head
            .header("content-type")
            .is_some_and(|t| t.to_ascii_lowercase().starts_with("text/event-stream"));
        let split = if events {
            Split::Events(None)
        } else {
            Split::Delimited(self.source.stream.clone().unwrap_or_else(|| b"\n".to_vec()))
        };
        eprintln!(
            "{endpoint}: stream open ({})",
            if events {
                "server-sent events"
            } else {
                "delimited records"
            }
        );
        let mut open = Open {
            io,
            framing,
            split,
            raw: raw.split_off(at),
            body: Vec::new(),
            last_read: Instant::now(),
        };
        open.decode()?;
        Ok(open)
    }
}

impl Framing {
    fn done(&self) -> bool {
        matches!(self, Framing::Chunked(Chunk::Done) | Framing::Length(0))
    }
}

impl Open {
    /// Moves what `raw` holds of the body into `body`.
    fn decode(&mut self) -> anyhow::Result<()> {
        decode(&mut self.framing, &mut self.raw, &mut self.body)
    }

    /// The records `body` holds whole (at `end`, the rest too).
    fn records(&mut self, end: bool) -> anyhow::Result<Vec<Vec<u8>>> {
        self.split.records(&mut self.body, end)
    }

    /// The connection closed (or the body ended): the last records, or why
    /// the body is cut short.
    fn ended(&mut self, endpoint: &str) -> anyhow::Result<Vec<Vec<u8>>> {
        match self.framing {
            Framing::Chunked(Chunk::Done) | Framing::Length(0) | Framing::Close => {}
            Framing::Chunked(_) => bail!("{endpoint} closed its stream in the middle of a chunk"),
            Framing::Length(left) => {
                bail!("{endpoint} closed its stream {left} bytes before its Content-Length")
            }
        }
        self.records(true)
    }
}

/// Moves the body bytes at the start of `raw` into `body`, as `framing`
/// delimits them, keeping what is not whole yet.
fn decode(framing: &mut Framing, raw: &mut Vec<u8>, body: &mut Vec<u8>) -> anyhow::Result<()> {
    match framing {
        Framing::Close => body.append(raw),
        Framing::Length(left) => {
            let take = raw.len().min(usize::try_from(*left).unwrap_or(usize::MAX));
            body.extend(raw.drain(..take));
            *left -= take as u64;
            if *left == 0 {
                raw.clear();
            }
        }
        Framing::Chunked(state) => loop {
            let line_end = || raw.windows(2).position(|w| w == b"\r\n");
            match state {
                Chunk::Size | Chunk::Trailer => {
                    let Some(eol) = line_end() else {
                        if raw.len() > CHUNK_LINE_BYTES_MAX {
                            bail!("a chunk size line longer than {CHUNK_LINE_BYTES_MAX} bytes");
                        }
                        return Ok(());
                    };
                    let line = std::str::from_utf8(&raw[..eol])
                        .context("a chunk size is not text")?
                        .to_string();
                    raw.drain(..eol + 2);
                    *state = match state {
                        Chunk::Trailer if line.is_empty() => Chunk::Done,
                        Chunk::Trailer => Chunk::Trailer,
                        _ => {
                            let size = usize::from_str_radix(
                                line.split(';').next().unwrap_or("").trim(),
                                16,
                            )
                            .with_context(|| format!("chunk size {line:?} is not hexadecimal"))?;
                            if size == 0 {
                                Chunk::Trailer
                            } else {
                                Chunk::Data(size)
                            }
                        }
                    };
                }
                Chunk::Data(left) => {
                    let take = raw.len().min(*left);
                    if take == 0 {
                        return Ok(());
                    }
                    body.extend(raw.drain(..take));
                    *state = if *left == take {
                        Chunk::DataEnd
                    } else {
                        Chunk::Data(*left - take)
                    };
                }
                Chunk::DataEnd => {
                    if raw.len() < 2 {
                        return Ok(());
                    }
                    if &raw[..2] != b"\r\n" {
                        bail!("a chunk does not end with a line break");
                    }
                    raw.drain(..2);
                    *state = Chunk::Size;
                }
                Chunk::Done => {
                    raw.clear();
                    return Ok(());
                }
            }
        },
    }
    Ok(())
}

impl Split {
    /// Cuts the whole records off the front of `body`; at `end`, what is
    /// left is the last record (an event not ended by a blank line is
    /// dropped, as event-stream readers do).
    fn records(&mut self, body: &mut Vec<u8>, end: bool) -> anyhow::Result<Vec<Vec<u8>>> {
        let mut out = Vec::new();
        match self {
            Split::Delimited(delimiter) => {
                while let Some(i) = body
                    .windows(delimiter.len())
                    .position(|w| w == delimiter.as_slice())
                {
                    let record: Vec<u8> = body.drain(..i + delimiter.len()).take(i).collect();
                    if !record.is_empty() {
                        out.push(record);
                    }
                }
                if end && !body.is_empty() {
                    out.push(std::mem::take(body));
                }
            }
            Split::Events(data) => {
                while let Some(i) = body.iter().position(|&b| b == b'\n') {
                    let mut line: Vec<u8> = body.drain(..=i).take(i).collect();
                    if line.last() == Some(&b'\r') {
                        line.pop();
                    }
                    if line.is_empty() {
                        if let Some(mut event) = data.take() {
                            event.pop();
                            if !event.is_empty() {
                                out.push(event);
                            }
                        }
                        continue;
                    }
                    if line.starts_with(b":") {
                        continue;
                    }
                    let (field, value) = match line.iter().position(|&b| b == b':') {
                        Some(c) => {
                            let value = &line[c + 1..];
                            (&line[..c], value.strip_prefix(b" ").unwrap_or(value))
                        }
                        None => (&line[..], &b""[..]),
                    };
                    if field == b"data" {
                        // Each data line and a newline; the last newline
                        // goes when the event is dispatched.
                        let event = data.get_or_insert_with(Vec::new);
                        event.extend_from_slice(value);
                        event.push(b'\n');
                        if event.len() > RECORD_SIZE_BYTES_DEFAULT {
                            bail!(
                                "an event's data passed {RECORD_SIZE_BYTES_DEFAULT} bytes, the most a record holds"
                            );
                        }
                    }
                }
                if end {
                    body.clear();
                }
            }
        }
        if body.len() > RECORD_SIZE_BYTES_DEFAULT {
            bail!(
                "the stream sent {} bytes without ending a record; a record holds at most {RECORD_SIZE_BYTES_DEFAULT}",
                body.len()
            );
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cut(split: &mut Split, pieces: &[&[u8]], end: bool) -> Vec<String> {
        let mut body = Vec::new();
        let mut out = Vec::new();
        for piece in pieces {
            body.extend_from_slice(piece);
            out.extend(split.records(&mut body, false).unwrap());
        }
        if end {
            out.extend(split.records(&mut body, true).unwrap());
        }
        out.into_iter()
            .map(|r| String::from_utf8(r).unwrap())
            .collect()
    }

    #[test]
    fn delimited_records_are_cut_wherever_the_bytes_break() {
        let mut s = Split::Delimited(b"\n".to_vec());
        assert_eq!(
            cut(&mut s, &[b"{\"a\":1}\n{\"a\"", b":2}\n\n{\"a\":3}"], true),
            ["{\"a\":1}", "{\"a\":2}", "{\"a\":3}"]
        );
        let mut s = Split::Delimited(b"||".to_vec());
        assert_eq!(cut(&mut s, &[b"x|", b"|y||z"], false), ["x", "y"]);
    }

    #[test]
    fn server_sent_events_become_one_record_each() {
        let mut s = Split::Events(None);
        assert_eq!(
            cut(
                &mut s,
                &[
                    b": a comment\r\nevent: fact\r\nid: 1\r\ndata: first\r\n\r\n",
                    b"data: two\ndata:",
                    b" lines\n\ndata: cut off at the end",
                ],
                true
            ),
            ["first", "two\nlines"]
        );
    }

    #[test]
    fn a_chunked_body_decodes_across_reads() {
        let mut framing = Framing::Chunked(Chunk::Size);
        let (mut raw, mut body) = (Vec::new(), Vec::new());
        for piece in [
            &b"4\r\nWi"[..],
            b"ki\r\n5;x=y\r",
            b"\npedia\r\n0\r\n",
            b"\r\n",
        ] {
            raw.extend_from_slice(piece);
            decode(&mut framing, &mut raw, &mut body).unwrap();
        }
        assert_eq!(body, b"Wikipedia");
        assert!(framing.done());
        let mut framing = Framing::Chunked(Chunk::Size);
        let mut raw = b"3\r\nabcX\r\n".to_vec();
        let e = decode(&mut framing, &mut raw, &mut body).unwrap_err();
        assert!(e.to_string().contains("line break"), "{e}");
        let mut framing = Framing::Length(3);
        let mut raw = b"abcdef".to_vec();
        let mut body = Vec::new();
        decode(&mut framing, &mut raw, &mut body).unwrap();
        assert_eq!((body.as_slice(), framing.done()), (&b"abc"[..], true));
    }

    #[test]
    fn a_record_past_the_size_limit_fails_the_stream() {
        let mut s = Split::Delimited(b"\n".to_vec());
        let mut body = vec![b'x'; RECORD_SIZE_BYTES_DEFAULT + 1];
        let e = s.records(&mut body, false).unwrap_err();
        assert!(e.to_string().contains("without ending a record"), "{e}");
    }
}
