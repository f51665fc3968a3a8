use super::*;

const BUFFERED: HttpMode = HttpMode {
    format: HttpFormat::V2,
    streaming: false,
};
const STREAMED: HttpMode = HttpMode {
    format: HttpFormat::V2,
    streaming: true,
};

/// A sparse file of `len` bytes: its size is all that the answer looks at before sending.
fn file_reply(len: u64) -> Reply {
    let file = tempfile::tempfile().unwrap();
    file.set_len(len).unwrap();
    Reply::ok("application/octet-stream", ReplyBody::File { file, len })
}

fn output(name: &str, size: u64, url: Option<&str>) -> OutputFile {
    OutputFile {
        name: name.into(),
        path: format!("/nonexistent/{name}").into(),
        size,
        url: url.map(str::to_owned),
    }
}

/// The status and the decoded `body` of a buffered 2.0 answer.
fn buffered(answer: Answer) -> (u16, serde_json::Value, String) {
    let Answer::Buffered { status, payload } = answer else {
        panic!("not a buffered answer");
    };
    let document: serde_json::Value = serde_json::from_slice(&payload).unwrap();
    assert_eq!(document["statusCode"], status);
    let body = document["body"].as_str().unwrap().to_owned();
    (status, document, body)
}

#[test]
fn a_small_output_is_a_buffered_document_carrying_its_bytes() {
    let reply = Reply::ok("text/plain", ReplyBody::Bytes(Bytes::from_static(b"grey")));
    let (status, document, body) = buffered(BUFFERED.answer(reply, &[], "r1", None));
    assert_eq!(status, 200);
    assert_eq!(body, "grey");
    assert_eq!(document["isBase64Encoded"], false);
}

#[test]
fn an_output_past_6_mb_without_scar_output_is_an_output_error_naming_both_ways_out() {
    let reply = file_reply(7 << 20);
    let outputs = [output("big.bin", 7 << 20, None)];
    let (status, _, body) = buffered(BUFFERED.answer(reply, &outputs, "r2", None));
    assert_eq!(status, 500);
    let error: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(error["errorType"], "Scar.OutputError");
    assert_eq!(error["requestId"], "r2");
    let message = error["errorMessage"].as_str().unwrap();
    assert!(message.contains("SCAR_HTTP_STREAMING=true"), "{message}");
    assert!(message.contains("SCAR_OUTPUT"), "{message}");
}

#[test]
fn an_output_past_6_mb_that_was_uploaded_is_answered_with_the_listing_and_a_note() {
    let reply = file_reply(7 << 20);
    let outputs = [output("big.bin", 7 << 20, Some("s3://out/x/big.bin"))];
    let (status, _, body) = buffered(BUFFERED.answer(reply, &outputs, "r3", None));
    assert_eq!(status, 200);
    assert!(body.contains("s3://out/x/big.bin"), "{body}");
    assert!(body.contains("larger than the"), "{body}");
}

#[test]
fn a_streamed_answer_carries_up_to_200_mib_and_refuses_more() {
    let at_limit = STREAMED.answer(file_reply(MAX_STREAMED), &[], "r4", None);
    assert!(matches!(at_limit, Answer::Streamed { status: 200, .. }));
    let over = STREAMED.answer(file_reply(MAX_STREAMED + 1), &[], "r5", None);
    let Answer::Streamed {
        status,
        body: StreamBody::Bytes(body),
        ..
    } = over
    else {
        panic!("the refusal is a streamed answer held in memory");
    };
    assert_eq!(status, 500);
    let text = String::from_utf8_lossy(&body);
    assert!(
        text.contains("Scar.OutputError") && text.contains("SCAR_OUTPUT"),
        "{text}"
    );
}

#[test]
fn a_failure_is_an_http_answer_in_either_mode() {
    let failure = Failure::new(FailureKind::ScriptFailed, "exit 3");
    let (status, _, body) = buffered(BUFFERED.failure(&failure, "r6"));
    assert_eq!(status, 422);
    assert!(body.contains("Scar.ScriptFailed"), "{body}");
    let streamed = STREAMED.failure(&Failure::new(FailureKind::Timeout, "late"), "r7");
    assert!(matches!(streamed, Answer::Streamed { status: 504, .. }));
}

#[test]
fn an_archive_is_judged_too_large_by_what_base64_makes_of_it_when_buffered() {
    let limit = MAX_PAYLOAD as u64 / 4 * 3;
    assert!(!BUFFERED.cannot_carry(limit));
    assert!(BUFFERED.cannot_carry(limit + 1));
    assert!(!STREAMED.cannot_carry(MAX_STREAMED));
    assert!(STREAMED.cannot_carry(MAX_STREAMED + 1));
}
