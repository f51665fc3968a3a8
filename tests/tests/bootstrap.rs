//! End to end: the `bootstrap` binary as a Lambda function, driven through the `cargo lambda`
//! Runtime API emulator, reading and writing a real S3-compatible server (s3s-fs, SigV4
//! checked), running a busybox image from an OCI layout through the engine `auto` picks.
//!
//! Run: `cargo test -p scar-e2e --test bootstrap` (as root: the namespace engine needs user
//! namespaces; needs `busybox-static` and the PyPI package `cargo-lambda`).
//! `SCAR_E2E_BIG_MIB` sets the size of the streamed-file test (default 200).

mod bootstrap_support;

use std::path::Path;
use std::time::Duration;

use bootstrap_support::{BUCKET, Function, file_sha256, s3_event, s3_record, write_big_file};

/// The paper's script (SCAR, FGCS 2018), with `cp` standing in for ffmpeg.
const PAPER_SCRIPT: &str = r#"OUTPUT_DIR="/tmp/$REQUEST_ID/output"
FILENAME=`basename $SCAR_INPUT_FILE`
OUTPUT_FILE=$OUTPUT_DIR/$FILENAME
tr a-z A-Z < $SCAR_INPUT_FILE > $OUTPUT_FILE
echo "converted $STORAGE_OBJECT_KEY"
"#;

fn response_text<'a>(body: &'a serde_json::Value, field: &str) -> &'a str {
    body.get(field)
        .and_then(|v| v.as_str())
        .unwrap_or_else(|| panic!("no {field} in {body}"))
}

fn outputs(body: &serde_json::Value) -> Vec<String> {
    body["outputs"]
        .as_array()
        .unwrap_or_else(|| panic!("no outputs in {body}"))
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect()
}

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
        bootstrap_support::busybox_image()
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
fn the_container_sees_exactly_the_designed_environment() {
    let function = Function::spec()
        .env("SCAR_SCRIPT", "env > \"$SCAR_OUTPUT_DIR/env.txt\"; cat \"$SCAR_EVENT_FILE\" > \"$SCAR_OUTPUT_DIR/event.json\"")
        .env("SCAR_ENV_GREETING", "hello world")
        .env("SCAR_REGISTRY_USERNAME", "someone")
        .env("SCAR_REGISTRY_PASSWORD", "registry-secret-marker")
        .start();
    function.s3.put_object(BUCKET, "a.txt", b"x");
    let result = function.invoke_s3(&["a.txt"]);
    assert_eq!(result.status, 200, "{}\n{}", result.body, function.log());
    let env = String::from_utf8(
        function
            .s3
            .get_object(BUCKET, "output/env.txt")
            .expect("env.txt uploaded"),
    )
    .unwrap();
    let request_id = response_text(&result.body, "requestId");
    let mut names: Vec<&str> = env
        .lines()
        .filter_map(|l| l.split_once('=').map(|(n, _)| n))
        .filter(|n| !n.is_empty())
        .collect();
    // The shell itself exports these.
    names.retain(|n| !["PWD", "SHLVL", "OLDPWD", "_"].contains(n));
    names.sort_unstable();
    names.dedup();
    let mut expected = vec![
        "PATH",
        "GREETING",
        "SCAR_INPUT_FILE",
        "INPUT_FILE_PATH",
        "SCAR_INPUT_DIR",
        "TMP_INPUT_DIR",
        "SCAR_OUTPUT_DIR",
        "TMP_OUTPUT_DIR",
        "REQUEST_ID",
        "AWS_LAMBDA_REQUEST_ID",
        "STORAGE_OBJECT_KEY",
        "SCAR_INPUT_BUCKET",
        "EVENT_TIME",
        "SCAR_EVENT_FILE",
        "EVENT",
    ];
    expected.sort_unstable();
    assert_eq!(names, expected, "container environment:\n{env}");
    assert!(env.contains("GREETING=hello world"));
    assert!(
        env.contains(&format!("SCAR_INPUT_FILE=/tmp/{request_id}/input/a.txt")),
        "{env}"
    );
    assert!(
        env.contains(&format!("SCAR_OUTPUT_DIR=/tmp/{request_id}/output")),
        "{env}"
    );
    assert!(
        env.contains("STORAGE_OBJECT_KEY=a.txt") && env.contains("SCAR_INPUT_BUCKET=scar-in"),
        "{env}"
    );
    assert!(env.contains("EVENT_TIME=2026-11-27T15:00:00.000Z"), "{env}");
    assert!(
        !env.contains("registry-secret-marker") && !env.contains(function.s3.secret_key()),
        "a secret leaked:\n{env}"
    );
    let event: serde_json::Value =
        serde_json::from_slice(&function.s3.get_object(BUCKET, "output/event.json").unwrap())
            .unwrap();
    assert_eq!(event["Records"][0]["s3"]["object"]["key"], "a.txt");
}

#[test]
fn aws_credentials_reach_the_container_only_when_passed() {
    let function = Function::spec()
        .env("SCAR_SCRIPT", "env > \"$SCAR_OUTPUT_DIR/env.txt\"")
        .env("SCAR_PASS_AWS_CREDENTIALS", "true")
        .start();
    function.s3.put_object(BUCKET, "a.txt", b"x");
    let result = function.invoke_s3(&["a.txt"]);
    assert_eq!(result.status, 200, "{}\n{}", result.body, function.log());
    let env = String::from_utf8(function.s3.get_object(BUCKET, "output/env.txt").unwrap()).unwrap();
    assert!(
        env.contains(&format!(
            "AWS_SECRET_ACCESS_KEY={}",
            function.s3.secret_key()
        )),
        "{env}"
    );
    assert!(env.contains("AWS_REGION=us-east-1"), "{env}");
}

#[test]
fn a_script_reading_every_process_environment_through_proc_finds_no_secret() {
    let script = r#"
for f in /proc/[0-9]*/environ /proc/[0-9]*/task/*/environ; do cat "$f" 2>/dev/null; done | tr '\0' '\n' > /tmp/seen.txt
for f in /proc/[0-9]*/cmdline; do cat "$f" 2>/dev/null; echo; done > /tmp/cmdlines.txt
grep -c -e registry-secret-marker -e aws-secret-probe-7f3a /tmp/seen.txt > "$SCAR_OUTPUT_DIR/hits.txt"
grep -c bootstrap /tmp/cmdlines.txt > "$SCAR_OUTPUT_DIR/bootstrap-visible.txt"
ls /proc > "$SCAR_OUTPUT_DIR/proc.txt"
exit 0
"#;
    let probe = "aws-secret-probe-7f3a";
    let function = Function::spec()
        .env("SCAR_SCRIPT", script)
        .env("SCAR_REGISTRY_USERNAME", "someone")
        .env("SCAR_REGISTRY_PASSWORD", "registry-secret-marker")
        .env("AWS_SESSION_TOKEN", probe)
        .start();
    function.s3.put_object(BUCKET, "a.txt", b"x");
    let result = function.invoke_s3(&["a.txt"]);
    assert_eq!(result.status, 200, "{}\n{}", result.body, function.log());
    let hits =
        String::from_utf8(function.s3.get_object(BUCKET, "output/hits.txt").unwrap()).unwrap();
    // Neither the bootstrap's AWS_SESSION_TOKEN nor the registry password (nor SCAR_SCRIPT,
    // which spells both) may be readable from any process the container can see.
    assert_eq!(
        hits.trim(),
        "0",
        "the container read the bootstrap's secrets"
    );
    let visible = String::from_utf8(
        function
            .s3
            .get_object(BUCKET, "output/bootstrap-visible.txt")
            .unwrap(),
    )
    .unwrap();
    println!(
        "bootstrap visible in the container's /proc: {} line(s)",
        visible.trim()
    );
    let environ = std::fs::read(format!("/proc/{}/environ", function.pid())).unwrap_or_default();
    assert!(
        String::from_utf8_lossy(&environ).contains("registry-secret-marker"),
        "sanity: the bootstrap does hold the secret"
    );
}

#[test]
fn a_script_that_exits_3_reports_script_failed_with_its_outputs_uploaded() {
    let script =
        "echo half > \"$SCAR_OUTPUT_DIR/half.txt\"; echo 'boom: cannot decode' >&2; exit 3";
    let function = Function::spec().env("SCAR_SCRIPT", script).start();
    function.s3.put_object(BUCKET, "a.txt", b"x");
    let result = function.invoke_s3(&["a.txt"]);
    assert_eq!(
        result.error_type.as_deref(),
        Some("Scar.ScriptFailed"),
        "{}\n{}",
        result.body,
        function.log()
    );
    let message = result.error_message().unwrap_or_default();
    assert!(message.contains("code 3"), "{message}");
    assert!(message.contains("boom: cannot decode"), "{message}");
    assert!(
        message.contains("s3://scar-in/output/half.txt"),
        "{message}"
    );
    assert_eq!(
        function.s3.get_object(BUCKET, "output/half.txt").as_deref(),
        Some(&b"half\n"[..])
    );
}

#[test]
fn a_script_past_the_deadline_is_stopped_with_its_partial_output_uploaded_and_the_process_serves_on()
 {
    // The emulator's deadline is 600 s away: a margin of 595 s stops the container after ~5 s.
    let script = "if [ \"$STORAGE_OBJECT_KEY\" = quick.txt ]; then echo ok; exit 0; fi
echo partial > \"$SCAR_OUTPUT_DIR/partial.txt\"
sleep 7919 &
sleep 7919";
    let function = Function::spec()
        .env("SCAR_SCRIPT", script)
        .env("SCAR_TIMEOUT_MARGIN", "595")
        .start();
    function.s3.put_object(BUCKET, "slow.txt", b"x");
    function.s3.put_object(BUCKET, "quick.txt", b"x");
    let result = function.invoke_s3(&["slow.txt"]);
    assert_eq!(
        result.error_type.as_deref(),
        Some("Scar.Timeout"),
        "{}\n{}",
        result.body,
        function.log()
    );
    let message = result.error_message().unwrap_or_default();
    assert!(
        message.contains("s3://scar-in/output/partial.txt"),
        "{message}"
    );
    assert_eq!(
        function
            .s3
            .get_object(BUCKET, "output/partial.txt")
            .as_deref(),
        Some(&b"partial\n"[..])
    );
    let left: Vec<String> = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
        .filter(|c| c.contains("sleep 7919"))
        .collect();
    assert!(
        left.is_empty(),
        "processes left after the timeout: {left:?}"
    );
    let next = function.invoke_s3(&["quick.txt"]);
    assert_eq!(
        next.status,
        200,
        "the process did not serve on: {}\n{}",
        next.body,
        function.log()
    );
}

#[test]
fn a_function_without_an_image_fails_init_and_exits_non_zero() {
    let mut function = Function::spec().without("SCAR_IMAGE").start();
    let status = function
        .wait_exit(Duration::from_secs(60))
        .expect("the bootstrap kept running without SCAR_IMAGE");
    assert!(!status.success(), "exit status {status}");
    let log = function.log();
    assert!(
        log.contains("SCAR_IMAGE is not set: set it to an image reference such as alpine:3.20"),
        "{log}"
    );
    assert!(log.contains("Scar.ConfigError"), "{log}");
    assert!(
        !log.contains("could not report the configuration error"),
        "the init error was not accepted:\n{log}"
    );
}

#[test]
fn an_unknown_engine_fails_init_naming_the_variable_and_its_values() {
    let mut function = Function::spec().env("SCAR_ENGINE", "fast").start();
    let status = function
        .wait_exit(Duration::from_secs(60))
        .expect("the bootstrap kept running");
    assert!(!status.success());
    assert!(
        function
            .log()
            .contains("SCAR_ENGINE=fast is not an engine: use auto, namespace or preload"),
        "{}",
        function.log()
    );
}

#[test]
fn a_missing_input_object_reports_an_input_error() {
    let function = Function::spec()
        .env("SCAR_SCRIPT", "cat \"$SCAR_INPUT_FILE\"")
        .start();
    let result = function.invoke_s3(&["not-there.txt"]);
    assert_eq!(
        result.error_type.as_deref(),
        Some("Scar.InputError"),
        "{}\n{}",
        result.body,
        function.log()
    );
    let message = result.error_message().unwrap_or_default();
    assert!(
        message.contains("s3://scar-in/not-there.txt does not exist"),
        "{message}"
    );
}

#[test]
fn keys_with_spaces_plus_signs_and_non_ascii_are_decoded() {
    let function = Function::spec()
        .env(
            "SCAR_SCRIPT",
            "cp \"$SCAR_INPUT_FILE\" \"$SCAR_OUTPUT_DIR/\"",
        )
        .start();
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
    let function = Function::spec()
        .env(
            "SCAR_SCRIPT",
            "cp \"$SCAR_INPUT_FILE\" \"$SCAR_OUTPUT_DIR/\"",
        )
        .start();
    function.s3.put_object(BUCKET, "output/result.txt", b"r");
    let result = function.invoke_s3(&["output/result.txt"]);
    assert_eq!(result.status, 200, "{}\n{}", result.body, function.log());
    assert_eq!(result.body["skipped"][0], "s3://scar-in/output/result.txt");
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
        .env(
            "SCAR_SCRIPT",
            "cp \"$SCAR_INPUT_FILE\" \"$SCAR_OUTPUT_DIR/\"",
        )
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
    assert_eq!(
        result.error_type.as_deref(),
        Some("Scar.InputError"),
        "{}",
        result.body
    );
    assert!(
        result
            .error_message()
            .unwrap_or_default()
            .contains("SCAR_ALLOW_INVOKE_SCRIPT")
    );
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
    let function = Function::spec()
        .env(
            "SCAR_SCRIPT",
            "cp \"$SCAR_INPUT_FILE\" \"$SCAR_OUTPUT_DIR/copy.bin\"",
        )
        .start();
    let source = tempfile::NamedTempFile::new().unwrap();
    write_big_file(source.path(), mib);
    function.s3.put_file(BUCKET, "big.bin", source.path());
    let result = function.invoke(&s3_event(vec![s3_record(BUCKET, "big.bin", mib << 20)]));
    assert_eq!(result.status, 200, "{}\n{}", result.body, function.log());
    let stored = function.s3.root().join(BUCKET).join("output/copy.bin");
    assert_eq!(
        std::fs::metadata(&stored).unwrap().len(),
        (mib as u64) << 20
    );
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
fn fifty_invocations_in_one_process_leave_no_files_directories_or_memory_behind() {
    let function = Function::spec()
        .env(
            "SCAR_SCRIPT",
            "cp \"$SCAR_INPUT_FILE\" \"$SCAR_OUTPUT_DIR/\"",
        )
        .start();
    function.s3.put_object(BUCKET, "small.txt", &[b'x'; 1024]);
    // Warm up: the image, the engine probe, the S3 connection pool.
    for _ in 0..5 {
        assert_eq!(
            function.invoke_s3(&["small.txt"]).status,
            200,
            "{}",
            function.log()
        );
    }
    let fds_before = function.open_fds();
    let rss_before = function.status_kib("VmRSS");
    let mut request_ids = Vec::new();
    for _ in 0..50 {
        let result = function.invoke_s3(&["small.txt"]);
        assert_eq!(result.status, 200, "{}\n{}", result.body, function.log());
        request_ids.push(response_text(&result.body, "requestId").to_owned());
    }
    let fds_after = function.open_fds();
    let rss_after = function.status_kib("VmRSS");
    println!("open files {fds_before} -> {fds_after}, RSS {rss_before} KiB -> {rss_after} KiB");
    let left: Vec<_> = request_ids
        .iter()
        .filter(|id| Path::new("/tmp").join(id).exists())
        .collect();
    assert!(
        left.is_empty(),
        "request directories left in /tmp: {left:?}"
    );
    // Connections to S3 are pooled; a couple may come and go, but not one per invocation.
    assert!(
        fds_after <= fds_before + 2,
        "open files grew from {fds_before} to {fds_after}"
    );
    assert!(
        rss_after <= rss_before + 8 * 1024,
        "RSS grew from {rss_before} KiB to {rss_after} KiB"
    );
}

#[test]
fn under_simulated_lambda_the_preload_engine_runs_the_script_and_the_bootstrap_stays_unreadable() {
    // No PID namespace here: the container's processes run as the bootstrap's uid (993) and see
    // it in /proc. Only PR_SET_DUMPABLE=0 keeps its environment (credentials) out of reach.
    let script = r#"cp "$SCAR_INPUT_FILE" "$SCAR_OUTPUT_DIR/"
id -u > "$SCAR_OUTPUT_DIR/uid.txt"
for d in /proc/[0-9]*; do
  if grep -q bootstrap "$d/cmdline" 2>/dev/null; then echo "${d#/proc/}" >> /tmp/bootstrap-pids; fi
done
sort -u /tmp/bootstrap-pids | wc -l > "$SCAR_OUTPUT_DIR/visible.txt"
for p in $(cat /tmp/bootstrap-pids); do cat /proc/$p/environ 2>/dev/null; head -c 1 /proc/$p/mem 2>/dev/null; done | tr '\0' '\n' | grep -c -e registry-secret-marker -e aws-secret-probe-7f3a > "$SCAR_OUTPUT_DIR/hits.txt"
exit 0
"#;
    let Some(function) = Function::spec()
        .env("SCAR_SCRIPT", script)
        .env("SCAR_REGISTRY_USERNAME", "someone")
        .env("SCAR_REGISTRY_PASSWORD", "registry-secret-marker")
        .env("AWS_SESSION_TOKEN", "aws-secret-probe-7f3a")
        .start_simulated()
    else {
        return;
    };
    function.s3.put_object(BUCKET, "lambda.txt", b"on lambda");
    let result = function.invoke_s3(&["lambda.txt"]);
    assert_eq!(result.status, 200, "{}\n{}", result.body, function.log());
    assert_eq!(
        response_text(&result.body, "engine"),
        "preload",
        "{}",
        result.body
    );
    assert_eq!(
        function
            .s3
            .get_object(BUCKET, "output/lambda.txt")
            .as_deref(),
        Some(&b"on lambda"[..])
    );
    let get = |key: &str| {
        String::from_utf8(function.s3.get_object(BUCKET, key).unwrap())
            .unwrap()
            .trim()
            .to_owned()
    };
    assert_eq!(get("output/uid.txt"), "993");
    assert_ne!(
        get("output/visible.txt"),
        "0",
        "the bootstrap must be visible in /proc for this test to mean anything"
    );
    assert_eq!(
        get("output/hits.txt"),
        "0",
        "the container read the bootstrap's environment"
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
