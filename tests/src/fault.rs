//! A TCP proxy in front of a real service (the registry, the Runtime API emulator) that injects
//! one kind of fault into the first matching requests: a `429 Too Many Requests` answer, a
//! connection cut in the middle of the response, a redirect, or a stall before forwarding. Every
//! other byte comes from the service itself, and every request line is recorded with the time
//! it arrived, so a test can also use the proxy as a tap.
//!
//! Each forwarded request is rewritten to `Connection: close`, so one connection carries one
//! request and the proxy sees every request line. A request body is forwarded by its
//! `Content-Length` (chunked request bodies are not supported).

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::service::ThreadedServer;

/// What to do to a matching request.
#[derive(Clone, Copy, Debug)]
pub enum Fault {
    /// Answer `429` with `Retry-After: <secs>` instead of forwarding.
    TooManyRequests {
        /// Value of `Retry-After`.
        retry_after_secs: u32,
    },
    /// Forward, then cut both connections after this many response bytes.
    DropAfter {
        /// Response bytes (headers included) let through.
        bytes: usize,
    },
    /// Answer `307 Temporary Redirect` to `<base><request path>`, as registries do to send
    /// blob downloads to object storage.
    Redirect {
        /// `http://host:port` of the storage.
        base: &'static str,
    },
    /// Hold the request this long, then forward it as if nothing happened: a registry that
    /// stalls (a slow storage backend, a congested link).
    Stall {
        /// How long the request is held before it reaches the upstream.
        secs: u64,
    },
    /// Forward the response at this many bytes a second: a slow link (a pull that cannot
    /// finish before a deadline while it keeps receiving bytes).
    Throttle {
        /// Response bytes (headers included) a second.
        bytes_per_sec: u64,
    },
}

/// A request the proxy saw.
#[derive(Clone, Debug)]
pub struct Seen {
    /// When its head had arrived.
    pub at: Instant,
    /// The request line (with its `Range` header, when any).
    pub line: String,
    /// Whether the fault was injected into it.
    pub faulted: bool,
}

struct Shared {
    /// Set at start, or later by [`FaultProxy::set_upstream`]; requests wait for it.
    upstream: OnceLock<SocketAddr>,
    fault: Fault,
    pattern: String,
    remaining: AtomicUsize,
    injected: AtomicUsize,
    requests: Mutex<Vec<Seen>>,
    /// Set when the proxy is dropped: requests stop waiting for a deferred upstream.
    dropped: AtomicBool,
}

/// A running proxy; stops accepting on drop.
pub struct FaultProxy {
    server: ThreadedServer,
    shared: Arc<Shared>,
}

impl FaultProxy {
    /// Proxy to `upstream` (`host:port`), injecting `fault` into the first `times` requests
    /// whose request line contains `pattern`.
    pub fn start(upstream: &str, fault: Fault, pattern: &str, times: usize) -> FaultProxy {
        let proxy = Self::start_deferred(fault, pattern, times);
        proxy.set_upstream(upstream);
        proxy
    }

    /// Like [`FaultProxy::start`] for an upstream whose address is known only after the proxy's
    /// has been handed out: requests wait up to a minute for [`FaultProxy::set_upstream`].
    pub fn start_deferred(fault: Fault, pattern: &str, times: usize) -> FaultProxy {
        let shared = Arc::new(Shared {
            upstream: OnceLock::new(),
            fault,
            pattern: pattern.to_owned(),
            remaining: AtomicUsize::new(times),
            injected: AtomicUsize::new(0),
            requests: Mutex::new(Vec::new()),
            dropped: AtomicBool::new(false),
        });
        let server = ThreadedServer::start("the fault proxy", shared.clone(), handle);
        FaultProxy { server, shared }
    }

    /// A proxy that only records requests on their way to the upstream set later.
    pub fn tap_deferred() -> FaultProxy {
        // An empty budget: the fault never fires.
        Self::start_deferred(Fault::Stall { secs: 0 }, "", 0)
    }

    /// Where requests go (`host:port`); only the first call counts.
    pub fn set_upstream(&self, upstream: &str) {
        let addr = upstream
            .parse()
            .unwrap_or_else(|err| panic!("upstream {upstream:?} is not host:port: {err}"));
        let _ = self.shared.upstream.set(addr);
    }

    /// `127.0.0.1:PORT` of the proxy.
    pub fn host(&self) -> String {
        self.server.addr().to_string()
    }

    /// How many faults were injected.
    pub fn injected(&self) -> usize {
        self.shared.injected.load(Ordering::Relaxed)
    }

    /// Request lines seen (with their `Range` header, when any), in order.
    pub fn requests(&self) -> Vec<String> {
        self.seen().into_iter().map(|s| s.line).collect()
    }

    /// Requests seen with their arrival times, in order.
    pub fn seen(&self) -> Vec<Seen> {
        self.shared
            .requests
            .lock()
            .map(|r| r.clone())
            .unwrap_or_default()
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.shared.dropped.store(true, Ordering::Relaxed);
    }
}

fn handle(s: &Shared, mut client: TcpStream) {
    let _ = client.set_read_timeout(Some(Duration::from_secs(30)));
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match client.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let arrived = Instant::now();
    let text = String::from_utf8_lossy(&head).into_owned();
    let mut lines = text.split("\r\n");
    let request_line = lines.next().unwrap_or_default().to_owned();
    let range = lines
        .clone()
        .find(|l| l.to_ascii_lowercase().starts_with("range:"))
        .map(|l| format!(" [{}]", l.trim()))
        .unwrap_or_default();
    let matches = request_line.contains(&s.pattern)
        && s.remaining
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
    if let Ok(mut r) = s.requests.lock() {
        r.push(Seen {
            at: arrived,
            line: format!("{request_line}{range}"),
            faulted: matches,
        });
    }
    if matches {
        s.injected.fetch_add(1, Ordering::Relaxed);
    }
    if let (true, Fault::Stall { secs }) = (matches, s.fault) {
        std::thread::sleep(Duration::from_secs(secs));
    }
    if let (true, Fault::TooManyRequests { retry_after_secs }) = (matches, s.fault) {
        let answer = format!(
            "HTTP/1.1 429 Too Many Requests\r\nRetry-After: {retry_after_secs}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
        let _ = client.write_all(answer.as_bytes());
        return;
    }
    if let (true, Fault::Redirect { base }) = (matches, s.fault) {
        let path = request_line.split_whitespace().nth(1).unwrap_or("/");
        let answer = format!(
            "HTTP/1.1 307 Temporary Redirect\r\nLocation: {base}{path}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
        let _ = client.write_all(answer.as_bytes());
        return;
    }
    let Some(upstream_addr) = wait_upstream(s) else {
        return;
    };
    let Ok(mut upstream) = TcpStream::connect(upstream_addr) else {
        return;
    };
    let mut rewritten = String::new();
    let end = text.find("\r\n\r\n").unwrap_or(text.len());
    for line in text[..end].split("\r\n") {
        if !line.to_ascii_lowercase().starts_with("connection:") {
            rewritten.push_str(line);
            rewritten.push_str("\r\n");
        }
    }
    rewritten.push_str("Connection: close\r\n\r\n");
    if upstream.write_all(rewritten.as_bytes()).is_err() {
        return;
    }
    // Anything after the head (a request body) follows as is, up to its Content-Length.
    let body_start = end + 4;
    if head.len() > body_start && upstream.write_all(&head[body_start..]).is_err() {
        return;
    }
    let content_length = text[..end]
        .split("\r\n")
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse::<usize>().ok())?
        })
        .unwrap_or(0);
    let mut body_left = content_length.saturating_sub(head.len().saturating_sub(body_start));
    while body_left > 0 {
        let want = body_left.min(buf.len());
        let n = match client.read(&mut buf[..want]) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if upstream.write_all(&buf[..n]).is_err() {
            return;
        }
        body_left -= n;
    }
    let limit = match (matches, s.fault) {
        (true, Fault::DropAfter { bytes }) => Some(bytes),
        _ => None,
    };
    let mut sent = 0usize;
    loop {
        let n = match upstream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let n = match limit {
            Some(l) if sent + n >= l => {
                let _ = client.write_all(&buf[..l - sent]);
                // The body stops short of its Content-Length: the client sees the drop.
                let _ = client.shutdown(Shutdown::Both);
                let _ = upstream.shutdown(Shutdown::Both);
                return;
            }
            _ => n,
        };
        if client.write_all(&buf[..n]).is_err() {
            break;
        }
        sent += n;
        if let (true, Fault::Throttle { bytes_per_sec }) = (matches, s.fault) {
            std::thread::sleep(Duration::from_secs_f64(
                n as f64 / bytes_per_sec.max(1) as f64,
            ));
        }
    }
    let _ = client.shutdown(Shutdown::Both);
}

/// The upstream address, waiting up to a minute for a deferred one.
fn wait_upstream(s: &Shared) -> Option<SocketAddr> {
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(addr) = s.upstream.get() {
            return Some(*addr);
        }
        if Instant::now() > until || s.dropped.load(Ordering::Relaxed) {
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A stand-in for object storage behind a registry redirect: serves blobs by the last path
/// segment (`sha256:<hex>`) and records the `Authorization` header of every request.
pub struct BlobStore {
    base: &'static str,
    seen: Arc<Mutex<Vec<Option<String>>>>,
}

impl BlobStore {
    /// Serve `blobs` (digest, bytes).
    pub fn start(blobs: Vec<(String, Vec<u8>)>) -> BlobStore {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind blob store");
        let base: &'static str =
            Box::leak(format!("http://{}", listener.local_addr().expect("addr")).into_boxed_str());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = seen.clone();
        let blobs = Arc::new(blobs);
        std::thread::spawn(move || {
            for mut conn in listener.incoming().flatten() {
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match conn.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let text = String::from_utf8_lossy(&head).into_owned();
                let auth = text
                    .split("\r\n")
                    .find(|l| l.to_ascii_lowercase().starts_with("authorization:"))
                    .map(str::to_owned);
                if let Ok(mut v) = s.lock() {
                    v.push(auth);
                }
                let path = text.split_whitespace().nth(1).unwrap_or("/");
                let digest = path.rsplit('/').next().unwrap_or("");
                let answer = match blobs.iter().find(|(d, _)| d == digest) {
                    Some((_, bytes)) => {
                        let mut a = format!(
                            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                            bytes.len()
                        )
                        .into_bytes();
                        a.extend_from_slice(bytes);
                        a
                    }
                    None => {
                        b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                            .to_vec()
                    }
                };
                let _ = conn.write_all(&answer);
            }
        });
        BlobStore { base, seen }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn base(&self) -> &'static str {
        self.base
    }

    /// The `Authorization` header of each request served (`None` when absent).
    pub fn authorizations(&self) -> Vec<Option<String>> {
        self.seen.lock().map(|v| v.clone()).unwrap_or_default()
    }
}
