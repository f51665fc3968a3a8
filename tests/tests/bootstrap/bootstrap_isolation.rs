//! End to end, isolation: the container sees exactly its designed environment and never the
//! function's secrets (also under the simulated Lambda), and a long-lived function process keeps
//! nothing from one invocation to the next (files, directories, descriptors, memory).
//!
//! Run: `cargo test -p scar-e2e --test bootstrap bootstrap_isolation::` (as `bootstrap.rs`).

use std::path::Path;

use crate::bootstrap_support::{BUCKET, COPY_SCRIPT, Function, response_text};

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
        "SCAR_INPUT_KEY",
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

/// Dumps, from every process the container can see, `/proc/<pid>/environ`, `cmdline` and the
/// writable memory `maps` lists (read through `/proc/<pid>/mem`), and every file under `/tmp`
/// but its input (the bootstrap's event file, request directory, image cache), then counts the
/// lines holding one of the patterns of its input file. The patterns are read only after the
/// dumps, so no process of the container holds them before. A control process started with a
/// fresh marker must be found in its own environ and memory: the dump reads what is readable.
/// Outputs: `hits.txt` (`<dump> <count> <comm>` per dump with a hit), `control.txt`
/// (`<environ hits> <mem hits>`), `visible.txt` (pids whose cmdline names the bootstrap).
const PROC_DUMP_SCRIPT: &str = r#"
mark="ctl-$$-$(date +%s)"
printf 'sleep 60\n' > /tmp/control.sh
# The image's busybox by its own path: a static program under the preload engine sees the
# host's paths, and the simulated Lambda's root has no /bin/sh.
bb=$(readlink /proc/$$/exe)
CONTROL_MARK="$mark" "$bb" sh /tmp/control.sh &
ctl=$!
sleep 1
mkdir -p /tmp/dump
for d in /proc/[0-9]*; do
  p=${d#/proc/}
  cat "$d/environ" > /tmp/dump/$p.environ 2>/dev/null
  cat "$d/cmdline" > /tmp/dump/$p.cmdline 2>/dev/null
  cat "$d/comm" > /tmp/dump/$p.comm 2>/dev/null
  cat "$d/maps" 2>/dev/null | while read range perms rest; do
    case "$perms" in rw*) ;; *) continue ;; esac
    start=${range%-*}; end=${range#*-}
    [ ${#end} -le 12 ] || continue
    dd if="$d/mem" bs=4096 skip=$((0x$start / 4096)) count=$(((0x$end - 0x$start) / 4096)) 2>/dev/null
  done > /tmp/dump/$p.mem
done
kill $ctl
pat="$SCAR_INPUT_FILE"
for f in /tmp/dump/*.environ /tmp/dump/*.cmdline /tmp/dump/*.mem; do
  n=$(tr '\0' '\n' < "$f" | grep -c -F -f "$pat")
  [ "$n" = 0 ] || echo "$f $n $(cat "${f%.*}.comm" 2>/dev/null)"
done > "$SCAR_OUTPUT_DIR/hits.txt"
for f in "$SCAR_EVENT_FILE" $(find /tmp -type f 2>/dev/null | grep -v -e '^/tmp/dump/' -e "^$SCAR_INPUT_DIR/"); do
  n=$(tr '\0' '\n' < "$f" | grep -c -F -f "$pat")
  [ "$n" = 0 ] || echo "$f $n file"
done >> "$SCAR_OUTPUT_DIR/hits.txt"
echo "$(tr '\0' '\n' < /tmp/dump/$ctl.environ | grep -c "$mark") $(tr '\0' '\n' < /tmp/dump/$ctl.mem | grep -c "$mark")" > "$SCAR_OUTPUT_DIR/control.txt"
grep -l bootstrap /tmp/dump/*.cmdline | wc -l > "$SCAR_OUTPUT_DIR/visible.txt"
"#;

/// The registry password and the session token the secrecy tests give the function.
const REGISTRY_SECRET: &str = "registry-secret-marker";
const SESSION_SECRET: &str = "aws-secret-probe-7f3a";

/// Run [`PROC_DUMP_SCRIPT`] in `function` (its secrets as the patterns) and check that no
/// secret was found, that the control was, and that the bootstrap's log holds no secret either.
/// Returns how many processes the container saw whose command line names the bootstrap, and
/// the response.
fn dump_finds_no_secret(
    function: &crate::bootstrap_support::Function,
) -> (usize, serde_json::Value) {
    let secrets = [
        REGISTRY_SECRET,
        SESSION_SECRET,
        function.s3.secret_key(),
        function.s3.access_key(),
    ];
    function
        .s3
        .put_object(BUCKET, "patterns.txt", secrets.join("\n").as_bytes());
    let result = function.invoke_s3(&["patterns.txt"]);
    assert_eq!(result.status, 200, "{}\n{}", result.body, function.log());
    let get = |key: &str| {
        String::from_utf8(
            function
                .s3
                .get_object(BUCKET, key)
                .unwrap_or_else(|| panic!("{key} uploaded: {}", function.log())),
        )
        .unwrap()
        .trim()
        .to_owned()
    };
    let control: Vec<u32> = get("output/control.txt")
        .split_whitespace()
        .map(|n| n.parse().unwrap_or(0))
        .collect();
    assert!(
        control.len() == 2 && control.iter().all(|&n| n > 0),
        "the control process's marker was not found in its environ and memory ({control:?}): the dump reads nothing, so it proves nothing"
    );
    assert_eq!(
        get("output/hits.txt"),
        "",
        "the container read a secret (dump, hits, process name)"
    );
    let log = function.log();
    for secret in secrets {
        assert!(
            !log.contains(secret),
            "the bootstrap's log holds a secret:\n{log}"
        );
    }
    (get("output/visible.txt").parse().unwrap_or(0), result.body)
}

#[test]
fn a_script_reading_every_process_environment_through_proc_finds_no_secret() {
    let function = Function::spec()
        .env("SCAR_SCRIPT", PROC_DUMP_SCRIPT)
        .env("SCAR_REGISTRY_USERNAME", "someone")
        .env("SCAR_REGISTRY_PASSWORD", REGISTRY_SECRET)
        .env("AWS_SESSION_TOKEN", SESSION_SECRET)
        .env("SCAR_LOG", "trace")
        .start();
    let (visible, _) = dump_finds_no_secret(&function);
    println!("bootstrap visible in the container's /proc: {visible} process(es)");
    let environ = std::fs::read(format!("/proc/{}/environ", function.pid())).unwrap_or_default();
    assert!(
        String::from_utf8_lossy(&environ).contains(REGISTRY_SECRET),
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
    // No PID namespace here and prctl refused: the container's processes run as the bootstrap's
    // uid (993) and see it in /proc. Only its re-execution from an execute-only copy keeps its
    // environment and memory (credentials) out of reach.
    let function = Function::spec()
        .env(
            "SCAR_SCRIPT",
            &format!("{PROC_DUMP_SCRIPT}\nid -u > \"$SCAR_OUTPUT_DIR/uid.txt\""),
        )
        .env("SCAR_REGISTRY_USERNAME", "someone")
        .env("SCAR_REGISTRY_PASSWORD", REGISTRY_SECRET)
        .env("AWS_SESSION_TOKEN", SESSION_SECRET)
        .env("SCAR_LOG", "trace")
        .start_simulated();
    let (visible, body) = dump_finds_no_secret(&function);
    assert_eq!(response_text(&body, "engine"), "preload", "{body}");
    assert_eq!(
        function.s3.get_object(BUCKET, "output/uid.txt").as_deref(),
        Some(&b"993\n"[..])
    );
    assert_ne!(
        visible, 0,
        "the bootstrap must be visible in /proc for this test to mean anything"
    );
    let log = function.log();
    assert!(
        log.contains("non-dumpable: re-executed from an execute-only copy"),
        "{log}"
    );
    if let Some(line) = log.lines().find(|l| l.contains("non-dumpable:")) {
        println!("{line}");
    }
}
