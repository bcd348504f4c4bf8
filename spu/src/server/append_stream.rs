//! Serving a peer's Raft append stream (`sluice_raft`'s pipelined
//! replication): after its opening frame (`RaftRpcKind::AppendStream`), a
//! stream carries one group's appends from its leader, in log order, each an
//! ordinary `Request::Raft`; they go to the group in that order and are
//! answered in that order, each as soon as it is durable here, while later
//! ones are read.
//!
//! Bounds: each append's bytes stay reserved in the connection's budget
//! (as any request's) until it is answered, and at most
//! [`sluice_raft::APPEND_STREAM_IN_FLIGHT_MAX`] are read ahead of their
//! answers; a stream with no append for
//! [`crate::timeouts::APPEND_STREAM_SERVE_IDLE`] is closed. A frame that is
//! not an append of the stream's group ends the stream with an error naming
//! it, after the appends before it are answered.

use std::collections::VecDeque;
use std::sync::Mutex;

use futures::StreamExt;
use quinn::{RecvStream, SendStream};
use sluice_proto::{RaftRpcKind, Request, Response, WireError};

use super::{read_request, respond};
use crate::admission::ConnectionSlot;
use crate::shared::Shared;
use crate::timeouts::APPEND_STREAM_SERVE_IDLE;

pub(super) async fn serve(
    node: &Shared,
    group: u64,
    mut send: SendStream,
    mut recv: RecvStream,
    slot: &ConnectionSlot,
) {
    let (feed, mut incoming) =
        tokio::sync::mpsc::channel::<Vec<u8>>(sluice_raft::APPEND_STREAM_IN_FLIGHT_MAX);
    let input = futures::stream::poll_fn(move |cx| incoming.poll_recv(cx));
    let served = if group == sluice_raft::CONTROLLER_GROUP {
        node.controller.serve_append_stream(input).boxed()
    } else if let Some(p) = node.replicas.by_group(group) {
        p.group.serve_append_stream(input).boxed()
    } else {
        let error = super::peer::no_replica(node, group);
        if respond(&mut send, &Response::Error(error)).await.is_ok() {
            let _ = send.finish();
        }
        return;
    };
    // The opening's answer: a Raft answer without payload.
    let accept = Response::Raft {
        payload: Vec::new(),
    };
    if respond(&mut send, &accept).await.is_err() {
        return;
    }
    // Each append's reservation, held until its answer is written.
    let held = Mutex::new(VecDeque::new());
    let read = async {
        let error = loop {
            let next =
                tokio::time::timeout(APPEND_STREAM_SERVE_IDLE, read_request(&mut recv, slot));
            match next.await {
                Err(_) | Ok(Ok(None)) => break None,
                Ok(Ok(Some((Request::Raft(rpc), reservation))))
                    if rpc.group == group && rpc.kind == RaftRpcKind::AppendEntries =>
                {
                    held.lock().unwrap().push_back(reservation);
                    if feed.send(rpc.payload).await.is_err() {
                        break None;
                    }
                }
                Ok(Ok(Some((other, _)))) => {
                    let error = WireError::MalformedRequest {
                        reason: format!(
                            "an append stream of Raft group {group} carries only its appends, \
                             not a {}",
                            other.name()
                        ),
                    };
                    break Some((error, true));
                }
                Ok(Err(error)) => break Some((error, false)),
            }
        };
        drop(feed);
        error
    };
    let write = async {
        let mut served = served;
        while let Some(payload) = served.next().await {
            let answered = respond(&mut send, &Response::Raft { payload }).await;
            held.lock().unwrap().pop_front();
            if answered.is_err() {
                return false;
            }
        }
        true
    };
    let (error, delivered) = tokio::join!(read, write);
    if !delivered {
        return;
    }
    if let Some((error, peers_fault)) = error {
        // A stream whose connection went (its sender stopped or restarted)
        // is routine; one that carried something else is the sender's bug.
        if peers_fault {
            tracing::warn!(group, error = %error, "ended an append stream carrying another request");
        } else {
            tracing::debug!(group, error = %error, "an append stream ended");
        }
        let _ = respond(&mut send, &Response::Error(error)).await;
    }
    let _ = send.finish();
}
