use std::io::Write as _;

use base64::Engine as _;
use serde_json::{Value, json};

use super::*;

/// Bytes shaped like a PNG: its signature, then every byte value (NUL, CR, LF, quotes, bytes
/// that are not UTF-8) several times.
fn png_bytes() -> Vec<u8> {
    let mut bytes = b"\x89PNG\r\n\x1a\n".to_vec();
    for _ in 0..7 {
        bytes.extend(0..=255u8);
    }
    bytes
}

fn file_with(bytes: &[u8]) -> (tempfile::TempDir, std::fs::File) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out");
    std::fs::File::create(&path)
        .unwrap()
        .write_all(bytes)
        .unwrap();
    (dir, std::fs::File::open(&path).unwrap())
}

fn payload(result: Buffered) -> Value {
    match result {
        Buffered::Payload(bytes) => serde_json::from_slice(&bytes).unwrap(),
        Buffered::TooLarge { body_len } => panic!("too large: {body_len}"),
    }
}

fn payload_len(result: Buffered) -> usize {
    match result {
        Buffered::Payload(bytes) => bytes.len(),
        Buffered::TooLarge { body_len } => panic!("too large: {body_len}"),
    }
}

fn text(body: &str, content_type: &str) -> Reply {
    Reply::ok(
        content_type,
        ReplyBody::Bytes(Bytes::copy_from_slice(body.as_bytes())),
    )
}

#[test]
fn a_binary_png_round_trips_through_a_buffered_answer_byte_for_byte() {
    let bytes = png_bytes();
    for format in [HttpFormat::V1, HttpFormat::V2] {
        let (_dir, file) = file_with(&bytes);
        let reply = Reply::ok(
            "image/png",
            ReplyBody::File {
                file,
                len: bytes.len() as u64,
            },
        );
        let document = payload(buffered(reply, format, 1 << 20).unwrap());
        assert_eq!(document["statusCode"], 200);
        assert_eq!(document["isBase64Encoded"], true);
        assert_eq!(document["headers"]["content-type"], "image/png");
        let body = document["body"].as_str().unwrap();
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(body)
            .unwrap();
        assert_eq!(decoded, bytes, "{format:?}");
    }
}

#[test]
fn a_body_of_every_length_mod_three_decodes_to_itself() {
    for len in [1usize, 2, 3, 4, 5, 100_000, 100_001, 100_002] {
        let bytes: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
        let (_dir, file) = file_with(&bytes);
        let reply = Reply::ok(
            "video/mp4",
            ReplyBody::File {
                file,
                len: len as u64,
            },
        );
        let document = payload(buffered(reply, HttpFormat::V2, 1 << 20).unwrap());
        let body = document["body"].as_str().unwrap();
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(body)
            .unwrap();
        assert_eq!(decoded, bytes, "{len}");
    }
}

#[test]
fn a_json_output_travels_as_text_not_base64() {
    let json_text = r#"{"grey": true, "note": "a \"quoted\" line\n"}"#;
    let (_dir, file) = file_with(json_text.as_bytes());
    let reply = Reply::ok(
        "application/json",
        ReplyBody::File {
            file,
            len: json_text.len() as u64,
        },
    );
    let document = payload(buffered(reply, HttpFormat::V2, 1 << 20).unwrap());
    assert_eq!(document["isBase64Encoded"], false);
    assert_eq!(document["body"], json_text);
}

#[test]
fn a_text_type_whose_bytes_are_not_utf8_falls_back_to_base64() {
    let bytes = b"caf\xe9 latin-1".to_vec();
    let reply = Reply::ok("text/plain", ReplyBody::Bytes(bytes.clone().into()));
    let document = payload(buffered(reply, HttpFormat::V2, 1 << 20).unwrap());
    assert_eq!(document["isBase64Encoded"], true);
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(document["body"].as_str().unwrap())
        .unwrap();
    assert_eq!(decoded, bytes);
}

#[test]
fn an_empty_body_is_an_empty_string_not_base64() {
    let reply = Reply::ok("image/png", ReplyBody::Empty);
    let document = payload(buffered(reply, HttpFormat::V1, 1 << 20).unwrap());
    assert_eq!(document["body"], "");
    assert_eq!(document["isBase64Encoded"], false);
}

#[test]
fn a_document_exactly_at_the_limit_fits_and_one_byte_less_is_too_large() {
    let bytes = png_bytes();
    let binary = || Reply::ok("image/png", ReplyBody::Bytes(bytes.clone().into()));
    const CSV: &str = "line one\n\"two\"\tthree\u{1}";
    let textual = || text(CSV, "text/csv");
    let cases: [(&dyn Fn() -> Reply, u64); 2] =
        [(&binary, bytes.len() as u64), (&textual, CSV.len() as u64)];
    for (make, body_len) in cases {
        let exact = payload_len(buffered(make(), HttpFormat::V2, 1 << 20).unwrap());
        assert!(matches!(
            buffered(make(), HttpFormat::V2, exact).unwrap(),
            Buffered::Payload(p) if p.len() == exact
        ));
        assert_eq!(
            buffered(make(), HttpFormat::V2, exact - 1).unwrap(),
            Buffered::TooLarge { body_len }
        );
    }
}

#[test]
fn base64_size_is_known_before_the_file_is_read() {
    // The file holds 3 bytes but claims 30 MB: were it read, the short read would be an error.
    let (_dir, file) = file_with(b"abc");
    let reply = Reply::ok(
        "video/mp4",
        ReplyBody::File {
            file,
            len: 30_000_000,
        },
    );
    assert_eq!(
        buffered(reply, HttpFormat::V2, 6_000_000).unwrap(),
        Buffered::TooLarge {
            body_len: 30_000_000
        }
    );
    let (_dir, file) = file_with(b"abc");
    let reply = Reply::ok(
        "text/plain",
        ReplyBody::File {
            file,
            len: 30_000_000,
        },
    );
    assert_eq!(
        buffered(reply, HttpFormat::V2, 6_000_000).unwrap(),
        Buffered::TooLarge {
            body_len: 30_000_000
        }
    );
}

#[test]
fn a_file_shorter_than_its_length_is_an_error_not_a_truncated_answer() {
    for content_type in ["image/png", "text/plain"] {
        let (_dir, file) = file_with(b"abc");
        let reply = Reply::ok(content_type, ReplyBody::File { file, len: 10 });
        let err = buffered(reply, HttpFormat::V2, 1 << 20).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof, "{content_type}");
    }
}

#[test]
fn payload_1_0_carries_cookies_in_multi_value_headers() {
    let mut reply = text("hi", "text/plain");
    reply.cookies = vec!["a=1; Path=/".into(), "b=2".into()];
    let document = payload(buffered(reply, HttpFormat::V1, 1 << 20).unwrap());
    assert_eq!(
        document["multiValueHeaders"],
        json!({"set-cookie": ["a=1; Path=/", "b=2"]})
    );
    assert!(document.get("cookies").is_none());
}

#[test]
fn payload_2_0_carries_cookies_in_their_own_field() {
    let mut reply = text("hi", "text/plain");
    reply.cookies = vec!["a=1".into()];
    let document = payload(buffered(reply, HttpFormat::V2, 1 << 20).unwrap());
    assert_eq!(
        document,
        json!({
            "statusCode": 200,
            "headers": {"content-type": "text/plain"},
            "cookies": ["a=1"],
            "isBase64Encoded": false,
            "body": "hi"
        })
    );
}

#[test]
fn payload_2_0_always_carries_cookies_and_1_0_only_when_there_are_some() {
    let document = payload(buffered(text("hi", "text/plain"), HttpFormat::V2, 1 << 20).unwrap());
    assert_eq!(document["cookies"], json!([]), "{document}");
    let document = payload(buffered(text("hi", "text/plain"), HttpFormat::V1, 1 << 20).unwrap());
    assert!(document.get("multiValueHeaders").is_none(), "{document}");
    assert!(document.get("cookies").is_none(), "{document}");
}

#[test]
fn headers_never_carry_a_line_break() {
    let mut reply = text("hi", "text/plain");
    reply
        .headers
        .push(("x-name".into(), "a\r\nset-cookie: evil=1\n".into()));
    reply.headers.push(("bad\r\nname".into(), "v".into()));
    reply.headers.push(("X-Name".into(), "second".into()));
    reply.cookies.push("c=1\r\nx-injected: 1".into());
    let expected_headers =
        json!({"content-type": "text/plain", "x-name": "a  set-cookie: evil=1 ,second"});
    let document = payload(buffered(text_with(&reply), HttpFormat::V2, 1 << 20).unwrap());
    assert_eq!(document["headers"], expected_headers);
    assert_eq!(document["cookies"], json!(["c=1  x-injected: 1"]));
    let prelude: Value = serde_json::from_slice(&prelude(&reply)).unwrap();
    assert_eq!(prelude["headers"], expected_headers);
    assert_eq!(prelude["cookies"], json!(["c=1  x-injected: 1"]));
}

/// A copy of `reply` (its body is in memory).
fn text_with(reply: &Reply) -> Reply {
    let ReplyBody::Bytes(body) = &reply.body else {
        panic!("in memory");
    };
    Reply {
        status: reply.status,
        headers: reply.headers.clone(),
        cookies: reply.cookies.clone(),
        body: ReplyBody::Bytes(body.clone()),
    }
}

#[test]
fn the_prelude_is_status_headers_and_cookies_without_nul_bytes() {
    let mut reply = Reply::ok("image/png", ReplyBody::Empty);
    reply.status = 201;
    reply.headers.push(("x-nul".into(), "a\0b".into()));
    let bytes = prelude(&reply);
    assert!(!bytes.contains(&0));
    let value: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(
        value,
        json!({"statusCode": 201, "headers": {"content-type": "image/png", "x-nul": "a b"}, "cookies": []})
    );
}

#[test]
fn textual_types_are_recognised_by_their_essence() {
    for textual in [
        "text/plain",
        "text/csv; charset=utf-8",
        "Application/JSON",
        "application/xml",
        "application/javascript",
        "application/x-www-form-urlencoded",
        "application/ld+json",
        "image/svg+xml",
    ] {
        assert!(is_textual(textual), "{textual}");
    }
    for binary in [
        "image/png",
        "application/octet-stream",
        "application/x-tar",
        "video/mp4",
        "",
    ] {
        assert!(!is_textual(binary), "{binary}");
    }
}
