//! A test fixture in front of the Runtime API emulator ([`crate::RuntimeApi`]): it forwards every
//! call and adds what the emulator, which predates them, never does.
//!
//! Lambda's Runtime API of 2026 sends two headers on `GET /runtime/invocation/next` that
//! `cargo lambda` 1.9.2 does not: `Lambda-Runtime-Invocation-Id` (unique per attempt; the runtime
//! echoes it on `/response` and `/error`) and `Lambda-Runtime-Aws-Tenant-Id` (multi-tenant
//! functions). It also answers `410 Gone` to the result of an invocation that already timed out,
//! which the emulator never does (it even accepts a second result for the same request id).
//! [`RuntimeProxy`]:
//! - gives each `/next` answer a fresh invocation id and, when set, a tenant id
//!   ([`RuntimeProxy::set_tenant`]); it can also replace the emulator's constant
//!   `Lambda-Runtime-Deadline-Ms: 600000` with a real deadline ([`RuntimeProxy::set_deadline`]);
//! - records the `Lambda-Runtime-Invocation-Id` every `/response` and `/error` carried
//!   ([`RuntimeProxy::results`]);
//! - answers `410 Gone` to the result of the N-th invocation when told to
//!   ([`RuntimeProxy::gone_for`]) without forwarding it; in its place it posts an error of type
//!   [`GONE_ERROR_TYPE`] to the emulator, so that whoever invoked sees the timeout Lambda would
//!   report instead of waiting forever.
//!
//! Concurrency (Lambda Managed Instances): with `cargo lambda` 1.9.2, four concurrent
//! `GET .../invocation/next` long polls are each answered with a different invocation (distinct
//! request ids, each payload once) as four invokes arrive, and each invoke receives the response
//! posted for its own request id (the test
//! `concurrent_long_polls_get_distinct_invocations_and_each_invoker_its_own_response` checks it
//! through the proxy). The proxy keeps that: each connection it accepts is served by its own
//! task, and each forwarded call has its own upstream request.
//!
//! The proxy speaks the small part of HTTP/1.1 the Runtime API needs (a body with
//! `Content-Length` or chunked, keep-alive); it is not a general HTTP proxy.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// The header Lambda sends on `/next` and the runtime echoes on its result.
pub const INVOCATION_ID_HEADER: &str = "lambda-runtime-invocation-id";
/// The header of a multi-tenant function's tenant.
pub const TENANT_ID_HEADER: &str = "lambda-runtime-aws-tenant-id";
/// The header of the invocation's deadline (milliseconds since the Unix epoch).
pub const DEADLINE_HEADER: &str = "lambda-runtime-deadline-ms";
/// `errorType` of what the proxy posts to the emulator for an invocation it answered 410 for.
pub const GONE_ERROR_TYPE: &str = "Sandbox.Timedout";

/// Longest request head the proxy reads (the Runtime API's are a few hundred bytes).
const MAX_HEAD: usize = 64 * 1024;

/// One `/next` answer the proxy handed out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handed {
    /// 1 for the first invocation handed out, 2 for the second, ...
    pub ordinal: usize,
    /// `Lambda-Runtime-Aws-Request-Id` of the emulator.
    pub request_id: String,
    /// The `Lambda-Runtime-Invocation-Id` the proxy added.
    pub invocation_id: String,
    /// The `Lambda-Runtime-Aws-Tenant-Id` the proxy added, if any.
    pub tenant_id: Option<String>,
}

/// Which result a runtime posted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResultKind {
    /// `POST .../invocation/<id>/response`.
    Response,
    /// `POST .../invocation/<id>/error`.
    Error,
}

/// One result (`/response` or `/error`) the runtime posted through the proxy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Posted {
    /// Response or error.
    pub kind: ResultKind,
    /// The request id in the path.
    pub request_id: String,
    /// The `Lambda-Runtime-Invocation-Id` header it carried, if any.
    pub invocation_id: Option<String>,
    /// The status the proxy answered (410 when told to, else the emulator's).
    pub status: u16,
}

#[derive(Default)]
struct Settings {
    tenant_id: Option<String>,
    deadline: Option<Duration>,
    gone: BTreeSet<usize>,
}

#[derive(Default)]
struct Records {
    handed: Vec<Handed>,
    posted: Vec<Posted>,
}

struct Shared {
    /// `http://host:port` of the emulator.
    upstream: String,
    client: reqwest::Client,
    settings: Mutex<Settings>,
    records: Mutex<Records>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The proxy: listening on a free loopback port until dropped.
pub struct RuntimeProxy {
    runtime: Option<tokio::runtime::Runtime>,
    addr: SocketAddr,
    /// The path part of the emulator's `AWS_LAMBDA_RUNTIME_API` (`/.rt/<function>`).
    path: String,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for RuntimeProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RuntimeProxy")
            .field("addr", &self.addr)
            .field("upstream", &self.shared.upstream)
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl RuntimeProxy {
    /// A proxy in front of `runtime_api`, the emulator's `AWS_LAMBDA_RUNTIME_API`
    /// (`http://127.0.0.1:PORT/.rt/<function>`, see [`crate::RuntimeApi::runtime_api_for`]).
    pub fn start(runtime_api: &str) -> RuntimeProxy {
        let rest = runtime_api.strip_prefix("http://").unwrap_or_else(|| {
            panic!("the proxy forwards to an http:// Runtime API, not {runtime_api}")
        });
        let (host, path) = match rest.find('/') {
            Some(slash) => (&rest[..slash], rest[slash..].trim_end_matches('/')),
            None => (rest, ""),
        };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("runtime-proxy")
            .enable_all()
            .build()
            .unwrap_or_else(|err| panic!("cannot build a tokio runtime for the proxy: {err}"));
        let listener = runtime
            .block_on(TcpListener::bind("127.0.0.1:0"))
            .unwrap_or_else(|err| panic!("the proxy cannot listen on 127.0.0.1: {err}"));
        let addr = listener
            .local_addr()
            .unwrap_or_else(|err| panic!("the proxy's address: {err}"));
        let client = reqwest::Client::builder()
            .no_proxy()
            .build()
            .unwrap_or_else(|err| panic!("cannot build the proxy's HTTP client: {err}"));
        let shared = Arc::new(Shared {
            upstream: format!("http://{host}"),
            client,
            settings: Mutex::new(Settings::default()),
            records: Mutex::new(Records::default()),
        });
        let serving = shared.clone();
        runtime.spawn(async move {
            loop {
                let Ok((socket, _)) = listener.accept().await else {
                    continue;
                };
                let shared = serving.clone();
                tokio::spawn(async move {
                    // A connection that breaks (the bootstrap killed mid-call) ends its task only.
                    let _ = serve_connection(socket, &shared).await;
                });
            }
        });
        RuntimeProxy {
            runtime: Some(runtime),
            addr,
            path: path.to_owned(),
            shared,
        }
    }

    /// `AWS_LAMBDA_RUNTIME_API` for the runtime: this proxy, with the emulator's path.
    pub fn runtime_api(&self) -> String {
        format!("http://{}{}", self.addr, self.path)
    }

    /// The tenant id added to the `/next` answers from now on (`None`: no header).
    pub fn set_tenant(&self, tenant_id: Option<&str>) {
        lock(&self.shared.settings).tenant_id = tenant_id.map(str::to_owned);
    }

    /// From now on, `/next` answers carry the deadline `now + after` instead of the emulator's
    /// constant (`None`: the emulator's header as it is).
    pub fn set_deadline(&self, after: Option<Duration>) {
        lock(&self.shared.settings).deadline = after;
    }

    /// Answer `410 Gone` to the result of the `ordinal`-th invocation handed out (1-based).
    pub fn gone_for(&self, ordinal: usize) {
        lock(&self.shared.settings).gone.insert(ordinal);
    }

    /// The invocations handed out so far, in order.
    pub fn handed(&self) -> Vec<Handed> {
        lock(&self.shared.records).handed.clone()
    }

    /// The results posted so far, in the order they arrived.
    pub fn results(&self) -> Vec<Posted> {
        lock(&self.shared.records).posted.clone()
    }

    /// The invocation handed out with `request_id`.
    pub fn handed_for(&self, request_id: &str) -> Option<Handed> {
        self.handed()
            .into_iter()
            .find(|h| h.request_id == request_id)
    }
}

impl Drop for RuntimeProxy {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            // Long polls in flight are dropped with their tasks.
            runtime.shutdown_background();
        }
    }
}

/// One request as read from the runtime.
struct Request {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    close: bool,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// One answer to write back.
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Answer {
    fn text(status: u16, body: &str) -> Answer {
        Answer {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            body: body.as_bytes().to_vec(),
        }
    }
}

async fn serve_connection(socket: TcpStream, shared: &Shared) -> std::io::Result<()> {
    let (read, mut write) = socket.into_split();
    let mut reader = BufReader::new(read);
    while let Some(request) = read_request(&mut reader).await? {
        let close = request.close;
        let answer = handle(request, shared).await;
        write_answer(&mut write, &answer).await?;
        if close {
            break;
        }
    }
    Ok(())
}

async fn read_request(
    reader: &mut BufReader<tokio::net::tcp::OwnedReadHalf>,
) -> std::io::Result<Option<Request>> {
    let mut line = String::new();
    // Blank lines between requests are allowed.
    loop {
        line.clear();
        if reader.read_line(&mut line).await? == 0 {
            return Ok(None);
        }
        if !line.trim().is_empty() {
            break;
        }
    }
    let mut parts = line.split_whitespace();
    let (Some(method), Some(path)) = (parts.next(), parts.next()) else {
        return Err(invalid(format!("not an HTTP request line: {line:?}")));
    };
    let (method, path) = (method.to_owned(), path.to_owned());
    let mut headers = Vec::new();
    let mut head = line.len();
    loop {
        line.clear();
        head += reader.read_line(&mut line).await?;
        if head > MAX_HEAD {
            return Err(invalid("request head too long".into()));
        }
        let text = line.trim_end_matches(['\r', '\n']);
        if text.is_empty() {
            break;
        }
        let Some((name, value)) = text.split_once(':') else {
            return Err(invalid(format!("not a header: {text:?}")));
        };
        headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
    }
    let value = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.to_ascii_lowercase())
    };
    let chunked = value("transfer-encoding").is_some_and(|v| v.contains("chunked"));
    let close = value("connection").is_some_and(|v| v.contains("close"));
    let body = if chunked {
        read_chunked(reader).await?
    } else {
        let length = match value("content-length") {
            Some(v) => v
                .parse::<usize>()
                .map_err(|_| invalid(format!("bad content-length {v:?}")))?,
            None => 0,
        };
        let mut body = vec![0; length];
        reader.read_exact(&mut body).await?;
        body
    };
    Ok(Some(Request {
        method,
        path,
        headers,
        body,
        close,
    }))
}

async fn read_chunked(
    reader: &mut BufReader<tokio::net::tcp::OwnedReadHalf>,
) -> std::io::Result<Vec<u8>> {
    let mut body = Vec::new();
    let mut line = String::new();
    loop {
        line.clear();
        reader.read_line(&mut line).await?;
        let size = line.trim().split(';').next().unwrap_or_default();
        let size = usize::from_str_radix(size, 16)
            .map_err(|_| invalid(format!("bad chunk size {line:?}")))?;
        if size == 0 {
            // Trailers, up to the blank line.
            loop {
                line.clear();
                if reader.read_line(&mut line).await? == 0 || line.trim().is_empty() {
                    return Ok(body);
                }
            }
        }
        let start = body.len();
        body.resize(start + size, 0);
        reader.read_exact(&mut body[start..]).await?;
        line.clear();
        reader.read_line(&mut line).await?;
    }
}

fn invalid(message: String) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, message)
}

async fn write_answer(
    write: &mut tokio::net::tcp::OwnedWriteHalf,
    answer: &Answer,
) -> std::io::Result<()> {
    let reason = reqwest::StatusCode::from_u16(answer.status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("Unknown");
    let mut head = format!("HTTP/1.1 {} {reason}\r\n", answer.status);
    for (name, value) in &answer.headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str(&format!("content-length: {}\r\n\r\n", answer.body.len()));
    write.write_all(head.as_bytes()).await?;
    write.write_all(&answer.body).await?;
    write.flush().await
}

/// What a path asks for: the invocation's result, or anything else (forwarded as it is).
enum Call {
    Next,
    Result(ResultKind, String),
    Other,
}

fn classify(method: &str, path: &str) -> Call {
    let path = path.split('?').next().unwrap_or_default();
    if method == "GET" && path.ends_with("/runtime/invocation/next") {
        return Call::Next;
    }
    if method == "POST"
        && let Some((before, last)) = path.rsplit_once('/')
        && let Some((prefix, request_id)) = before.rsplit_once('/')
        && prefix.ends_with("/runtime/invocation")
    {
        let kind = match last {
            "response" => ResultKind::Response,
            "error" => ResultKind::Error,
            _ => return Call::Other,
        };
        return Call::Result(kind, request_id.to_owned());
    }
    Call::Other
}

async fn handle(request: Request, shared: &Shared) -> Answer {
    match classify(&request.method, &request.path) {
        Call::Next => {
            let mut answer = forward(&request, shared).await;
            if answer.status == 200 {
                add_headers(&mut answer, shared);
            }
            answer
        }
        Call::Result(kind, request_id) => {
            let invocation_id = request.header(INVOCATION_ID_HEADER).map(str::to_owned);
            let ordinal = lock(&shared.records)
                .handed
                .iter()
                .find(|h| h.request_id == request_id)
                .map(|h| h.ordinal);
            let gone = ordinal.is_some_and(|n| lock(&shared.settings).gone.contains(&n));
            let answer = if gone {
                stand_in_timeout(&request, &request_id, shared).await;
                Answer::text(
                    410,
                    r#"{"errorMessage":"Invocation has already timed out","errorType":"InvocationTimeout"}"#,
                )
            } else {
                forward(&request, shared).await
            };
            lock(&shared.records).posted.push(Posted {
                kind,
                request_id,
                invocation_id,
                status: answer.status,
            });
            answer
        }
        Call::Other => forward(&request, shared).await,
    }
}

/// Adds the invocation id, the tenant id and the deadline to a `/next` answer and records it.
fn add_headers(answer: &mut Answer, shared: &Shared) {
    let request_id = answer
        .headers
        .iter()
        .find(|(n, _)| n == "lambda-runtime-aws-request-id")
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    let invocation_id = fresh_id();
    let (tenant_id, deadline) = {
        let settings = lock(&shared.settings);
        (settings.tenant_id.clone(), settings.deadline)
    };
    answer
        .headers
        .retain(|(n, _)| n != INVOCATION_ID_HEADER && n != TENANT_ID_HEADER);
    answer
        .headers
        .push((INVOCATION_ID_HEADER.into(), invocation_id.clone()));
    if let Some(tenant) = &tenant_id {
        answer
            .headers
            .push((TENANT_ID_HEADER.into(), tenant.clone()));
    }
    if let Some(after) = deadline {
        let at = SystemTime::now() + after;
        let ms = at
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or_default();
        answer.headers.retain(|(n, _)| n != DEADLINE_HEADER);
        answer
            .headers
            .push((DEADLINE_HEADER.into(), ms.to_string()));
    }
    let mut records = lock(&shared.records);
    let ordinal = records.handed.len() + 1;
    records.handed.push(Handed {
        ordinal,
        request_id,
        invocation_id,
        tenant_id,
    });
}

/// What Lambda reports to the invoker of an invocation that timed out, posted to the emulator in
/// place of the runtime's late result (which the proxy answered 410 and dropped).
async fn stand_in_timeout(request: &Request, request_id: &str, shared: &Shared) {
    let path = request.path.split('?').next().unwrap_or_default();
    let Some(base) = path.rsplit_once('/').map(|(base, _)| base) else {
        return;
    };
    debug_assert!(base.ends_with(request_id));
    let body = serde_json::json!({
        "errorType": GONE_ERROR_TYPE,
        "errorMessage": "Task timed out (the runtime proxy answered its result 410 Gone)",
    });
    let _ = shared
        .client
        .post(format!("{}{base}/error", shared.upstream))
        .header("content-type", "application/json")
        .header("lambda-runtime-function-error-type", GONE_ERROR_TYPE)
        .body(body.to_string())
        .send()
        .await;
}

/// Forwards `request` to the emulator as it is; a failure to reach it is a 502.
async fn forward(request: &Request, shared: &Shared) -> Answer {
    let method = match reqwest::Method::from_bytes(request.method.as_bytes()) {
        Ok(method) => method,
        Err(_) => return Answer::text(400, r#"{"errorMessage":"bad method"}"#),
    };
    let mut upstream = shared
        .client
        .request(method, format!("{}{}", shared.upstream, request.path))
        .body(request.body.clone());
    for (name, value) in &request.headers {
        if !matches!(
            name.as_str(),
            "host" | "content-length" | "transfer-encoding" | "connection" | "keep-alive"
        ) {
            upstream = upstream.header(name, value);
        }
    }
    let response = match upstream.send().await {
        Ok(response) => response,
        Err(err) => {
            let body = serde_json::json!({"errorMessage": format!("the proxy cannot reach the emulator: {err}")});
            return Answer::text(502, &body.to_string());
        }
    };
    let status = response.status().as_u16();
    let headers = response
        .headers()
        .iter()
        .filter(|(name, _)| {
            !matches!(
                name.as_str(),
                "content-length" | "transfer-encoding" | "connection" | "keep-alive"
            )
        })
        .filter_map(|(name, value)| {
            Some((name.as_str().to_owned(), value.to_str().ok()?.to_owned()))
        })
        .collect();
    let body = match response.bytes().await {
        Ok(body) => body.to_vec(),
        Err(err) => {
            let body = serde_json::json!({"errorMessage": format!("the emulator's answer broke off: {err}")});
            return Answer::text(502, &body.to_string());
        }
    };
    Answer {
        status,
        headers,
        body,
    }
}

/// A fresh id shaped like Lambda's (a UUID, version 4).
fn fresh_id() -> String {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 16];
    if ring::rand::SystemRandom::new().fill(&mut bytes).is_err() {
        // Never the case on Linux; a counter keeps the ids distinct anyway.
        static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        bytes[..8].copy_from_slice(&n.to_be_bytes());
    }
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex = hex::encode(bytes);
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    #[test]
    fn results_and_next_are_told_apart_by_method_and_path() {
        assert!(matches!(
            classify("GET", "/.rt/scar/2018-06-01/runtime/invocation/next"),
            Call::Next
        ));
        match classify(
            "POST",
            "/.rt/scar/2018-06-01/runtime/invocation/abc-1/response",
        ) {
            Call::Result(ResultKind::Response, id) => assert_eq!(id, "abc-1"),
            _ => panic!("a response not recognised"),
        }
        match classify("POST", "/2018-06-01/runtime/invocation/abc-2/error") {
            Call::Result(ResultKind::Error, id) => assert_eq!(id, "abc-2"),
            _ => panic!("an error not recognised"),
        }
        assert!(matches!(
            classify("POST", "/.rt/2018-06-01/runtime/init/error"),
            Call::Other
        ));
        assert!(matches!(
            classify("POST", "/.rt/2018-06-01/runtime/invocation/next"),
            Call::Other
        ));
    }

    #[test]
    fn fresh_ids_are_distinct_uuids() {
        let ids: BTreeSet<String> = (0..100).map(|_| fresh_id()).collect();
        assert_eq!(ids.len(), 100);
        for id in &ids {
            let groups: Vec<usize> = id.split('-').map(str::len).collect();
            assert_eq!(groups, [8, 4, 4, 4, 12], "{id}");
            assert_eq!(&id[14..15], "4", "{id}");
        }
    }

    #[test]
    fn concurrent_long_polls_get_distinct_invocations_and_each_invoker_its_own_response() {
        let api = crate::RuntimeApi::start();
        let proxy = RuntimeProxy::start(&api.runtime_api_for(crate::runtime_api::DEFAULT_FUNCTION));
        let base = format!("{}/2018-06-01/runtime/invocation", proxy.runtime_api());
        let invoke_url = format!(
            "{}/2015-03-31/functions/{}/invocations",
            api.url(),
            crate::runtime_api::DEFAULT_FUNCTION
        );
        let client = reqwest::blocking::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(60))
            .build()
            .expect("client");
        std::thread::scope(|scope| {
            let polls: Vec<_> = (0..4)
                .map(|_| {
                    let (client, base) = (&client, &base);
                    scope.spawn(move || {
                        let next = client.get(format!("{base}/next")).send().expect("next");
                        let id = next
                            .headers()
                            .get("lambda-runtime-aws-request-id")
                            .and_then(|v| v.to_str().ok())
                            .expect("request id")
                            .to_owned();
                        (id, next.text().expect("payload"))
                    })
                })
                .collect();
            // The four polls are waiting before the first invoke arrives.
            std::thread::sleep(Duration::from_millis(500));
            let invokes: Vec<_> = (1..=4)
                .map(|n| {
                    let (client, url) = (&client, &invoke_url);
                    scope.spawn(move || {
                        let answer = client
                            .post(url)
                            .body(format!("{{\"n\":{n}}}"))
                            .send()
                            .expect("invoke");
                        (n, answer.text().expect("invoke answer"))
                    })
                })
                .collect();
            let handed: Vec<(String, String)> =
                polls.into_iter().map(|p| p.join().expect("poll")).collect();
            let ids: BTreeSet<&str> = handed.iter().map(|(id, _)| id.as_str()).collect();
            assert_eq!(ids.len(), 4, "{handed:?}");
            let payloads: BTreeSet<&str> = handed.iter().map(|(_, p)| p.as_str()).collect();
            let expected: BTreeSet<String> = (1..=4).map(|n| format!("{{\"n\":{n}}}")).collect();
            assert_eq!(
                payloads,
                expected.iter().map(String::as_str).collect::<BTreeSet<_>>()
            );
            for (id, payload) in &handed {
                let posted = client
                    .post(format!("{base}/{id}/response"))
                    .body(format!("{{\"echo\":{payload}}}"))
                    .send()
                    .expect("response");
                assert!(posted.status().is_success(), "{}", posted.status());
            }
            for invoke in invokes {
                let (n, answer) = invoke.join().expect("invoke");
                assert_eq!(answer, format!("{{\"echo\":{{\"n\":{n}}}}}"));
            }
        });
        let handed = proxy.handed();
        let ids: BTreeSet<&str> = handed.iter().map(|h| h.invocation_id.as_str()).collect();
        assert_eq!(ids.len(), 4, "invocation ids shared: {handed:?}");
    }

    #[test]
    fn the_proxy_adds_the_headers_records_results_and_answers_gone() {
        let api = crate::RuntimeApi::start();
        let proxy = RuntimeProxy::start(&api.runtime_api_for(crate::runtime_api::DEFAULT_FUNCTION));
        proxy.set_tenant(Some("tenant-7"));
        proxy.set_deadline(Some(Duration::from_secs(30)));
        proxy.gone_for(2);
        let base = format!("{}/2018-06-01/runtime/invocation", proxy.runtime_api());
        let client = reqwest::blocking::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(60))
            .build()
            .expect("client");
        let mut answered = HashMap::new();
        for round in 1..=2 {
            let invoker = {
                let url = format!(
                    "{}/2015-03-31/functions/{}/invocations",
                    api.url(),
                    crate::runtime_api::DEFAULT_FUNCTION
                );
                std::thread::spawn(move || {
                    reqwest::blocking::Client::new()
                        .post(url)
                        .body(format!("{{\"round\":{round}}}"))
                        .send()
                        .map(|r| (r.status().as_u16(), r.text().unwrap_or_default()))
                })
            };
            let next = client.get(format!("{base}/next")).send().expect("next");
            assert_eq!(next.status(), 200);
            let header = |name: &str| {
                next.headers()
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned)
            };
            let request_id = header("lambda-runtime-aws-request-id").expect("request id");
            let invocation_id = header(INVOCATION_ID_HEADER).expect("invocation id");
            assert_eq!(header(TENANT_ID_HEADER).as_deref(), Some("tenant-7"));
            let deadline: u128 = header(DEADLINE_HEADER)
                .expect("deadline")
                .parse()
                .expect("deadline ms");
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .expect("clock")
                .as_millis();
            assert!(
                deadline > now && deadline <= now + 30_000,
                "{deadline} vs {now}"
            );
            let posted = client
                .post(format!("{base}/{request_id}/response"))
                .header("Lambda-Runtime-Invocation-Id", &invocation_id)
                .body(format!("{{\"done\":{round}}}"))
                .send()
                .expect("response");
            answered.insert(round, posted.status().as_u16());
            let (status, text) = invoker.join().expect("invoker").expect("invoke");
            if round == 1 {
                assert_eq!((status, text.as_str()), (200, "{\"done\":1}"));
            } else {
                assert_eq!(status, 500, "{text}");
                assert!(text.contains(GONE_ERROR_TYPE), "{text}");
            }
            let handed = proxy.handed_for(&request_id).expect("handed");
            assert_eq!(handed.ordinal, round);
            assert_eq!(handed.invocation_id, invocation_id);
        }
        assert!(
            (200..300).contains(&answered[&1]),
            "the emulator refused a response: {}",
            answered[&1]
        );
        assert_eq!(answered[&2], 410);
        let results = proxy.results();
        assert_eq!(results.len(), 2);
        let handed = proxy.handed();
        for (posted, handed) in results.iter().zip(&handed) {
            assert_eq!(posted.kind, ResultKind::Response);
            assert_eq!(posted.invocation_id.as_ref(), Some(&handed.invocation_id));
        }
        assert_ne!(handed[0].invocation_id, handed[1].invocation_id);
    }
}
