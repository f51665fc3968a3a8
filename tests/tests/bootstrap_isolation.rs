//! End to end, isolation: the container sees exactly its designed environment and never the
//! function's secrets (also under the simulated Lambda), and a long-lived function process keeps
//! nothing from one invocation to the next (files, directories, descriptors, memory).
//!
//! Run: `cargo test -p scar-e2e --test bootstrap_isolation` (as `bootstrap.rs`).

mod bootstrap_support;

use std::path::Path;

use bootstrap_support::{BUCKET, COPY_SCRIPT, Function, response_text};

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
fn fifty_invocations_in_one_process_leave_no_files_directories_or_memory_behind() {
    let function = Function::spec().env("SCAR_SCRIPT", COPY_SCRIPT).start();
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
    let function = Function::spec()
        .env("SCAR_SCRIPT", script)
        .env("SCAR_REGISTRY_USERNAME", "someone")
        .env("SCAR_REGISTRY_PASSWORD", "registry-secret-marker")
        .env("AWS_SESSION_TOKEN", "aws-secret-probe-7f3a")
        .start_simulated();
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
