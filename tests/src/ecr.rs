//! A stand-in for the Amazon ECR API's `GetAuthorizationToken` (AWS JSON 1.1 over HTTP), for
//! pulls from an ECR-named registry host with the standard AWS credential chain.
//!
//! Every request's SigV4 signature is recomputed from the raw request with the one secret key
//! the stand-in knows, the way AWS checks it: a request signed with another key, for another
//! service, or not signed at all gets `InvalidSignatureException` (HTTP 400) and no token. A
//! correctly signed `GetAuthorizationToken` gets `base64("<user>:<password>")`, the basic
//! credentials the registry behind the ECR host name accepts.
//!
//! Clients reach it through the SDK's standard endpoint override, `AWS_ENDPOINT_URL_ECR`.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::service::ThreadedServer;

use base64::Engine as _;
use sha2::{Digest as _, Sha256};

/// The `X-Amz-Target` of `GetAuthorizationToken`.
pub const GET_AUTHORIZATION_TOKEN: &str =
    "AmazonEC2ContainerRegistry_V20150921.GetAuthorizationToken";

/// One request the stand-in answered.
#[derive(Clone, Debug)]
pub struct EcrCall {
    /// `X-Amz-Target`, empty when absent.
    pub target: String,
    /// The credential scope of the signature (`<key id>/<date>/<region>/<service>/aws4_request`).
    pub scope: String,
    /// `Ok` when the SigV4 signature verified, else why not.
    pub signature: Result<(), String>,
    /// `X-Amz-Security-Token` (temporary credentials, as Lambda's role gives), when sent and
    /// covered by the signature.
    pub signed_session_token: Option<String>,
}

struct Shared {
    access_key: String,
    secret_key: String,
    token: String,
    calls: Mutex<Vec<EcrCall>>,
}

/// A running stand-in; stops accepting on drop.
pub struct EcrStandIn {
    server: ThreadedServer,
    shared: Arc<Shared>,
}

impl EcrStandIn {
    /// Accept requests signed with `access_key`/`secret_key`; hand out `user:password`.
    pub fn start(access_key: &str, secret_key: &str, user: &str, password: &str) -> EcrStandIn {
        let shared = Arc::new(Shared {
            access_key: access_key.to_owned(),
            secret_key: secret_key.to_owned(),
            token: base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}")),
            calls: Mutex::new(Vec::new()),
        });
        let server = ThreadedServer::start("the ECR stand-in", shared.clone(), serve);
        EcrStandIn { server, shared }
    }

    /// `http://127.0.0.1:PORT`: the value for `AWS_ENDPOINT_URL_ECR`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.server.addr())
    }

    /// The requests answered so far, in order.
    pub fn calls(&self) -> Vec<EcrCall> {
        self.shared
            .calls
            .lock()
            .map(|c| c.clone())
            .unwrap_or_default()
    }
}

/// A request as it came over the wire.
struct Raw {
    method: String,
    target: String,
    /// Header names lowercased, values as sent, in order.
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Raw {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

fn read_request(conn: &mut TcpStream) -> Option<Raw> {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(30)));
    let mut data = Vec::new();
    let mut buf = [0u8; 4096];
    let end = loop {
        if let Some(i) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        match conn.read(&mut buf) {
            Ok(0) | Err(_) => return None,
            Ok(n) => data.extend_from_slice(&buf[..n]),
        }
    };
    let head = String::from_utf8_lossy(&data[..end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut request_line = lines.next()?.split_whitespace();
    let method = request_line.next()?.to_owned();
    let target = request_line.next()?.to_owned();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.to_owned()))
        .collect();
    let length: usize = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .and_then(|(_, v)| v.trim().parse().ok())
        .unwrap_or(0);
    let mut body = data[end + 4..].to_vec();
    while body.len() < length {
        match conn.read(&mut buf) {
            Ok(0) | Err(_) => return None,
            Ok(n) => body.extend_from_slice(&buf[..n]),
        }
    }
    body.truncate(length);
    Some(Raw {
        method,
        target,
        headers,
        body,
    })
}

fn serve(s: &Shared, mut conn: TcpStream) {
    let Some(request) = read_request(&mut conn) else {
        return;
    };
    let target = request
        .header("x-amz-target")
        .unwrap_or("")
        .trim()
        .to_owned();
    let (scope, signature) = match verify_sigv4(&request, &s.access_key, &s.secret_key) {
        Ok(scope) => (scope, Ok(())),
        Err((scope, why)) => (scope, Err(why)),
    };
    let signed_session_token = request
        .header("x-amz-security-token")
        .filter(|_| {
            signature.is_ok()
                && signed_headers(&request).contains(&"x-amz-security-token".to_owned())
        })
        .map(|t| t.trim().to_owned());
    let (status, body) = match (&signature, target.as_str()) {
        (Err(why), _) => (
            "400 Bad Request",
            serde_json::json!({"__type": "InvalidSignatureException", "message": why}),
        ),
        (Ok(()), GET_AUTHORIZATION_TOKEN) => (
            "200 OK",
            serde_json::json!({"authorizationData": [{
                "authorizationToken": s.token,
                // 2100-01-01: far ahead, pullers fetch a fresh token per pull anyway.
                "expiresAt": 4_102_444_800u64,
                "proxyEndpoint": "https://123456789012.dkr.ecr.us-east-1.amazonaws.com",
            }]}),
        ),
        (Ok(()), other) => (
            "400 Bad Request",
            serde_json::json!({"__type": "UnknownOperationException", "message": format!("the stand-in only answers GetAuthorizationToken, not {other:?}")}),
        ),
    };
    if let Ok(mut calls) = s.calls.lock() {
        calls.push(EcrCall {
            target,
            scope,
            signature,
            signed_session_token,
        });
    }
    let body = body.to_string();
    let answer = format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/x-amz-json-1.1\r\nx-amzn-RequestId: scar-e2e\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = conn.write_all(answer.as_bytes());
}

/// The `SignedHeaders` of the request's SigV4 Authorization header.
fn signed_headers(r: &Raw) -> Vec<String> {
    r.header("authorization")
        .and_then(|a| {
            a.split(',')
                .map(str::trim)
                .find_map(|f| f.split_whitespace().last()?.strip_prefix("SignedHeaders="))
        })
        .map(|h| h.split(';').map(str::to_owned).collect())
        .unwrap_or_default()
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key);
    ring::hmac::sign(&key, data).as_ref().to_vec()
}

/// Check the request's `Authorization: AWS4-HMAC-SHA256 ...` the way AWS does: rebuild the
/// canonical request from what was sent, derive the signing key from the secret, compare.
/// Returns the credential scope, or it (possibly empty) with the reason of the failure.
fn verify_sigv4(r: &Raw, access_key: &str, secret_key: &str) -> Result<String, (String, String)> {
    let fail = |scope: &str, why: String| Err((scope.to_owned(), why));
    let Some(auth) = r.header("authorization").map(str::trim) else {
        return fail(
            "",
            "the request is not signed (no Authorization header)".into(),
        );
    };
    let Some(fields) = auth.strip_prefix("AWS4-HMAC-SHA256 ") else {
        return fail("", format!("not a SigV4 Authorization header: {auth}"));
    };
    let field = |name: &str| {
        fields
            .split(',')
            .map(str::trim)
            .find_map(|f| f.strip_prefix(name)?.strip_prefix('='))
            .unwrap_or("")
            .to_owned()
    };
    let (scope, signed_headers, signature) = (
        field("Credential"),
        field("SignedHeaders"),
        field("Signature"),
    );
    let parts: Vec<&str> = scope.split('/').collect();
    let [key_id, date, region, service, "aws4_request"] = parts.as_slice() else {
        return fail(&scope, format!("malformed credential scope {scope:?}"));
    };
    if *key_id != access_key {
        return fail(&scope, format!("unknown access key {key_id}"));
    }
    if *service != "ecr" {
        return fail(&scope, format!("signed for service {service}, not ecr"));
    }
    let Some(amz_date) = r.header("x-amz-date").map(str::trim) else {
        return fail(&scope, "no X-Amz-Date header".into());
    };
    if !amz_date.starts_with(date) {
        return fail(&scope, format!("X-Amz-Date {amz_date} is not of {date}"));
    }
    let names: Vec<&str> = signed_headers.split(';').collect();
    if !names.contains(&"host") || !names.contains(&"x-amz-date") {
        return fail(
            &scope,
            format!("host and x-amz-date must be signed: {signed_headers}"),
        );
    }
    let mut canonical_headers = String::new();
    for name in &names {
        let values: Vec<String> = r
            .headers
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.split_whitespace().collect::<Vec<_>>().join(" "))
            .collect();
        if values.is_empty() {
            return fail(&scope, format!("signed header {name} was not sent"));
        }
        canonical_headers.push_str(&format!("{name}:{}\n", values.join(",")));
    }
    let (path, query) = r.target.split_once('?').unwrap_or((&r.target, ""));
    let mut query: Vec<&str> = query.split('&').filter(|q| !q.is_empty()).collect();
    query.sort_unstable();
    let canonical_request = format!(
        "{}\n{path}\n{}\n{canonical_headers}\n{signed_headers}\n{}",
        r.method,
        query.join("&"),
        hex::encode(Sha256::digest(&r.body))
    );
    let string_to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{date}/{region}/{service}/aws4_request\n{}",
        hex::encode(Sha256::digest(canonical_request.as_bytes()))
    );
    let mut key = hmac(format!("AWS4{secret_key}").as_bytes(), date.as_bytes());
    for part in [*region, *service, "aws4_request"] {
        key = hmac(&key, part.as_bytes());
    }
    let expected = hex::encode(hmac(&key, string_to_sign.as_bytes()));
    if expected != signature {
        return fail(
            &scope,
            "The request signature we calculated does not match the signature you provided".into(),
        );
    }
    Ok(scope)
}
