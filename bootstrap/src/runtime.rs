//! A direct client for the Lambda Runtime API (`/2018-06-01/runtime/...`).
//!
//! Why not `lambda_runtime`: it reads its own environment (against "configuration is read
//! once"), panics when `AWS_LAMBDA_RUNTIME_API` is missing, has no public way to post a
//! configuration error to `/runtime/init/error` with our own `errorType`, and its handler
//! contract hides the raw deadline header that the emulator fills with a constant. The API is
//! four plain HTTP/1.1 calls, so a small hyper client keeps every requirement in our hands and
//! init lean (no TLS, no tower stack).

use bytes::Bytes;
use http::{Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use crate::config::AWS_LAMBDA_RUNTIME_API;

const API_VERSION: &str = "2018-06-01";

/// Why a Runtime API call failed.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// `AWS_LAMBDA_RUNTIME_API` is not usable.
    #[error("{AWS_LAMBDA_RUNTIME_API}={value} {problem}")]
    Endpoint {
        /// The value as given.
        value: String,
        /// What is wrong.
        problem: &'static str,
    },
    /// The request could not be sent or its answer not read.
    #[error("{method} {path}: {source}")]
    Transport {
        /// HTTP method.
        method: Method,
        /// API path.
        path: String,
        /// The underlying error.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The API answered with an error status.
    #[error("{method} {path}: the Runtime API answered {status}: {body}")]
    Status {
        /// HTTP method.
        method: Method,
        /// API path.
        path: String,
        /// Status code.
        status: StatusCode,
        /// Body of the answer (truncated).
        body: String,
    },
    /// `/invocation/next` answered without a request id.
    #[error("GET {path}: the answer has no Lambda-Runtime-Aws-Request-Id header")]
    NoRequestId {
        /// API path.
        path: String,
    },
}

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
    /// The event.
    pub payload: Bytes,
}

/// An error report for `/init/error` or `/invocation/{id}/error`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ErrorReport {
    /// `errorType`, e.g. `Scar.ScriptFailed`.
    #[serde(rename = "errorType")]
    pub error_type: String,
    /// `errorMessage`.
    #[serde(rename = "errorMessage")]
    pub error_message: String,
}

/// The Runtime API client.
#[derive(Clone)]
pub struct RuntimeApi {
    endpoint: RuntimeEndpoint,
    client: Client<HttpConnector, Full<Bytes>>,
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
        let (parts, payload) = self.call(Method::GET, path, Bytes::new(), None).await?;
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
            payload,
        })
    }

    /// Report the invocation's result.
    pub async fn respond(&self, request_id: &str, body: Bytes) -> Result<(), RuntimeError> {
        let path = format!("invocation/{request_id}/response");
        self.call(Method::POST, &path, body, None).await.map(drop)
    }

    /// Report the invocation's failure.
    pub async fn invocation_error(
        &self,
        request_id: &str,
        report: &ErrorReport,
    ) -> Result<(), RuntimeError> {
        let path = format!("invocation/{request_id}/error");
        self.post_error(&path, report).await
    }

    /// Report a failure during init; Lambda then ends the sandbox.
    pub async fn init_error(&self, report: &ErrorReport) -> Result<(), RuntimeError> {
        self.post_error("init/error", report).await
    }

    async fn post_error(&self, path: &str, report: &ErrorReport) -> Result<(), RuntimeError> {
        let body = serde_json::to_vec(report).map_or_else(|_| Bytes::new(), Bytes::from);
        self.call(Method::POST, path, body, Some(&report.error_type))
            .await
            .map(drop)
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Bytes,
        error_type: Option<&str>,
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
        if let Some(error_type) = error_type {
            request = request.header("lambda-runtime-function-error-type", error_type);
        }
        let request = request
            .body(Full::new(body))
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
