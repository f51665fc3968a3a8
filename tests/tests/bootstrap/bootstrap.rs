//! End to end: the `bootstrap` binary as a Lambda function, driven through the `cargo lambda`
//! Runtime API emulator, reading and writing a real S3-compatible server (s3s-fs, SigV4
//! checked), running a busybox image from an OCI layout through the engine `auto` picks.
//!
//! This file: the S3 flow and its outputs (keys, several records, the output prefix, direct
//! invocations, streaming, logs). `bootstrap_failures.rs` has the failures and timeouts,
//! `bootstrap_isolation.rs` the container's environment, secrets and what invocations leave.
//!
//! Run: `cargo test -p scar-e2e --test bootstrap bootstrap::` (as root: the namespace engine needs
//! user namespaces; needs `busybox-static` and the PyPI package `cargo-lambda`).
//! `SCAR_E2E_BIG_MIB` sets the size of the streamed-file test (default 200).

use std::path::Path;

use crate::bootstrap_support::{
    BUCKET, COPY_BIG_SCRIPT, COPY_SCRIPT, Function, file_sha256, outputs, response_text,
};

/// The paper's script (SCAR, FGCS 2018), with `cp` standing in for ffmpeg.
const PAPER_SCRIPT: &str = r#"OUTPUT_DIR="/tmp/$REQUEST_ID/output"
FILENAME=`basename $SCAR_INPUT_FILE`
OUTPUT_FILE=$OUTPUT_DIR/$FILENAME
tr a-z A-Z < $SCAR_INPUT_FILE > $OUTPUT_FILE
echo "converted $STORAGE_OBJECT_KEY"
"#;

#[test]
fn an_s3_event_runs_the_papers_script_and_uploads_its_output() {
    let function = Function::spec().env("SCAR_SCRIPT", PAPER_SCRIPT).start();
    function.s3.put_object(BUCKET, "photos/cat.txt", b"meow\n");
    let result = function.invoke_s3(&["photos/cat.txt"]);
    assert_eq!(result.status, 200, "{}\n{}", result.body, function.log());
    let body = &result.body;
    assert_eq!(
        function.s3.get_object(BUCKET, "output/cat.txt").as_deref(),
        Some(&b"MEOW\n"[..])
    );
    assert_eq!(outputs(body), ["s3://scar-in/output/cat.txt"]);
    assert_eq!(body["exitCode"], 0);
    assert_eq!(
        response_text(body, "image"),
        crate::bootstrap_support::busybox_image()
    );
    assert!(
        ["namespace", "preload"].contains(&response_text(body, "engine")),
        "{body}"
    );
    assert!(
        response_text(body, "stdout").contains("converted photos/cat.txt"),
        "{body}"
    );
    let request_id = response_text(body, "requestId");
    assert!(body["durationMs"].as_u64().is_some(), "{body}");
    // The container's output reached the function log, tagged with the request id.
    let log = function.log();
    let tagged = log
        .lines()
        .any(|l| l.contains("converted photos/cat.txt") && l.contains(request_id));
    assert!(tagged, "no tagged stdout line in the log:\n{log}");
    for phase in ["pull", "stage-in", "run", "stage-out"] {
        assert!(
            log.contains(&format!("phase=\"{phase}\"")) || log.contains(&format!("phase={phase}")),
            "no {phase} line:\n{log}"
        );
    }
    assert!(
        !Path::new("/tmp").join(request_id).exists(),
        "the request directory was left behind"
    );
}

#[test]
fn keys_with_spaces_plus_signs_and_non_ascii_are_decoded() {
    let function = Function::spec().env("SCAR_SCRIPT", COPY_SCRIPT).start();
    let key = "vidéos/Été à Zürich +1 (final).txt";
    function.s3.put_object(BUCKET, key, b"summer");
    let result = function.invoke_s3(&[key]);
    assert_eq!(result.status, 200, "{}\n{}", result.body, function.log());
    assert_eq!(
        outputs(&result.body),
        ["s3://scar-in/output/Été à Zürich +1 (final).txt"]
    );
    assert_eq!(
        function
            .s3
            .get_object(BUCKET, "output/Été à Zürich +1 (final).txt")
            .as_deref(),
        Some(&b"summer"[..])
    );
}

#[test]
fn two_records_in_one_event_are_both_processed() {
    let function = Function::spec()
        .env(
            "SCAR_SCRIPT",
            "cp \"$SCAR_INPUT_FILE\" \"$SCAR_OUTPUT_DIR/\"; ls \"$SCAR_INPUT_DIR\"",
        )
        .start();
    function.s3.put_object(BUCKET, "one.txt", b"1");
    function.s3.put_object(BUCKET, "two.txt", b"2");
    let result = function.invoke_s3(&["one.txt", "two.txt"]);
    assert_eq!(result.status, 200, "{}\n{}", result.body, function.log());
    assert_eq!(
        outputs(&result.body),
        ["s3://scar-in/output/one.txt", "s3://scar-in/output/two.txt"]
    );
    assert_eq!(
        function.s3.get_object(BUCKET, "output/two.txt").as_deref(),
        Some(&b"2"[..])
    );
    // Each run saw only its own input.
    assert_eq!(response_text(&result.body, "stdout"), "one.txt\ntwo.txt\n");
}

#[test]
fn records_under_the_output_prefix_are_skipped_so_the_function_cannot_trigger_itself() {
    let function = Function::spec().env("SCAR_SCRIPT", COPY_SCRIPT).start();
    function.s3.put_object(BUCKET, "output/result.txt", b"r");
    let result = function.invoke_s3(&["output/result.txt"]);
    assert_eq!(result.status, 200, "{}\n{}", result.body, function.log());
    assert_eq!(
        result.body["skipped"][0]["input"],
        "s3://scar-in/output/result.txt"
    );
    assert!(result.body["exitCode"].is_null(), "{}", result.body);
    assert_eq!(
        function.s3.list_keys(BUCKET, "output/output/"),
        Vec::<String>::new()
    );
    assert!(
        function
            .log()
            .contains("skipping a record whose key lies under the output prefix")
    );
}

#[test]
fn a_direct_invocation_hands_the_payload_over_as_event_json() {
    let function = Function::spec()
        .env("SCAR_SCRIPT", COPY_SCRIPT)
        .env("SCAR_OUTPUT", "s3://scar-in/direct")
        .start();
    let payload = serde_json::json!({"frames": [1, 2, 3]});
    let result = function.invoke(&payload);
    assert_eq!(result.status, 200, "{}\n{}", result.body, function.log());
    assert_eq!(outputs(&result.body), ["s3://scar-in/direct/event.json"]);
    let stored: serde_json::Value =
        serde_json::from_slice(&function.s3.get_object(BUCKET, "direct/event.json").unwrap())
            .unwrap();
    assert_eq!(stored, payload);
}

#[test]
fn an_invoked_script_runs_only_when_the_function_allows_it() {
    let script = "echo from-invoke";
    let encoded = {
        use std::io::Write;
        let mut child = std::process::Command::new("base64")
            .arg("-w0")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(script.as_bytes())
            .unwrap();
        String::from_utf8(child.wait_with_output().unwrap().stdout).unwrap()
    };
    let payload = serde_json::json!({ "script": encoded });
    let refused = Function::spec()
        .env("SCAR_SCRIPT", "echo configured")
        .start();
    let result = refused.invoke(&payload);
    let message = refused.expect_error(&result, "Scar.InputError");
    assert!(message.contains("SCAR_ALLOW_INVOKE_SCRIPT"), "{message}");
    drop(refused);
    let allowed = Function::spec()
        .env("SCAR_SCRIPT", "echo configured")
        .env("SCAR_ALLOW_INVOKE_SCRIPT", "true")
        .start();
    let result = allowed.invoke(&payload);
    assert_eq!(result.status, 200, "{}\n{}", result.body, allowed.log());
    assert_eq!(response_text(&result.body, "stdout"), "from-invoke\n");
}

fn big_mib() -> usize {
    std::env::var("SCAR_E2E_BIG_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200)
}

#[test]
fn a_200_mib_input_and_output_are_streamed_through() {
    let mib = big_mib();
    let function = Function::spec().env("SCAR_SCRIPT", COPY_BIG_SCRIPT).start();
    let (result, source, stored) = function.stream_big_file(mib);
    assert_eq!(
        file_sha256(&stored),
        file_sha256(source.path()),
        "the output differs from the input"
    );
    println!(
        "{mib} MiB in and out: bootstrap peak RSS {} MiB, phases {}",
        function.status_kib("VmHWM") / 1024,
        result.body["phasesMs"]
    );
}

#[test]
fn json_logs_carry_the_request_id_and_one_line_per_phase() {
    let function = Function::spec()
        .env("SCAR_SCRIPT", "echo hello-json")
        .env("SCAR_LOG_FORMAT", "json")
        .start();
    function.s3.put_object(BUCKET, "a.txt", b"x");
    let result = function.invoke_s3(&["a.txt"]);
    assert_eq!(result.status, 200, "{}\n{}", result.body, function.log());
    let request_id = response_text(&result.body, "requestId");
    let log = function.log();
    let lines: Vec<serde_json::Value> = log
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    for phase in ["stage-in", "run", "stage-out"] {
        let line = lines
            .iter()
            .find(|l| l["phase"] == phase)
            .unwrap_or_else(|| panic!("no {phase} line:\n{log}"));
        assert_eq!(line["span"]["request_id"], request_id, "{line}");
        assert!(line["duration_ms"].as_f64().is_some(), "{line}");
    }
    let stdout = lines
        .iter()
        .find(|l| l["message"] == "hello-json")
        .expect("container line");
    assert_eq!(stdout["request_id"], request_id);
    assert_eq!(stdout["stream"], "stdout");
}
