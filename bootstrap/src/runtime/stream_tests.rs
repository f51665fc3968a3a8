//! The streamed response as a real socket receives it: a raw HTTP/1.1 server decodes the
//! chunked body by hand, so every header, chunk boundary and trailer is checked as sent.

use std::io::{Seek, Write};
use std::time::{Duration, Instant};

use base64::Engine;
use bytes::Bytes;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::sync::oneshot;

use super::{CHUNK, STREAM_ERROR_TYPE, StreamBody};
use crate::runtime::{RuntimeApi, RuntimeEndpoint, RuntimeError};

/// What the server read of one request.
#[derive(Debug, Default)]
struct Received {
    /// Request line and headers, as sent.
    head: String,
    /// The decoded body (empty unless kept).
    body: Vec<u8>,
    /// Body bytes, kept or not.
    body_len: u64,
    /// Size of each chunk, in order.
    chunks: Vec<usize>,
    /// Trailer fields, names lowercased.
    trailers: Vec<(String, String)>,
}

impl Received {
    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }

    fn trailer(&self, name: &str) -> Option<&str> {
        self.trailers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// How the server behaves.
struct Server {
    /// Status line (and headers) of its answer.
    answer: &'static str,
    /// Keep the body (false: only count it, for sizes a test should not hold).
    keep: bool,
    /// Read only the head until this fires (a stalled Runtime API).
    hold: Option<oneshot::Receiver<()>>,
    /// Answer right after the head, then close, without reading the body.
    answer_early: bool,
    /// Answer right after the head, then read the whole body slowly (as the `cargo lambda`
    /// emulator does with a streamed response, passing it on to a client).
    answer_first: bool,
}

impl Server {
    fn answering(answer: &'static str) -> Self {
        Self {
            answer,
            keep: true,
            hold: None,
            answer_early: false,
            answer_first: false,
        }
    }
}

/// Serve one request on a real socket; strict about the chunked framing (each chunk's CRLF,
/// the last chunk, the blank line after the trailers).
async fn serve(server: Server) -> (RuntimeApi, tokio::task::JoinHandle<Received>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let (socket, _) = listener.accept().await.unwrap();
        let mut socket = BufReader::new(socket);
        let mut received = Received::default();
        loop {
            let mut line = String::new();
            socket.read_line(&mut line).await.unwrap();
            assert!(line.ends_with("\r\n"), "a head line without CRLF: {line:?}");
            if line == "\r\n" {
                break;
            }
            received.head.push_str(&line);
        }
        if server.answer_early {
            let response = format!("{}\r\ncontent-length: 0\r\n\r\n", server.answer);
            socket
                .get_mut()
                .write_all(response.as_bytes())
                .await
                .unwrap();
            socket.get_mut().shutdown().await.unwrap();
            return received;
        }
        let answer_first = format!(
            "{}\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{{}}",
            server.answer
        );
        if server.answer_first {
            socket
                .get_mut()
                .write_all(answer_first.as_bytes())
                .await
                .unwrap();
        }
        if let Some(hold) = server.hold {
            let _ = hold.await;
        }
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let mut line = String::new();
            socket.read_line(&mut line).await.unwrap();
            let size = line
                .strip_suffix("\r\n")
                .expect("a chunk size line ends with CRLF");
            let size = usize::from_str_radix(size, 16).expect("a chunk size is hexadecimal");
            if size == 0 {
                break;
            }
            received.chunks.push(size);
            let mut left = size;
            while left > 0 {
                let n = left.min(buf.len());
                socket.read_exact(&mut buf[..n]).await.unwrap();
                if server.answer_first {
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                if server.keep {
                    received.body.extend_from_slice(&buf[..n]);
                }
                left -= n;
            }
            received.body_len += size as u64;
            let mut crlf = [0u8; 2];
            socket.read_exact(&mut crlf).await.unwrap();
            assert_eq!(&crlf, b"\r\n", "a chunk's data ends with CRLF");
        }
        loop {
            let mut line = String::new();
            socket.read_line(&mut line).await.unwrap();
            if line == "\r\n" {
                break;
            }
            let (name, value) = line.trim_end().split_once(':').expect("a trailer field");
            received
                .trailers
                .push((name.to_ascii_lowercase(), value.trim().to_owned()));
        }
        if !server.answer_first {
            socket
                .get_mut()
                .write_all(answer_first.as_bytes())
                .await
                .unwrap();
        }
        socket.get_mut().shutdown().await.unwrap();
        received
    });
    let api = RuntimeApi::new(RuntimeEndpoint::parse(&address.to_string()).unwrap());
    (api, task)
}

const ACCEPTED: &str = "HTTP/1.1 202 Accepted";

/// A file holding `len` bytes of a pattern that shifts every 4 bytes, and the same bytes.
fn pattern_file(len: usize) -> (std::fs::File, Vec<u8>) {
    let bytes: Vec<u8> = (0..len.div_ceil(4))
        .flat_map(|i| (i as u32).wrapping_mul(2_654_435_761).to_le_bytes())
        .take(len)
        .collect();
    let mut file = tempfile::tempfile().unwrap();
    file.write_all(&bytes).unwrap();
    file.rewind().unwrap();
    (file, bytes)
}

fn memory(bytes: &'static [u8]) -> StreamBody {
    StreamBody::Bytes(Bytes::from_static(bytes))
}

fn in_file(file: std::fs::File, len: u64) -> StreamBody {
    StreamBody::File { file, len }
}

/// The decoded JSON of a `Lambda-Runtime-Function-Error-Body` trailer.
fn error_body(received: &Received) -> serde_json::Value {
    let encoded = received
        .trailer("lambda-runtime-function-error-body")
        .expect("the error body trailer");
    let json = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .unwrap();
    serde_json::from_slice(&json).unwrap()
}

#[tokio::test]
async fn a_streamed_response_sends_the_documented_headers_and_a_chunked_body() {
    let (api, server) = serve(Server::answering(ACCEPTED)).await;
    let before = Instant::now();
    let sent = api
        .respond_streaming("r-1", Some("inv-1"), None, memory(b"hello, stream"))
        .await
        .unwrap();
    let received = server.await.unwrap();
    assert!(
        received
            .head
            .starts_with("POST /2018-06-01/runtime/invocation/r-1/response HTTP/1.1\r\n"),
        "{}",
        received.head
    );
    let trailers = "Lambda-Runtime-Function-Error-Type, Lambda-Runtime-Function-Error-Body";
    for (name, value) in [
        ("Lambda-Runtime-Function-Response-Mode", Some("streaming")),
        ("Transfer-Encoding", Some("chunked")),
        ("Trailer", Some(trailers)),
        ("Content-Type", Some("application/octet-stream")),
        ("Lambda-Runtime-Invocation-Id", Some("inv-1")),
        ("Connection", Some("close")),
        ("Content-Length", None),
    ] {
        assert_eq!(received.header(name), value, "{name}");
    }
    assert_eq!(received.body, b"hello, stream");
    assert!(received.trailers.is_empty(), "{:?}", received.trailers);
    assert_eq!(sent.bytes, 13);
    assert!(sent.first_byte >= before && sent.first_byte <= Instant::now());
}

#[tokio::test]
async fn an_http_integration_body_is_the_prelude_then_eight_nul_bytes_then_the_payload() {
    let (api, server) = serve(Server::answering(ACCEPTED)).await;
    let prelude = br#"{"statusCode":200,"headers":{"content-type":"image/png"}}"#;
    let sent = api
        .respond_streaming(
            "r-2",
            None,
            Some(Bytes::from_static(prelude)),
            memory(b"\x89PNG\0\0payload"),
        )
        .await
        .unwrap();
    let received = server.await.unwrap();
    assert_eq!(
        received.header("Content-Type"),
        Some("application/vnd.awslambda.http-integration-response")
    );
    assert_eq!(received.header("Lambda-Runtime-Invocation-Id"), None);
    let mut expected = prelude.to_vec();
    expected.extend_from_slice(&[0u8; 8]);
    expected.extend_from_slice(b"\x89PNG\0\0payload");
    assert_eq!(received.body, expected);
    // The prelude is the first chunk and its delimiter the second, ahead of any payload byte
    // (a reader that takes the first chunk for the prelude, as `cargo lambda` does, parses it).
    assert_eq!(received.chunks[..2], [prelude.len(), 8]);
    assert_eq!(sent.bytes, 13, "the payload alone is counted");
}

#[tokio::test]
async fn a_50_mb_file_arrives_whole_in_chunks_of_256_kib() {
    let len = 50_000_000;
    let (file, expected) = pattern_file(len);
    let (api, server) = serve(Server::answering(ACCEPTED)).await;
    let prelude = Bytes::from_static(br#"{"statusCode":200}"#);
    let sent = api
        .respond_streaming(
            "r-3",
            None,
            Some(prelude.clone()),
            in_file(file, len as u64),
        )
        .await
        .unwrap();
    let received = server.await.unwrap();
    assert_eq!(sent.bytes, len as u64);
    let payload = &received.body[prelude.len() + 8..];
    assert_eq!(payload.len(), expected.len());
    assert!(payload == expected.as_slice(), "the payload differs");
    let file_chunks = &received.chunks[2..];
    assert_eq!(file_chunks.len(), len.div_ceil(CHUNK));
    let (last, whole) = file_chunks.split_last().unwrap();
    assert!(whole.iter().all(|&c| c == CHUNK), "{whole:?}");
    assert_eq!(*last, len % CHUNK);
    assert!(received.trailers.is_empty());
}

#[tokio::test]
async fn a_runtime_api_that_answers_before_reading_the_body_gets_it_whole_and_counted() {
    let len = 8_000_000;
    let (file, expected) = pattern_file(len);
    let mut server = Server::answering(ACCEPTED);
    server.answer_first = true;
    let (api, server) = serve(server).await;
    let sent = api
        .respond_streaming("r-early", None, None, in_file(file, len as u64))
        .await
        .unwrap();
    let received = server.await.unwrap();
    assert!(received.body == expected, "the body differs");
    assert_eq!(
        sent.bytes, len as u64,
        "the count covers what was sent after the answer"
    );
}

#[tokio::test]
async fn a_file_shorter_than_its_length_ends_with_the_error_trailers() {
    let (file, expected) = pattern_file(1000);
    let (api, server) = serve(Server::answering(ACCEPTED)).await;
    let err = api
        .respond_streaming("r-4", None, None, in_file(file, 5000))
        .await
        .unwrap_err();
    let received = server.await.unwrap();
    assert_eq!(received.body, expected, "what could be read was sent");
    assert_eq!(
        received.trailer("lambda-runtime-function-error-type"),
        Some(STREAM_ERROR_TYPE)
    );
    let body = error_body(&received);
    assert_eq!(body["errorType"], "Scar.StreamError");
    assert_eq!(
        body["errorMessage"],
        "the output ended after 1000 of 5000 bytes"
    );
    match err {
        RuntimeError::StreamBroken { bytes, source, .. } => {
            assert_eq!(bytes, 1000);
            assert_eq!(source.kind(), std::io::ErrorKind::UnexpectedEof);
        }
        other => panic!("expected StreamBroken, got {other}"),
    }
}

#[tokio::test]
async fn an_unreadable_file_ends_the_body_with_the_error_trailers() {
    // Opened for writing only: every read fails (EBADF), as a vanished disk would.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out.bin");
    std::fs::write(&path, [7u8; 100]).unwrap();
    let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    let (api, server) = serve(Server::answering(ACCEPTED)).await;
    let err = api
        .respond_streaming(
            "r-5",
            None,
            Some(Bytes::from_static(b"{}")),
            in_file(file, 100),
        )
        .await
        .unwrap_err();
    let received = server.await.unwrap();
    assert_eq!(
        received.body, b"{}\0\0\0\0\0\0\0\0",
        "only the prelude went out"
    );
    assert_eq!(
        received.trailer("lambda-runtime-function-error-type"),
        Some("Scar.StreamError")
    );
    let message = error_body(&received)["errorMessage"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        message.starts_with("reading the output failed after 0 of 100 bytes: "),
        "{message}"
    );
    assert!(
        matches!(err, RuntimeError::StreamBroken { bytes: 0, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("broke after 0 bytes"), "{err}");
}

#[tokio::test]
async fn gone_on_a_streamed_response_is_its_own_error() {
    let (api, server) = serve(Server::answering("HTTP/1.1 410 Gone")).await;
    let (file, _) = pattern_file(3 * CHUNK + 5);
    let err = api
        .respond_streaming(
            "r-6",
            Some("inv-6"),
            None,
            in_file(file, (3 * CHUNK + 5) as u64),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, RuntimeError::Gone { .. }), "{err}");
    assert_eq!(server.await.unwrap().body_len, (3 * CHUNK + 5) as u64);

    let (api, server) = serve(Server::answering("HTTP/1.1 413 Payload Too Large")).await;
    let err = api
        .respond_streaming("r-6", None, None, memory(b"x"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, RuntimeError::Status { status, .. } if status.as_u16() == 413),
        "{err}"
    );
    server.await.unwrap();
}

#[tokio::test]
async fn a_refusal_before_the_body_ends_returns_without_reading_the_whole_file() {
    // 200 MiB, sparse: nothing is written to disk.
    let file = tempfile::tempfile().unwrap();
    file.set_len(200 << 20).unwrap();
    let mut position = file.try_clone().unwrap();
    let server = Server {
        answer_early: true,
        ..Server::answering("HTTP/1.1 410 Gone")
    };
    let (api, server) = serve(server).await;
    let call = api.respond_streaming("r-7", None, None, in_file(file, 200 << 20));
    let err = tokio::time::timeout(Duration::from_secs(20), call)
        .await
        .expect("the call returns")
        .unwrap_err();
    assert!(
        matches!(
            err,
            RuntimeError::Gone { .. } | RuntimeError::Transport { .. }
        ),
        "{err}"
    );
    server.await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let read = position.stream_position().unwrap();
    assert!(read < 200 << 20, "the reader went on to the end");
}

#[tokio::test]
async fn a_stalled_runtime_api_stops_the_file_reader_a_few_chunks_ahead() {
    let len: u64 = 200 << 20;
    let file = tempfile::tempfile().unwrap();
    file.set_len(len).unwrap();
    // A clone shares the file offset: it shows how far the reader got.
    let mut position = file.try_clone().unwrap();
    let (release, hold) = oneshot::channel();
    let server = Server {
        keep: false,
        hold: Some(hold),
        ..Server::answering(ACCEPTED)
    };
    let (api, server) = serve(server).await;
    let call = tokio::spawn(async move {
        api.respond_streaming("r-8", None, None, in_file(file, len))
            .await
    });
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let ahead = position.stream_position().unwrap();
    println!(
        "read ahead of a stalled socket: {:.1} MiB (kernel socket buffers included)",
        ahead as f64 / (1 << 20) as f64
    );
    // The socket's kernel buffers take a few MiB; the process holds READ_AHEAD chunks more.
    assert!(
        ahead < 24 << 20,
        "read {ahead} bytes ahead of a stalled socket"
    );
    release.send(()).unwrap();
    let sent = call.await.unwrap().unwrap();
    assert_eq!(sent.bytes, len);
    assert_eq!(server.await.unwrap().body_len, len);
}

#[tokio::test]
async fn a_prelude_that_cannot_be_framed_is_refused_before_anything_is_sent() {
    // Nothing listens there: a refusal that tried to connect would be a Transport error.
    let address = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let api = RuntimeApi::new(RuntimeEndpoint::parse(&address.to_string()).unwrap());
    let long = Bytes::from(vec![b' '; 16 * 1024 - 7]);
    let err = api
        .respond_streaming("r-9", None, Some(long), memory(b""))
        .await
        .unwrap_err();
    assert!(
        matches!(err, RuntimeError::Prelude { len: 16377, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("16 KiB"), "{err}");
    let with_nul = Bytes::from_static(b"{\"a\":\"\0\"}");
    let err = api
        .respond_streaming("r-9", None, Some(with_nul), memory(b""))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("NUL"), "{err}");
}

#[tokio::test]
async fn the_longest_prelude_that_ends_within_16_kib_is_sent() {
    let (api, server) = serve(Server::answering(ACCEPTED)).await;
    let prelude = Bytes::from(vec![b' '; 16 * 1024 - 8]);
    let sent = api
        .respond_streaming("r-10", None, Some(prelude), memory(b""))
        .await
        .unwrap();
    assert_eq!(sent.bytes, 0);
    assert_eq!(server.await.unwrap().body_len, 16 * 1024);
}
