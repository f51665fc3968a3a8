//! Ranged downloads against a small HTTP/1.1 server written here: one request per connection
//! (`Connection: close`), `Range: bytes=a-b` served from a blob in memory, and a few ways of
//! misbehaving. The blobs are cut in 64 KiB parts so each test moves a few hundred KiB.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use super::*;
use crate::reference::Reference;
use crate::registry::plan::{DEFAULT_IN_FLIGHT, MAX_IN_FLIGHT, THRESHOLD, in_flight_for_memory};

const TEST_PART: u64 = 64 * 1024;

/// How the server answers.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Mode {
    /// Every range as asked.
    Ranges,
    /// Ranges ignored: 200 with the whole blob.
    Ignore,
    /// The first request gets its range, every later one the whole blob.
    RangesOnce,
    /// The first request for the second part is cut after half its bytes.
    CutOnce,
    /// The first request for the second part gets a valid 206 of only half the part.
    ShortOnce,
    /// The first part's body comes 300 ms after its headers.
    SlowFirst,
    /// The first request for the second part gets a 503.
    UnavailableOnce,
    /// Blob storage whose second request is refused (403, an expired signature).
    RefuseSecond,
}

/// A request seen: its range and when it arrived.
#[derive(Clone, Debug)]
struct Seen {
    range: Option<(u64, Option<u64>)>,
    at: Instant,
}

struct Server {
    host: String,
    /// Where a registry that redirects sends blob requests (storage's `host:port`).
    redirect: Option<String>,
    seen: Arc<Mutex<Vec<Seen>>>,
    /// When the slow first part's body was sent.
    slow_done: Arc<Mutex<Option<Instant>>>,
}

impl Server {
    async fn start(blob: Arc<Vec<u8>>, mode: Mode) -> Server {
        Self::start_redirecting(blob, mode, None).await
    }

    /// A server that answers every request with a 307 to `redirect` when given.
    async fn start_redirecting(blob: Arc<Vec<u8>>, mode: Mode, redirect: Option<String>) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let host = listener.local_addr().unwrap().to_string();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let slow_done = Arc::new(Mutex::new(None));
        let (s, d, to) = (seen.clone(), slow_done.clone(), redirect.clone());
        tokio::spawn(async move {
            loop {
                let Ok((conn, _)) = listener.accept().await else {
                    return;
                };
                let (blob, seen, done, to) = (blob.clone(), s.clone(), d.clone(), to.clone());
                tokio::spawn(async move {
                    let _ = serve(conn, &blob, mode, &seen, &done, to.as_deref()).await;
                });
            }
        });
        Server {
            host,
            redirect,
            seen,
            slow_done,
        }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

fn parse_range(head: &str) -> Option<(u64, Option<u64>)> {
    let line = head
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("range:"))?;
    let spec = line.split_once("bytes=")?.1.trim();
    let (a, b) = spec.split_once('-')?;
    Some((a.parse().ok()?, b.parse().ok()))
}

async fn serve(
    mut conn: TcpStream,
    blob: &[u8],
    mode: Mode,
    seen: &Mutex<Vec<Seen>>,
    slow_done: &Mutex<Option<Instant>>,
    redirect: Option<&str>,
) -> std::io::Result<()> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if conn.read(&mut byte).await? == 0 {
            return Ok(());
        }
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let range = parse_range(&head);
    let earlier = {
        let mut seen = seen.lock().unwrap();
        seen.push(Seen {
            range,
            at: Instant::now(),
        });
        seen.iter()
            .filter(|s| s.range.map(|r| r.0) == range.map(|r| r.0))
            .count()
            - 1
    };
    if let Some(to) = redirect {
        let path = head.split_whitespace().nth(1).unwrap_or("/");
        let answer = format!(
            "HTTP/1.1 307 Temporary Redirect\r\nLocation: http://{to}{path}?signature=x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
        return conn.write_all(answer.as_bytes()).await;
    }
    if mode == Mode::RefuseSecond && seen.lock().unwrap().len() == 2 {
        let answer = "HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
        return conn.write_all(answer.as_bytes()).await;
    }
    let size = blob.len() as u64;
    let honour = match mode {
        Mode::Ignore => false,
        Mode::RangesOnce => seen.lock().unwrap().len() == 1,
        _ => true,
    };
    let Some((start, end)) = range.filter(|_| honour) else {
        let header =
            format!("HTTP/1.1 200 OK\r\nContent-Length: {size}\r\nConnection: close\r\n\r\n");
        conn.write_all(header.as_bytes()).await?;
        return conn.write_all(blob).await;
    };
    let mut end = end.unwrap_or(size - 1).min(size - 1);
    let second = start == TEST_PART && earlier == 0;
    if mode == Mode::UnavailableOnce && second {
        let answer =
            "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
        return conn.write_all(answer.as_bytes()).await;
    }
    if mode == Mode::ShortOnce && second {
        end = start + TEST_PART / 2 - 1;
    }
    let body = &blob[start as usize..=end as usize];
    let header = format!(
        "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes {start}-{end}/{size}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    conn.write_all(header.as_bytes()).await?;
    if mode == Mode::CutOnce && second {
        conn.write_all(&body[..body.len() / 2]).await?;
        return conn.shutdown().await; // fewer bytes than Content-Length: a dropped connection
    }
    if mode == Mode::SlowFirst && start == 0 {
        conn.flush().await?;
        tokio::time::sleep(Duration::from_millis(300)).await;
        // Noted before the body goes: no later part can be asked for before this.
        *slow_done.lock().unwrap() = Some(Instant::now());
        return conn.write_all(body).await;
    }
    conn.write_all(body).await
}

/// Bytes that do not repeat at the part size, so a part out of place changes the digest.
fn blob(len: usize) -> Vec<u8> {
    let mut x = 0x2545_f491_4f6c_dd1du64;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Pull `data` from a server in `mode` with 3 parts in flight: what came out of the channel
/// (or the error it ended with) and the server.
async fn pull(data: Vec<u8>, mode: Mode) -> (Result<Vec<u8>, String>, Server) {
    let data = Arc::new(data);
    let server = Server::start(data.clone(), mode).await;
    (pull_from(&server, data).await, server)
}

/// A client of `server` as a registry, `in_flight` parts of [`TEST_PART`] from two parts.
fn test_client(server: &Server, in_flight: usize) -> RegistryClient {
    let reference: Reference = format!("{}/team/blob:v1", server.host).parse().unwrap();
    let mut client = RegistryClient::new(&reference, None, std::slice::from_ref(&server.host))
        .unwrap()
        .with_ranges(Some(in_flight));
    client.plan.part = TEST_PART;
    client.plan.first = TEST_PART;
    client.plan.threshold = 2 * TEST_PART;
    client
}

/// Pull `data` from `server` as a registry, 3 parts in flight.
async fn pull_from(server: &Server, data: Arc<Vec<u8>>) -> Result<Vec<u8>, String> {
    let client = test_client(server, 3);
    let digest = Digest::of(&data);
    let (tx, mut rx) = mpsc::channel(super::super::download::CHANNEL_CHUNKS);
    let job = tokio::spawn(super::super::download::stream_blob(
        Arc::new(client),
        digest,
        Some(data.len() as u64),
        tx,
    ));
    let mut out = Vec::new();
    let mut result = Ok(());
    while let Some(item) = rx.recv().await {
        match item {
            Ok(bytes) => out.extend_from_slice(&bytes),
            Err(err) => result = Err(err.to_string()),
        }
    }
    job.await.unwrap();
    result.map(|()| out)
}

fn ranges(server: &Server) -> Vec<Option<(u64, Option<u64>)>> {
    server.seen().into_iter().map(|s| s.range).collect()
}

#[test]
fn the_in_flight_count_follows_the_memory_size_and_the_knob_is_bounded() {
    assert_eq!(in_flight_for_memory(None), 4);
    assert_eq!(in_flight_for_memory(Some(128)), 2);
    assert_eq!(in_flight_for_memory(Some(1769)), 4);
    assert_eq!(in_flight_for_memory(Some(3008)), 8);
    assert_eq!(Plan::new(None).in_flight, DEFAULT_IN_FLIGHT);
    assert_eq!(Plan::new(Some(0)).in_flight, 1);
    assert_eq!(Plan::new(Some(1000)).in_flight, MAX_IN_FLIGHT);
    assert!(!Plan::new(Some(1)).applies(1 << 30), "1 is one stream");
    assert!(!Plan::new(Some(4)).applies(THRESHOLD - 1));
    assert!(Plan::new(Some(4)).applies(THRESHOLD));
    // 1 MiB, then 8 MiB parts: 1 + 4 for 32 MiB and a byte.
    assert_eq!(Plan::new(None).parts(THRESHOLD + 1), 5);
    assert_eq!(Span::from(0).header(), None);
    assert_eq!(Span::from(7).header().as_deref(), Some("bytes=7-"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_blob_comes_in_ranges_in_order_and_whole() {
    let data = blob(5 * TEST_PART as usize + 1000);
    let (out, server) = pull(data.clone(), Mode::Ranges).await;
    assert_eq!(out.unwrap(), data);
    let mut seen = ranges(&server);
    seen.sort_by_key(|r| r.map(|r| r.0));
    let want: Vec<_> = (0..6u64)
        .map(|i| {
            let start = i * TEST_PART;
            let end = (start + TEST_PART).min(data.len() as u64) - 1;
            Some((start, Some(end)))
        })
        .collect();
    assert_eq!(seen, want, "one request per part, each for its own bytes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_redirect_the_other_parts_go_straight_to_the_storage() {
    let data = Arc::new(blob(5 * TEST_PART as usize));
    let storage = Server::start(data.clone(), Mode::Ranges).await;
    let registry =
        Server::start_redirecting(data.clone(), Mode::Ranges, Some(storage.host.clone())).await;
    assert_eq!(registry.redirect.as_deref(), Some(storage.host.as_str()));
    let out = pull_from(&registry, data.clone()).await;
    assert_eq!(out.unwrap(), *data);
    assert_eq!(
        ranges(&registry),
        vec![Some((0, Some(TEST_PART - 1)))],
        "only the first part through the registry"
    );
    assert_eq!(ranges(&storage).len(), 5, "every part from the storage");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_part_the_storage_refuses_is_asked_of_the_registry() {
    let data = Arc::new(blob(5 * TEST_PART as usize));
    let storage = Server::start(data.clone(), Mode::RefuseSecond).await;
    let registry =
        Server::start_redirecting(data.clone(), Mode::Ranges, Some(storage.host.clone())).await;
    let out = pull_from(&registry, data.clone()).await;
    assert_eq!(out.unwrap(), *data);
    let through_registry = ranges(&registry);
    assert_eq!(through_registry.len(), 2, "{through_registry:?}");
    let refused = ranges(&storage)[1];
    assert_eq!(
        through_registry[1], refused,
        "the refused part, once more through the registry"
    );
    assert_eq!(ranges(&storage).len(), 6, "5 parts and the refused request");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_blob_is_one_plain_request() {
    let data = blob(TEST_PART as usize);
    let (out, server) = pull(data.clone(), Mode::Ranges).await;
    assert_eq!(out.unwrap(), data);
    assert_eq!(ranges(&server), vec![None]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_ignoring_ranges_streams_the_blob_once_from_its_first_answer() {
    let data = blob(4 * TEST_PART as usize);
    let (out, server) = pull(data.clone(), Mode::Ignore).await;
    assert_eq!(out.unwrap(), data);
    assert_eq!(
        ranges(&server),
        vec![Some((0, Some(TEST_PART - 1)))],
        "the 200 answer to the first range is the stream"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ranges_answered_whole_later_fall_back_without_sending_a_byte_twice() {
    let data = blob(4 * TEST_PART as usize + 10);
    let (out, server) = pull(data.clone(), Mode::RangesOnce).await;
    // Exactly the blob: the first part once, then the rest from the single stream.
    assert_eq!(out.unwrap(), data);
    let seen = ranges(&server);
    assert!(
        seen.contains(&Some((TEST_PART, None))),
        "the single stream resumes after the part sent: {seen:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_part_cut_once_is_asked_again_alone_for_what_it_missed() {
    let data = blob(5 * TEST_PART as usize);
    let (out, server) = pull(data.clone(), Mode::CutOnce).await;
    assert_eq!(out.unwrap(), data);
    let seen = ranges(&server);
    let second: Vec<_> = seen
        .iter()
        .flatten()
        .filter(|r| (TEST_PART..2 * TEST_PART).contains(&r.0))
        .collect();
    assert_eq!(second.len(), 2, "the cut part and its retry: {seen:?}");
    assert_eq!(seen.len(), 6, "no other part asked twice: {seen:?}");
    assert!(second[1].0 >= TEST_PART && second[1].1 == Some(2 * TEST_PART - 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_part_answered_503_once_is_retried_alone() {
    let data = blob(5 * TEST_PART as usize);
    let (out, server) = pull(data.clone(), Mode::UnavailableOnce).await;
    assert_eq!(out.unwrap(), data);
    let seen = ranges(&server);
    let second = Some((TEST_PART, Some(2 * TEST_PART - 1)));
    assert_eq!(seen.iter().filter(|r| **r == second).count(), 2, "{seen:?}");
    assert_eq!(seen.len(), 6, "no other part asked twice: {seen:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_part_served_short_is_completed_by_a_second_range() {
    let data = blob(5 * TEST_PART as usize);
    let (out, server) = pull(data.clone(), Mode::ShortOnce).await;
    assert_eq!(out.unwrap(), data);
    let seen = ranges(&server);
    assert!(
        seen.contains(&Some((TEST_PART + TEST_PART / 2, Some(2 * TEST_PART - 1)))),
        "{seen:?}"
    );
    assert_eq!(seen.len(), 6, "{seen:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parts_after_a_slow_first_part_are_fetched_meanwhile_and_come_out_after_it() {
    let data = blob(6 * TEST_PART as usize);
    let (out, server) = pull(data.clone(), Mode::SlowFirst).await;
    assert_eq!(out.unwrap(), data, "the output is in blob order");
    let done = server.slow_done.lock().unwrap().unwrap();
    let seen = server.seen();
    let before = seen.iter().filter(|s| s.at < done).count();
    assert_eq!(
        before, 3,
        "the first part and the two after it in flight while it was slow, not more: {seen:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blob_that_does_not_match_its_digest_is_refused_after_ranges() {
    let data = Arc::new(blob(3 * TEST_PART as usize));
    let server = Server::start(data.clone(), Mode::Ranges).await;
    let mut client = test_client(&server, 2);
    client.plan.threshold = TEST_PART;
    let (tx, mut rx) = mpsc::channel(4);
    let wrong = Digest::of(b"something else");
    tokio::spawn(super::super::download::stream_blob(
        Arc::new(client),
        wrong,
        Some(data.len() as u64),
        tx,
    ));
    let mut last = None;
    while let Some(item) = rx.recv().await {
        last = Some(item);
    }
    let err = last.unwrap().unwrap_err().to_string();
    assert!(err.contains("digest") || err.contains("sha256"), "{err}");
}

/// Two large blobs downloaded at once as a pull does (two downloads in flight, read one after
/// the other by a slow reader): both come whole, and the second blob asks for its first part
/// only once the first blob has asked for all of its parts, so the pull's window holds the
/// parts of one blob's worth, not two.
#[tokio::test]
async fn two_ranged_blobs_share_one_window_in_blob_order() {
    use futures::StreamExt;
    let data = Arc::new(blob(10 * TEST_PART as usize + 100));
    let server = Server::start(data.clone(), Mode::Ranges).await;
    let client = Arc::new(test_client(&server, 3));
    let digest = Digest::of(&data);
    let size = Some(data.len() as u64);
    let mut receivers = Vec::new();
    let mut jobs = Vec::new();
    for _ in 0..2 {
        let (tx, rx) = mpsc::channel(super::super::download::CHANNEL_CHUNKS);
        jobs.push(super::super::download::stream_blob(
            client.clone(),
            digest,
            size,
            tx,
        ));
        receivers.push(rx);
    }
    let driver = tokio::spawn(futures::stream::iter(jobs).buffered(2).collect::<Vec<()>>());
    for mut rx in receivers {
        let mut out = Vec::new();
        while let Some(item) = rx.recv().await {
            out.extend_from_slice(&item.expect("bytes"));
            // A reader slower than the server, as extraction is on loopback.
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
        assert!(out == *data, "a blob came back altered");
    }
    tokio::time::timeout(Duration::from_secs(10), driver)
        .await
        .expect("the downloads ended")
        .unwrap();
    let seen = ranges(&server);
    let parts = data.len().div_ceil(TEST_PART as usize);
    assert_eq!(seen.len(), 2 * parts, "{seen:?}");
    let last_of_first = (parts as u64 - 1) * TEST_PART;
    let first_done = seen
        .iter()
        .position(|r| r.is_some_and(|(a, _)| a == last_of_first))
        .unwrap();
    let second_start = seen
        .iter()
        .skip(1)
        .position(|r| r.is_some_and(|(a, _)| a == 0))
        .unwrap()
        + 1;
    assert!(
        second_start > first_done,
        "the second blob started before the first had asked for its last part: {seen:?}"
    );
}

#[test]
fn the_first_part_is_short_and_the_parts_cover_the_blob_once_in_order() {
    let plan = Plan::new(None);
    assert_eq!(
        plan.span(100 << 20, 0).header().as_deref(),
        Some("bytes=0-1048575")
    );
    assert_eq!(
        plan.span(100 << 20, 1).header().as_deref(),
        Some("bytes=1048576-9437183")
    );
    for size in [
        THRESHOLD,
        THRESHOLD + 1,
        9 << 20,
        (9 << 20) + 1,
        100 << 20,
        1 << 20,
    ] {
        let mut next = 0;
        for i in 0..plan.parts(size) {
            let span = plan.span(size, i);
            assert_eq!(
                span.start,
                next,
                "part {i} of {size} starts where {} ended",
                i.max(1) - 1
            );
            let end = span.end.unwrap();
            assert!(
                end >= span.start && end < size,
                "part {i} of {size}: {span:?}"
            );
            next = end + 1;
        }
        assert_eq!(next, size, "the parts of {size} cover it");
    }
    // A first part longer than a part is one part long.
    let odd = Plan {
        first: 64 << 20,
        ..plan
    };
    assert_eq!(odd.parts(16 << 20), 2);
    assert_eq!(odd.span(16 << 20, 1).start, 8 << 20);
}
