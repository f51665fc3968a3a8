//! What one invocation answers: an event's result document, or, for an HTTP request, an HTTP
//! response in the integration's own format, buffered (Lambda's 6 MB) or streamed (200 MB).
//!
//! An HTTP request is always answered as HTTP, failures included: API Gateway and Function URLs
//! turn a Lambda error into a bare 502, which tells the caller nothing.

use std::time::Instant;

use bytes::Bytes;

use crate::event::HttpFormat;
use crate::reply::{self, Buffered, OutputFile, Reply, ReplyBody};
use crate::report::{Failure, FailureKind, MAX_PAYLOAD, Response};
use crate::runtime::StreamBody;

/// Largest body a streamed response carries: Lambda's limit for response streaming.
pub const MAX_STREAMED: u64 = 200 * 1024 * 1024;

/// The answer of one invocation.
pub enum Answer {
    /// An event's result document (`POST /response` as JSON).
    Json(Box<Response>),
    /// An HTTP answer that fits Lambda's buffered payload: the integration response document.
    Buffered {
        /// The HTTP status it carries.
        status: u16,
        /// The document.
        payload: Bytes,
    },
    /// An HTTP answer in the Runtime API's streaming mode.
    Streamed {
        /// The HTTP status of the prelude.
        status: u16,
        /// The prelude: status, headers and cookies as JSON.
        prelude: Bytes,
        /// The body.
        body: StreamBody,
        /// When the script's run ended (the stream's first byte is measured from it).
        script_ended: Option<Instant>,
    },
}

/// How an HTTP request is answered: its integration's format, buffered or streamed.
#[derive(Clone, Copy, Debug)]
pub struct HttpMode {
    /// The integration response format.
    pub format: HttpFormat,
    /// `SCAR_HTTP_STREAMING`.
    pub streaming: bool,
}

impl HttpMode {
    /// The answer carrying `reply`. One too large for the mode becomes the listing of
    /// `outputs` when they were all uploaded (`SCAR_OUTPUT`), else a `Scar.OutputError` answer
    /// saying what to set.
    pub fn answer(
        self,
        reply: Reply,
        outputs: &[OutputFile],
        request_id: &str,
        script_ended: Option<Instant>,
    ) -> Answer {
        let len = reply.body.len();
        if self.streaming {
            if len > MAX_STREAMED {
                return self.too_large(len, outputs, request_id);
            }
            return streamed(reply, script_ended);
        }
        let status = reply.status;
        match reply::buffered(reply, self.format, MAX_PAYLOAD) {
            Ok(Buffered::Payload(payload)) => Answer::Buffered {
                status,
                payload: payload.into(),
            },
            Ok(Buffered::TooLarge { body_len }) => self.too_large(body_len, outputs, request_id),
            Err(err) => self.failure(
                &Failure::new(
                    FailureKind::Output,
                    format!("reading the output for the answer failed: {err}"),
                ),
                request_id,
            ),
        }
    }

    /// `failure` as an HTTP answer (400, 422, 504 or 500 with a JSON body).
    pub fn failure(self, failure: &Failure, request_id: &str) -> Answer {
        let reply = reply::for_failure(failure, request_id);
        if self.streaming {
            return streamed(reply, None);
        }
        let status = reply.status;
        match reply::buffered(reply, self.format, MAX_PAYLOAD) {
            Ok(Buffered::Payload(payload)) => Answer::Buffered {
                status,
                payload: payload.into(),
            },
            // A failure's document is small and in memory: neither happens, but the answer
            // must still be HTTP.
            Ok(Buffered::TooLarge { .. }) | Err(_) => Answer::Buffered {
                status: 500,
                payload: Bytes::from_static(
                    br#"{"statusCode":500,"headers":{"content-type":"application/json"},"body":"{\"errorType\":\"Scar.InternalError\",\"errorMessage\":\"the failure could not be encoded\"}","isBase64Encoded":false}"#,
                ),
            },
        }
    }

    /// Whether a binary body of `len` bytes (a tar of the outputs) surely cannot be carried:
    /// base64 makes a buffered one 4/3 as large.
    pub fn cannot_carry(self, len: u64) -> bool {
        if self.streaming {
            len > MAX_STREAMED
        } else {
            len > MAX_PAYLOAD as u64 / 4 * 3
        }
    }

    /// The answer for a body of `len` bytes larger than the mode carries: the listing of
    /// `outputs` when they were all uploaded, else a `Scar.OutputError` saying what to set.
    pub fn too_large(self, len: u64, outputs: &[OutputFile], request_id: &str) -> Answer {
        let (limit, mode) = if self.streaming {
            (MAX_STREAMED, "a streamed response")
        } else {
            (MAX_PAYLOAD as u64, "a buffered response")
        };
        if !outputs.is_empty() && outputs.iter().all(|o| o.url.is_some()) {
            let note = format!(
                "the answer ({len} bytes) is larger than the {limit} bytes {mode} carries: the outputs were uploaded and are listed here"
            );
            let listing = reply::listing(outputs, Some(&note));
            if self.streaming {
                return streamed(listing, None);
            }
            let status = listing.status;
            if let Ok(Buffered::Payload(payload)) =
                reply::buffered(listing, self.format, MAX_PAYLOAD)
            {
                return Answer::Buffered {
                    status,
                    payload: payload.into(),
                };
            }
        }
        let hint = if self.streaming {
            "set SCAR_OUTPUT to upload the outputs and answer their S3 URLs"
        } else {
            "set SCAR_HTTP_STREAMING=true with a Function URL whose InvokeMode is RESPONSE_STREAM (up to 200 MB), or set SCAR_OUTPUT to upload the outputs and answer their S3 URLs"
        };
        let failure = Failure::new(
            FailureKind::Output,
            format!(
                "the answer is {len} bytes, more than the {limit} bytes {mode} carries: {hint}"
            ),
        );
        self.failure(&failure, request_id)
    }
}

fn streamed(reply: Reply, script_ended: Option<Instant>) -> Answer {
    let prelude = reply::prelude(&reply);
    let body = match reply.body {
        ReplyBody::Empty => StreamBody::Bytes(Bytes::new()),
        ReplyBody::Bytes(bytes) => StreamBody::Bytes(bytes),
        ReplyBody::File { file, len } => StreamBody::File { file, len },
    };
    Answer::Streamed {
        status: reply.status,
        prelude,
        body,
        script_ended,
    }
}

#[cfg(test)]
#[path = "answer_tests.rs"]
mod tests;
