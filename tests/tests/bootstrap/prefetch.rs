//! End to end: `SCAR_PREFETCH` against a registry that stalls. The `bootstrap` starts the pull
//! during init, waits for it at most 9 s (Lambda ends an init phase at 10 s), then polls the
//! Runtime API while the pull goes on; the first invocation waits for that same pull. A
//! prefetch that fails does not fail init: the first invocation reports `Scar.ImageError`.
//!
//! The registry is the real CNCF registry behind `scar_e2e::fault`'s proxy, which holds the
//! manifest request for [`STALL`]; a second proxy in front of the Runtime API emulator records
//! when the bootstrap's first `GET /runtime/invocation/next` arrives, i.e. when init ended.
//! Nothing is timed tightly: the stall outlasts the 9 s cap by 13 s.
//!
//! Run: `cargo test -p scar-e2e --test bootstrap prefetch::` (as root; needs docker-registry,
//! busybox-static and the PyPI package cargo-lambda). About 25 s per test.

use std::time::{Duration, Instant};

use crate::bootstrap_support::{BUCKET, Function};
use scar_e2e::Registry;
use scar_e2e::fault::{Fault, FaultProxy, Seen};
use scar_e2e::oci::{self, Pusher};
use scar_e2e::runtime_api::DEFAULT_FUNCTION;

/// How long the proxy holds the registry's manifest: well past the 9 s the init phase waits.
const STALL: Duration = Duration::from_secs(22);
/// What the bootstrap waits for the prefetch during init (`PREFETCH_INIT_WAIT` in main.rs).
const INIT_CAP: Duration = Duration::from_secs(9);
/// Repository and tag of the test image.
const REPO: &str = "scar/busybox";
/// A file only the test image has; the script copies it to the output.
const MARKER: &[u8] = b"pulled from the registry\n";
/// Copies the image's marker to an output named after the input.
const SCRIPT: &str = r#"cat /etc/scar-marker > "$SCAR_OUTPUT_DIR/$(basename "$SCAR_INPUT_FILE")""#;

fn test_image() -> oci::Image {
    oci::busybox_image(&[("etc/scar-marker", MARKER)])
}

/// The first request whose line contains `pattern`, waiting up to `timeout` for it.
fn wait_for_request(proxy: &FaultProxy, pattern: &str, timeout: Duration) -> Option<Seen> {
    let until = Instant::now() + timeout;
    loop {
        if let Some(seen) = proxy.seen().into_iter().find(|s| s.line.contains(pattern)) {
            return Some(seen);
        }
        if Instant::now() > until {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn init_stops_waiting_for_a_stalled_prefetch_and_the_first_invocation_waits_for_the_same_pull() {
    let registry = Registry::start();
    Pusher::new(&registry.url(), None).image(REPO, "v1", &test_image());
    let stalled = FaultProxy::start(
        &registry.host(),
        Fault::Stall {
            secs: STALL.as_secs(),
        },
        "/manifests/",
        1,
    );
    // The emulator's port is known only once the function is started: the tap waits for it.
    let tap = FaultProxy::tap_deferred();
    let function = Function::spec()
        .env("SCAR_IMAGE", &format!("{}/{REPO}:v1", stalled.host()))
        .env("SCAR_INSECURE_REGISTRIES", &stalled.host())
        .env("SCAR_PREFETCH", "true")
        .env("SCAR_SCRIPT", SCRIPT)
        .env(
            "AWS_LAMBDA_RUNTIME_API",
            &format!("http://{}/.rt/{DEFAULT_FUNCTION}", tap.host()),
        )
        .start();
    let emulator = function.api.url();
    tap.set_upstream(emulator.trim_start_matches("http://"));

    // The prefetch reaches the registry during init ...
    let manifest = wait_for_request(&stalled, "/manifests/", Duration::from_secs(120))
        .unwrap_or_else(|| {
            panic!(
                "the prefetch never asked for the manifest\n{}",
                function.log()
            )
        });
    assert!(manifest.faulted, "{manifest:?}");
    let stall_ends = manifest.at + STALL;
    // ... and init ends (the first poll of the Runtime API) while the manifest is still held.
    let first_poll = wait_for_request(&tap, "/runtime/invocation/next", STALL + INIT_CAP * 4)
        .unwrap_or_else(|| {
            panic!(
                "the bootstrap never polled for an invocation\n{}",
                function.log()
            )
        });
    let init_waited = first_poll.at.saturating_duration_since(manifest.at);
    println!(
        "prefetch: init ended {:.2} s after the pull reached the registry (cap {} s, stall {} s)",
        init_waited.as_secs_f64(),
        INIT_CAP.as_secs(),
        STALL.as_secs()
    );
    assert!(
        first_poll.at > manifest.at,
        "init ended before the prefetch started: {first_poll:?} {manifest:?}"
    );
    assert!(
        first_poll.at < stall_ends,
        "init waited for the whole stalled pull ({:.1} s after the manifest request)\n{}",
        init_waited.as_secs_f64(),
        function.log()
    );
    assert!(
        function.log().contains("the first invocation waits for it"),
        "no log line saying init goes on without the image:\n{}",
        function.log()
    );

    // The first invocation, sent while the pull is still stalled, waits for it and succeeds.
    function.s3.put_object(BUCKET, "in/first.txt", b"x\n");
    let sent = Instant::now();
    assert!(
        sent < stall_ends,
        "the stall ended before the invocation was sent"
    );
    let result = function.invoke_s3(&["in/first.txt"]);
    let answered = Instant::now();
    println!(
        "prefetch: the first invocation took {:.2} s, {:.2} s of it waiting for the stalled pull",
        (answered - sent).as_secs_f64(),
        stall_ends.saturating_duration_since(sent).as_secs_f64()
    );
    assert_eq!(result.status, 200, "{}\n{}", result.body, function.log());
    assert_eq!(
        result.body["outputs"],
        serde_json::json!(["s3://scar-in/output/first.txt"]),
        "{}",
        result.body
    );
    assert_eq!(
        function
            .s3
            .get_object(BUCKET, "output/first.txt")
            .as_deref(),
        Some(MARKER)
    );
    // Its image came out of the held manifest: the answer cannot predate the stall's end.
    assert!(answered >= stall_ends, "answered before the stall ended");
    // One pull only: the invocation waited for the prefetch instead of starting its own.
    let manifests: Vec<String> = stalled
        .requests()
        .into_iter()
        .filter(|line| line.contains("/manifests/"))
        .collect();
    assert_eq!(manifests.len(), 1, "{manifests:?}");

    // A warm invocation reuses the image: no registry request at all.
    let before = stalled.requests().len();
    function.s3.put_object(BUCKET, "in/second.txt", b"y\n");
    let result = function.invoke_s3(&["in/second.txt"]);
    assert_eq!(result.status, 200, "{}\n{}", result.body, function.log());
    assert_eq!(stalled.requests().len(), before, "{:?}", stalled.requests());
}

#[test]
fn a_failed_prefetch_does_not_fail_init_and_the_first_invocation_reports_an_image_error() {
    let registry = Registry::start();
    let image = format!("{}/{REPO}:absent", registry.host());
    let mut function = Function::spec()
        .env("SCAR_IMAGE", &image)
        .env("SCAR_INSECURE_REGISTRIES", &registry.host())
        .env("SCAR_PREFETCH", "true")
        .env("SCAR_SCRIPT", SCRIPT)
        .start();
    function.s3.put_object(BUCKET, "in/a.txt", b"a\n");
    let result = function.invoke_s3(&["in/a.txt"]);
    let message = result.error_message().unwrap_or_default().to_owned();
    println!("prefetch: the first invocation said: {message}");
    assert_eq!(result.status, 500, "{}\n{}", result.body, function.log());
    assert_eq!(
        result.error_type.as_deref(),
        Some("Scar.ImageError"),
        "{}",
        result.body
    );
    for part in [&registry.host(), REPO, "absent"] {
        assert!(message.contains(part), "{part} not in: {message}");
    }
    assert!(
        message.to_lowercase().contains("not found") || message.contains("MANIFEST_UNKNOWN"),
        "the message does not say the image is missing: {message}"
    );
    assert!(
        !function.log().contains("Scar.ConfigError"),
        "{}",
        function.log()
    );
    assert!(
        function.wait_exit(Duration::from_millis(200)).is_none(),
        "the bootstrap exited after the failed prefetch\n{}",
        function.log()
    );
    assert!(function.s3.list_keys(BUCKET, "output/").is_empty());

    // The failure is not sticky: once the image exists the next invocation pulls it.
    Pusher::new(&registry.url(), None).image(REPO, "absent", &test_image());
    function.s3.put_object(BUCKET, "in/b.txt", b"b\n");
    let result = function.invoke_s3(&["in/b.txt"]);
    assert_eq!(result.status, 200, "{}\n{}", result.body, function.log());
    assert_eq!(
        function.s3.get_object(BUCKET, "output/b.txt").as_deref(),
        Some(MARKER)
    );
}
