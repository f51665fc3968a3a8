//! End to end, the bootstrap's failures and timeouts: a failing script, a script past the
//! deadline, configuration errors at init and a missing input, each reported with a clear error
//! type and message and with the outputs written so far uploaded.
//!
//! Run: `cargo test -p scar-e2e --test bootstrap bootstrap_failures::` (as `bootstrap.rs`).

use std::time::Duration;

use crate::bootstrap_support::{BUCKET, Function};

#[test]
fn a_script_that_exits_3_reports_script_failed_with_its_outputs_uploaded() {
    let script =
        "echo half > \"$SCAR_OUTPUT_DIR/half.txt\"; echo 'boom: cannot decode' >&2; exit 3";
    let function = Function::spec().env("SCAR_SCRIPT", script).start();
    function.s3.put_object(BUCKET, "a.txt", b"x");
    let result = function.invoke_s3(&["a.txt"]);
    let message = function.expect_error(&result, "Scar.ScriptFailed");
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
    let message = function.expect_error(&result, "Scar.Timeout");
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
    let message = function.expect_error(&result, "Scar.InputError");
    assert!(
        message.contains("s3://scar-in/not-there.txt does not exist"),
        "{message}"
    );
}
