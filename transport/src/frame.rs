//! Length-framed messages on QUIC streams.
//!
//! A frame is a big-endian `u32` byte count followed by that many bytes. QUIC
//! streams are byte streams, so this framing is what lets several messages
//! share one stream. The transport does not look inside frames; the codec in
//! `sluice-proto` does.

/// Size of the length prefix.
pub const FRAME_HEADER_LEN: usize = 4;

/// Frames up to this size (prefix included) are copied into one buffer and
/// handed to quinn in a single write, so a small frame is not split into a
/// 4-byte packet and a payload packet. Bigger frames are written in pieces:
/// the saved copy matters more than the 4 extra bytes.
const COALESCE_LIMIT: usize = 64 * 1024;

/// Errors reading or writing frames.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The frame is larger than the reader accepts (or than a `u32` can express).
    #[error(
        "frame of {size} bytes exceeds the limit of {max} bytes; \
         the stream is no longer in sync and must be dropped (raise the limit if such frames are legitimate)"
    )]
    TooLarge {
        /// Announced (or attempted) frame size.
        size: u64,
        /// The limit that was exceeded.
        max: u64,
    },
    /// The stream ended in the middle of a frame.
    #[error(
        "stream ended after {received} of {expected} bytes of a frame; \
         the peer finished or reset its side mid-message"
    )]
    Truncated {
        /// Bytes the frame (or its header) needed.
        expected: usize,
        /// Bytes that arrived before the end of the stream.
        received: usize,
    },
    /// No byte of the frame arrived for `after`.
    #[error(
        "no byte of a frame arrived for {after:?} after {received} of its {expected} bytes; \
         the peer stopped sending mid-message"
    )]
    Stalled {
        /// Bytes the frame needed.
        expected: usize,
        /// Bytes that arrived before the stall.
        received: usize,
        /// How long nothing arrived.
        after: std::time::Duration,
    },
    /// Reading from the stream failed (connection lost, stream reset, ...).
    #[error("could not read a frame: {0}; the connection or stream is gone, reconnect and retry")]
    Read(#[from] quinn::ReadError),
    /// Writing to the stream failed (connection lost, peer stopped the stream, ...).
    #[error("could not write a frame: {0}; the connection or stream is gone, reconnect and retry")]
    Write(#[from] quinn::WriteError),
}

/// Writes `payload` as one frame.
pub async fn write_frame(send: &mut quinn::SendStream, payload: &[u8]) -> Result<(), FrameError> {
    write_frame_parts(send, &[payload]).await
}

/// Writes the concatenation of `parts` as one frame, e.g. a header and a body
/// encoded separately, without first joining them.
pub async fn write_frame_parts(
    send: &mut quinn::SendStream,
    parts: &[&[u8]],
) -> Result<(), FrameError> {
    let total: usize = parts.iter().map(|p| p.len()).sum();
    let prefix = frame_len(total)?.to_be_bytes();
    if total + FRAME_HEADER_LEN <= COALESCE_LIMIT {
        let mut buf = Vec::with_capacity(FRAME_HEADER_LEN + total);
        buf.extend_from_slice(&prefix);
        for part in parts {
            buf.extend_from_slice(part);
        }
        send.write_all(&buf).await?;
    } else {
        send.write_all(&prefix).await?;
        for part in parts {
            send.write_all(part).await?;
        }
    }
    Ok(())
}

/// Writes `payload` as one frame, handing a large payload's buffer to quinn
/// instead of copying it into quinn's send buffer: a node serving a consumer
/// at full speed spent about 6% of its CPU on that copy of each records
/// frame (BENCHMARKS.md, session 24). A small payload goes as
/// [`write_frame`] does, prefix and payload in one write.
pub async fn write_frame_owned(
    send: &mut quinn::SendStream,
    payload: Vec<u8>,
) -> Result<(), FrameError> {
    if payload.len() + FRAME_HEADER_LEN <= COALESCE_LIMIT {
        return write_frame(send, &payload).await;
    }
    let prefix = frame_len(payload.len())?.to_be_bytes();
    // One call queues both, so the prefix never travels in a packet alone.
    let mut chunks = [
        bytes::Bytes::copy_from_slice(&prefix),
        bytes::Bytes::from(payload),
    ];
    send.write_all_chunks(&mut chunks).await?;
    Ok(())
}

/// Converts a payload length to the `u32` prefix, refusing what does not fit.
fn frame_len(len: usize) -> Result<u32, FrameError> {
    u32::try_from(len).map_err(|_| FrameError::TooLarge {
        size: len as u64,
        max: u64::from(u32::MAX),
    })
}

/// The most a frame's buffer reserves before its bytes arrive.
pub const FRAME_RESERVE_BYTES_MAX: usize = 64 * 1024;

/// Reads one frame of at most `max_bytes` payload bytes.
///
/// Returns `Ok(None)` when the peer finished the stream cleanly between
/// frames. The announced size is checked against `max_bytes` before any
/// buffer is allocated, so a hostile or corrupt prefix cannot make us
/// allocate gigabytes. After `TooLarge` the stream is mid-frame and unusable.
pub async fn read_frame(
    recv: &mut quinn::RecvStream,
    max_bytes: usize,
) -> Result<Option<Vec<u8>>, FrameError> {
    match read_frame_len(recv, max_bytes).await? {
        Some(len) => read_frame_body(recv, len, None).await.map(Some),
        None => Ok(None),
    }
}

/// Takes note that the peer finished the stream, if its FIN has already
/// arrived (it usually comes in the packet with the last frame), without
/// waiting for it; returns whether it had. Call it where no more frames are
/// expected, before the receive side is dropped: quinn answers a receive
/// stream dropped before its end was read with STOP_SENDING, even when the
/// FIN was there, and that frame often took a packet of its own, both ways
/// of every request (about 1.4 of the 4.4 datagrams of each idle leader
/// probe). A byte of data found instead is dropped with the stream, as any
/// frame after the expected last one would have been.
pub fn read_end_if_arrived(recv: &mut quinn::RecvStream) -> bool {
    let mut read = std::pin::pin!(recv.read_chunk(1, true));
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    matches!(
        read.as_mut().poll(&mut cx),
        std::task::Poll::Ready(Ok(None))
    )
}

/// Reads a frame's length prefix: the first half of [`read_frame`], for a
/// reader that must make room (or wait for it) before taking the body.
pub async fn read_frame_len(
    recv: &mut quinn::RecvStream,
    max_bytes: usize,
) -> Result<Option<usize>, FrameError> {
    let mut header = [0u8; FRAME_HEADER_LEN];
    let mut filled = 0;
    while filled < FRAME_HEADER_LEN {
        match recv.read(&mut header[filled..]).await? {
            Some(n) => filled += n,
            None if filled == 0 => return Ok(None),
            None => {
                return Err(FrameError::Truncated {
                    expected: FRAME_HEADER_LEN,
                    received: filled,
                });
            }
        }
    }
    let size = u32::from_be_bytes(header);
    let len = usize::try_from(size).unwrap_or(usize::MAX);
    if len > max_bytes {
        return Err(FrameError::TooLarge {
            size: u64::from(size),
            max: max_bytes as u64,
        });
    }
    Ok(Some(len))
}

/// Reads the `len` payload bytes that follow a length prefix. With `stall`,
/// gives up when no byte arrives for that long: a reader that set memory
/// aside for the frame does not keep it for a peer that stopped sending.
pub async fn read_frame_body(
    recv: &mut quinn::RecvStream,
    len: usize,
    stall: Option<std::time::Duration>,
) -> Result<Vec<u8>, FrameError> {
    // Filled from quinn's received chunks as they come: a zeroed buffer
    // (`read_exact`'s) would cost a memset of every frame, megabytes per fetch.
    // It grows as bytes arrive rather than being reserved from the header: a
    // peer sending headers that announce 16 MiB and nothing else took a node
    // to 17 GB of address space with 1,000 streams.
    let mut payload = Vec::with_capacity(len.min(FRAME_RESERVE_BYTES_MAX));
    while payload.len() < len {
        let chunk = recv.read_chunk(len - payload.len(), true);
        let chunk = match stall {
            Some(after) => match tokio::time::timeout(after, chunk).await {
                Ok(chunk) => chunk,
                Err(_) => {
                    return Err(FrameError::Stalled {
                        expected: len,
                        received: payload.len(),
                        after,
                    });
                }
            },
            None => chunk.await,
        };
        match chunk? {
            Some(chunk) => payload.extend_from_slice(&chunk.bytes),
            None => {
                return Err(FrameError::Truncated {
                    expected: len,
                    received: payload.len(),
                });
            }
        }
    }
    Ok(payload)
}
