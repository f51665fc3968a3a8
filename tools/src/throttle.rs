//! A loopback TCP proxy that holds each connection to a bandwidth, for the cold-start bench
//! (`scar bench --only cold`) and the ranged-pull tests.
//!
//! On Lambda one TCP connection to S3 or to a registry's CDN carries a few tens of MB/s while
//! several connections together carry several times that (AWS's guidance for large objects is
//! parallel range GETs). Loopback has no such wall, so a pull measured on it cannot show what
//! parallel ranges buy. [`ThrottleProxy`] puts the wall back: every connection it accepts is
//! forwarded to one upstream address, and each direction of each connection is paced on its own
//! (a token bucket with a small burst), so N parallel connections get N times the bandwidth, as
//! they do in front of S3.
//!
//! It forwards bytes, not requests: HTTP, TLS or anything else goes through unchanged. An end of
//! stream from one side reaches the other as a half-close; a connection that breaks (a reset, a
//! read error) is reset on the other side too, so a client never waits on a peer that is gone.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

/// The burst [`ThrottleProxy::start`] allows each direction of a connection: small next to a
/// second's worth of bytes (3 ms at 40 MB/s), large enough that the timer's granularity (a
/// sleep ends on a millisecond tick) does not lower the rate, and two [`CHUNK`]s.
pub const DEFAULT_BURST: u64 = 128 * 1024;

/// The most one read takes before it is paced and written on. The proxy stands for a wall in
/// the network, which costs the sandbox's CPU nothing, yet it runs on the cores of the pull it
/// throttles: each chunk is a read, a write and often a timer's wake-up, so fewer, larger
/// chunks leave the pull more of the machine (the bench's six throttled pulls of its large
/// image, measured with `perf`: 3.5 s of the proxy's CPU with 16 KiB chunks, 2.1 s with 64).
const CHUNK: usize = 64 * 1024;

/// The proxy: listening on a free loopback port until dropped.
pub struct ThrottleProxy {
    runtime: Option<tokio::runtime::Runtime>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    addr: SocketAddr,
    upstream: SocketAddr,
    limit: Limit,
    counters: Arc<Counters>,
}

impl std::fmt::Debug for ThrottleProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ThrottleProxy")
            .field("addr", &self.addr)
            .field("upstream", &self.upstream)
            .field("bytes_per_second", &self.limit.bytes_per_second)
            .field("burst", &self.limit.burst)
            .finish_non_exhaustive()
    }
}

/// What the proxy has done so far (for a bench to print).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ThrottleStats {
    /// Connections accepted from clients.
    pub connections: u64,
    /// The most connections open at the same time.
    pub peak_open: u64,
    /// Bytes forwarded from clients to the upstream.
    pub bytes_to_upstream: u64,
    /// Bytes forwarded from the upstream to clients.
    pub bytes_to_client: u64,
}

#[derive(Default)]
struct Counters {
    connections: AtomicU64,
    open: AtomicU64,
    peak_open: AtomicU64,
    to_upstream: AtomicU64,
    to_client: AtomicU64,
}

/// The pace of one direction of one connection.
#[derive(Debug, Clone, Copy)]
struct Limit {
    bytes_per_second: u64,
    burst: u64,
}

impl ThrottleProxy {
    /// A proxy on `127.0.0.1:0` forwarding every connection to `upstream`, each direction of each
    /// connection held to `bytes_per_second` with a burst of [`DEFAULT_BURST`].
    pub fn start(upstream: SocketAddr, bytes_per_second: u64) -> ThrottleProxy {
        ThrottleProxy::start_with_burst(upstream, bytes_per_second, DEFAULT_BURST)
    }

    /// [`ThrottleProxy::start`] with a burst of `burst` bytes instead of [`DEFAULT_BURST`].
    pub fn start_with_burst(upstream: SocketAddr, bytes_per_second: u64, burst: u64) -> Self {
        assert!(
            bytes_per_second > 0,
            "a throttle of 0 bytes per second forwards nothing: give a rate"
        );
        ThrottleProxy::try_start_with_burst(upstream, bytes_per_second, burst)
            .unwrap_or_else(|err| panic!("cannot start the throttle on 127.0.0.1: {err}"))
    }

    /// [`ThrottleProxy::start`] for a program rather than a test: a runtime or a listening
    /// socket that cannot be had is an error, and so is a rate of 0 (nothing would pass).
    pub fn try_start(upstream: SocketAddr, bytes_per_second: u64) -> std::io::Result<Self> {
        ThrottleProxy::try_start_with_burst(upstream, bytes_per_second, DEFAULT_BURST)
    }

    fn try_start_with_burst(
        upstream: SocketAddr,
        bytes_per_second: u64,
        burst: u64,
    ) -> std::io::Result<Self> {
        if bytes_per_second == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "a throttle of 0 bytes per second forwards nothing: give a rate",
            ));
        }
        let limit = Limit {
            bytes_per_second,
            burst,
        };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("throttle-proxy")
            .enable_all()
            .build()?;
        let listener = runtime.block_on(TcpListener::bind("127.0.0.1:0"))?;
        let addr = listener.local_addr()?;
        let counters = Arc::new(Counters::default());
        let (shutdown, mut stop) = tokio::sync::oneshot::channel::<()>();
        let serving = counters.clone();
        runtime.spawn(async move {
            loop {
                let client = tokio::select! {
                    accepted = listener.accept() => match accepted {
                        Ok((client, _)) => client,
                        // Out of descriptors or an aborted handshake: the next accept may do.
                        Err(_) => continue,
                    },
                    _ = &mut stop => break,
                };
                serving.connections.fetch_add(1, Ordering::SeqCst);
                let open = serving.open.fetch_add(1, Ordering::SeqCst) + 1;
                serving.peak_open.fetch_max(open, Ordering::SeqCst);
                let counters = serving.clone();
                tokio::spawn(async move {
                    forward(client, upstream, limit, &counters).await;
                    counters.open.fetch_sub(1, Ordering::SeqCst);
                });
            }
        });
        Ok(ThrottleProxy {
            runtime: Some(runtime),
            shutdown: Some(shutdown),
            addr,
            upstream,
            limit,
            counters,
        })
    }

    /// `127.0.0.1:PORT`, where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The address every connection is forwarded to.
    pub fn upstream(&self) -> SocketAddr {
        self.upstream
    }

    /// The rate each direction of each connection is held to.
    pub fn bytes_per_second(&self) -> u64 {
        self.limit.bytes_per_second
    }

    /// The connections and bytes forwarded so far.
    pub fn stats(&self) -> ThrottleStats {
        let c = &self.counters;
        ThrottleStats {
            connections: c.connections.load(Ordering::SeqCst),
            peak_open: c.peak_open.load(Ordering::SeqCst),
            bytes_to_upstream: c.to_upstream.load(Ordering::SeqCst),
            bytes_to_client: c.to_client.load(Ordering::SeqCst),
        }
    }
}

impl Drop for ThrottleProxy {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(runtime) = self.runtime.take() {
            // Connections in flight end with their tasks: both sockets are closed. Outside a
            // runtime, wait for that, so the port is closed once the proxy is gone; inside one,
            // blocking is not allowed.
            if tokio::runtime::Handle::try_current().is_ok() {
                runtime.shutdown_background();
            } else {
                runtime.shutdown_timeout(Duration::from_secs(5));
            }
        }
    }
}

/// How one direction of a connection ended.
enum Ended {
    /// The source ended its stream (passed on as a half-close) or the destination is gone (the
    /// other direction sees that by itself).
    Done,
    /// Reading the source failed: the connection is broken, and the other side must know.
    Broken,
}

/// Forwards one client connection to `upstream` until both directions have ended.
async fn forward(client: TcpStream, upstream: SocketAddr, limit: Limit, counters: &Counters) {
    let mut client = client;
    let mut server = match TcpStream::connect(upstream).await {
        Ok(server) => server,
        Err(_) => {
            // The client sees what it would see without the proxy: its connection refused.
            let _ = client.set_zero_linger();
            return;
        }
    };
    // Without it, a request's small writes (headers, then a body) wait for delayed ACKs
    // (Nagle): tens of milliseconds the proxy would add to every exchange.
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let broken = {
        let (client_read, client_write) = client.split();
        let (server_read, server_write) = server.split();
        let up = pump(client_read, server_write, limit, &counters.to_upstream);
        let down = pump(server_read, client_write, limit, &counters.to_client);
        tokio::pin!(up, down);
        // A broken direction ends both at once; a direction that is done waits for the other.
        let (mut up_done, mut down_done) = (false, false);
        loop {
            let ended = tokio::select! {
                ended = &mut up, if !up_done => { up_done = true; ended }
                ended = &mut down, if !down_done => { down_done = true; ended }
                else => break false,
            };
            if let Ended::Broken = ended {
                break true;
            }
        }
    };
    if broken {
        // A reset, not an orderly end: a client must not take a cut stream for a whole one.
        let _ = client.set_zero_linger();
        let _ = server.set_zero_linger();
    }
}

/// Copies `from` into `to` at the pace of `limit`, counting the bytes written into `moved`.
async fn pump<R, W>(mut from: R, mut to: W, limit: Limit, moved: &AtomicU64) -> Ended
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut pace = Pace::new(limit, Instant::now());
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) => {
                let _ = to.shutdown().await;
                return Ended::Done;
            }
            Ok(n) => n,
            Err(_) => return Ended::Broken,
        };
        let now = Instant::now();
        let ready = pace.admit(n, now);
        // Only when there is something to wait for: a sleep, even an elapsed one, lasts until
        // the timer's next millisecond tick, which alone would cap a 16 KiB chunk at 16 MB/s.
        if ready > now {
            tokio::time::sleep_until(ready).await;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return Ended::Done;
        }
        moved.fetch_add(n as u64, Ordering::SeqCst);
    }
}

/// A token bucket kept as the time its debt is paid (GCRA): each admitted byte moves that time
/// on by `1 / rate`, and bytes may leave as long as the debt is within the burst.
#[derive(Debug)]
struct Pace {
    limit: Limit,
    /// When every byte admitted so far will have been paid for.
    paid_at: Instant,
}

impl Pace {
    fn new(limit: Limit, now: Instant) -> Pace {
        Pace {
            limit,
            paid_at: now,
        }
    }

    /// Admits `bytes` more and returns when they may leave (`now` or later).
    fn admit(&mut self, bytes: usize, now: Instant) -> Instant {
        self.paid_at = self.paid_at.max(now) + self.duration_of(bytes as u64);
        let burst = self.duration_of(self.limit.burst);
        match self.paid_at.checked_sub(burst) {
            Some(ready) => ready.max(now),
            None => now,
        }
    }

    /// How long `bytes` take at the rate.
    fn duration_of(&self, bytes: u64) -> Duration {
        let nanos = u128::from(bytes) * 1_000_000_000 / u128::from(self.limit.bytes_per_second);
        Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }
}

#[cfg(test)]
#[path = "throttle_tests.rs"]
mod tests;
