//! What goes wrong talking to the Runtime API, and the error report Lambda takes.
//!
//! Both sit at the bottom of `runtime/` so that the head (the buffered calls) and `stream`
//! (the streamed response) share them without importing each other.

use http::{Method, StatusCode};

use crate::config::AWS_LAMBDA_RUNTIME_API;

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
    /// `410 Gone` from `/response` or `/error`: the invocation had already timed out and
    /// Lambda no longer takes its result.
    #[error(
        "{method} {path}: the Runtime API answered 410 Gone: the invocation had already timed out"
    )]
    Gone {
        /// HTTP method.
        method: Method,
        /// API path.
        path: String,
    },
    /// `/invocation/next` answered without a request id.
    #[error("GET {path}: the answer has no Lambda-Runtime-Aws-Request-Id header")]
    NoRequestId {
        /// API path.
        path: String,
    },
    /// A streamed response broke after it had begun (its body could not be read to its
    /// length): it was ended with Lambda's error trailers, which the caller receives instead of
    /// the rest of the body.
    #[error("POST {path}: the streamed response broke after {bytes} bytes of its body: {source}")]
    StreamBroken {
        /// API path.
        path: String,
        /// Body bytes (after any HTTP prelude) handed over before it broke.
        bytes: u64,
        /// What broke: a failed read, or the file ending before its announced length.
        source: std::io::Error,
    },
    /// The HTTP prelude of a streamed response cannot be sent; nothing was sent.
    #[error("the streamed response's HTTP prelude ({len} bytes) {problem}")]
    Prelude {
        /// Length of the prelude.
        len: usize,
        /// What is wrong.
        problem: &'static str,
    },
}

/// An error report for `/init/error` or `/invocation/{id}/error`, and the decoded body of a
/// streamed response's error trailer.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ErrorReport {
    /// `errorType`, e.g. `Scar.ScriptFailed`.
    #[serde(rename = "errorType")]
    pub error_type: String,
    /// `errorMessage`.
    #[serde(rename = "errorMessage")]
    pub error_message: String,
}
