//! The integration response document of a buffered answer, and the prelude of a streamed one.
//!
//! Shapes as AWS documents them: payload 1.0 ("Set up Lambda proxy integrations in API
//! Gateway", output format) is `{statusCode, headers, multiValueHeaders, body,
//! isBase64Encoded}`, where `Set-Cookie` rides in `multiValueHeaders` (a single-valued
//! `headers` map can hold one cookie only); payload 2.0 ("Working with AWS Lambda proxy
//! integrations for HTTP APIs", and the Function URL response payload) has `cookies` instead.
//! A streamed answer ("Invoking Lambda function URLs", response streaming) starts with a
//! prelude `{statusCode, headers, cookies}`; the 8 NUL bytes that end it, and the body, are
//! the streaming client's to send.
//!
//! The document is built in one buffer of its final size, computed before a byte of a file is
//! read: the head (everything but the body) is serialised by serde_json, then the body is
//! appended as a JSON string, base64 encoded while it is read (the base64 alphabet needs no
//! escaping) or, for text, escaped by serde_json. A 6 MB answer never costs more than the
//! document and a read buffer (text: the text once more).

use std::io::{self, Read};

use bytes::Bytes;
use serde::Serialize;

use super::message::{Reply, ReplyBody, clean_cookies, clean_headers};
use crate::event::{HttpFormat, media_type};

/// A buffered answer: the document, or how large the body was when it could not fit.
#[derive(Debug, PartialEq, Eq)]
pub enum Buffered {
    /// The integration response document, at most the limit asked.
    Payload(Vec<u8>),
    /// The document would pass the limit; the body's length in bytes.
    TooLarge {
        /// The body's length.
        body_len: u64,
    },
}

/// The document's fields other than the body, in the order written.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Head {
    status_code: u16,
    headers: serde_json::Map<String, serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    multi_value_headers: Option<SetCookies>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cookies: Option<Vec<String>>,
    is_base64_encoded: bool,
}

/// Payload 1.0's `multiValueHeaders`, holding the cookies only.
#[derive(Serialize)]
struct SetCookies {
    #[serde(rename = "set-cookie")]
    set_cookie: Vec<String>,
}

/// A streamed answer's prelude.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Prelude {
    status_code: u16,
    headers: serde_json::Map<String, serde_json::Value>,
    cookies: Vec<String>,
}

/// Whether a body typed `content_type` travels as text rather than base64: `text/*`, JSON,
/// XML, JavaScript, form data and the `+json` / `+xml` suffixes. API Gateway hands a text body
/// to the client as it is, so anything else (images, archives, video) must be base64.
pub fn is_textual(content_type: &str) -> bool {
    let essence = media_type(content_type);
    essence.starts_with("text/")
        || essence.ends_with("+json")
        || essence.ends_with("+xml")
        || matches!(
            essence.as_str(),
            "application/json"
                | "application/xml"
                | "application/javascript"
                | "application/x-javascript"
                | "application/ecmascript"
                | "application/x-www-form-urlencoded"
        )
}

/// `reply` as the integration response document of `format`, if it takes at most `limit`
/// bytes. The body is base64 unless [`is_textual`] says its type is text and it is UTF-8. The
/// size is known before any file is read (base64 is 4/3 of the body; text at least the body),
/// so a file too large is never read; an error is a failed read of the body's file.
pub fn buffered(reply: Reply, format: HttpFormat, limit: usize) -> io::Result<Buffered> {
    let body_len = reply.body.len();
    let textual = reply.header("content-type").is_some_and(is_textual);
    let too_large = Ok(Buffered::TooLarge { body_len });
    let Reply {
        status,
        headers,
        cookies,
        body,
    } = reply;
    let head = |base64| {
        let headers = clean_headers(&headers);
        let cookies = clean_cookies(&cookies);
        // 2.0 always carries `cookies`, empty or not: readers of the format that require the
        // field (the `cargo lambda` emulator's) refuse a document without it.
        let (multi_value_headers, cookies) = match format {
            HttpFormat::V1 => {
                let set_cookies = (!cookies.is_empty()).then_some(SetCookies {
                    set_cookie: cookies,
                });
                (set_cookies, None)
            }
            HttpFormat::V2 => (None, Some(cookies)),
        };
        open_body(&Head {
            status_code: status,
            headers,
            multi_value_headers,
            cookies,
            is_base64_encoded: base64,
        })
    };
    if textual {
        // Escaping only lengthens the text: a body that cannot fit as it is is not read.
        if head(false).len() as u64 + body_len + 3 > limit as u64 {
            return too_large;
        }
        let bytes = match body {
            ReplyBody::Empty => Bytes::new(),
            ReplyBody::Bytes(bytes) => bytes,
            ReplyBody::File { file, len } => read_whole(file, len)?.into(),
        };
        return match std::str::from_utf8(&bytes) {
            Ok(text) => {
                let mut document = head(false);
                serde_json::to_writer(&mut document, text).map_err(io::Error::other)?;
                document.push(b'}');
                Ok(fitting(document, limit, body_len))
            }
            Err(_) => base64_document(head(true), &mut &bytes[..], body_len, limit),
        };
    }
    match body {
        ReplyBody::Empty => base64_document(head(false), &mut io::empty(), 0, limit),
        ReplyBody::Bytes(bytes) => base64_document(head(true), &mut &bytes[..], body_len, limit),
        ReplyBody::File { file, len } => {
            base64_document(head(true), &mut file.take(len), len, limit)
        }
    }
}

/// `{"statusCode":…,"headers":{…},"cookies":[…]}`: the prelude of a streamed answer (the
/// 8 NUL bytes after it are not included). serde_json escapes any NUL in a value, so the
/// prelude never holds one.
pub fn prelude(reply: &Reply) -> Bytes {
    let prelude = Prelude {
        status_code: reply.status,
        headers: clean_headers(&reply.headers),
        cookies: clean_cookies(&reply.cookies),
    };
    // Serialising strings and numbers cannot fail.
    serde_json::to_vec(&prelude).unwrap_or_default().into()
}

/// `head`'s JSON without its closing brace, followed by `,"body":`.
fn open_body(head: &Head) -> Vec<u8> {
    // Serialising strings, numbers and booleans cannot fail; the head always ends with `}`.
    let mut json = serde_json::to_vec(head).unwrap_or_default();
    json.pop();
    json.extend_from_slice(b",\"body\":");
    json
}

/// The document whose body is `len` bytes read from `body`, base64 encoded (none when the
/// head says the body is not base64, which only an empty body is here).
fn base64_document(
    mut document: Vec<u8>,
    body: &mut dyn Read,
    len: u64,
    limit: usize,
) -> io::Result<Buffered> {
    let encoded = len.div_ceil(3).saturating_mul(4);
    let total = (document.len() as u64)
        .saturating_add(encoded)
        .saturating_add(3);
    if total > limit as u64 {
        return Ok(Buffered::TooLarge { body_len: len });
    }
    document.reserve_exact((total as usize).saturating_sub(document.len()));
    document.push(b'"');
    let mut encoder = base64::write::EncoderWriter::new(
        &mut document,
        &base64::engine::general_purpose::STANDARD,
    );
    let copied = io::copy(body, &mut encoder)?;
    encoder.finish()?;
    drop(encoder);
    if copied != len {
        return Err(short_read(copied, len));
    }
    document.extend_from_slice(b"\"}");
    Ok(fitting(document, limit, len))
}

/// The `len` bytes of `file`, checked to be all there.
fn read_whole(file: std::fs::File, len: u64) -> io::Result<Vec<u8>> {
    let mut bytes = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
    let read = file.take(len).read_to_end(&mut bytes)? as u64;
    if read != len {
        return Err(short_read(read, len));
    }
    Ok(bytes)
}

fn short_read(read: u64, len: u64) -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        format!("the output shrank while it was read: {read} of {len} bytes"),
    )
}

fn fitting(document: Vec<u8>, limit: usize, body_len: u64) -> Buffered {
    if document.len() <= limit {
        Buffered::Payload(document)
    } else {
        Buffered::TooLarge { body_len }
    }
}

#[cfg(test)]
#[path = "document_tests.rs"]
mod tests;
