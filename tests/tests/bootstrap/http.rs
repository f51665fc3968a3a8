//! End to end, the HTTP answers `http_answers.rs` leaves out: a request through the emulator's
//! Function URL route as a client sends it (its credentials included), an archive asked for,
//! stdout as the answer, an HTTP API payload 1.0 request with a text body, a buffered answer
//! past Lambda's 6 MB, names from the path; `http_streamed.rs` streams (failures, 50 MiB).
//!
//! The emulator (`cargo lambda watch`) serves `/lambda-url/<function>/<path>`: it builds the
//! payload 2.0 event from the request and decodes the answer, buffered or streamed.
//!
//! Run: `cargo test -p scar-e2e --test bootstrap http::` (`... http` runs every HTTP file).

use std::io::Read as _;

use base64::Engine as _;

use crate::bootstrap_support::{BUCKET, Function, INVOKE_TIMEOUT};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// One script for every case, chosen by the request's last path segment (`?where=1`: the
/// input's path as stdout).
pub(crate) const SCRIPT: &str = r#"[ -n "$SCAR_QUERY_WHERE" ] && { printf '%s' "$SCAR_INPUT_FILE"; exit 0; }
case "$SCAR_HTTP_PATH" in
*/env)
  env | grep -E '^SCAR_(HTTP|QUERY|HEADER)_' | sort > "$SCAR_OUTPUT_DIR/env.txt"
  echo "input=$(basename "$SCAR_INPUT_FILE")" >> "$SCAR_OUTPUT_DIR/env.txt"
  echo "input_bytes=$(wc -c < "$SCAR_INPUT_FILE")" >> "$SCAR_OUTPUT_DIR/env.txt" ;;
*/two) printf a > "$SCAR_OUTPUT_DIR/a.txt"; printf 'b\377' > "$SCAR_OUTPUT_DIR/b.bin" ;;
*/say) printf '%s: %s\n' "$SCAR_HTTP_SOURCE" "$(wc -c < "$SCAR_INPUT_FILE") bytes, é" ;;
*/seven) seq 1 1000000 > "$SCAR_OUTPUT_DIR/seven.txt" ;;
*/fail) echo 'refusing: not a picture' >&2; exit 3 ;;
*/sleep) sleep 7919 ;;
*/random)
  head -c 52428800 /dev/urandom > "$SCAR_OUTPUT_DIR/random.bin"
  echo "made $(sha256sum < "$SCAR_OUTPUT_DIR/random.bin")" >&2 ;;
*) cp "$SCAR_INPUT_FILE" "$SCAR_OUTPUT_DIR/" ;;
esac"#;

/// `seq 1 1000000`: 6,888,896 bytes, past Lambda's 6 MB buffered payload.
const SEVEN_BYTES: u64 = 6_888_896;

pub(crate) fn function(streaming: bool) -> Function {
    Function::spec()
        .env("SCAR_SCRIPT", SCRIPT)
        .env(
            "SCAR_HTTP_STREAMING",
            if streaming { "true" } else { "false" },
        )
        .start()
}

/// What a client got from the emulator's Function URL route.
pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) headers: reqwest::header::HeaderMap,
    pub(crate) body: Vec<u8>,
}

impl Answer {
    pub(crate) fn header(&self, name: &str) -> &str {
        (self.headers.get(name))
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    }

    pub(crate) fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub(crate) fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|_| panic!("not JSON ({}): {}", self.status, self.text()))
    }
}

/// `request` (method, URL and headers set) after `/lambda-url/scar/` + `path_and_query`.
fn through_function_url(
    function: &Function,
    method: reqwest::Method,
    path_and_query: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> Answer {
    let url = format!("{}/lambda-url/scar/{path_and_query}", function.api.url());
    let client = reqwest::blocking::Client::builder()
        .timeout(INVOKE_TIMEOUT)
        .build()
        .expect("HTTP client");
    let mut request = client.request(method, &url).body(body);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request
        .send()
        .unwrap_or_else(|err| panic!("{url}: {err}\n{}", function.log()));
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response
        .bytes()
        .unwrap_or_else(|err| panic!("{url}: reading the answer: {err}\n{}", function.log()))
        .to_vec();
    Answer {
        status,
        headers,
        body,
    }
}

pub(crate) fn post(function: &Function, path_and_query: &str, body: Vec<u8>) -> Answer {
    through_function_url(function, reqwest::Method::POST, path_and_query, &[], body)
}

/// The answer document of an invoke, and its body's bytes (base64 undone).
fn invoke_document(function: &Function, event: &serde_json::Value) -> (serde_json::Value, Vec<u8>) {
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

fn lines(text: &str) -> Vec<&str> {
    text.lines().collect()
}

#[test]
fn a_function_url_request_gives_the_script_its_method_path_query_and_headers_but_no_credential() {
    let function = function(false);
    let answer = through_function_url(
        &function,
        reqwest::Method::PUT,
        "photos/env?width=640&o-k=%24%28id%29&width=1",
        &[
            ("content-type", "image/png"),
            ("authorization", "AWS4-HMAC-SHA256 Credential=s3cr3t"),
            ("x-api-key", "s3cr3t"),
            ("cookie", "session=s3cr3t"),
            ("x-amz-security-token", "s3cr3t"),
            ("x-scar-quality", "high; $(reboot)"),
            ("user-agent", "scar-e2e/1"),
        ],
        b"PNG".to_vec(),
    );
    assert_eq!(answer.status, 200, "{}\n{}", answer.text(), function.log());
    let text = answer.text();
    let seen = lines(&text);
    for line in [
        "SCAR_HTTP_METHOD=PUT",
        "SCAR_HTTP_PATH=/photos/env",
        "SCAR_QUERY_WIDTH=640",
        "SCAR_QUERY_O_K=$(id)",
        "SCAR_HEADER_CONTENT_TYPE=image/png",
        "SCAR_HEADER_X_SCAR_QUALITY=high; $(reboot)",
        "SCAR_HEADER_USER_AGENT=scar-e2e/1",
        "input=env",
        "input_bytes=3",
    ] {
        assert!(seen.contains(&line), "no {line} in:\n{text}");
    }
    assert!(
        seen.iter()
            .any(|l| l.starts_with("SCAR_HTTP_SOURCE=") && l.len() > "SCAR_HTTP_SOURCE=".len()),
        "{text}"
    );
    assert!(
        !text.contains("s3cr3t"),
        "a credential reached the script:\n{text}"
    );
    assert!(
        answer.header("content-disposition").contains("env.txt"),
        "{:?}",
        answer.headers
    );
    assert!(
        answer.header("content-type").starts_with("text/plain"),
        "{:?}",
        answer.headers
    );
}

#[test]
fn a_request_asking_for_an_archive_gets_one_tar_of_all_outputs() {
    let function = function(false);
    for (path, accept) in [("two?archive=tar", "*/*"), ("two", "application/x-tar")] {
        let answer = through_function_url(
            &function,
            reqwest::Method::POST,
            path,
            &[("accept", accept)],
            Vec::new(),
        );
        assert_eq!(answer.status, 200, "{path}: {}", answer.text());
        assert_eq!(answer.header("content-type"), "application/x-tar", "{path}");
        assert!(
            answer.header("content-disposition").contains("outputs.tar"),
            "{path}: {:?}",
            answer.headers
        );
        let mut archive = tar::Archive::new(&answer.body[..]);
        let mut files: Vec<(String, Vec<u8>)> = Vec::new();
        for entry in archive.entries().expect("a tar") {
            let mut entry = entry.expect("a tar entry");
            let name = entry.path().expect("a name").display().to_string();
            let mut bytes = Vec::new();
            entry.read_to_end(&mut bytes).expect("an entry's bytes");
            files.push((name, bytes));
        }
        files.sort();
        assert_eq!(
            files,
            [
                ("a.txt".to_owned(), b"a".to_vec()),
                ("b.bin".to_owned(), b"b\xff".to_vec())
            ],
            "{path}"
        );
    }
}

#[test]
fn a_function_url_event_without_outputs_answers_the_scripts_stdout_as_utf8_text() {
    let function = function(false);
    // A Function URL's request as "Invoking Lambda function URLs" shows it: the
    // `<url-id>.lambda-url.<region>.on.aws` domain tells it from an HTTP API's.
    let event = serde_json::json!({
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": "/say",
        "rawQueryString": "",
        "headers": {"content-type": "text/plain"},
        "requestContext": {
            "domainName": "abcdefg.lambda-url.eu-west-1.on.aws",
            "http": {"method": "POST", "path": "/say", "protocol": "HTTP/1.1",
                     "sourceIp": "192.0.2.1", "userAgent": "curl/8.5.0"},
            "requestId": "r1", "routeKey": "$default", "stage": "$default"
        },
        "body": "twelve bytes",
        "isBase64Encoded": false
    });
    let (document, bytes) = invoke_document(&function, &event);
    assert_eq!(document["statusCode"], 200, "{document}");
    assert_eq!(
        document["isBase64Encoded"], false,
        "text travels as text: {document}"
    );
    assert_eq!(
        document["headers"]["content-type"], "text/plain; charset=utf-8",
        "{document}"
    );
    assert_eq!(
        String::from_utf8_lossy(&bytes),
        "function-url: 12 bytes, é\n"
    );
}

#[test]
fn an_http_api_payload_1_0_request_with_a_text_body_is_named_by_its_content_type() {
    let function = function(false);
    // The HTTP API's 1.0 format: REST's fields plus `version` ("Working with AWS Lambda proxy
    // integrations for HTTP APIs"); the route "/" has no last segment to name the input.
    let event = serde_json::json!({
        "version": "1.0",
        "resource": "/",
        "path": "/",
        "httpMethod": "POST",
        "headers": {"Content-Type": "application/json; charset=utf-8", "X-Scar-Job": "7"},
        "multiValueHeaders": {"Content-Type": ["application/json; charset=utf-8"],
                              "X-Scar-Job": ["7"]},
        "queryStringParameters": {"mode": "fast"},
        "multiValueQueryStringParameters": {"mode": ["fast"]},
        "requestContext": {
            "accountId": "123456789012", "apiId": "id", "domainName": "id.execute-api.us-east-1.amazonaws.com",
            "httpMethod": "POST", "path": "/", "protocol": "HTTP/1.1", "requestId": "r2",
            "resourcePath": "/", "stage": "$default", "identity": {"sourceIp": "192.0.2.1"}
        },
        "pathParameters": null,
        "stageVariables": null,
        "body": "{\"env\": true}",
        "isBase64Encoded": false
    });
    // The default branch copies the input: its name and bytes come back.
    let (document, bytes) = invoke_document(&function, &event);
    assert_eq!(document["statusCode"], 200, "{document}");
    assert!(
        document.get("cookies").is_none(),
        "a 1.0 document: {document}"
    );
    assert_eq!(
        document["isBase64Encoded"], false,
        "JSON is text: {document}"
    );
    assert_eq!(bytes, br#"{"env": true}"#);
    let headers = &document["headers"];
    assert_eq!(headers["content-type"], "application/json", "{document}");
    let disposition = headers["content-disposition"].as_str().unwrap_or_default();
    assert!(disposition.contains("body.json"), "{document}");
}

#[test]
fn a_buffered_answer_past_6_mb_is_an_output_error_or_with_scar_output_the_uploaded_listing() {
    let function = function(false);
    let answer = post(&function, "seven", Vec::new());
    assert_eq!(answer.status, 500, "{}", answer.text());
    let error = answer.json();
    assert_eq!(error["errorType"], "Scar.OutputError", "{error}");
    let message = error["errorMessage"].as_str().unwrap_or_default();
    for hint in [
        "SCAR_HTTP_STREAMING",
        "SCAR_OUTPUT",
        &SEVEN_BYTES.to_string(),
    ] {
        assert!(message.contains(hint), "no {hint} in: {message}");
    }

    let uploading = Function::spec()
        .env("SCAR_SCRIPT", SCRIPT)
        .env("SCAR_OUTPUT", &format!("s3://{BUCKET}/big"))
        .start();
    let answer = post(&uploading, "seven", Vec::new());
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(answer.header("content-type"), "application/json");
    let listing = answer.json();
    let entry = &listing["outputs"][0];
    assert_eq!(entry["name"], "seven.txt", "{listing}");
    assert_eq!(entry["size"], SEVEN_BYTES, "{listing}");
    assert_eq!(entry["url"], "s3://scar-in/big/seven.txt", "{listing}");
    assert!(
        listing["note"]
            .as_str()
            .unwrap_or_default()
            .contains("uploaded"),
        "{listing}"
    );
    let stored = uploading.s3.root().join(BUCKET).join("big/seven.txt");
    let len = std::fs::metadata(&stored).map(|m| m.len()).unwrap_or(0);
    assert_eq!(len, SEVEN_BYTES, "the output was uploaded whole");
}

#[test]
fn a_path_naming_the_input_with_quotes_non_ascii_letters_or_dot_dots_stays_one_name_in_input() {
    let function = function(false);
    let cases = [
        ("caf%C3%A9%20%22menu%22.png", "café \"menu\".png"),
        ("in/..%2F..%2Fescape.png", "escape.png"),
        ("%2E%2E%2F?filename=named.png", "named.png"),
    ];
    for (path, name) in cases {
        let separator = if path.contains('?') { '&' } else { '?' };
        let answer = post(
            &function,
            &format!("{path}{separator}where=1"),
            b"x".to_vec(),
        );
        assert_eq!(answer.status, 200, "{path}: {}", answer.text());
        let input = answer.text();
        let (dir, file) = input.rsplit_once('/').unwrap_or_default();
        assert_eq!(file, name, "{path}: {input}");
        assert!(dir.ends_with("/input"), "{path}: {input}");
    }
    let answer = post(&function, "caf%C3%A9%20%22menu%22.png", b"PNG".to_vec());
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(answer.body, b"PNG");
    assert_eq!(answer.header("content-type"), "image/png");
    assert_eq!(
        answer.header("content-disposition"),
        "inline; filename=\"caf_ _menu_.png\"; filename*=UTF-8''caf%C3%A9%20%22menu%22.png"
    );
}
