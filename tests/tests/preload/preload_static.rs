//! Statically linked programs under the preload engine: they cannot be confined (no library
//! is loaded into them), so running one is never silent. With `SCAR_PRELOAD_STATIC=warn` (the
//! default) the run names each one (`Container::unconfined`, the bootstrap's response and log);
//! with `refuse` the engine refuses a static first program, the exec hooks refuse a static
//! child (`EACCES` and a stderr line naming it and the variable), and the invocation fails as
//! `Scar.ScriptFailed`.
//!
//! Run: `cargo test -p scar-e2e --test preload preload_static::` (the bootstrap cases run `scar
//! lambda-sim` as root with the static bootstrap of `./build.sh`; the image's busybox is the host's
//! static `/bin/busybox`, from `busybox-static`).

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::bootstrap_support::Function;
use scar_e2e::container::{self, Ran, spec};
use scar_e2e::{images, lambda_sim};
use scar_rootfs::engine::EngineError;
use scar_rootfs::engine::preload::{PreloadEngine, StaticPolicy};

fn engine(policy: StaticPolicy) -> PreloadEngine {
    PreloadEngine::new(lambda_sim::preload_libs())
        .expect("preload libraries")
        .with_static_policy(policy)
}

fn run(policy: StaticPolicy, root: &Path, argv: &[&str]) -> Result<Ran, EngineError> {
    container::run(
        &engine(policy),
        &spec(root, argv),
        Some(Duration::from_secs(60)),
        Duration::from_secs(1),
    )
}

/// A static busybox image (its `/bin/sh` is busybox).
fn busybox_image() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    images::busybox_root(dir.path()).unwrap_or_else(|e| panic!("{e}"));
    dir
}

/// The dynamic image with the host's static busybox at `/usr/bin/busybox`.
fn dynamic_image_with_static_busybox() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let status = Command::new("cp")
        .arg("-a")
        .arg(format!("{}/.", lambda_sim::dynamic_image().display()))
        .arg(dir.path())
        .status()
        .expect("run cp");
    assert!(status.success(), "copying the dynamic image failed");
    assert!(
        images::is_static_elf(Path::new(images::BUSYBOX)),
        "{} is not a static busybox: apt-get install busybox-static",
        images::BUSYBOX
    );
    std::fs::copy(images::BUSYBOX, dir.path().join("usr/bin/busybox")).expect("copy busybox");
    dir
}

#[test]
fn a_static_first_program_runs_and_is_named_as_unconfined() {
    let root = busybox_image();
    let ran = run(
        StaticPolicy::Warn,
        root.path(),
        &["/bin/sh", "-c", "echo from-busybox"],
    )
    .expect("spawn");
    assert_eq!(ran.outcome.code, Some(0), "{}", ran.stderr);
    assert_eq!(ran.stdout, "from-busybox\n");
    assert_eq!(ran.unconfined.ran, vec!["/bin/sh".to_string()]);
    assert!(ran.unconfined.refused.is_empty());
}

#[test]
fn a_static_first_program_is_refused_under_refuse() {
    let root = busybox_image();
    match run(
        StaticPolicy::Refuse,
        root.path(),
        &["/bin/sh", "-c", "echo ran"],
    ) {
        Err(err @ EngineError::StaticRefused { .. }) => {
            let text = err.to_string();
            assert!(text.contains("/bin/sh"), "{text}");
            assert!(text.contains("SCAR_PRELOAD_STATIC"), "{text}");
        }
        Err(other) => panic!("refused for another reason: {other}"),
        Ok(ran) => panic!("a static program ran under refuse: {}", ran.stdout),
    }
}

#[test]
fn a_static_child_is_reported_once_and_a_dynamic_one_not_at_all() {
    let root = dynamic_image_with_static_busybox();
    let ran = run(
        StaticPolicy::Warn,
        root.path(),
        &[
            "/bin/bash",
            "-c",
            "busybox echo static-1; /usr/bin/busybox echo static-2; env -i /usr/bin/busybox true; cat /etc/os-release >/dev/null",
        ],
    )
    .expect("spawn");
    assert_eq!(ran.outcome.code, Some(0), "{}", ran.stderr);
    assert_eq!(ran.stdout, "static-1\nstatic-2\n");
    assert_eq!(ran.unconfined.ran, vec!["/usr/bin/busybox".to_string()]);
    assert!(ran.unconfined.refused.is_empty());
}

#[test]
fn a_static_child_is_refused_with_eacces_and_a_line_naming_it_and_the_variable() {
    let root = dynamic_image_with_static_busybox();
    let ran = run(
        StaticPolicy::Refuse,
        root.path(),
        &[
            "/bin/bash",
            "-c",
            "/usr/bin/busybox echo must-not-run; echo rc=$?; cat /etc/os-release | head -1",
        ],
    )
    .expect("spawn");
    assert!(!ran.stdout.contains("must-not-run"), "{}", ran.stdout);
    // bash reports a file it may not execute as 126.
    assert!(
        ran.stdout.contains("rc=126"),
        "{}\n{}",
        ran.stdout,
        ran.stderr
    );
    assert!(
        ran.stdout.contains("SCAR dynamic test image"),
        "dynamic programs still run: {}",
        ran.stdout
    );
    assert!(
        ran.stderr.contains("/usr/bin/busybox") && ran.stderr.contains("SCAR_PRELOAD_STATIC"),
        "{}",
        ran.stderr
    );
    assert_eq!(ran.unconfined.refused, vec!["/usr/bin/busybox".to_string()]);
    assert!(ran.unconfined.ran.is_empty());
}

fn function(policy: &str) -> Function {
    Function::spec()
        .env("SCAR_ENGINE", "preload")
        .env("SCAR_PRELOAD_STATIC", policy)
        .env("SCAR_SCRIPT", "echo static-shell-ran")
        .start_simulated()
}

#[test]
fn through_the_bootstrap_a_static_shell_is_named_in_the_response_the_log_and_at_init() {
    let f = function("warn");
    let result = f.invoke(&serde_json::json!({"n": 1}));
    assert_eq!(result.status, 200, "{}\n{}", result.body, f.log());
    assert_eq!(
        result.body["unconfined"],
        serde_json::json!(["/bin/sh"]),
        "{}",
        result.body
    );
    assert!(
        crate::bootstrap_support::response_text(&result.body, "stdout")
            .contains("static-shell-ran"),
        "{}",
        result.body
    );
    let second = f.invoke(&serde_json::json!({"n": 2}));
    assert_eq!(second.status, 200, "{}\n{}", second.body, f.log());
    let log = f.log();
    assert_eq!(
        log.matches("the image's /bin/sh is statically linked")
            .count(),
        1,
        "init must say it once:\n{log}"
    );
    assert!(
        log.contains("ran statically linked, without the preload library")
            && log.contains("/bin/sh"),
        "{log}"
    );
}

#[test]
fn through_the_bootstrap_refuse_fails_the_invocation_as_script_failed() {
    let f = function("refuse");
    let result = f.invoke(&serde_json::json!({"n": 1}));
    let message = f.expect_error(&result, "Scar.ScriptFailed");
    assert!(
        message.contains("/bin/sh") && message.contains("SCAR_PRELOAD_STATIC"),
        "{message}"
    );
    assert!(!f.log().contains("static-shell-ran"), "{}", f.log());
}
