//! The Runtime API's streaming response mode, received: a `POST /invocation/{id}/response` with
//! `Lambda-Runtime-Function-Response-Mode: streaming` and a chunked body, handed on piece by
//! piece as it arrives instead of being collected.
//!
//! The wire format, as AWS documents it ("Implementing response streaming in a custom runtime",
//! Lambda developer guide): the runtime sends `Transfer-Encoding: chunked` and may end the body
//! with the trailers `Lambda-Runtime-Function-Error-Type` and `Lambda-Runtime-Function-Error-Body`
//! (the error document, base64-encoded) to say the stream broke after it began. An HTTP
//! integration's body (`Content-Type: application/vnd.awslambda.http-integration-response`) is a
//! JSON prelude, 8 NUL bytes, then the payload; that split is the HTTP front's business
//! (`http_answer`), not this module's.

use base64::Engine as _;
use bytes::Bytes;
use http::HeaderMap;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use tokio::sync::mpsc;

/// The request header that selects the streaming mode.
pub const RESPONSE_MODE_HEADER: &str = "lambda-runtime-function-response-mode";
/// The trailer that says a stream broke, with its error type.
const ERROR_TYPE_TRAILER: &str = "lambda-runtime-function-error-type";
/// The trailer carrying the broken stream's error document, base64-encoded.
const ERROR_BODY_TRAILER: &str = "lambda-runtime-function-error-body";
/// Largest streamed response Lambda accepts (200 MiB); past it the stream is cut.
pub const MAX_STREAMED: u64 = 200 * 1024 * 1024;
/// Pieces held between the runtime and the reader: a slow reader slows the runtime down
/// (backpressure through the socket) instead of filling memory.
const BUFFERED_PIECES: usize = 4;

/// A streamed response, as the runtime sends it.
#[derive(Debug)]
pub struct ResponseStream {
    /// The request's `Content-Type`: the HTTP integration's prelude type, or the payload's own.
    pub content_type: Option<String>,
    /// The body's pieces as they arrive. The channel closes after the last one; an `Err` is
    /// the last item of a stream that broke.
    pub pieces: mpsc::Receiver<Result<Bytes, StreamBroke>>,
}

/// Why a streamed response ended before its end.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamBroke {
    /// The `Lambda-Runtime-Function-Error-Type` trailer, or what this endpoint saw go wrong.
    pub error_type: String,
    /// The error document (`errorType`, `errorMessage`).
    pub body: Bytes,
}

impl StreamBroke {
    /// A failure seen by this endpoint itself (the runtime's connection broke, the stream was
    /// too long), with a document shaped like Lambda's.
    fn local(error_type: &str, message: &str) -> Self {
        let body = serde_json::json!({ "errorType": error_type, "errorMessage": message });
        Self {
            error_type: error_type.to_owned(),
            body: Bytes::from(body.to_string()),
        }
    }

    /// The error trailers of a stream that broke, if `trailers` carry them.
    fn from_trailers(trailers: &HeaderMap) -> Option<Self> {
        let error_type = trailers.get(ERROR_TYPE_TRAILER)?.to_str().ok()?.to_owned();
        let encoded = trailers
            .get(ERROR_BODY_TRAILER)
            .map(|v| v.as_bytes())
            .unwrap_or_default();
        // Base64 as documented; a runtime that sent plain text still gets its words shown.
        let body = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .map(Bytes::from)
            .unwrap_or_else(|_| Bytes::copy_from_slice(encoded));
        Some(Self { error_type, body })
    }
}

/// How reading a streamed response ended, for the answer to the runtime.
#[derive(Debug, PartialEq, Eq)]
pub enum Received {
    /// The whole body arrived (with or without error trailers, which are the runtime's to send).
    Complete,
    /// The body passed [`MAX_STREAMED`]: the rest was not read.
    TooLarge,
    /// The runtime's connection broke mid-body.
    Broken,
}

/// Whether a `/response` request is in the streaming mode.
pub fn is_streaming(headers: &HeaderMap) -> bool {
    headers
        .get(RESPONSE_MODE_HEADER)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|mode| mode.eq_ignore_ascii_case("streaming"))
}

/// A stream and the sending half that [`receive`] feeds.
pub fn channel(
    content_type: Option<String>,
) -> (mpsc::Sender<Result<Bytes, StreamBroke>>, ResponseStream) {
    let (sender, pieces) = mpsc::channel(BUFFERED_PIECES);
    (
        sender,
        ResponseStream {
            content_type,
            pieces,
        },
    )
}

/// Read `body` to its end, handing each piece to `pieces` as it arrives, then the error of a
/// stream that broke. A reader that went away is not waited for: the rest is read and dropped,
/// so the runtime finishes its request either way.
pub async fn receive(
    mut body: Incoming,
    pieces: mpsc::Sender<Result<Bytes, StreamBroke>>,
) -> Received {
    let mut received: u64 = 0;
    let mut reader_gone = false;
    let (ended, broke) = loop {
        match body.frame().await {
            None => break (Received::Complete, None),
            Some(Err(err)) => {
                let message = format!("the runtime's streamed response broke off: {err}");
                break (
                    Received::Broken,
                    Some(StreamBroke::local("Runtime.StreamInterrupted", &message)),
                );
            }
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) => {
                    received += data.len() as u64;
                    if received > MAX_STREAMED {
                        let message = format!(
                            "the streamed response passed Lambda's limit of {MAX_STREAMED} bytes"
                        );
                        break (
                            Received::TooLarge,
                            Some(StreamBroke::local(
                                "Function.ResponseSizeTooLarge",
                                &message,
                            )),
                        );
                    }
                    if !reader_gone && pieces.send(Ok(data)).await.is_err() {
                        reader_gone = true;
                    }
                }
                Err(frame) => {
                    if let Some(broke) = frame.trailers_ref().and_then(StreamBroke::from_trailers) {
                        // Trailers end the body: nothing follows them.
                        break (Received::Complete, Some(broke));
                    }
                }
            },
        }
    };
    if let Some(broke) = broke
        && !reader_gone
    {
        let _ = pieces.send(Err(broke)).await;
    }
    ended
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn error_trailers_carry_the_type_and_the_base64_decoded_document() {
        let mut trailers = HeaderMap::new();
        trailers.insert(
            ERROR_TYPE_TRAILER,
            HeaderValue::from_static("Scar.StreamError"),
        );
        let document = r#"{"errorType":"Scar.StreamError","errorMessage":"short read"}"#;
        let encoded = base64::engine::general_purpose::STANDARD.encode(document);
        trailers.insert(ERROR_BODY_TRAILER, HeaderValue::from_str(&encoded).unwrap());
        let broke = StreamBroke::from_trailers(&trailers).unwrap();
        assert_eq!(broke.error_type, "Scar.StreamError");
        assert_eq!(broke.body, document.as_bytes());
    }

    #[test]
    fn trailers_without_an_error_type_are_not_a_broken_stream() {
        let mut trailers = HeaderMap::new();
        trailers.insert("x-checksum", HeaderValue::from_static("abc"));
        assert_eq!(StreamBroke::from_trailers(&trailers), None);
    }

    #[test]
    fn the_streaming_mode_is_told_by_its_header_in_any_case() {
        let mut headers = HeaderMap::new();
        assert!(!is_streaming(&headers));
        headers.insert(RESPONSE_MODE_HEADER, HeaderValue::from_static("Streaming"));
        assert!(is_streaming(&headers));
        headers.insert(RESPONSE_MODE_HEADER, HeaderValue::from_static("buffered"));
        assert!(!is_streaming(&headers));
    }
}
