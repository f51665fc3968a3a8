//! The Lambda Runtime API, served to the bootstrap on a local port.
//!
//! The same contract as Lambda's (2018-06-01): `GET /runtime/invocation/next` blocks until an
//! event is queued and hands it out with the request id, an epoch-milliseconds deadline, the
//! function ARN and a trace id; the runtime answers on `/invocation/{id}/response` or
//! `/invocation/{id}/error`, or reports `/runtime/init/error` before its first `next`.
//! Invocations are served one at a time, like one Lambda sandbox. A `/response` in the
//! streaming mode is handed to the caller as it arrives ([`runtime_stream`]), not collected.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};

use super::runtime_stream::{self, Received, ResponseStream};

const PREFIX: &str = "/2018-06-01/runtime";

/// How one invocation ended, as the runtime reported it.
#[derive(Debug)]
pub enum Reply {
    /// `POST /invocation/{id}/response`: the function's result.
    Response(Bytes),
    /// `POST /invocation/{id}/response` in the streaming mode: the body as it arrives.
    Stream(ResponseStream),
    /// `POST /invocation/{id}/error`: the error document and `Lambda-Runtime-Function-Error-Type`.
    Error {
        /// The header, or the document's `errorType`.
        error_type: String,
        /// The error document (`errorMessage`, `errorType`, ...).
        body: Bytes,
    },
}

/// Something the runtime did that the caller shows to the user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Notice {
    /// The runtime fetched an invocation.
    Started {
        /// The request id.
        request_id: String,
    },
    /// `POST /runtime/init/error`.
    InitError {
        /// `Lambda-Runtime-Function-Error-Type` or the document's `errorType`.
        error_type: String,
        /// The error document.
        body: Bytes,
    },
}

/// An event waiting for the runtime.
struct Queued {
    request_id: String,
    payload: Bytes,
    reply: oneshot::Sender<Reply>,
}

/// The state shared by every connection.
struct Shared {
    queue: tokio::sync::Mutex<mpsc::UnboundedReceiver<Queued>>,
    in_flight: Mutex<HashMap<String, oneshot::Sender<Reply>>>,
    notices: mpsc::UnboundedSender<Notice>,
    function_arn: String,
    timeout: Duration,
}

/// A running Runtime API endpoint.
pub struct RuntimeApi {
    address: SocketAddr,
    queue: mpsc::UnboundedSender<Queued>,
    shared: Arc<Shared>,
    counter: AtomicU64,
    server: tokio::task::JoinHandle<()>,
}

/// An invocation handed to the runtime queue.
pub struct Invocation {
    /// The request id the runtime sees.
    pub request_id: String,
    /// Resolves when the runtime answers.
    pub reply: oneshot::Receiver<Reply>,
}

impl RuntimeApi {
    /// Serve on `127.0.0.1` on a free port; notices go to `notices`.
    pub async fn start(
        function_arn: String,
        timeout: Duration,
        notices: mpsc::UnboundedSender<Notice>,
    ) -> std::io::Result<Self> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let address = listener.local_addr()?;
        let (queue, receiver) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            queue: tokio::sync::Mutex::new(receiver),
            in_flight: Mutex::new(HashMap::new()),
            notices,
            function_arn,
            timeout,
        });
        let server_state = shared.clone();
        let server = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let state = server_state.clone();
                tokio::spawn(async move {
                    let service =
                        hyper::service::service_fn(move |request| handle(state.clone(), request));
                    let io = hyper_util::rt::TokioIo::new(stream);
                    if let Err(err) = hyper::server::conn::http1::Builder::new()
                        .serve_connection(io, service)
                        .await
                    {
                        tracing::debug!(%err, "runtime API connection ended");
                    }
                });
            }
        });
        Ok(Self {
            address,
            queue,
            shared,
            counter: AtomicU64::new(0),
            server,
        })
    }

    /// `host:port`, the value of `AWS_LAMBDA_RUNTIME_API`.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Queue an event for the runtime.
    pub fn invoke(&self, payload: Bytes) -> Invocation {
        self.invoke_with(|_| payload)
    }

    /// Queue the event `payload` makes from the invocation's request id (an HTTP event carries
    /// it as `requestContext.requestId`, as on Lambda).
    pub fn invoke_with(&self, payload: impl FnOnce(&str) -> Bytes) -> Invocation {
        let request_id = new_request_id(self.counter.fetch_add(1, Ordering::Relaxed));
        let payload = payload(&request_id);
        let (reply, receiver) = oneshot::channel();
        // The receiving half lives in `shared` as long as the server, so the send cannot fail
        // while `self` exists; if it ever did, the dropped `reply` resolves `receiver` to an error.
        let _ = self.queue.send(Queued {
            request_id: request_id.clone(),
            payload,
            reply,
        });
        Invocation {
            request_id,
            reply: receiver,
        }
    }

    /// Forget an invocation the runtime will never answer (it exited).
    pub fn abandon(&self, request_id: &str) {
        if let Ok(mut in_flight) = self.shared.in_flight.lock() {
            in_flight.remove(request_id);
        }
    }
}

impl Drop for RuntimeApi {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// A request id shaped like Lambda's (a UUID), unique within this process and run.
fn new_request_id(counter: u64) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let mixed = (nanos as u64) ^ (u64::from(std::process::id()) << 32);
    format!(
        "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
        (mixed >> 32) as u32,
        (mixed >> 16) as u16,
        mixed as u16 & 0xfff,
        counter as u16 & 0xfff,
        counter & 0xffff_ffff_ffff
    )
}

fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    response
}

/// An error document like Lambda's own (`errorMessage`, `errorType`).
fn api_error(status: StatusCode, error_type: &str, message: &str) -> Response<Full<Bytes>> {
    let body = serde_json::json!({ "errorMessage": message, "errorType": error_type }).to_string();
    text(status, body)
}

/// The error type of a runtime's error report: the header, else the document's `errorType`.
fn error_type(request: &http::request::Parts, body: &Bytes) -> String {
    if let Some(header) = request
        .headers
        .get("lambda-runtime-function-error-type")
        .and_then(|v| v.to_str().ok())
    {
        return header.to_owned();
    }
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|doc| {
            doc.get("errorType")
                .and_then(|t| t.as_str())
                .map(str::to_owned)
        })
        .unwrap_or_else(|| "Unhandled".to_owned())
}

async fn handle(
    shared: Arc<Shared>,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let (parts, body) = request.into_parts();
    let Some(route) = parts.uri.path().strip_prefix(PREFIX) else {
        return Ok(api_error(
            StatusCode::NOT_FOUND,
            "NotFound",
            "unknown path: the API lives under /2018-06-01/runtime",
        ));
    };
    let segments: Vec<&str> = route.trim_start_matches('/').split('/').collect();
    // A streamed response is handed on while it arrives; every other request is read whole.
    if let (&Method::POST, ["invocation", id, "response"]) = (&parts.method, segments.as_slice())
        && runtime_stream::is_streaming(&parts.headers)
    {
        return Ok(stream(&shared, id, &parts, body).await);
    }
    let body = match body.collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(err) => {
            return Ok(api_error(
                StatusCode::BAD_REQUEST,
                "InvalidRequest",
                &err.to_string(),
            ));
        }
    };
    let response = match (&parts.method, segments.as_slice()) {
        (&Method::GET, ["invocation", "next"]) => next(&shared).await,
        (&Method::POST, ["invocation", id, "response"]) => {
            finish(&shared, id, Reply::Response(body))
        }
        (&Method::POST, ["invocation", id, "error"]) => {
            let error_type = error_type(&parts, &body);
            finish(&shared, id, Reply::Error { error_type, body })
        }
        (&Method::POST, ["init", "error"]) => {
            let error_type = error_type(&parts, &body);
            let _ = shared.notices.send(Notice::InitError { error_type, body });
            text(StatusCode::ACCEPTED, r#"{"status":"OK"}"#)
        }
        _ => api_error(
            StatusCode::NOT_FOUND,
            "NotFound",
            &format!("no route for {} {}", parts.method, parts.uri.path()),
        ),
    };
    Ok(response)
}

/// A `/response` in the streaming mode: the caller gets the stream at once, then each piece
/// as the runtime sends it; the runtime's request is answered when its body has ended.
async fn stream(
    shared: &Shared,
    request_id: &str,
    parts: &http::request::Parts,
    body: Incoming,
) -> Response<Full<Bytes>> {
    let Some(sender) = take_in_flight(shared, request_id) else {
        return not_in_progress(request_id);
    };
    let content_type = parts
        .headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let (pieces, response_stream) = runtime_stream::channel(content_type);
    // The caller may have given up (its runtime exited): the body is still read, and dropped.
    let _ = sender.send(Reply::Stream(response_stream));
    match runtime_stream::receive(body, pieces).await {
        Received::Complete => text(StatusCode::ACCEPTED, r#"{"status":"OK"}"#),
        Received::TooLarge => api_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "Function.ResponseSizeTooLarge",
            &format!(
                "the streamed response passed Lambda's limit of {} bytes",
                runtime_stream::MAX_STREAMED
            ),
        ),
        // Nobody reads this answer: the connection it would go on is gone.
        Received::Broken => api_error(
            StatusCode::BAD_REQUEST,
            "InvalidRequest",
            "the streamed response broke off",
        ),
    }
}

async fn next(shared: &Shared) -> Response<Full<Bytes>> {
    let queued = {
        let mut queue = shared.queue.lock().await;
        loop {
            match queue.recv().await {
                // The caller gave up on it (the runtime that should have taken it exited).
                Some(queued) if queued.reply.is_closed() => continue,
                other => break other,
            }
        }
    };
    let Some(queued) = queued else {
        return api_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "ServiceException",
            "scar local is shutting down",
        );
    };
    // The deadline starts when the runtime receives the event, as on Lambda.
    let deadline = SystemTime::now() + shared.timeout;
    let deadline_ms = deadline
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or_default();
    if let Ok(mut in_flight) = shared.in_flight.lock() {
        in_flight.insert(queued.request_id.clone(), queued.reply);
    }
    let _ = shared.notices.send(Notice::Started {
        request_id: queued.request_id.clone(),
    });
    let trace = format!(
        "Root=1-{:08x}-{}",
        deadline_ms / 1000,
        queued.request_id.replace('-', "")[..24].to_owned()
    );
    let mut response = text(StatusCode::OK, queued.payload);
    let headers = response.headers_mut();
    let pairs = [
        ("lambda-runtime-aws-request-id", queued.request_id),
        ("lambda-runtime-deadline-ms", deadline_ms.to_string()),
        (
            "lambda-runtime-invoked-function-arn",
            shared.function_arn.clone(),
        ),
        (
            "lambda-runtime-trace-id",
            format!("{trace};Parent=0000000000000000;Sampled=0"),
        ),
        ("content-type", "application/json".to_owned()),
    ];
    for (name, value) in pairs {
        if let Ok(value) = http::HeaderValue::from_str(&value) {
            headers.insert(name, value);
        }
    }
    response
}

/// The caller waiting for `request_id`, which only one answer may reach.
fn take_in_flight(shared: &Shared, request_id: &str) -> Option<oneshot::Sender<Reply>> {
    shared
        .in_flight
        .lock()
        .ok()
        .and_then(|mut in_flight| in_flight.remove(request_id))
}

fn not_in_progress(request_id: &str) -> Response<Full<Bytes>> {
    api_error(
        StatusCode::BAD_REQUEST,
        "InvalidRequestID",
        &format!("request {request_id} is not in progress (already answered, or never handed out)"),
    )
}

fn finish(shared: &Shared, request_id: &str, reply: Reply) -> Response<Full<Bytes>> {
    match take_in_flight(shared, request_id) {
        Some(sender) => {
            let _ = sender.send(reply);
            text(StatusCode::ACCEPTED, r#"{"status":"OK"}"#)
        }
        None => not_in_progress(request_id),
    }
}

#[cfg(test)]
#[path = "runtime_api_tests.rs"]
mod tests;
