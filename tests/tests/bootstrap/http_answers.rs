//! End to end, HTTP requests answered as HTTP: API Gateway REST (payload 1.0) and HTTP API (2.0)
//! events through the invoke API of `cargo lambda watch`, and real HTTP requests through its
//! Function URL route (`/lambda-url/<function>/<path>`), which builds the 2.0 event and decodes
//! the answer, buffered or streamed, as Lambda's front end does.
//!
//! Run: `cargo test -p scar-e2e --test bootstrap http_answers::`.

use base64::Engine as _;
use sha2::{Digest, Sha256};

use crate::bootstrap_support::{BUCKET, Function, INVOKE_TIMEOUT};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// Lines in the streamed output: `seq 1 6000000` is 52,888,896 bytes.
const BIG_LINES: u64 = 6_000_000;

/// One script for every case, chosen by the request's path.
const SCRIPT: &str = r#"case "$SCAR_HTTP_PATH" in
*/fail) echo 'refusing: not a picture' >&2; exit 3 ;;
*/sleep) sleep 7919 ;;
*/env)
  env | grep -E '^SCAR_(HTTP|QUERY|HEADER)_' | sort > "$SCAR_OUTPUT_DIR/env.txt"
  echo "input=$(basename "$SCAR_INPUT_FILE")" >> "$SCAR_OUTPUT_DIR/env.txt"
  grep -q '"rawPath":"/env"' "$SCAR_EVENT_FILE" && echo "event=whole" >> "$SCAR_OUTPUT_DIR/env.txt" ;;
*/big) seq 1 6000000 > "$SCAR_OUTPUT_DIR/big.bin" ;;
*/huge) dd if=/dev/zero of="$SCAR_OUTPUT_DIR/huge.bin" bs=1048576 seek=201 count=0 2>/dev/null ;;
*/two) echo a > "$SCAR_OUTPUT_DIR/a.txt"; echo bb > "$SCAR_OUTPUT_DIR/b.txt" ;;
*) { cat "$SCAR_INPUT_FILE"; printf '\377END'; } > "$SCAR_OUTPUT_DIR/$(basename "$SCAR_INPUT_FILE")" ;;
esac"#;

fn function(streaming: bool) -> Function {
    Function::spec()
        .env("SCAR_SCRIPT", SCRIPT)
        .env(
            "SCAR_HTTP_STREAMING",
            if streaming { "true" } else { "false" },
        )
        .start()
}

/// What the default branch of [`SCRIPT`] makes of `body`.
fn marked(body: &[u8]) -> Vec<u8> {
    let mut out = body.to_vec();
    out.extend_from_slice(b"\xffEND");
    out
}

/// Every byte value, then a non-repeating run: `len` bytes.
fn binary_body(len: usize) -> Vec<u8> {
    let mut body: Vec<u8> = (0..=255u8).collect();
    let mut state = 0x2545_f491_u32;
    while body.len() < len {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        body.push(state.to_le_bytes()[1]);
    }
    body.truncate(len);
    body
}

/// An HTTP API request, payload 2.0, as AWS documents it ("Working with AWS Lambda proxy
/// integrations for HTTP APIs"), with `body` base64-encoded.
fn http_api_event(path: &str, query: &str, body: &[u8]) -> serde_json::Value {
    serde_json::json!({
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": query,
        "cookies": ["session=s3cr3t"],
        "headers": {
            "content-type": "application/octet-stream",
            "authorization": "Bearer s3cr3t",
            "user-agent": "curl/8.5.0",
            "x-scar-mode": "fast"
        },
        "queryStringParameters": query_map(query),
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "api-id",
            "domainName": "id.execute-api.us-east-1.amazonaws.com",
            "domainPrefix": "id",
            "http": {
                "method": "POST",
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": "192.0.2.1",
                "userAgent": "curl/8.5.0"
            },
            "requestId": "id",
            "routeKey": "$default",
            "stage": "$default",
            "time": "12/Mar/2020:19:03:58 +0000",
            "timeEpoch": 1583348638390u64
        },
        "body": B64.encode(body),
        "isBase64Encoded": true
    })
}

fn query_map(query: &str) -> serde_json::Value {
    let map: serde_json::Map<String, serde_json::Value> = query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .map(|(name, value)| (name.to_owned(), value.into()))
        .collect();
    serde_json::Value::Object(map)
}

/// A REST API request, payload 1.0 ("Set up Lambda proxy integrations in API Gateway").
fn rest_api_event(path: &str, body: &[u8]) -> serde_json::Value {
    serde_json::json!({
        "resource": "/{proxy+}",
        "path": path,
        "httpMethod": "PUT",
        "headers": {"Content-Type": "image/png", "Accept": "*/*"},
        "multiValueHeaders": {"Content-Type": ["image/png"], "Accept": ["*/*"]},
        "queryStringParameters": null,
        "multiValueQueryStringParameters": null,
        "pathParameters": {"proxy": path.trim_start_matches('/')},
        "stageVariables": null,
        "requestContext": {
            "accountId": "123456789012",
            "resourceId": "123456",
            "stage": "prod",
            "requestId": "c6af9ac6-7b61-11e6-9a41-93e8deadbeef",
            "identity": {"sourceIp": "192.0.2.1"},
            "resourcePath": "/{proxy+}",
            "httpMethod": "PUT",
            "apiId": "1234567890",
            "protocol": "HTTP/1.1"
        },
        "body": B64.encode(body),
        "isBase64Encoded": true
    })
}

/// The answer document of an invoke: status and body bytes (decoded when base64).
fn answer_document(function: &Function, event: &serde_json::Value) -> (serde_json::Value, Vec<u8>) {
    let result = function.invoke(event);
    assert_eq!(result.status, 200, "{}\n{}", result.body, function.log());
    let document = result.body;
    let body = document["body"].as_str().unwrap_or_default();
    let bytes = if document["isBase64Encoded"] == true {
        B64.decode(body).expect("a base64 body")
    } else {
        body.as_bytes().to_vec()
    };
    (document, bytes)
}

/// A request through the emulator's Function URL route: status, headers and body.
fn function_url(
    function: &Function,
    path_and_query: &str,
    body: Vec<u8>,
) -> (u16, reqwest::header::HeaderMap, Vec<u8>) {
    let url = format!("{}/lambda-url/scar/{path_and_query}", function.api.url());
    let response = reqwest::blocking::Client::builder()
        .timeout(INVOKE_TIMEOUT)
        .build()
        .expect("HTTP client")
        .post(&url)
        .header("content-type", "application/octet-stream")
        .body(body)
        .send()
        .unwrap_or_else(|err| panic!("{url}: {err}\n{}", function.log()));
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let bytes = response
        .bytes()
        .unwrap_or_else(|err| panic!("{url}: reading the answer: {err}\n{}", function.log()));
    (status, headers, bytes.to_vec())
}

fn header<'h>(headers: &'h serde_json::Value, name: &str) -> &'h str {
    headers[name]
        .as_str()
        .unwrap_or_else(|| panic!("no {name} in {headers}"))
}

fn error_of(body: &[u8]) -> serde_json::Value {
    serde_json::from_slice(body)
        .unwrap_or_else(|_| panic!("not JSON: {}", String::from_utf8_lossy(body)))
}

#[test]
fn an_http_api_2_0_request_gets_its_binary_output_back_byte_for_byte() {
    let function = function(false);
    let body = binary_body(300_000);
    let (document, bytes) = answer_document(&function, &http_api_event("/up/photo.bin", "", &body));
    assert_eq!(document["statusCode"], 200, "{document}");
    assert_eq!(
        document["isBase64Encoded"], true,
        "binary travels in base64"
    );
    assert!(bytes == marked(&body), "the bytes differ");
    let headers = &document["headers"];
    assert_eq!(header(headers, "content-type"), "application/octet-stream");
    assert!(
        header(headers, "content-disposition").contains("photo.bin"),
        "{headers}"
    );
    assert!(
        document.get("multiValueHeaders").is_none(),
        "a 2.0 document: {document}"
    );
}

#[test]
fn a_rest_api_1_0_request_is_answered_in_the_1_0_document() {
    let function = function(false);
    let body = binary_body(4096);
    let (document, bytes) = answer_document(&function, &rest_api_event("/pictures/cat.png", &body));
    assert_eq!(document["statusCode"], 200, "{document}");
    assert!(bytes == marked(&body), "the bytes differ");
    assert!(
        document.get("cookies").is_none(),
        "a 1.0 document: {document}"
    );
    let content_type = document["headers"]["content-type"]
        .as_str()
        .or_else(|| document["multiValueHeaders"]["content-type"][0].as_str());
    assert_eq!(content_type, Some("image/png"), "{document}");
}

#[test]
fn the_script_sees_the_request_as_variables_and_never_its_credentials() {
    let function = function(false);
    let event = http_api_event("/env", "size=10&weird-name=%24(reboot)", b"{}");
    let (document, bytes) = answer_document(&function, &event);
    assert_eq!(document["statusCode"], 200, "{document}");
    let text = String::from_utf8(bytes).expect("text");
    for line in [
        "SCAR_HTTP_METHOD=POST",
        "SCAR_HTTP_PATH=/env",
        "SCAR_HTTP_QUERY=size=10&weird-name=%24(reboot)",
        "SCAR_HTTP_SOURCE=http-api",
        "SCAR_QUERY_SIZE=10",
        "SCAR_QUERY_WEIRD_NAME=$(reboot)",
        "SCAR_HEADER_USER_AGENT=curl/8.5.0",
        "SCAR_HEADER_X_SCAR_MODE=fast",
        "input=env",
        "event=whole",
    ] {
        assert!(text.lines().any(|l| l == line), "no {line} in:\n{text}");
    }
    assert!(
        !text.contains("s3cr3t"),
        "a credential reached the script:\n{text}"
    );
}

#[test]
fn a_request_body_never_supplies_the_script_even_where_invocations_may() {
    let function = Function::spec()
        .env("SCAR_SCRIPT", SCRIPT)
        .env("SCAR_ALLOW_INVOKE_SCRIPT", "true")
        .start();
    let body = br#"{"script": "echo pwned > \"$SCAR_OUTPUT_DIR/p.txt\""}"#;
    let (document, bytes) = answer_document(&function, &http_api_event("/job.json", "", body));
    assert_eq!(document["statusCode"], 200, "{document}");
    assert_eq!(
        bytes,
        marked(body),
        "the function's own script ran on the body"
    );
}

#[test]
fn a_function_url_request_round_trips_a_megabyte_named_by_its_filename_parameter() {
    let function = function(false);
    let body = binary_body(1 << 20);
    let (status, headers, bytes) = function_url(&function, "?filename=x.bin", body.clone());
    assert_eq!(
        status,
        200,
        "{}\n{}\n{}",
        String::from_utf8_lossy(&bytes),
        function.log(),
        function.api.log()
    );
    assert_eq!(
        Sha256::digest(&bytes),
        Sha256::digest(marked(&body)),
        "the bytes differ"
    );
    let disposition = headers["content-disposition"].to_str().unwrap_or_default();
    assert!(disposition.contains("x.bin"), "{disposition}");
}

#[test]
fn several_outputs_are_listed_with_their_sizes() {
    let function = function(false);
    let (document, bytes) = answer_document(&function, &http_api_event("/two", "", b""));
    assert_eq!(document["statusCode"], 200, "{document}");
    assert_eq!(
        header(&document["headers"], "content-type"),
        "application/json"
    );
    let listing: serde_json::Value = serde_json::from_slice(&bytes).expect("a JSON listing");
    let text = listing.to_string();
    assert!(text.contains("a.txt") && text.contains("b.txt"), "{text}");
}

#[test]
fn a_50_mb_output_streams_whole_through_a_function_url() {
    let function = function(true);
    let (status, headers, bytes) = function_url(&function, "big", Vec::new());
    assert_eq!(status, 200, "{}", function.log());
    let expected: String = (1..=BIG_LINES).map(|i| format!("{i}\n")).collect();
    assert_eq!(bytes.len(), expected.len(), "{}", function.log());
    assert!(bytes == expected.as_bytes(), "the streamed bytes differ");
    assert_eq!(headers["content-type"], "application/octet-stream");
    let log = function.log_with(
        "HTTP answer streamed",
        1,
        std::time::Duration::from_secs(10),
    );
    assert!(log.contains("HTTP answer streamed"), "{log}");
}

#[test]
fn failures_are_answered_as_http_statuses_with_the_scar_error_in_json() {
    let function = Function::spec()
        .env("SCAR_SCRIPT", SCRIPT)
        .env("SCAR_TIMEOUT_MARGIN", "597")
        .start();
    let mut bad = http_api_event("/x.bin", "", b"x");
    bad["body"] = "not base64 at all!".into();
    let (document, body) = answer_document(&function, &bad);
    assert_eq!(document["statusCode"], 400, "{document}");
    assert_eq!(error_of(&body)["errorType"], "Scar.InputError");

    let (document, body) = answer_document(&function, &http_api_event("/fail", "", b"x"));
    assert_eq!(document["statusCode"], 422, "{document}");
    let error = error_of(&body);
    assert_eq!(error["errorType"], "Scar.ScriptFailed");
    let message = error["errorMessage"].as_str().unwrap_or_default();
    assert!(message.contains("refusing: not a picture"), "{message}");

    // The emulator's deadline is 600 s away: a margin of 597 s stops the script after ~3 s.
    let (document, body) = answer_document(&function, &http_api_event("/sleep", "", b"x"));
    assert_eq!(document["statusCode"], 504, "{document}");
    assert_eq!(error_of(&body)["errorType"], "Scar.Timeout");
}

#[test]
fn a_streamed_answer_past_200_mib_is_an_output_error_or_with_scar_output_the_uploaded_listing() {
    let function = function(true);
    let (status, _, body) = function_url(&function, "huge", Vec::new());
    assert_eq!(status, 500, "{}", String::from_utf8_lossy(&body));
    let error = error_of(&body);
    assert_eq!(error["errorType"], "Scar.OutputError");
    let message = error["errorMessage"].as_str().unwrap_or_default();
    assert!(message.contains("SCAR_OUTPUT"), "{message}");

    let uploading = Function::spec()
        .env("SCAR_SCRIPT", SCRIPT)
        .env("SCAR_HTTP_STREAMING", "true")
        .env("SCAR_OUTPUT", &format!("s3://{BUCKET}/answers"))
        .start();
    let (status, _, body) = function_url(&uploading, "huge", Vec::new());
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let text = String::from_utf8_lossy(&body);
    assert!(text.contains("s3://scar-in/answers/huge.bin"), "{text}");
    let stored = uploading.s3.root().join(BUCKET).join("answers/huge.bin");
    let len = std::fs::metadata(&stored).map(|m| m.len()).unwrap_or(0);
    assert_eq!(len, 201 << 20, "the output was uploaded whole");
}

#[test]
fn under_the_lambda_simulation_a_function_url_request_streams_its_answer() {
    let function = Function::spec()
        .env("SCAR_SCRIPT", SCRIPT)
        .env("SCAR_HTTP_STREAMING", "true")
        .start_simulated();
    let body = binary_body(200_000);
    let (status, headers, bytes) = function_url(&function, "in/pic.bin", body.clone());
    assert_eq!(
        status,
        200,
        "{}\n{}",
        String::from_utf8_lossy(&bytes),
        function.log()
    );
    assert!(bytes == marked(&body), "the bytes differ");
    assert!(headers.contains_key("content-disposition"));
    // Served again: the sandbox keeps going after a streamed answer.
    let (status, _, _) = function_url(&function, "fail", b"x".to_vec());
    assert_eq!(status, 422, "{}", function.log());
}
