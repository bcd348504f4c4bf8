//! One request and its answer on a fresh stream: the exchange that clients
//! and nodes alike use, so both frame, finish and close streams the same way
//! and both get the same typed errors to map into their own.

use sluice_proto::limits::FRAME_SIZE_BYTES_MAX;
use sluice_proto::{CodecError, Request, Response, codec};

use crate::frame::{FrameError, read_end_if_arrived, read_frame, write_frame};

/// What can go wrong between sending a request and decoding its answer.
#[derive(Debug, thiserror::Error)]
pub enum ExchangeError {
    /// The request could not be encoded (it is larger than a frame may be, say).
    #[error("could not encode the request: {0}")]
    Encode(#[source] CodecError),
    /// No stream could be opened on the connection.
    #[error("could not open a stream: {0}; the connection is gone, reconnect and retry")]
    Open(#[from] quinn::ConnectionError),
    /// Writing the request or reading the answer failed.
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// The peer finished the stream without a frame.
    #[error("the node closed the stream without answering")]
    Unanswered,
    /// The answer's bytes are not a `Response` of this version.
    #[error("could not decode the answer: {0}")]
    Decode(#[source] CodecError),
}

/// Sends `request` on a new bidirectional stream of `connection` and reads
/// the first frame of the answer. Returns the stream too, for the answers
/// that go on after their first frame (a fetch); for any other the stream's
/// end has been taken note of (see [`read_end_if_arrived`]).
///
/// No deadline is applied here: every caller has its own, named where the
/// caller's other deadlines are.
pub async fn exchange(
    connection: &quinn::Connection,
    request: &Request,
) -> Result<(Response, quinn::RecvStream), ExchangeError> {
    let payload = codec::encode(request).map_err(ExchangeError::Encode)?;
    let (mut send, mut recv) = connection.open_bi().await?;
    write_frame(&mut send, &payload).await?;
    // Finishing only fails if the stream is already gone; the read below reports that.
    let _ = send.finish();
    let frame = read_frame(&mut recv, FRAME_SIZE_BYTES_MAX)
        .await?
        .ok_or(ExchangeError::Unanswered)?;
    let response = codec::decode::<Response>(&frame).map_err(ExchangeError::Decode)?;
    if !matches!(response, Response::FetchStarted { .. }) {
        read_end_if_arrived(&mut recv);
    }
    Ok((response, recv))
}
