//! A direct client for the Lambda Runtime API (`/2018-06-01/runtime/...`).
//!
//! Why not `lambda_runtime`: it reads its own environment (against "configuration is read
//! once"), panics when `AWS_LAMBDA_RUNTIME_API` is missing, has no public way to post a
//! configuration error to `/runtime/init/error` with our own `errorType`, and its handler
//! contract hides the raw deadline header that the emulator fills with a constant. The API is
//! four plain HTTP/1.1 calls, so a small hyper client keeps every requirement in our hands and
//! init lean (no TLS, no tower stack).
//!
//! The head holds the buffered calls; `stream` the streaming response mode (chunked body,
//! HTTP prelude, error trailers), which shares the head's client and connection pool. Errors and
//! header names shared by both sit in `error` and `headers`, at the bottom of the directory.

mod error;
mod headers;
mod stream;

use bytes::Bytes;
use http::{Method, Request, StatusCode, Uri};
use http_body_util::BodyExt;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

pub use error::{ErrorReport, RuntimeError};
use headers::{ERROR_TYPE_HEADER, INVOCATION_ID_HEADER};
use stream::RequestBody;
pub use stream::{CHUNK, READ_AHEAD, STREAM_ERROR_TYPE, StreamBody, StreamSent};

const API_VERSION: &str = "2018-06-01";

/// Where the Runtime API lives: `http://host:port` plus an optional path prefix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuntimeEndpoint {
    /// `http://authority` followed by the path prefix, without a trailing `/`.
    base: String,
}

impl RuntimeEndpoint {
    /// Accept `host:port` (Lambda), `http://host:port` and `http://host:port/prefix` (the
    /// `cargo lambda` emulator writes `http://127.0.0.1:9000/.rt`).
    pub fn parse(value: &str) -> Result<Self, RuntimeError> {
        let err = |problem| RuntimeError::Endpoint {
            value: value.to_owned(),
            problem,
        };
        let trimmed = value.trim();
        let with_scheme = if trimmed.contains("://") {
            trimmed.to_owned()
        } else {
            format!("http://{trimmed}")
        };
        let uri: Uri = with_scheme
            .parse()
            .map_err(|_| err("is not host:port or an http:// URL"))?;
        if uri.scheme_str() != Some("http") {
            return Err(err(
                "uses a scheme other than http: the Runtime API is plain HTTP",
            ));
        }
        let authority = uri.authority().ok_or_else(|| err("has no host"))?;
        if authority.host().is_empty() {
            return Err(err("has no host"));
        }
        let prefix = uri.path().trim_end_matches('/');
        Ok(Self {
            base: format!("http://{authority}{prefix}"),
        })
    }

    fn url(&self, path: &str) -> String {
        format!("{}/{API_VERSION}/runtime/{path}", self.base)
    }
}

/// One invocation as `/invocation/next` hands it over.
#[derive(Debug)]
pub struct Invocation {
    /// `Lambda-Runtime-Aws-Request-Id`.
    pub request_id: String,
    /// `Lambda-Runtime-Deadline-Ms`, raw (see [`crate::deadline`]).
    pub deadline_ms: Option<String>,
    /// `Lambda-Runtime-Invoked-Function-Arn`.
    pub function_arn: Option<String>,
    /// `Lambda-Runtime-Trace-Id`.
    pub trace_id: Option<String>,
    /// `Lambda-Runtime-Invocation-Id`: unique per attempt (a retry keeps the request id but
    /// gets a new one); echoed on `/response` and `/error` so that Lambda can refuse the result
    /// of an attempt that already timed out.
    pub invocation_id: Option<String>,
    /// `Lambda-Runtime-Aws-Tenant-Id`: the tenant of a multi-tenant function.
    pub tenant_id: Option<String>,
    /// The event.
    pub payload: Bytes,
}

/// What a call sends besides its body.
struct Extra<'a> {
    /// `Lambda-Runtime-Invocation-Id` to echo.
    invocation_id: Option<&'a str>,
    /// `Lambda-Runtime-Function-Error-Type` of an error report.
    error_type: Option<&'a str>,
}

/// The Runtime API client.
#[derive(Clone)]
pub struct RuntimeApi {
    endpoint: RuntimeEndpoint,
    client: Client<HttpConnector, RequestBody>,
}

impl RuntimeApi {
    /// A client for `endpoint`; no connection is made until the first call.
    pub fn new(endpoint: RuntimeEndpoint) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new()).build(connector);
        Self { endpoint, client }
    }

    /// Wait for the next invocation (long poll: Lambda answers when an event arrives).
    pub async fn next(&self) -> Result<Invocation, RuntimeError> {
        let path = "invocation/next";
        let extra = Extra {
            invocation_id: None,
            error_type: None,
        };
        let (parts, payload) = self.call(Method::GET, path, Bytes::new(), extra).await?;
        let header = |name: &str| {
            parts
                .headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let request_id = header("lambda-runtime-aws-request-id")
            .filter(|id| !id.is_empty())
            .ok_or_else(|| RuntimeError::NoRequestId {
                path: self.endpoint.url(path),
            })?;
        Ok(Invocation {
            request_id,
            deadline_ms: header("lambda-runtime-deadline-ms"),
            function_arn: header("lambda-runtime-invoked-function-arn"),
            trace_id: header("lambda-runtime-trace-id"),
            invocation_id: header(INVOCATION_ID_HEADER).filter(|id| !id.is_empty()),
            tenant_id: header("lambda-runtime-aws-tenant-id").filter(|id| !id.is_empty()),
            payload,
        })
    }

    /// Report the invocation's result; `invocation_id` is the one `/next` gave, if any.
    pub async fn respond(
        &self,
        request_id: &str,
        invocation_id: Option<&str>,
        body: Bytes,
    ) -> Result<(), RuntimeError> {
        let path = format!("invocation/{request_id}/response");
        let extra = Extra {
            invocation_id,
            error_type: None,
        };
        self.call(Method::POST, &path, body, extra).await.map(drop)
    }

    /// Report the invocation's result in the streaming response mode: `body` is sent in
    /// chunks while it is read (a file never whole), after `prelude` and 8 NUL bytes when the
    /// answer is an HTTP integration's (Function URL, API Gateway streaming). A failure after
    /// the request began ends the body with Lambda's error trailers and is
    /// [`RuntimeError::StreamBroken`]; `invocation_id` is the one `/next` gave, if any.
    pub async fn respond_streaming(
        &self,
        request_id: &str,
        invocation_id: Option<&str>,
        prelude: Option<Bytes>,
        body: StreamBody,
    ) -> Result<StreamSent, RuntimeError> {
        let url = self
            .endpoint
            .url(&format!("invocation/{request_id}/response"));
        stream::respond_streaming(&self.client, url, invocation_id, prelude, body).await
    }

    /// Report the invocation's failure; `invocation_id` is the one `/next` gave, if any.
    pub async fn invocation_error(
        &self,
        request_id: &str,
        invocation_id: Option<&str>,
        report: &ErrorReport,
    ) -> Result<(), RuntimeError> {
        let path = format!("invocation/{request_id}/error");
        self.post_error(&path, invocation_id, report).await
    }

    /// Report a failure during init; Lambda then ends the sandbox.
    pub async fn init_error(&self, report: &ErrorReport) -> Result<(), RuntimeError> {
        self.post_error("init/error", None, report).await
    }

    async fn post_error(
        &self,
        path: &str,
        invocation_id: Option<&str>,
        report: &ErrorReport,
    ) -> Result<(), RuntimeError> {
        let body = serde_json::to_vec(report).map_or_else(|_| Bytes::new(), Bytes::from);
        let extra = Extra {
            invocation_id,
            error_type: Some(&report.error_type),
        };
        self.call(Method::POST, path, body, extra).await.map(drop)
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Bytes,
        extra: Extra<'_>,
    ) -> Result<(http::response::Parts, Bytes), RuntimeError> {
        let url = self.endpoint.url(path);
        let transport =
            |source: Box<dyn std::error::Error + Send + Sync>| RuntimeError::Transport {
                method: method.clone(),
                path: url.clone(),
                source,
            };
        let mut request = Request::builder().method(method.clone()).uri(&url);
        if method == Method::POST {
            request = request.header("content-type", "application/json");
        }
        if let Some(error_type) = extra.error_type {
            request = request.header(ERROR_TYPE_HEADER, error_type);
        }
        if let Some(invocation_id) = extra.invocation_id {
            request = request.header(INVOCATION_ID_HEADER, invocation_id);
        }
        let request = request
            .body(stream::buffered(body))
            .map_err(|e| transport(e.into()))?;
        let response = self
            .client
            .request(request)
            .await
            .map_err(|e| transport(e.into()))?;
        let (parts, body) = response.into_parts();
        let body = body
            .collect()
            .await
            .map_err(|e| transport(e.into()))?
            .to_bytes();
        if parts.status == StatusCode::GONE && method == Method::POST {
            return Err(RuntimeError::Gone { method, path: url });
        }
        if !parts.status.is_success() {
            let text = String::from_utf8_lossy(&body[..body.len().min(1024)]).into_owned();
            return Err(RuntimeError::Status {
                method,
                path: url,
                status: parts.status,
                body: text,
            });
        }
        Ok((parts, body))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lambdas_bare_host_and_port_is_accepted() {
        let endpoint = RuntimeEndpoint::parse("127.0.0.1:9001").unwrap();
        assert_eq!(
            endpoint.url("invocation/next"),
            "http://127.0.0.1:9001/2018-06-01/runtime/invocation/next"
        );
    }

    #[test]
    fn the_emulators_scheme_and_path_prefix_are_kept() {
        let endpoint = RuntimeEndpoint::parse("http://127.0.0.1:9000/.rt").unwrap();
        assert_eq!(
            endpoint.url("init/error"),
            "http://127.0.0.1:9000/.rt/2018-06-01/runtime/init/error"
        );
        let endpoint = RuntimeEndpoint::parse("http://localhost:9000/.rt/").unwrap();
        assert_eq!(
            endpoint.url("invocation/next"),
            "http://localhost:9000/.rt/2018-06-01/runtime/invocation/next"
        );
    }

    #[test]
    fn unusable_endpoints_are_errors_naming_the_variable() {
        for value in ["https://127.0.0.1:9000", "", "http://", "not a url"] {
            let err = RuntimeEndpoint::parse(value).unwrap_err().to_string();
            assert!(err.starts_with("AWS_LAMBDA_RUNTIME_API="), "{value}: {err}");
        }
    }

    /// A one-connection-per-request HTTP/1.1 server on a real socket: it answers each request
    /// with the next of `answers` (status line and headers) and hands back what it received.
    async fn serve(
        answers: Vec<&'static str>,
    ) -> (RuntimeApi, tokio::task::JoinHandle<Vec<String>>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let mut received = Vec::new();
            for answer in answers {
                let (mut socket, _) = listener.accept().await.unwrap();
                let mut request = Vec::new();
                let mut buf = [0u8; 4096];
                // Head, then as many body bytes as Content-Length says.
                loop {
                    let n = socket.read(&mut buf).await.unwrap();
                    assert_ne!(n, 0, "the client closed before sending a whole request");
                    request.extend_from_slice(&buf[..n]);
                    let text = String::from_utf8_lossy(&request).into_owned();
                    if let Some(end) = text.find("\r\n\r\n") {
                        let length = text
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase()
                                    .strip_prefix("content-length:")
                                    .map(|v| v.trim().parse::<usize>().unwrap())
                            })
                            .unwrap_or(0);
                        if request.len() >= end + 4 + length {
                            break;
                        }
                    }
                }
                received.push(String::from_utf8_lossy(&request).into_owned());
                let response =
                    format!("{answer}\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{{}}");
                socket.write_all(response.as_bytes()).await.unwrap();
                socket.shutdown().await.unwrap();
            }
            received
        });
        let api = RuntimeApi::new(RuntimeEndpoint::parse(&address.to_string()).unwrap());
        (api, server)
    }

    fn header_of<'a>(request: &'a str, name: &str) -> Option<&'a str> {
        request.lines().find_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }

    #[tokio::test]
    async fn the_invocation_id_from_next_is_echoed_on_the_response_and_the_error() {
        let next = "HTTP/1.1 200 OK\r\nlambda-runtime-aws-request-id: r-1\r\nlambda-runtime-deadline-ms: 1795792930000\r\nlambda-runtime-invocation-id: inv-7\r\nlambda-runtime-aws-tenant-id: tenant-a";
        let ok = "HTTP/1.1 202 Accepted";
        let (api, server) = serve(vec![next, ok, ok]).await;
        let invocation = api.next().await.unwrap();
        assert_eq!(invocation.request_id, "r-1");
        assert_eq!(invocation.invocation_id.as_deref(), Some("inv-7"));
        assert_eq!(invocation.tenant_id.as_deref(), Some("tenant-a"));
        assert_eq!(invocation.payload, Bytes::from_static(b"{}"));
        let id = invocation.invocation_id.as_deref();
        api.respond("r-1", id, Bytes::from_static(b"{\"a\":1}"))
            .await
            .unwrap();
        let report = ErrorReport {
            error_type: "Scar.ScriptFailed".into(),
            error_message: "exit 1".into(),
        };
        api.invocation_error("r-1", id, &report).await.unwrap();
        let received = server.await.unwrap();
        assert!(received[0].starts_with("GET /2018-06-01/runtime/invocation/next "));
        assert_eq!(header_of(&received[0], INVOCATION_ID_HEADER), None);
        assert!(received[1].starts_with("POST /2018-06-01/runtime/invocation/r-1/response "));
        assert_eq!(
            header_of(&received[1], "Lambda-Runtime-Invocation-Id"),
            Some("inv-7")
        );
        assert!(received[1].ends_with("{\"a\":1}"));
        assert!(received[2].starts_with("POST /2018-06-01/runtime/invocation/r-1/error "));
        assert_eq!(
            header_of(&received[2], "Lambda-Runtime-Invocation-Id"),
            Some("inv-7")
        );
        assert_eq!(
            header_of(&received[2], "Lambda-Runtime-Function-Error-Type"),
            Some("Scar.ScriptFailed")
        );
    }

    #[tokio::test]
    async fn without_the_headers_nothing_is_echoed_and_the_ids_are_none() {
        let next = "HTTP/1.1 200 OK\r\nlambda-runtime-aws-request-id: r-2";
        let (api, server) = serve(vec![next, "HTTP/1.1 202 Accepted"]).await;
        let invocation = api.next().await.unwrap();
        assert_eq!(invocation.invocation_id, None);
        assert_eq!(invocation.tenant_id, None);
        api.respond("r-2", None, Bytes::from_static(b"{}"))
            .await
            .unwrap();
        let received = server.await.unwrap();
        assert_eq!(header_of(&received[1], INVOCATION_ID_HEADER), None);
    }

    #[tokio::test]
    async fn gone_on_the_response_or_the_error_is_its_own_error() {
        let gone = "HTTP/1.1 410 Gone";
        let (api, server) = serve(vec![gone, gone, "HTTP/1.1 500 Internal Server Error"]).await;
        let err = api
            .respond("r-3", Some("inv-3"), Bytes::from_static(b"{}"))
            .await
            .unwrap_err();
        assert!(matches!(err, RuntimeError::Gone { .. }), "{err}");
        let report = ErrorReport {
            error_type: "Scar.Timeout".into(),
            error_message: "late".into(),
        };
        let err = api
            .invocation_error("r-3", Some("inv-3"), &report)
            .await
            .unwrap_err();
        assert!(matches!(err, RuntimeError::Gone { .. }), "{err}");
        assert!(err.to_string().contains("already timed out"), "{err}");
        let err = api
            .respond("r-3", Some("inv-3"), Bytes::from_static(b"{}"))
            .await
            .unwrap_err();
        assert!(matches!(err, RuntimeError::Status { .. }), "{err}");
        server.await.unwrap();
    }

    #[test]
    fn error_reports_serialize_with_the_lambda_field_names() {
        let report = ErrorReport {
            error_type: "Scar.Timeout".into(),
            error_message: "late".into(),
        };
        assert_eq!(
            serde_json::to_string(&report).unwrap(),
            r#"{"errorType":"Scar.Timeout","errorMessage":"late"}"#
        );
    }
}
