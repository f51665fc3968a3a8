//! The Runtime API's streaming response mode: one `POST .../response` whose body is sent as
//! HTTP/1.1 chunks while it is read, for answers past the 6 MB buffered limit (up to 200 MB).
//!
//! The wire format, and the AWS documents each rule was checked against, are in
//! `docs/streaming.md`. In short: the request says `Lambda-Runtime-Function-Response-Mode:
//! streaming`, `Transfer-Encoding: chunked` and declares the two error trailers up front; an
//! HTTP integration's body is its JSON prelude, 8 NUL bytes, then the payload; a failure after
//! the request began ends the chunked body with those trailers (Lambda's `/error` is closed by
//! then).
//!
//! Memory stays flat whatever the size: a file is read in [`CHUNK`]-byte pieces on a blocking
//! thread and handed to hyper through a channel of [`READ_AHEAD`] frames, so a reader that gets
//! ahead of the socket waits instead of filling memory.

use std::io::{self, Read};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Instant;

use base64::Engine;
use bytes::Bytes;
use http::header::{CONNECTION, CONTENT_TYPE, TRAILER, TRANSFER_ENCODING};
use http::{HeaderMap, HeaderValue, Method, Request, StatusCode};
use http_body_util::BodyExt;
use http_body_util::combinators::UnsyncBoxBody;
use hyper::body::{Body, Frame};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use tokio::sync::{mpsc, oneshot};

use super::error::{ErrorReport, RuntimeError};
use super::headers::{ERROR_TYPE_HEADER, INVOCATION_ID_HEADER};

/// The body type of every Runtime API request: one client (one connection pool) sends both the
/// buffered calls and the streamed response.
pub(crate) type RequestBody = UnsyncBoxBody<Bytes, io::Error>;

/// Bytes read from a file per chunk.
pub const CHUNK: usize = 256 * 1024;
/// Chunks read ahead of what hyper has taken.
pub const READ_AHEAD: usize = 2;
/// The delimiter between an HTTP integration's JSON prelude and its payload.
const DELIMITER: [u8; 8] = [0; 8];
/// The prelude and its delimiter must arrive within the stream's first 16 KiB.
const PRELUDE_LIMIT: usize = 16 * 1024;
/// `errorType` of a streamed response that broke.
pub const STREAM_ERROR_TYPE: &str = "Scar.StreamError";

const RESPONSE_MODE_HEADER: &str = "lambda-runtime-function-response-mode";
const ERROR_BODY_HEADER: &str = "lambda-runtime-function-error-body";
/// Both trailers, declared in the head as HTTP/1.1 requires (and as hyper needs before it
/// writes a trailer at all).
const DECLARED_TRAILERS: &str =
    "Lambda-Runtime-Function-Error-Type, Lambda-Runtime-Function-Error-Body";
const HTTP_INTEGRATION: &str = "application/vnd.awslambda.http-integration-response";
const OCTET_STREAM: &str = "application/octet-stream";

/// The payload of a streamed response.
#[derive(Debug)]
pub enum StreamBody {
    /// Bytes already in memory.
    Bytes(Bytes),
    /// The first `len` bytes of a file, read in chunks while they are sent, never whole.
    File {
        /// The file, positioned where the payload starts.
        file: std::fs::File,
        /// Bytes to send; a file that ends sooner breaks the stream.
        len: u64,
    },
}

/// What a streamed response sent.
#[derive(Clone, Copy, Debug)]
pub struct StreamSent {
    /// Payload bytes, not counting the HTTP prelude and its delimiter.
    pub bytes: u64,
    /// When the body's first byte (the prelude's, if any) was handed to the connection; for an
    /// empty body without a prelude, when the response was accepted.
    pub first_byte: Instant,
}

/// A wrapper that lets `Full<Bytes>` bodies of the buffered calls travel through the same
/// client as streamed ones.
pub(crate) fn buffered(body: Bytes) -> RequestBody {
    http_body_util::Full::new(body)
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// POST `url` (an invocation's `/response`) in streaming mode; see [`super::RuntimeApi::respond_streaming`].
pub(crate) async fn respond_streaming(
    client: &Client<HttpConnector, RequestBody>,
    url: String,
    invocation_id: Option<&str>,
    prelude: Option<Bytes>,
    body: StreamBody,
) -> Result<StreamSent, RuntimeError> {
    let head = prelude.map(with_delimiter).transpose()?;
    let head_len = head.as_ref().map_or(0, |h| h.len() as u64);
    let content_type = if head.is_some() {
        HTTP_INTEGRATION
    } else {
        OCTET_STREAM
    };
    let transport = |source: Box<dyn std::error::Error + Send + Sync>| RuntimeError::Transport {
        method: Method::POST,
        path: url.clone(),
        source,
    };
    let (frames, receiver) = mpsc::channel(READ_AHEAD);
    let progress = Arc::new(Progress::default());
    let stop = Arc::new(AtomicBool::new(false));
    let mut request = Request::builder()
        .method(Method::POST)
        .uri(&url)
        .header(RESPONSE_MODE_HEADER, "streaming")
        .header(TRANSFER_ENCODING, "chunked")
        .header(TRAILER, DECLARED_TRAILERS)
        .header(CONTENT_TYPE, content_type)
        // "Close the underlying connection after it has successfully written the response."
        .header(CONNECTION, "close");
    if let Some(invocation_id) = invocation_id {
        request = request.header(INVOCATION_ID_HEADER, invocation_id);
    }
    let (ended_tx, ended) = oneshot::channel();
    let channel = ChannelBody {
        frames: receiver,
        progress: Arc::clone(&progress),
        ended: Some(ended_tx),
    };
    let request = request
        .body(channel.boxed_unsync())
        .map_err(|e| transport(e.into()))?;
    let reader_stop = Arc::clone(&stop);
    let producer = tokio::task::spawn_blocking(move || produce(&frames, head, body, &reader_stop));
    let answer = async {
        let response = client
            .request(request)
            .await
            .map_err(|e| transport(e.into()))?;
        let (parts, body) = response.into_parts();
        let body = body.collect().await.map_err(|e| transport(e.into()))?;
        Ok::<_, RuntimeError>((parts.status, body.to_bytes()))
    };
    let (status, answer) = match answer.await {
        Ok(answered) => answered,
        Err(err) => {
            // The body went with the failed request: the reader's next send fails and it ends.
            stop.store(true, Ordering::Relaxed);
            return Err(err);
        }
    };
    if !status.is_success() {
        // Lambda refused the response, maybe before reading it all: stop reading the file,
        // without waiting on a reader that a stalled connection may hold.
        stop.store(true, Ordering::Relaxed);
        if status == StatusCode::GONE {
            return Err(RuntimeError::Gone {
                method: Method::POST,
                path: url,
            });
        }
        let text = String::from_utf8_lossy(&answer[..answer.len().min(1024)]).into_owned();
        return Err(RuntimeError::Status {
            method: Method::POST,
            path: url,
            status,
            body: text,
        });
    }
    let outcome = producer.await.map_err(|e| transport(e.into()))?;
    // A Runtime API may answer before it has read the whole body (the `cargo lambda` emulator
    // does) while hyper goes on sending it: the count is taken once hyper has taken the body's
    // end (or dropped it), within a bound, since a stalled connection must not hold the loop.
    let _ = tokio::time::timeout(BODY_END_WAIT, ended).await;
    let bytes = progress.bytes().saturating_sub(head_len);
    match outcome {
        Outcome::Whole => Ok(StreamSent {
            bytes,
            first_byte: progress.first_byte(),
        }),
        Outcome::Broken(source) => Err(RuntimeError::StreamBroken {
            path: url,
            bytes,
            source,
        }),
        // Lambda accepted a body the reader did not finish: only a server that answers
        // before the end of the request gets here.
        Outcome::Abandoned => Err(transport(
            "the Runtime API answered before the streamed body ended".into(),
        )),
    }
}

/// The prelude followed by its delimiter, or why it cannot be sent: a NUL inside it would be
/// read as the delimiter, and it must end within the stream's first 16 KiB.
fn with_delimiter(prelude: Bytes) -> Result<Bytes, RuntimeError> {
    let len = prelude.len();
    if prelude.contains(&0) {
        return Err(RuntimeError::Prelude {
            len,
            problem: "contains a NUL byte, which would end it early",
        });
    }
    if len + DELIMITER.len() > PRELUDE_LIMIT {
        return Err(RuntimeError::Prelude {
            len,
            problem: "does not end, with its 8-byte delimiter, within the first 16 KiB",
        });
    }
    let mut head = Vec::with_capacity(len + DELIMITER.len());
    head.extend_from_slice(&prelude);
    head.extend_from_slice(&DELIMITER);
    Ok(Bytes::from(head))
}

/// How the reader ended.
enum Outcome {
    /// Everything was handed over.
    Whole,
    /// A read failed or the file was short; the trailers were sent.
    Broken(io::Error),
    /// The request went away (or was refused) before the body ended.
    Abandoned,
}

type FrameResult = Result<Frame<Bytes>, io::Error>;

/// Feed the request's frames: the head, the payload in chunks, and the error trailers if the
/// payload cannot be read to its length. Runs on a blocking thread (file reads block).
fn produce(
    frames: &mpsc::Sender<FrameResult>,
    head: Option<Bytes>,
    body: StreamBody,
    stop: &AtomicBool,
) -> Outcome {
    let send = |frame: Frame<Bytes>| frames.blocking_send(Ok(frame)).is_ok();
    if let Some(mut prelude) = head {
        // The prelude and its delimiter go as two chunks, as AWS's Node.js runtime writes them:
        // a reader that takes the first chunk for the whole prelude (the `cargo lambda`
        // emulator does) must not find the delimiter glued to it.
        let delimiter = prelude.split_off(prelude.len().saturating_sub(DELIMITER.len()));
        if !send(Frame::data(prelude)) || !send(Frame::data(delimiter)) {
            return Outcome::Abandoned;
        }
    }
    let (file, len) = match body {
        StreamBody::Bytes(bytes) => {
            if !bytes.is_empty() && !send(Frame::data(bytes)) {
                return Outcome::Abandoned;
            }
            return Outcome::Whole;
        }
        StreamBody::File { file, len } => (file, len),
    };
    let mut reader = file.take(len);
    let mut sent = 0u64;
    while sent < len {
        if stop.load(Ordering::Relaxed) {
            // An error frame makes hyper drop the connection instead of ending the body as if
            // it were whole.
            // `try_send`: a stalled connection must not hold this thread.
            let refused = io::Error::other("the Runtime API refused the streamed response");
            let _ = frames.try_send(Err(refused));
            return Outcome::Abandoned;
        }
        let want = usize::try_from(len - sent).map_or(CHUNK, |left| left.min(CHUNK));
        let mut chunk = vec![0u8; want];
        let (got, failure) = fill(&mut reader, &mut chunk);
        if got > 0 {
            chunk.truncate(got);
            if !send(Frame::data(Bytes::from(chunk))) {
                return Outcome::Abandoned;
            }
            sent += got as u64;
        }
        let failure = match failure {
            Some(err) => Some(io::Error::new(
                err.kind(),
                format!("reading the output failed after {sent} of {len} bytes: {err}"),
            )),
            None if got < want => Some(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("the output ended after {sent} of {len} bytes"),
            )),
            None => None,
        };
        if let Some(err) = failure {
            let _ = frames.blocking_send(Ok(Frame::trailers(error_trailers(&err))));
            return Outcome::Broken(err);
        }
    }
    Outcome::Whole
}

/// Read until `chunk` is full or the file ends; a failed read is returned with the count read
/// before it.
fn fill(reader: &mut impl Read, chunk: &mut [u8]) -> (usize, Option<io::Error>) {
    let mut got = 0;
    while got < chunk.len() {
        match reader.read(&mut chunk[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => return (got, Some(err)),
        }
    }
    (got, None)
}

/// `Lambda-Runtime-Function-Error-Type: Scar.StreamError` and
/// `Lambda-Runtime-Function-Error-Body`: base64 of the `{"errorType","errorMessage"}` JSON.
fn error_trailers(err: &io::Error) -> HeaderMap {
    let report = ErrorReport {
        error_type: STREAM_ERROR_TYPE.to_owned(),
        error_message: err.to_string(),
    };
    let json = serde_json::to_vec(&report).unwrap_or_default();
    let encoded = base64::engine::general_purpose::STANDARD.encode(json);
    let mut trailers = HeaderMap::new();
    trailers.insert(
        ERROR_TYPE_HEADER,
        HeaderValue::from_static(STREAM_ERROR_TYPE),
    );
    // Base64 is printable ASCII, always a valid header value.
    if let Ok(value) = HeaderValue::from_str(&encoded) {
        trailers.insert(ERROR_BODY_HEADER, value);
    }
    trailers
}

/// What the connection has taken of the body so far.
#[derive(Default)]
struct Progress {
    first_byte: OnceLock<Instant>,
    bytes: AtomicU64,
}

impl Progress {
    fn handed(&self, len: usize) {
        if len > 0 {
            self.first_byte.get_or_init(Instant::now);
            self.bytes.fetch_add(len as u64, Ordering::Relaxed);
        }
    }

    fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    fn first_byte(&self) -> Instant {
        self.first_byte.get().copied().unwrap_or_else(Instant::now)
    }
}

/// How long the count of a streamed body waits for hyper to take its last frames once the
/// Runtime API has answered and the reader has handed everything over.
const BODY_END_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// The request body: frames as the reader produces them, counted as hyper takes them. Its size
/// is unknown, so hyper sends it chunked.
struct ChannelBody {
    frames: mpsc::Receiver<FrameResult>,
    progress: Arc<Progress>,
    /// Fired when hyper has taken the body's end, or dropped the body.
    ended: Option<oneshot::Sender<()>>,
}

impl ChannelBody {
    fn end(&mut self) {
        if let Some(ended) = self.ended.take() {
            let _ = ended.send(());
        }
    }
}

impl Drop for ChannelBody {
    fn drop(&mut self) {
        self.end();
    }
}

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let this = self.get_mut();
        let polled = this.frames.poll_recv(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled
            && let Some(data) = frame.data_ref()
        {
            this.progress.handed(data.len());
        }
        if let Poll::Ready(None) = &polled {
            this.end();
        }
        polled
    }
}

#[cfg(test)]
#[path = "stream_tests.rs"]
mod tests;
