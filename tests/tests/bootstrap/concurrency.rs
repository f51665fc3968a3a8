//! End to end: Lambda Managed Instances (issue #19). With `AWS_LAMBDA_MAX_CONCURRENCY=n` the
//! bootstrap polls `/next` `n` times at once and runs the invocations side by side; the
//! `cargo lambda` emulator answers concurrent long polls with distinct invocations (see
//! `scar_e2e::runtime_proxy`), so these tests drive the real bootstrap with concurrent invokes.
//!
//! Facts checked, never timings: the runs overlap, each has its own request directory and its
//! own input, the image is pulled once, every container line is logged with its own request
//! id, a bad `AWS_LAMBDA_MAX_CONCURRENCY` fails init naming it, and an invocation whose upload
//! hangs past its deadline is answered `Scar.Timeout` by the bootstrap while the other loops
//! serve on.
//!
//! Run: `cargo test -p scar-e2e --test bootstrap concurrency::` (needs `busybox-static` and the
//! PyPI package `cargo-lambda`).

use std::time::Duration;

use scar_e2e::Invocation;
use scar_e2e::fault::{Fault, FaultProxy};

use crate::bootstrap_support::{BUCKET, COPY_SCRIPT, Function, response_text};

/// Invocations served at once in these tests.
const CONCURRENCY: usize = 4;

/// Records when it ran (`/proc/uptime`: busybox's `date` has no `%N`), where its request
/// directory is and what its input held, then sleeps 2 s in the middle.
const TIMED_SCRIPT: &str = r#"name=$(basename "$SCAR_INPUT_FILE")
start=$(cut -d' ' -f1 /proc/uptime)
sleep 2
end=$(cut -d' ' -f1 /proc/uptime)
printf '%s %s %s %s %s\n' "$start" "$end" "$REQUEST_ID" "$(dirname "$SCAR_OUTPUT_DIR")" "$(cat "$SCAR_INPUT_FILE")" > "$SCAR_OUTPUT_DIR/$name.run"
"#;

/// Invoke `function` once per key, all at once, each with an S3 event of its key.
fn invoke_all(function: &Function, keys: &[String]) -> Vec<Invocation> {
    std::thread::scope(|scope| {
        let calls: Vec<_> = keys
            .iter()
            .map(|key| scope.spawn(move || function.invoke_s3(&[key.as_str()])))
            .collect();
        calls
            .into_iter()
            .map(|call| call.join().expect("an invoking thread panicked"))
            .collect()
    })
}

/// One run's record written by [`TIMED_SCRIPT`].
struct Run {
    start: f64,
    end: f64,
    request_id: String,
    request_dir: String,
    input: String,
}

fn read_run(function: &Function, key: &str) -> Run {
    let stored = function
        .s3
        .get_object(BUCKET, &format!("output/{key}.run"))
        .unwrap_or_else(|| panic!("no output/{key}.run\n{}", function.log()));
    let text = String::from_utf8_lossy(&stored).trim().to_owned();
    let fields: Vec<&str> = text.splitn(5, ' ').collect();
    let [start, end, request_id, request_dir, input] = fields[..] else {
        panic!("output/{key}.run is not 5 fields: {text:?}");
    };
    let seconds = |field: &str| -> f64 {
        field
            .parse()
            .unwrap_or_else(|_| panic!("not a time in output/{key}.run: {text:?}"))
    };
    Run {
        start: seconds(start),
        end: seconds(end),
        request_id: request_id.to_owned(),
        request_dir: request_dir.to_owned(),
        input: input.to_owned(),
    }
}

#[test]
fn four_invocations_run_side_by_side_each_in_its_own_directory_with_one_pull() {
    let function = Function::spec()
        .env("SCAR_SCRIPT", TIMED_SCRIPT)
        .env("AWS_LAMBDA_MAX_CONCURRENCY", &CONCURRENCY.to_string())
        // The four invocations race for the image: the pull must still happen once.
        .env("SCAR_PREFETCH", "false")
        .start();
    let keys: Vec<String> = (1..=CONCURRENCY).map(|i| format!("in-{i}.txt")).collect();
    for (i, key) in keys.iter().enumerate() {
        function
            .s3
            .put_object(BUCKET, key, format!("payload-{}", i + 1).as_bytes());
    }
    let results = invoke_all(&function, &keys);

    let mut runs = Vec::new();
    for (key, result) in keys.iter().zip(&results) {
        assert_eq!(
            result.status,
            200,
            "{key}: {}\n{}",
            result.body,
            function.log()
        );
        let run = read_run(&function, key);
        assert_eq!(
            run.request_id,
            response_text(&result.body, "requestId"),
            "{key} ran under another invocation's request id"
        );
        let number = key.trim_start_matches("in-").trim_end_matches(".txt");
        assert_eq!(
            run.input,
            format!("payload-{number}"),
            "{key} got another input"
        );
        runs.push(run);
    }
    // The four intervals share an instant: the last start comes before the first end.
    let last_start = runs.iter().map(|r| r.start).fold(f64::MIN, f64::max);
    let first_end = runs.iter().map(|r| r.end).fold(f64::MAX, f64::min);
    let intervals: Vec<(f64, f64)> = runs.iter().map(|r| (r.start, r.end)).collect();
    assert!(
        last_start < first_end,
        "the runs did not overlap (uptime intervals {intervals:?})\n{}",
        function.log()
    );
    let mut ids: Vec<&str> = runs.iter().map(|r| r.request_id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), CONCURRENCY, "request ids shared: {ids:?}");
    let mut dirs: Vec<&str> = runs.iter().map(|r| r.request_dir.as_str()).collect();
    dirs.sort_unstable();
    dirs.dedup();
    assert_eq!(
        dirs.len(),
        CONCURRENCY,
        "request directories shared: {dirs:?}"
    );
    for run in &runs {
        assert!(
            run.request_dir.contains(&run.request_id),
            "the request directory {} is not the one of {}",
            run.request_dir,
            run.request_id
        );
    }
    let log = function.log();
    // One line with the phase per pull (rootfs logs its own "image ready" beside it).
    let pulls = log.lines().filter(|l| l.contains("phase=\"pull\"")).count();
    assert_eq!(pulls, 1, "the image was prepared {pulls} times:\n{log}");
}

#[test]
fn json_logs_keep_each_container_line_with_the_request_id_that_printed_it() {
    let script = r#"for i in 1 2 3 4 5; do
  echo "$REQUEST_ID"
  echo "$REQUEST_ID" >&2
  sleep 0.2
done
"#;
    let function = Function::spec()
        .env("SCAR_SCRIPT", script)
        .env("SCAR_LOG_FORMAT", "json")
        .env("AWS_LAMBDA_MAX_CONCURRENCY", &CONCURRENCY.to_string())
        .start();
    let keys: Vec<String> = (1..=CONCURRENCY).map(|i| format!("log-{i}.txt")).collect();
    for key in &keys {
        function.s3.put_object(BUCKET, key, b"x");
    }
    let results = invoke_all(&function, &keys);
    let mut request_ids = Vec::new();
    for result in &results {
        assert_eq!(result.status, 200, "{}\n{}", result.body, function.log());
        request_ids.push(response_text(&result.body, "requestId").to_owned());
    }
    let log = function.log();
    let container_lines: Vec<serde_json::Value> = log
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .filter(|l: &serde_json::Value| l.get("stream").is_some())
        .collect();
    // 5 lines on each stream from each of the four invocations.
    assert_eq!(
        container_lines.len(),
        CONCURRENCY * 10,
        "container lines:\n{log}"
    );
    for line in &container_lines {
        assert_eq!(
            line["request_id"], line["message"],
            "a container line logged under another request id: {line}"
        );
    }
    for id in &request_ids {
        let own = container_lines
            .iter()
            .filter(|l| l["request_id"] == id.as_str())
            .count();
        assert_eq!(own, 10, "{id} has {own} container lines:\n{log}");
    }
}

fn expect_concurrency_refused(value: &str) {
    let mut function = Function::spec()
        .env("AWS_LAMBDA_MAX_CONCURRENCY", value)
        .start();
    let status = function
        .wait_exit(Duration::from_secs(60))
        .unwrap_or_else(|| panic!("AWS_LAMBDA_MAX_CONCURRENCY={value} was accepted"));
    assert!(!status.success(), "exit status {status}");
    let log = function.log();
    let error = log
        .lines()
        .find(|l| l.contains("Scar.ConfigError"))
        .unwrap_or_else(|| panic!("no Scar.ConfigError for {value:?}:\n{log}"));
    assert!(
        log.contains(&format!("AWS_LAMBDA_MAX_CONCURRENCY={value}"))
            || error.contains("AWS_LAMBDA_MAX_CONCURRENCY"),
        "the error does not name the variable:\n{log}"
    );
    assert!(
        !log.contains("could not report the configuration error"),
        "the init error was not accepted:\n{log}"
    );
}

#[test]
fn a_max_concurrency_of_zero_or_not_a_number_is_a_config_error_naming_the_variable() {
    expect_concurrency_refused("0");
    expect_concurrency_refused("abc");
}

#[test]
fn an_upload_hanging_past_the_deadline_is_answered_timeout_while_the_other_loop_serves() {
    // Uploads of `output/hang*` stall far beyond the deadline; every other request goes through.
    let s3_tap = FaultProxy::start_deferred(Fault::Stall { secs: 300 }, "output/hang", 100);
    let function = Function::spec()
        .env("SCAR_SCRIPT", COPY_SCRIPT)
        .env("AWS_LAMBDA_MAX_CONCURRENCY", "2")
        .env("SCAR_TIMEOUT_MARGIN", "1")
        .env("AWS_ENDPOINT_URL_S3", &format!("http://{}", s3_tap.host()))
        .through_proxy()
        .start();
    let s3_host = function.s3.endpoint();
    s3_tap.set_upstream(s3_host.trim_start_matches("http://"));
    let proxy = function.proxy.as_ref().expect("proxied");
    function.s3.put_object(BUCKET, "hang.txt", b"stuck");
    function.s3.put_object(BUCKET, "fine.txt", b"fine");
    // Warm: the image is ready before the short deadlines start.
    let warm = function.invoke_s3(&["fine.txt"]);
    assert_eq!(warm.status, 200, "{}\n{}", warm.body, function.log());

    // The emulator's deadline is a constant 600 s: the proxy sends a real one.
    let deadline = Duration::from_secs(8);
    proxy.set_deadline(Some(deadline));
    let (hung, served) = std::thread::scope(|scope| {
        let hung = scope.spawn(|| function.invoke_s3(&["hang.txt"]));
        // Let the hanging invocation take one loop first.
        std::thread::sleep(Duration::from_secs(1));
        let served = function.invoke_s3(&["fine.txt"]);
        (hung.join().expect("invoking thread"), served)
    });
    assert_eq!(
        served.status,
        200,
        "the other loop did not serve while one upload hung: {}\n{}",
        served.body,
        function.log()
    );
    let message = function.expect_error(&hung, "Scar.Timeout");
    assert!(
        message.contains("deadline"),
        "the timeout does not say what passed: {message}"
    );
    assert!(
        s3_tap.injected() >= 1,
        "the upload of output/hang.txt never reached the stall"
    );

    // Both loops are still serving.
    proxy.set_deadline(None);
    let keys = ["fine.txt".to_owned(), "fine.txt".to_owned()];
    for after in invoke_all(&function, &keys) {
        assert_eq!(after.status, 200, "{}\n{}", after.body, function.log());
    }
}
