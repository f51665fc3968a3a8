//! The function's answer as the HTTP response a Function URL sends, by the rules of the Lambda
//! developer guide ("Invoking Lambda function URLs", response payload format; "Response
//! streaming", the HTTP integration's prelude):
//!
//! - a buffered answer with a `statusCode` is an HTTP response document: `statusCode`,
//!   `headers`, `cookies` (each a `Set-Cookie`), `body` (base64-decoded when
//!   `isBase64Encoded`);
//! - valid JSON of any other shape is the body of a `200` with `content-type: application/json`;
//! - a streamed answer of type `application/vnd.awslambda.http-integration-response` starts
//!   with a JSON prelude (`statusCode`, `headers`, `cookies`) that 8 NUL bytes end, within the
//!   stream's first 16 KiB; the payload follows. A stream of another type is the body of a
//!   `200` of that type;
//! - an error report (`/error`) is a `502` whose body is the error document.

use std::time::Instant;

use base64::Engine as _;
use bytes::Bytes;
use http::header::{CONTENT_LENGTH, SET_COOKIE, TRANSFER_ENCODING};
use http::{HeaderName, HeaderValue, Response, StatusCode};
use serde_json::Value;

use super::channel_body::ChannelBody;

/// The `Content-Type` of a streamed answer that begins with an HTTP prelude.
pub const HTTP_INTEGRATION: &str = "application/vnd.awslambda.http-integration-response";
/// What ends the prelude of a streamed HTTP answer.
const DELIMITER: [u8; 8] = [0; 8];
/// The prelude and its delimiter must arrive within the stream's first 16 KiB.
pub const PRELUDE_LIMIT: usize = 16 * 1024;

/// Why an answer cannot become an HTTP response (the client then gets a `502`).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AnswerError {
    /// The buffered answer is not JSON.
    #[error("the function's answer is not JSON: {0}")]
    NotJson(String),
    /// `statusCode` is not an HTTP status.
    #[error("statusCode {0} is not an HTTP status code")]
    Status(String),
    /// `isBase64Encoded` is true and `body` is not base64.
    #[error("isBase64Encoded is true but body is not base64: {0}")]
    Base64(String),
    /// The prelude of a streamed answer is not a JSON object.
    #[error("the streamed answer's prelude is not a JSON object: {0}")]
    Prelude(String),
    /// No delimiter within the first 16 KiB of a streamed HTTP answer.
    #[error(
        "the streamed answer's prelude has no 8-NUL delimiter within its first {PRELUDE_LIMIT} bytes"
    )]
    NoDelimiter,
}

/// The status line and headers of an answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Head {
    /// The status.
    pub status: StatusCode,
    /// Headers in the document's order; names as written.
    pub headers: Vec<(String, String)>,
    /// `Set-Cookie` values.
    pub cookies: Vec<String>,
}

impl Head {
    /// A head with `status` and only a content type.
    pub fn typed(status: StatusCode, content_type: &str) -> Self {
        Self {
            status,
            headers: vec![("content-type".to_owned(), content_type.to_owned())],
            cookies: Vec::new(),
        }
    }

    /// The head of a response document or prelude: `statusCode` (200 when absent),
    /// `headers`, `cookies`.
    fn from_document(document: &serde_json::Map<String, Value>) -> Result<Self, AnswerError> {
        let status = match document.get("statusCode") {
            None | Some(Value::Null) => StatusCode::OK,
            Some(code) => code
                .as_u64()
                .and_then(|c| u16::try_from(c).ok())
                .and_then(|c| StatusCode::from_u16(c).ok())
                .ok_or_else(|| AnswerError::Status(code.to_string()))?,
        };
        let mut headers: Vec<(String, String)> = document
            .get("headers")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
            .map(|(name, value)| (name.clone(), scalar_text(value)))
            .collect();
        // A REST API stream's prelude may carry repeated headers this way.
        let repeated = document.get("multiValueHeaders").and_then(Value::as_object);
        for (name, values) in repeated.into_iter().flatten() {
            for value in values.as_array().into_iter().flatten() {
                headers.push((name.clone(), scalar_text(value)));
            }
        }
        let cookies = document
            .get("cookies")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(scalar_text)
            .collect();
        Ok(Self {
            status,
            headers,
            cookies,
        })
    }

    /// An HTTP response with this head and `body`. Framing headers are hyper's to write; a
    /// header hyper cannot send is left out, with a note.
    pub fn response(&self, body: ChannelBody) -> Response<ChannelBody> {
        let mut response = Response::new(body);
        *response.status_mut() = self.status;
        let headers = response.headers_mut();
        for (name, value) in &self.headers {
            match (
                HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_str(value),
            ) {
                (Ok(name), _) if name == CONTENT_LENGTH || name == TRANSFER_ENCODING => {}
                (Ok(name), Ok(value)) => {
                    headers.append(name, value);
                }
                _ => eprintln!("scar local: note: header {name:?} cannot be sent; left out"),
            }
        }
        for cookie in &self.cookies {
            match HeaderValue::from_str(cookie) {
                Ok(value) => {
                    headers.append(SET_COOKIE, value);
                }
                Err(_) => eprintln!("scar local: note: cookie {cookie:?} cannot be sent; left out"),
            }
        }
        response
    }
}

/// A header or cookie value: a string as it is, any other JSON as its text.
fn scalar_text(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

/// The HTTP response of a buffered answer: its head and body.
pub fn buffered(answer: &[u8]) -> Result<(Head, Bytes), AnswerError> {
    let document: Value =
        serde_json::from_slice(answer).map_err(|e| AnswerError::NotJson(e.to_string()))?;
    let Some(object) = document
        .as_object()
        .filter(|o| o.contains_key("statusCode"))
    else {
        // "If your function returns valid JSON and doesn't return a statusCode": a 200 whose
        // body is the answer itself.
        return Ok((
            Head::typed(StatusCode::OK, "application/json"),
            Bytes::copy_from_slice(answer),
        ));
    };
    let head = Head::from_document(object)?;
    let encoded = object
        .get("isBase64Encoded")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let body = match object.get("body") {
        None | Some(Value::Null) => Bytes::new(),
        Some(Value::String(text)) if encoded => base64::engine::general_purpose::STANDARD
            .decode(text)
            .map(Bytes::from)
            .map_err(|e| AnswerError::Base64(e.to_string()))?,
        Some(Value::String(text)) => Bytes::from(text.clone()),
        Some(other) => Bytes::from(other.to_string()),
    };
    Ok((head, body))
}

/// The error document of an `/error` report as a Function URL's `502`.
pub fn error_report(body: &Bytes) -> (Head, Bytes) {
    (
        Head::typed(StatusCode::BAD_GATEWAY, "application/json"),
        body.clone(),
    )
}

/// Where the prelude of a streamed HTTP answer stands after `received` bytes.
#[derive(Debug, PartialEq, Eq)]
pub enum Prelude {
    /// The delimiter has not come yet: read on.
    Incomplete,
    /// The head, and the payload bytes that came with the prelude.
    Complete(Head, Bytes),
}

/// Look for the end of the prelude in the first bytes of a streamed HTTP answer.
pub fn prelude(received: &Bytes) -> Result<Prelude, AnswerError> {
    let Some(at) = received
        .windows(DELIMITER.len())
        .position(|w| w == DELIMITER)
    else {
        return if received.len() >= PRELUDE_LIMIT {
            Err(AnswerError::NoDelimiter)
        } else {
            Ok(Prelude::Incomplete)
        };
    };
    if at + DELIMITER.len() > PRELUDE_LIMIT {
        return Err(AnswerError::NoDelimiter);
    }
    let document: Value =
        serde_json::from_slice(&received[..at]).map_err(|e| AnswerError::Prelude(e.to_string()))?;
    let object = document
        .as_object()
        .ok_or_else(|| AnswerError::Prelude(document.to_string()))?;
    let head = Head::from_document(object)?;
    Ok(Prelude::Complete(
        head,
        received.slice(at + DELIMITER.len()..),
    ))
}

/// The head of a streamed answer that has no prelude: a `200` of the stream's own type.
pub fn plain_stream(content_type: Option<&str>) -> Head {
    Head::typed(
        StatusCode::OK,
        content_type.unwrap_or("application/octet-stream"),
    )
}

/// What one request printed line says.
pub struct Served<'a> {
    /// `POST /sample.png`.
    pub label: &'a str,
    /// The status sent.
    pub status: StatusCode,
    /// Body bytes sent.
    pub bytes: u64,
    /// Since the request arrived.
    pub started: Instant,
    /// What went wrong, if anything.
    pub note: Option<String>,
}

impl Served<'_> {
    /// Print the request's line to stderr.
    pub fn print(&self) {
        let note = self
            .note
            .as_deref()
            .map(|n| format!(" ({n})"))
            .unwrap_or_default();
        eprintln!(
            "{} -> {}, {} bytes, {} ms{note}",
            self.label,
            self.status.as_u16(),
            self.bytes,
            self.started.elapsed().as_millis()
        );
    }
}

/// Whether a streamed answer begins with an HTTP prelude.
pub fn has_prelude(content_type: Option<&str>) -> bool {
    content_type.is_some_and(|t| {
        t.split(';')
            .next()
            .is_some_and(|essence| essence.trim().eq_ignore_ascii_case(HTTP_INTEGRATION))
    })
}

#[cfg(test)]
#[path = "http_answer_tests.rs"]
mod tests;
