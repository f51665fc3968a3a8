//! HTTP requests as events: API Gateway REST APIs (payload format 1.0), HTTP APIs (1.0 or 2.0)
//! and Lambda Function URLs (2.0). The request body is the input file; the method, path, query
//! and chosen headers reach the script as variables (see `crate::reply::http_env`).
//!
//! Field names as AWS documents them: "Working with AWS Lambda proxy integrations for HTTP
//! APIs" (payload format versions 1.0 and 2.0), "Set up Lambda proxy integrations in API
//! Gateway" (REST input format) and "Invoking Lambda function URLs" (request payload).

use base64::Engine as _;
use serde_json::{Map, Value};

use super::shape::field;

/// Which integration response document the answer must be: API Gateway reads `statusCode`,
/// `headers`, `body` and `isBase64Encoded` in both, but cookies differ (1.0:
/// `multiValueHeaders`, 2.0: `cookies`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HttpFormat {
    /// Payload format 1.0: REST APIs, and HTTP APIs configured for it.
    V1,
    /// Payload format 2.0: HTTP APIs and Function URLs.
    V2,
}

/// Which AWS front sent the request (logs, `SCAR_HTTP_SOURCE`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HttpSource {
    /// An API Gateway REST API (proxy integration).
    RestApi,
    /// An API Gateway HTTP API.
    HttpApi,
    /// A Lambda Function URL.
    FunctionUrl,
}

impl HttpSource {
    /// `rest-api`, `http-api` or `function-url`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::RestApi => "rest-api",
            Self::HttpApi => "http-api",
            Self::FunctionUrl => "function-url",
        }
    }
}

/// One HTTP request, read from its event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpInput {
    /// The front that sent it.
    pub source: HttpSource,
    /// The answer's format.
    pub format: HttpFormat,
    /// `GET`, `POST`, ...
    pub method: String,
    /// The path as received (`/sample.png`).
    pub path: String,
    /// The query string as received, without `?` (may be empty).
    pub raw_query: String,
    /// Query parameters, decoded, in order; a repeated name repeats.
    pub query: Vec<(String, String)>,
    /// Headers, names lowercased; repeated values joined by `,`.
    pub headers: Vec<(String, String)>,
    /// The body, base64 undone.
    pub body: bytes::Bytes,
    /// The input file's name: the last path segment, else the `filename` query parameter, else
    /// `body` with an extension from `Content-Type`.
    pub file_name: String,
    /// The request asked for one archive of all outputs (`?archive=tar` or
    /// `Accept: application/x-tar`).
    pub archive: bool,
}

impl HttpInput {
    /// The first value of header `name` (lowercase).
    pub fn header(&self, name: &str) -> Option<&str> {
        (self.headers.iter())
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// `POST /sample.png` (logs, the response's record label).
    pub fn label(&self) -> String {
        format!("{} {}", self.method, self.path)
    }
}

/// What `value` is, when it is an HTTP request event: the 2.0 shape is told by `version` and
/// `requestContext.http`, the 1.0 shape by `httpMethod` beside a `requestContext`.
pub(super) fn http_format(value: &Value) -> Option<HttpFormat> {
    let context = value.get("requestContext")?;
    if field(value, "version") == Some("2.0") && context.get("http").is_some() {
        Some(HttpFormat::V2)
    } else if value.get("httpMethod").is_some() && context.is_object() {
        Some(HttpFormat::V1)
    } else {
        None
    }
}

/// Read the request of an event of `format`; the error says what is wrong with it.
pub(super) fn read_request(value: &Value, format: HttpFormat) -> Result<HttpInput, String> {
    let context = &value["requestContext"];
    let (source, method, path, raw_query, query, headers) = match format {
        HttpFormat::V2 => {
            let domain = field(context, "domainName").unwrap_or_default();
            let source = if domain.contains(".lambda-url.") {
                HttpSource::FunctionUrl
            } else {
                HttpSource::HttpApi
            };
            let method =
                field(&context["http"], "method").ok_or("requestContext.http.method is missing")?;
            let path = field(value, "rawPath")
                .or_else(|| field(&context["http"], "path"))
                .unwrap_or("/");
            let raw_query = field(value, "rawQueryString").unwrap_or_default();
            let mut headers = single_values(value.get("headers"))?;
            if let Some(cookies) = value.get("cookies").and_then(Value::as_array) {
                let cookies: Vec<&str> = cookies.iter().filter_map(Value::as_str).collect();
                if !cookies.is_empty() {
                    headers.push(("cookie".to_owned(), cookies.join("; ")));
                }
            }
            let query = parse_query(raw_query);
            (source, method, path, raw_query.to_owned(), query, headers)
        }
        HttpFormat::V1 => {
            let source = if field(value, "version") == Some("1.0") {
                HttpSource::HttpApi
            } else {
                HttpSource::RestApi
            };
            let method = field(value, "httpMethod").ok_or("httpMethod is not a string")?;
            let path = field(value, "path").unwrap_or("/");
            let query = multi_values(
                value.get("multiValueQueryStringParameters"),
                value.get("queryStringParameters"),
            )?;
            let raw_query = query_string(&query);
            let headers = joined(multi_values(
                value.get("multiValueHeaders"),
                value.get("headers"),
            )?);
            (source, method, path, raw_query, query, headers)
        }
    };
    let body = body(value)?;
    let headers: Vec<(String, String)> = (headers.into_iter())
        .map(|(n, v)| (n.to_ascii_lowercase(), v))
        .collect();
    let content_type = (headers.iter())
        .find(|(n, _)| n == "content-type")
        .map(|(_, v)| v.as_str());
    let accept = (headers.iter())
        .find(|(n, _)| n == "accept")
        .map(|(_, v)| v.as_str());
    let archive = query.iter().any(|(n, v)| n == "archive" && v == "tar")
        || accept.is_some_and(|a| a.contains("application/x-tar"));
    let file_name = file_name(path, &query, content_type);
    Ok(HttpInput {
        source,
        format,
        method: method.to_owned(),
        path: path.to_owned(),
        raw_query,
        query,
        headers,
        body,
        file_name,
        archive,
    })
}

/// The body, base64 undone when `isBase64Encoded`; none is an empty body.
fn body(value: &Value) -> Result<bytes::Bytes, String> {
    let text = match value.get("body") {
        None | Some(Value::Null) => return Ok(bytes::Bytes::new()),
        Some(Value::String(text)) => text,
        Some(_) => return Err("body is not a string".to_owned()),
    };
    let encoded = value
        .get("isBase64Encoded")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    if !encoded {
        return Ok(bytes::Bytes::copy_from_slice(text.as_bytes()));
    }
    base64::engine::general_purpose::STANDARD
        .decode(text.as_bytes())
        .map(bytes::Bytes::from)
        .map_err(|err| format!("body is marked isBase64Encoded but is not base64: {err}"))
}

/// `{"name": "value"}` (2.0 headers: repeated values already joined by `,`).
fn single_values(map: Option<&Value>) -> Result<Vec<(String, String)>, String> {
    match map {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Object(map)) => Ok(strings(map)),
        Some(_) => Err("headers is not an object".to_owned()),
    }
}

/// 1.0's pair of maps: the multi-value one when present (it has every value), else the
/// single-value one.
fn multi_values(
    multi: Option<&Value>,
    single: Option<&Value>,
) -> Result<Vec<(String, String)>, String> {
    if let Some(Value::Object(map)) = multi {
        let mut pairs = Vec::new();
        for (name, values) in map {
            match values {
                Value::Array(values) => pairs.extend(
                    (values.iter())
                        .filter_map(Value::as_str)
                        .map(|v| (name.clone(), v.to_owned())),
                ),
                Value::String(value) => pairs.push((name.clone(), value.clone())),
                _ => {}
            }
        }
        return Ok(pairs);
    }
    single_values(single)
}

/// Repeated names joined into one `a,b` value, first position kept.
fn joined(pairs: Vec<(String, String)>) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::with_capacity(pairs.len());
    for (name, value) in pairs {
        match out.iter_mut().find(|(n, _)| n.eq_ignore_ascii_case(&name)) {
            Some((_, joined)) => {
                joined.push(',');
                joined.push_str(&value);
            }
            None => out.push((name, value)),
        }
    }
    out
}

fn strings(map: &Map<String, Value>) -> Vec<(String, String)> {
    (map.iter())
        .filter_map(|(n, v)| Some((n.clone(), v.as_str()?.to_owned())))
        .collect()
}

/// Decoded `name=value` pairs of a query string (`+` is a space, as browsers send forms).
fn parse_query(raw: &str) -> Vec<(String, String)> {
    let decode = |part: &str| {
        let spaced = part.replace('+', " ");
        percent_encoding::percent_decode_str(&spaced)
            .decode_utf8_lossy()
            .into_owned()
    };
    (raw.split('&'))
        .filter(|part| !part.is_empty())
        .map(|part| match part.split_once('=') {
            Some((name, value)) => (decode(name), decode(value)),
            None => (decode(part), String::new()),
        })
        .collect()
}

/// The query string of decoded pairs (1.0 events carry no raw one).
fn query_string(pairs: &[(String, String)]) -> String {
    const SET: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'_')
        .remove(b'.')
        .remove(b'~');
    let encode = |s: &str| percent_encoding::utf8_percent_encode(s, SET).to_string();
    (pairs.iter())
        .map(|(n, v)| format!("{}={}", encode(n), encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// The input file's name: the path's last segment (percent-decoded), else the `filename`
/// query parameter's last segment, else `body` plus an extension for the content type. A
/// name that is not a safe file name (empty, `.`, `..`, a NUL) is not used; control
/// characters become `_`; a name over 255 bytes is shortened as S3 keys are.
fn file_name(path: &str, query: &[(String, String)], content_type: Option<&str>) -> String {
    let last = |text: &str| -> Option<String> {
        let segment = text.rsplit(['/', '\\']).next()?;
        let name: String = segment
            .chars()
            .map(|c| if c.is_control() { '_' } else { c })
            .collect();
        (!name.is_empty() && name != "." && name != "..").then_some(name)
    };
    let decoded = percent_encoding::percent_decode_str(path).decode_utf8_lossy();
    let chosen = last(&decoded)
        .or_else(|| {
            (query.iter())
                .find(|(n, _)| n == "filename")
                .and_then(|(_, v)| last(v))
        })
        .unwrap_or_else(|| format!("body{}", extension_for(content_type.unwrap_or_default())));
    super::names::fit_file_name(&chosen, path.as_bytes())
}

/// The media type of a `Content-Type` value, lowercase, without its parameters:
/// `image/png` for `Image/PNG; q=1`.
pub fn media_type(content_type: &str) -> String {
    content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase()
}

/// `.png` for `image/png`, ...; empty for a type with no usual extension.
fn extension_for(content_type: &str) -> &'static str {
    match media_type(content_type).as_str() {
        "text/plain" => ".txt",
        "text/csv" => ".csv",
        "text/html" => ".html",
        "application/json" => ".json",
        "application/xml" | "text/xml" => ".xml",
        "application/yaml" => ".yaml",
        "application/pdf" => ".pdf",
        "application/zip" => ".zip",
        "application/gzip" | "application/x-gzip" => ".gz",
        "application/x-tar" => ".tar",
        "application/zstd" => ".zst",
        "image/jpeg" => ".jpg",
        "image/png" => ".png",
        "image/gif" => ".gif",
        "image/webp" => ".webp",
        "image/svg+xml" => ".svg",
        "image/tiff" => ".tif",
        "image/bmp" => ".bmp",
        "video/mp4" => ".mp4",
        "video/quicktime" => ".mov",
        "video/x-msvideo" => ".avi",
        "video/x-matroska" => ".mkv",
        "video/webm" => ".webm",
        "audio/mpeg" => ".mp3",
        "audio/wav" | "audio/x-wav" => ".wav",
        "audio/ogg" => ".ogg",
        "audio/flac" => ".flac",
        "application/octet-stream" => ".bin",
        _ => "",
    }
}

#[cfg(test)]
#[path = "http_tests.rs"]
mod tests;
