//! A streamed answer forwarded to the HTTP client as the runtime sends it.
//!
//! The head goes out as soon as it is known (at once for a plain stream; after the prelude's
//! delimiter for an HTTP integration stream), then every piece as it arrives, with the
//! client's reading pace pushed back to the runtime. A stream that breaks after the head was
//! sent cannot change its status any more: the client's response is cut (no last chunk), as
//! Lambda does, and the error is printed. Before the head, a break is an ordinary `502`.

use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use http::{Response, StatusCode};
use tokio::sync::{mpsc, oneshot};

use super::channel_body::{BodySender, ChannelBody};
use super::http_answer::{self, Head, Prelude, Served};
use super::runtime_stream::{ResponseStream, StreamBroke};

/// Pieces held for a client slower than the runtime.
const CLIENT_DEPTH: usize = 4;

/// The pieces of a streamed answer, as the runtime API hands them on.
type Pieces = mpsc::Receiver<Result<Bytes, StreamBroke>>;

/// Why a streamed answer could not begin.
struct Unstarted {
    head: Head,
    body: Bytes,
    note: String,
}

impl Unstarted {
    fn text(note: String) -> Self {
        Self {
            head: Head::typed(StatusCode::BAD_GATEWAY, "text/plain"),
            body: Bytes::from(format!("{note}\n")),
            note,
        }
    }

    fn broke(broke: StreamBroke) -> Self {
        Self {
            head: Head::typed(StatusCode::BAD_GATEWAY, "application/json"),
            note: describe(&broke),
            body: broke.body,
        }
    }
}

/// How copying the payload ended.
enum Copied {
    Complete,
    Broke(StreamBroke),
    ReaderGone,
}

/// Whether a stream ran past its time, so that the sandbox must be stopped.
#[derive(Debug, PartialEq, Eq)]
#[must_use]
pub(super) enum Forwarded {
    /// It ended (whole, broken, or its client went away).
    Ended,
    /// It did not end within `limit`; the client's response was cut.
    TimedOut,
}

/// Forward `stream` to the client waiting on `response`, for at most `limit` (the bootstrap
/// ends a stream by its own deadline; this only catches one that never ends); print the
/// request's line at its end.
pub(super) async fn forward(
    stream: ResponseStream,
    response: oneshot::Sender<Response<ChannelBody>>,
    label: &str,
    started: Instant,
    limit: Duration,
) -> Forwarded {
    let deadline = tokio::time::Instant::now() + limit;
    let mut forwarded = Forwarded::Ended;
    let ResponseStream {
        content_type,
        mut pieces,
    } = stream;
    let begun = if http_answer::has_prelude(content_type.as_deref()) {
        match tokio::time::timeout_at(deadline, read_prelude(&mut pieces)).await {
            Ok(begun) => begun,
            Err(_) => {
                forwarded = Forwarded::TimedOut;
                Err(Unstarted::text(
                    "no prelude within the function's timeout: the sandbox was stopped".into(),
                ))
            }
        }
    } else {
        Ok((
            http_answer::plain_stream(content_type.as_deref()),
            Bytes::new(),
        ))
    };
    let (head, first) = match begun {
        Ok(begun) => begun,
        Err(failure) => {
            let note = Some(failure.note);
            let served = Served {
                label,
                status: failure.head.status,
                bytes: failure.body.len() as u64,
                started,
                note,
            };
            served.print();
            let _ = response.send(failure.head.response(ChannelBody::whole(failure.body)));
            return forwarded;
        }
    };
    let (sender, body) = ChannelBody::channel(CLIENT_DEPTH);
    let mut sent = 0u64;
    let note = if response.send(head.response(body)).is_err() {
        // Dropping the pieces lets the runtime API read the rest and throw it away.
        Some("the client went away".to_owned())
    } else {
        let copied =
            tokio::time::timeout_at(deadline, copy(&mut pieces, &sender, first, &mut sent)).await;
        match copied {
            Ok(Copied::Complete) => {
                sender.finish().await;
                None
            }
            Ok(Copied::Broke(broke)) => {
                let note = format!("stream broke after {sent} bytes: {}", describe(&broke));
                sender.fail(std::io::Error::other(note.clone())).await;
                Some(note)
            }
            Ok(Copied::ReaderGone) => Some("the client went away".to_owned()),
            Err(_) => {
                // Dropping the sender cuts the client's response short.
                drop(sender);
                forwarded = Forwarded::TimedOut;
                Some("no end within the function's timeout: the sandbox was stopped".to_owned())
            }
        }
    };
    Served {
        label,
        status: head.status,
        bytes: sent,
        started,
        note,
    }
    .print();
    forwarded
}

/// Read pieces until the prelude's delimiter: the head, and the payload that came with it.
async fn read_prelude(pieces: &mut Pieces) -> Result<(Head, Bytes), Unstarted> {
    let mut received = BytesMut::new();
    loop {
        match pieces.recv().await {
            Some(Ok(piece)) => received.extend_from_slice(&piece),
            Some(Err(broke)) => return Err(Unstarted::broke(broke)),
            None => {
                return Err(Unstarted::text(
                    "the streamed answer ended inside its prelude (no 8-NUL delimiter)".into(),
                ));
            }
        }
        let so_far = received.clone().freeze();
        match http_answer::prelude(&so_far) {
            Ok(Prelude::Incomplete) => {}
            Ok(Prelude::Complete(head, rest)) => return Ok((head, rest)),
            Err(err) => return Err(Unstarted::text(err.to_string())),
        }
    }
}

/// Copy the payload to the client: `first`, then every piece until the stream's end.
async fn copy(pieces: &mut Pieces, sender: &BodySender, first: Bytes, sent: &mut u64) -> Copied {
    if !first.is_empty() {
        let len = first.len() as u64;
        if sender.data(first).await.is_err() {
            return Copied::ReaderGone;
        }
        *sent += len;
    }
    while let Some(piece) = pieces.recv().await {
        match piece {
            Ok(bytes) => {
                let len = bytes.len() as u64;
                if sender.data(bytes).await.is_err() {
                    return Copied::ReaderGone;
                }
                *sent += len;
            }
            Err(broke) => return Copied::Broke(broke),
        }
    }
    Copied::Complete
}

/// `Scar.StreamError: short read`: the type and the document's message.
fn describe(broke: &StreamBroke) -> String {
    let message = serde_json::from_slice::<serde_json::Value>(&broke.body)
        .ok()
        .and_then(|d| d["errorMessage"].as_str().map(str::to_owned))
        .unwrap_or_else(|| String::from_utf8_lossy(&broke.body).into_owned());
    format!("{}: {message}", broke.error_type)
}

#[cfg(test)]
#[path = "http_stream_tests.rs"]
mod tests;
