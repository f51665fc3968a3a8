//! End to end: the Runtime API headers of 2026 (issue #19) against the real bootstrap, with a
//! [`RuntimeProxy`](scar_e2e::runtime_proxy::RuntimeProxy) in front of the `cargo lambda`
//! emulator adding what the emulator predates: `Lambda-Runtime-Invocation-Id` (echoed on the
//! result), `Lambda-Runtime-Aws-Tenant-Id` (given to the container as `SCAR_TENANT_ID`) and a
//! `410 Gone` answer to a result that came too late (logged; the bootstrap serves on).
//!
//! Run: `cargo test -p scar-e2e --test bootstrap runtime_headers::` (needs `busybox-static` and
//! the PyPI package `cargo-lambda`).

use scar_e2e::runtime_proxy::{GONE_ERROR_TYPE, ResultKind, RuntimeProxy};

use crate::bootstrap_support::{BUCKET, COPY_SCRIPT, Function, response_text};

/// What the bootstrap logs when a result is answered 410 (interface.md 4).
const GONE_WARNING: &str = "the invocation had already timed out; its result is dropped";

fn proxy(function: &Function) -> &RuntimeProxy {
    function
        .proxy
        .as_ref()
        .expect("the function was started through_proxy")
}

#[test]
fn each_invocation_id_is_echoed_on_its_response_and_on_its_error() {
    let function = Function::spec()
        .env("SCAR_SCRIPT", COPY_SCRIPT)
        .through_proxy()
        .start();
    let proxy = proxy(&function);
    function.s3.put_object(BUCKET, "here.txt", b"present");
    let succeeded = function.invoke_s3(&["here.txt"]);
    assert_eq!(
        succeeded.status,
        200,
        "{}\n{}",
        succeeded.body,
        function.log()
    );
    let failed = function.invoke_s3(&["not-there.txt"]);
    function.expect_error(&failed, "Scar.InputError");
    let succeeded_again = function.invoke_s3(&["here.txt"]);
    assert_eq!(succeeded_again.status, 200, "{}", succeeded_again.body);

    let handed = proxy.handed();
    let results = proxy.results();
    assert_eq!(handed.len(), 3, "{handed:?}");
    assert_eq!(results.len(), 3, "{results:?}");
    let kinds: Vec<ResultKind> = results.iter().map(|r| r.kind).collect();
    assert_eq!(
        kinds,
        [
            ResultKind::Response,
            ResultKind::Error,
            ResultKind::Response
        ]
    );
    for posted in &results {
        let given = proxy
            .handed_for(&posted.request_id)
            .unwrap_or_else(|| panic!("a result for an invocation never handed out: {posted:?}"));
        assert_eq!(
            posted.invocation_id.as_deref(),
            Some(given.invocation_id.as_str()),
            "the {:?} of {} did not echo its invocation id\n{}",
            posted.kind,
            posted.request_id,
            function.log()
        );
    }
    // Each attempt had its own id.
    assert_ne!(handed[0].invocation_id, handed[2].invocation_id);
    assert_eq!(
        response_text(&succeeded.body, "requestId"),
        handed[0].request_id
    );
}

#[test]
fn the_tenant_id_reaches_the_container_only_when_the_header_is_sent() {
    let script = r#"printf '%s' "${SCAR_TENANT_ID-unset}" > "$SCAR_OUTPUT_DIR/tenant-$(basename "$SCAR_INPUT_FILE")""#;
    let function = Function::spec()
        .env("SCAR_SCRIPT", script)
        .through_proxy()
        .start();
    let proxy = proxy(&function);
    function.s3.put_object(BUCKET, "a.txt", b"a");
    function.s3.put_object(BUCKET, "b.txt", b"b");

    proxy.set_tenant(Some("tenant-42"));
    let with = function.invoke_s3(&["a.txt"]);
    assert_eq!(with.status, 200, "{}\n{}", with.body, function.log());
    assert_eq!(
        function
            .s3
            .get_object(BUCKET, "output/tenant-a.txt")
            .as_deref(),
        Some(&b"tenant-42"[..]),
        "{}",
        with.body
    );

    proxy.set_tenant(None);
    let without = function.invoke_s3(&["b.txt"]);
    assert_eq!(without.status, 200, "{}\n{}", without.body, function.log());
    assert_eq!(
        function
            .s3
            .get_object(BUCKET, "output/tenant-b.txt")
            .as_deref(),
        Some(&b"unset"[..]),
        "SCAR_TENANT_ID was set without the header: {}",
        without.body
    );
    let handed = proxy.handed();
    assert_eq!(handed[0].tenant_id.as_deref(), Some("tenant-42"));
    assert_eq!(handed[1].tenant_id, None);
}

#[test]
fn a_410_on_a_result_is_logged_and_the_next_invocation_is_served() {
    let function = Function::spec()
        .env("SCAR_SCRIPT", COPY_SCRIPT)
        .through_proxy()
        .start();
    let proxy = proxy(&function);
    function.s3.put_object(BUCKET, "late.txt", b"late");
    function.s3.put_object(BUCKET, "next.txt", b"next");
    proxy.gone_for(1);

    // The proxy answers the bootstrap's response 410 and tells the invoker it timed out.
    let late = function.invoke_s3(&["late.txt"]);
    function.expect_error(&late, GONE_ERROR_TYPE);
    let next = function.invoke_s3(&["next.txt"]);
    assert_eq!(
        next.status,
        200,
        "the bootstrap did not serve on after a 410: {}\n{}",
        next.body,
        function.log()
    );
    assert_eq!(
        function.s3.get_object(BUCKET, "output/next.txt").as_deref(),
        Some(&b"next"[..])
    );

    let results = proxy.results();
    let statuses: Vec<u16> = results.iter().map(|r| r.status).collect();
    assert_eq!(statuses.first(), Some(&410), "{results:?}");
    assert!(
        statuses[1..].iter().all(|s| (200..300).contains(s)),
        "{results:?}"
    );
    let log = function.log();
    let warning = log
        .lines()
        .find(|line| line.contains(GONE_WARNING))
        .unwrap_or_else(|| panic!("no warning about the 410 in the log:\n{log}"));
    assert!(
        warning.contains(&results[0].request_id),
        "the warning does not name the invocation: {warning}"
    );
    assert!(
        !log.contains("could not report the invocation's result"),
        "a 410 was reported as a failure:\n{log}"
    );
}
