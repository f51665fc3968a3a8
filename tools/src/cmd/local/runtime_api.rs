//! The Lambda Runtime API, served to the bootstrap on a local port.
//!
//! The same contract as Lambda's (2018-06-01): `GET /runtime/invocation/next` blocks until an
//! event is queued and hands it out with the request id, an epoch-milliseconds deadline, the
//! function ARN and a trace id; the runtime answers on `/invocation/{id}/response` or
//! `/invocation/{id}/error`, or reports `/runtime/init/error` before its first `next`.
//! Invocations are served one at a time, like one Lambda sandbox.

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

const PREFIX: &str = "/2018-06-01/runtime";

/// How one invocation ended, as the runtime reported it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    /// `POST /invocation/{id}/response`: the function's result.
    Response(Bytes),
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
        let request_id = new_request_id(self.counter.fetch_add(1, Ordering::Relaxed));
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
    let Some(route) = parts.uri.path().strip_prefix(PREFIX) else {
        return Ok(api_error(
            StatusCode::NOT_FOUND,
            "NotFound",
            "unknown path: the API lives under /2018-06-01/runtime",
        ));
    };
    let segments: Vec<&str> = route.trim_start_matches('/').split('/').collect();
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

fn finish(shared: &Shared, request_id: &str, reply: Reply) -> Response<Full<Bytes>> {
    let sender = shared
        .in_flight
        .lock()
        .ok()
        .and_then(|mut in_flight| in_flight.remove(request_id));
    match sender {
        Some(sender) => {
            let _ = sender.send(reply);
            text(StatusCode::ACCEPTED, r#"{"status":"OK"}"#)
        }
        None => api_error(
            StatusCode::BAD_REQUEST,
            "InvalidRequestID",
            &format!(
                "request {request_id} is not in progress (already answered, or never handed out)"
            ),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper_util::rt::TokioIo;

    /// One HTTP/1.1 request with a real client over TCP.
    async fn call(
        address: SocketAddr,
        method: Method,
        path: &str,
        body: &'static str,
    ) -> Response<Bytes> {
        let stream = tokio::net::TcpStream::connect(address).await.unwrap();
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .unwrap();
        tokio::spawn(connection);
        let request = Request::builder()
            .method(method)
            .uri(format!("http://{address}{path}"))
            .header("host", address.to_string())
            .body(if body.is_empty() {
                Full::new(Bytes::new())
            } else {
                Full::new(Bytes::from_static(body.as_bytes()))
            })
            .unwrap();
        let response = sender.send_request(request).await.unwrap();
        let (parts, body) = response.into_parts();
        Response::from_parts(parts, body.collect().await.unwrap().to_bytes())
    }

    async fn api() -> (RuntimeApi, mpsc::UnboundedReceiver<Notice>) {
        let (notices, receiver) = mpsc::unbounded_channel();
        let arn = "arn:aws:lambda:us-east-1:000000000000:function:demo".to_owned();
        (
            RuntimeApi::start(arn, Duration::from_secs(60), notices)
                .await
                .unwrap(),
            receiver,
        )
    }

    #[tokio::test]
    async fn next_hands_out_the_event_with_lambda_headers_and_response_reaches_the_caller() {
        let (api, mut notices) = api().await;
        let invocation = api.invoke(Bytes::from_static(br#"{"hello":1}"#));
        let event = call(
            api.address(),
            Method::GET,
            "/2018-06-01/runtime/invocation/next",
            "",
        )
        .await;
        assert_eq!(event.status(), StatusCode::OK);
        assert_eq!(event.body().as_ref(), br#"{"hello":1}"#);
        let header = |name: &str| {
            event
                .headers()
                .get(name)
                .unwrap()
                .to_str()
                .unwrap()
                .to_owned()
        };
        assert_eq!(
            header("lambda-runtime-aws-request-id"),
            invocation.request_id
        );
        assert!(header("lambda-runtime-invoked-function-arn").ends_with(":function:demo"));
        assert!(header("lambda-runtime-trace-id").starts_with("Root=1-"));
        let deadline: u128 = header("lambda-runtime-deadline-ms").parse().unwrap();
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis();
        assert!(
            deadline > now + 50_000 && deadline <= now + 60_000,
            "deadline {deadline} vs now {now}"
        );
        assert_eq!(
            notices.recv().await,
            Some(Notice::Started {
                request_id: invocation.request_id.clone()
            })
        );

        let path = format!(
            "/2018-06-01/runtime/invocation/{}/response",
            invocation.request_id
        );
        let answer = call(api.address(), Method::POST, &path, r#"{"exitCode":0}"#).await;
        assert_eq!(answer.status(), StatusCode::ACCEPTED);
        assert_eq!(
            invocation.reply.await.unwrap(),
            Reply::Response(Bytes::from_static(br#"{"exitCode":0}"#))
        );

        // A second answer for the same request is refused, as Lambda does.
        let again = call(api.address(), Method::POST, &path, "{}").await;
        assert_eq!(again.status(), StatusCode::BAD_REQUEST);
    }

    #[tokio::test]
    async fn an_error_report_carries_its_type_to_the_caller() {
        let (api, _notices) = api().await;
        let invocation = api.invoke(Bytes::from_static(b"{}"));
        call(
            api.address(),
            Method::GET,
            "/2018-06-01/runtime/invocation/next",
            "",
        )
        .await;
        let path = format!(
            "/2018-06-01/runtime/invocation/{}/error",
            invocation.request_id
        );
        let body = r#"{"errorType":"Scar.ScriptFailed","errorMessage":"exit 3"}"#;
        assert_eq!(
            call(api.address(), Method::POST, &path, body)
                .await
                .status(),
            StatusCode::ACCEPTED
        );
        match invocation.reply.await.unwrap() {
            Reply::Error { error_type, body } => {
                assert_eq!(error_type, "Scar.ScriptFailed");
                assert!(String::from_utf8_lossy(&body).contains("exit 3"));
            }
            other => panic!("expected an error, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn next_waits_until_an_event_is_queued() {
        let (api, _notices) = api().await;
        let address = api.address();
        let waiting = tokio::spawn(async move {
            call(
                address,
                Method::GET,
                "/2018-06-01/runtime/invocation/next",
                "",
            )
            .await
        });
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(!waiting.is_finished(), "next answered with nothing queued");
        let invocation = api.invoke(Bytes::from_static(b"{\"n\":2}"));
        let event = tokio::time::timeout(Duration::from_secs(30), waiting)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            event
                .headers()
                .get("lambda-runtime-aws-request-id")
                .unwrap()
                .to_str()
                .unwrap(),
            invocation.request_id
        );
    }

    #[tokio::test]
    async fn init_error_is_reported_as_a_notice() {
        let (api, mut notices) = api().await;
        let body = r#"{"errorType":"Scar.ConfigError","errorMessage":"SCAR_IMAGE is empty"}"#;
        let response = call(
            api.address(),
            Method::POST,
            "/2018-06-01/runtime/init/error",
            body,
        )
        .await;
        assert_eq!(response.status(), StatusCode::ACCEPTED);
        match notices.recv().await {
            Some(Notice::InitError { error_type, body }) => {
                assert_eq!(error_type, "Scar.ConfigError");
                assert!(String::from_utf8_lossy(&body).contains("SCAR_IMAGE is empty"));
            }
            other => panic!("expected an init error, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn unknown_paths_and_request_ids_are_refused() {
        let (api, _notices) = api().await;
        assert_eq!(
            call(api.address(), Method::GET, "/nope", "").await.status(),
            StatusCode::NOT_FOUND
        );
        let path = "/2018-06-01/runtime/invocation/not-a-request/response";
        assert_eq!(
            call(api.address(), Method::POST, path, "{}").await.status(),
            StatusCode::BAD_REQUEST
        );
    }

    #[test]
    fn request_ids_are_uuid_shaped_and_distinct() {
        let a = new_request_id(1);
        let b = new_request_id(2);
        assert_ne!(a, b);
        let groups: Vec<usize> = a.split('-').map(str::len).collect();
        assert_eq!(groups, [8, 4, 4, 4, 12]);
    }
}
