//! The proxy against plain tokio servers on loopback; clients are blocking std sockets on threads.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream as StdStream};
use std::sync::Arc;
use std::time::{Duration, Instant as StdInstant};

use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::runtime::Runtime;

use super::*;

/// 40 MB/s, the single-connection wall of issue #21.
const RATE: u64 = 40_000_000;
const MIB: usize = 1024 * 1024;
/// A client that waits longer than this for a byte is hung: the test fails instead.
const PATIENCE: Duration = Duration::from_secs(20);

fn servers() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("test runtime")
}

fn listen(runtime: &Runtime) -> (TcpListener, SocketAddr) {
    let listener = runtime
        .block_on(TcpListener::bind("127.0.0.1:0"))
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    (listener, addr)
}

/// Pseudo-random bytes (xorshift): incompressible, and a shifted or dropped chunk shows.
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// A server that writes `data` to every connection, then closes it.
fn source(runtime: &Runtime, data: Arc<Vec<u8>>) -> SocketAddr {
    let (listener, addr) = listen(runtime);
    runtime.spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let data = data.clone();
            tokio::spawn(async move {
                let _ = socket.write_all(&data).await;
            });
        }
    });
    addr
}

/// A server that writes back what it reads until the end of the stream, then closes.
fn echo(runtime: &Runtime) -> SocketAddr {
    let (listener, addr) = listen(runtime);
    runtime.spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut read, mut write) = socket.split();
                let _ = tokio::io::copy(&mut read, &mut write).await;
            });
        }
    });
    addr
}

fn connect(proxy: &ThrottleProxy) -> StdStream {
    let client = StdStream::connect(proxy.addr()).expect("connect to the proxy");
    client.set_read_timeout(Some(PATIENCE)).expect("timeout");
    client
}

/// Reads to the end of the stream; the bytes, or the error that ended it.
fn read_all(client: &mut StdStream) -> (Vec<u8>, Option<std::io::Error>) {
    let mut got = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match client.read(&mut buf) {
            Ok(0) => return (got, None),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(err) => return (got, Some(err)),
        }
    }
}

/// Downloads everything one connection gives: (sha256, length, seconds).
fn download(proxy: &ThrottleProxy) -> ([u8; 32], usize, f64) {
    let started = StdInstant::now();
    let mut client = connect(proxy);
    let (got, err) = read_all(&mut client);
    let seconds = started.elapsed().as_secs_f64();
    assert!(err.is_none(), "the download broke: {err:?}");
    (Sha256::digest(&got).into(), got.len(), seconds)
}

#[test]
fn pace_lets_a_burst_through_then_holds_to_the_rate() {
    let limit = Limit {
        bytes_per_second: 1000,
        burst: 100,
    };
    let t0 = Instant::now();
    let ms = Duration::from_millis;
    let mut pace = Pace::new(limit, t0);
    assert_eq!(pace.admit(100, t0), t0, "the burst leaves at once");
    assert_eq!(pace.admit(100, t0), t0 + ms(100));
    assert_eq!(pace.admit(50, t0), t0 + ms(150));
    // Idle time pays the debt but does not save up more than the burst.
    let later = t0 + ms(10_000);
    assert_eq!(pace.admit(100, later), later);
    assert_eq!(pace.admit(1, later), later + ms(1));
}

#[test]
fn one_connection_is_held_to_its_rate_and_parallel_ones_each_get_it() {
    let runtime = servers();
    let data = Arc::new(noise(8 * MIB, 21));
    let want: [u8; 32] = Sha256::digest(data.as_slice()).into();
    let upstream = source(&runtime, data.clone());
    let proxy = ThrottleProxy::start(upstream, RATE);

    let (sum, len, one) = download(&proxy);
    assert_eq!((len, sum), (data.len(), want), "one connection's bytes");
    // 8 MiB at 40 MB/s is 0.21 s, less the 64 KiB burst: only a proxy that lets bytes
    // through faster than its rate finishes sooner.
    assert!(one >= 0.19, "8 MiB through a 40 MB/s proxy in {one:.3} s");

    let started = StdInstant::now();
    let runs: Vec<_> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..4).map(|_| scope.spawn(|| download(&proxy))).collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("client thread"))
            .collect()
    });
    let four = started.elapsed().as_secs_f64();
    for (sum, len, seconds) in &runs {
        assert_eq!(
            (*len, *sum),
            (data.len(), want),
            "a parallel connection's bytes"
        );
        assert!(*seconds >= 0.19, "8 MiB in {seconds:.3} s on one of four");
    }
    println!(
        "throttle at {} MB/s: one connection 8 MiB in {one:.3} s ({:.1} MB/s); four in parallel \
         4 x 8 MiB in {four:.3} s ({:.1} MB/s, {:.2}x one connection's time)",
        RATE / 1_000_000,
        data.len() as f64 / one / 1e6,
        4.0 * data.len() as f64 / four / 1e6,
        four / one
    );

    let stats = proxy.stats();
    assert_eq!(stats.connections, 5);
    assert_eq!(stats.bytes_to_client, 5 * data.len() as u64);
    assert_eq!(stats.bytes_to_upstream, 0);
    assert!(
        (2..=5).contains(&stats.peak_open),
        "peak open connections {} (four clients at once, the first may linger)",
        stats.peak_open
    );
}

#[test]
fn both_directions_are_forwarded_and_a_half_close_reaches_the_upstream() {
    let runtime = servers();
    let proxy = ThrottleProxy::start(echo(&runtime), RATE);
    let data = noise(2 * MIB, 7);
    let mut client = connect(&proxy);
    let started = StdInstant::now();
    let mut writer = client.try_clone().expect("clone");
    let sent = data.clone();
    let writing = std::thread::spawn(move || {
        writer.write_all(&sent).expect("write through the proxy");
        // The echo server only closes once it sees this end of stream through the proxy.
        writer.shutdown(Shutdown::Write).expect("half-close");
    });
    let (got, err) = read_all(&mut client);
    let seconds = started.elapsed().as_secs_f64();
    writing.join().expect("writer");
    assert!(err.is_none(), "the echo broke: {err:?}");
    assert!(
        got == data,
        "{} bytes came back of {}",
        got.len(),
        data.len()
    );
    // Each direction is paced: 2 MiB cannot come back sooner than it went up at 40 MB/s.
    assert!(seconds >= 0.045, "2 MiB echoed in {seconds:.3} s");
    let stats = proxy.stats();
    assert_eq!(stats.connections, 1);
    assert_eq!(stats.bytes_to_upstream, data.len() as u64);
    assert_eq!(stats.bytes_to_client, data.len() as u64);
}

#[test]
fn an_upstream_that_closes_closes_the_client() {
    let runtime = servers();
    let (listener, upstream) = listen(&runtime);
    runtime.spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            // Says goodbye and closes without waiting for the client to finish.
            let _ = socket.write_all(b"bye").await;
        }
    });
    let proxy = ThrottleProxy::start(upstream, RATE);
    let mut client = connect(&proxy);
    let (got, err) = read_all(&mut client);
    assert!(err.is_none(), "a close, not an error: {err:?}");
    assert_eq!(got, b"bye");
}

#[test]
fn an_upstream_that_resets_resets_the_client() {
    let runtime = servers();
    let (listener, upstream) = listen(&runtime);
    runtime.spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let _ = socket.write_all(b"partial").await;
            // Leave time for the bytes to cross before the reset.
            tokio::time::sleep(Duration::from_millis(50)).await;
            let _ = socket.set_zero_linger();
        }
    });
    let proxy = ThrottleProxy::start(upstream, RATE);
    let mut client = connect(&proxy);
    let (got, err) = read_all(&mut client);
    let kind = err.as_ref().map(std::io::Error::kind);
    assert_eq!(
        kind,
        Some(ErrorKind::ConnectionReset),
        "a cut stream must not look whole (got {} bytes: {:?})",
        got.len(),
        String::from_utf8_lossy(&got)
    );
}

#[test]
fn a_client_that_goes_away_closes_the_upstream() {
    let runtime = servers();
    let (listener, upstream) = listen(&runtime);
    let (seen, mut ended) = tokio::sync::mpsc::unbounded_channel::<Vec<u8>>();
    runtime.spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let seen = seen.clone();
            tokio::spawn(async move {
                let mut got = Vec::new();
                let _ = socket.read_to_end(&mut got).await;
                let _ = seen.send(got);
            });
        }
    });
    let proxy = ThrottleProxy::start(upstream, RATE);
    let mut client = connect(&proxy);
    client.write_all(b"GET / HTTP/1.1\r\n\r\n").expect("write");
    drop(client);
    let got = runtime
        .block_on(async { tokio::time::timeout(PATIENCE, ended.recv()).await })
        .expect("the upstream still waits for a client that left")
        .expect("one connection");
    assert_eq!(got, b"GET / HTTP/1.1\r\n\r\n");
}

#[test]
fn an_upstream_that_refuses_is_a_refused_client() {
    let runtime = servers();
    // A port that was just free: nothing listens on it once the listener is dropped.
    let (listener, upstream) = listen(&runtime);
    drop(listener);
    let proxy = ThrottleProxy::start(upstream, RATE);
    let mut client = connect(&proxy);
    let (got, err) = read_all(&mut client);
    assert!(got.is_empty());
    assert_eq!(
        err.as_ref().map(std::io::Error::kind),
        Some(ErrorKind::ConnectionReset)
    );
    assert_eq!(proxy.stats().connections, 1);
}

#[test]
fn dropping_the_proxy_stops_it() {
    let runtime = servers();
    let proxy = ThrottleProxy::start(echo(&runtime), RATE);
    let addr = proxy.addr();
    assert_eq!(proxy.url(), format!("http://{addr}"));
    let mut open = connect(&proxy);
    drop(proxy);
    // Closed (or reset, when the listener went before accepting it), not left waiting.
    let (_, err) = read_all(&mut open);
    let kind = err.as_ref().map(std::io::Error::kind);
    assert!(
        matches!(kind, None | Some(ErrorKind::ConnectionReset)),
        "an open connection must end when the proxy does: {err:?}"
    );
    assert!(
        StdStream::connect(addr).is_err(),
        "nothing listens on {addr} after drop"
    );
}

#[test]
fn try_start_refuses_a_rate_of_zero_and_serves_otherwise() {
    let upstream: SocketAddr = "127.0.0.1:9".parse().expect("address");
    let err = ThrottleProxy::try_start(upstream, 0).expect_err("a rate of 0 was accepted");
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    let proxy = ThrottleProxy::try_start(upstream, RATE).expect("the proxy starts");
    assert_eq!(proxy.bytes_per_second(), RATE);
    assert!(proxy.addr().ip().is_loopback());
}
