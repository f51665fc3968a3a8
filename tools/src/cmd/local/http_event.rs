//! An HTTP request as the event a Lambda Function URL makes of it: API Gateway's payload format
//! 2.0, with the Function URL's placeholders.
//!
//! Field by field as the Lambda developer guide documents it ("Invoking Lambda function URLs",
//! request payload format): `version` "2.0", `routeKey` "$default", `rawPath`, `rawQueryString`
//! (without `?`), `cookies` (the `Cookie` header split, and left out of `headers`), `headers`
//! (lowercase names, repeated values joined by `,`), `queryStringParameters` (decoded, repeated
//! names joined by `,`), `requestContext` (`accountId`, `apiId`, `domainName`
//! `<url-id>.lambda-url.<region>.on.aws`, `domainPrefix`, `http` {method, path, protocol,
//! sourceIp, userAgent}, `requestId`, `routeKey`, `stage` "$default", `time`
//! `12/Mar/2020:19:03:58 +0000`, `timeEpoch` in ms), `body` and `isBase64Encoded`.
//! Fields a Function URL sets to null or leaves out (`pathParameters`, `stageVariables`,
//! `authentication`, and `authorizer` with the `NONE` auth type) are left out.

use std::net::SocketAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use super::event::Civil;

/// Lambda's bound on a synchronous invocation's event: "Request must be smaller than 6291456
/// bytes for the InvokeFunction operation". A binary body counts base64-encoded.
pub const MAX_EVENT: usize = 6 * 1024 * 1024;

/// Month abbreviations of the `time` field (CLF dates, as API Gateway writes them).
const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// The function URL a local server stands for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FunctionUrl {
    /// The URL id (`apiId`, `domainPrefix`): 32 lowercase characters, as Lambda makes them.
    pub url_id: String,
    /// The region of `domainName`.
    pub region: String,
}

impl FunctionUrl {
    /// The URL of function `name` in `region`: its id is derived from the name, so it stays the
    /// same from one run to the next.
    pub fn of(name: &str, region: &str) -> Self {
        let digest = Sha256::digest(name.as_bytes());
        Self {
            url_id: hex::encode(&digest[..16]),
            region: region.to_owned(),
        }
    }

    /// `<url-id>.lambda-url.<region>.on.aws`.
    pub fn domain(&self) -> String {
        format!("{}.lambda-url.{}.on.aws", self.url_id, self.region)
    }
}

/// One request as the server received it, body read whole.
#[derive(Debug)]
pub struct ReceivedRequest {
    /// Method, URI, version and headers.
    pub parts: http::request::Parts,
    /// The body.
    pub body: bytes::Bytes,
    /// The client's address (`sourceIp`, `X-Forwarded-For`).
    pub peer: SocketAddr,
    /// The server's own address (`X-Forwarded-Port`).
    pub local: SocketAddr,
    /// When it arrived (`time`, `timeEpoch`).
    pub received: SystemTime,
}

/// The Function URL event of `request`, invocation `request_id`.
pub fn function_url_event(request: &ReceivedRequest, url: &FunctionUrl, request_id: &str) -> Value {
    let parts = &request.parts;
    let raw_path = parts.uri.path();
    let raw_query = parts.uri.query().unwrap_or_default();
    let mut headers = Map::new();
    let mut cookies = Vec::new();
    for name in parts.headers.keys() {
        let values = parts
            .headers
            .get_all(name)
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
        if name == http::header::COOKIE {
            cookies.extend(values.flat_map(|line| {
                line.split(';')
                    .map(str::trim)
                    .filter(|c| !c.is_empty())
                    .map(str::to_owned)
                    .collect::<Vec<_>>()
            }));
        } else {
            // Names are lowercase already: hyper stores them so.
            headers.insert(name.as_str().to_owned(), Value::String(joined(values)));
        }
    }
    // What the Function URL's front adds; a client's own values are kept.
    let forwarded = [
        ("x-forwarded-for", request.peer.ip().to_string()),
        ("x-forwarded-proto", "http".to_owned()),
        ("x-forwarded-port", request.local.port().to_string()),
        ("x-amzn-trace-id", trace_id(request.received, request_id)),
    ];
    for (name, value) in forwarded {
        headers
            .entry(name.to_owned())
            .or_insert(Value::String(value));
    }
    let user_agent = headers
        .get("user-agent")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let epoch_ms = request
        .received
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or_default();

    let mut event = Map::new();
    event.insert("version".into(), json!("2.0"));
    event.insert("routeKey".into(), json!("$default"));
    event.insert("rawPath".into(), json!(raw_path));
    event.insert("rawQueryString".into(), json!(raw_query));
    if !cookies.is_empty() {
        event.insert("cookies".into(), json!(cookies));
    }
    event.insert("headers".into(), Value::Object(headers));
    if !raw_query.is_empty() {
        event.insert(
            "queryStringParameters".into(),
            Value::Object(query_parameters(raw_query)),
        );
    }
    event.insert(
        "requestContext".into(),
        json!({
            "accountId": "anonymous",
            "apiId": url.url_id,
            "domainName": url.domain(),
            "domainPrefix": url.url_id,
            "http": {
                "method": parts.method.as_str(),
                "path": raw_path,
                "protocol": protocol(parts.version),
                "sourceIp": request.peer.ip().to_string(),
                "userAgent": user_agent,
            },
            "requestId": request_id,
            "routeKey": "$default",
            "stage": "$default",
            "time": clf_time(request.received),
            "timeEpoch": epoch_ms,
        }),
    );
    let content_type = parts
        .headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let (body, encoded) = body_field(&request.body, content_type);
    if let Some(body) = body {
        event.insert("body".into(), Value::String(body));
    }
    event.insert("isBase64Encoded".into(), Value::Bool(encoded));
    Value::Object(event)
}

/// Values of a repeated header or query parameter, joined by `,` as API Gateway does.
fn joined(values: impl Iterator<Item = String>) -> String {
    values.collect::<Vec<_>>().join(",")
}

/// `queryStringParameters`: names and values percent-decoded, a repeated name's values joined.
fn query_parameters(raw_query: &str) -> Map<String, Value> {
    let mut grouped: Vec<(String, Vec<String>)> = Vec::new();
    for pair in raw_query.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let decode = |s: &str| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8_lossy()
                .into_owned()
        };
        let (name, value) = (decode(name), decode(value));
        match grouped.iter_mut().find(|(n, _)| *n == name) {
            Some((_, values)) => values.push(value),
            None => grouped.push((name, vec![value])),
        }
    }
    grouped
        .into_iter()
        .map(|(name, values)| (name, Value::String(values.join(","))))
        .collect()
}

/// `body` and `isBase64Encoded`: text bodies as they are, everything else in base64. No body
/// is no `body` field.
pub fn body_field(body: &[u8], content_type: Option<&str>) -> (Option<String>, bool) {
    if body.is_empty() {
        return (None, false);
    }
    if content_type.is_some_and(is_text)
        && let Ok(text) = std::str::from_utf8(body)
    {
        return (Some(text.to_owned()), false);
    }
    // Binary by type, or bytes a JSON string cannot hold whatever the type says (`curl
    // --data-binary` labels a picture `application/x-www-form-urlencoded`).
    (
        Some(base64::engine::general_purpose::STANDARD.encode(body)),
        true,
    )
}

/// Whether a content type is text a Function URL passes as it is: `text/*`, JSON, XML,
/// JavaScript and form data.
fn is_text(content_type: &str) -> bool {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    essence.starts_with("text/")
        || essence.ends_with("+json")
        || essence.ends_with("+xml")
        || matches!(
            essence.as_str(),
            "application/json"
                | "application/xml"
                | "application/javascript"
                | "application/x-www-form-urlencoded"
        )
}

fn protocol(version: http::Version) -> &'static str {
    match version {
        http::Version::HTTP_10 => "HTTP/1.0",
        http::Version::HTTP_2 => "HTTP/2.0",
        _ => "HTTP/1.1",
    }
}

/// `12/Mar/2020:19:03:58 +0000`.
pub fn clf_time(at: SystemTime) -> String {
    let t = Civil::of(at);
    let month = usize::try_from(t.month - 1)
        .ok()
        .and_then(|i| MONTHS.get(i))
        .unwrap_or(&"Jan");
    format!(
        "{:02}/{month}/{:04}:{:02}:{:02}:{:02} +0000",
        t.day, t.year, t.hour, t.minute, t.second
    )
}

/// An X-Ray trace header like the one a Function URL adds (`Root=1-<epoch hex>-<24 hex>`).
fn trace_id(at: SystemTime, request_id: &str) -> String {
    let secs = at
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    let digits: String = request_id
        .chars()
        .filter(char::is_ascii_hexdigit)
        .chain(std::iter::repeat('0'))
        .take(24)
        .collect();
    format!("Root=1-{secs:08x}-{digits}")
}

#[cfg(test)]
#[path = "http_event_tests.rs"]
mod tests;
