//! Loader-level path mapping of the preload engine: every object the image's dynamic loader
//! opens (absolute RUNPATH, a DT_NEEDED with a slash, `$ORIGIN`, `ld.so.conf` directories,
//! `dlopen` of a name and of a path, libc's own gconv `dlopen`) comes from the image, and no host
//! library is ever mapped into a container process.
//!
//! Run: `cargo test -p scar-e2e --test preload preload_loader::` (builds the image with gcc once
//! and caches it under /var/tmp/scar-test-images).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use scar_e2e::container::{self, spec};
use scar_e2e::debian_images::{MUSL_PROGRAM, MUSL_RUNPATH, musl_root};
use scar_e2e::lambda_sim;
use scar_e2e::loader_images::{IMAGE_UID, IMAGE_USER, loader_image};
use scar_rootfs::engine::RunSpec;
use scar_rootfs::engine::preload::PreloadEngine;

/// Run `argv` in `root` with the preload engine; its stdout, after checking it succeeded.
fn run(root: &Path, argv: &[&str]) -> String {
    run_spec(&spec(root, argv))
}

/// Run `spec` with the preload engine; its stdout, after checking it succeeded.
fn run_spec(spec: &RunSpec) -> String {
    let engine = PreloadEngine::new(lambda_sim::preload_libs()).expect("preload libraries built");
    let ran = container::run(
        &engine,
        spec,
        Some(Duration::from_secs(60)),
        Duration::from_secs(2),
    )
    .expect("spawn");
    assert_eq!(
        ran.outcome.code,
        Some(0),
        "{:?} failed\nstdout:\n{}\nstderr:\n{}",
        spec.argv,
        ran.stdout,
        ran.stderr
    );
    ran.stdout
}

/// Every `map=` line of loadprobe's output names a file of the image or of the engine.
fn assert_only_image_files_mapped(root: &Path, out: &str) {
    let root = std::fs::canonicalize(root).expect("canonical root");
    let libs = std::fs::canonicalize(lambda_sim::preload_libs()).expect("canonical libs");
    let maps: Vec<PathBuf> = out
        .lines()
        .filter_map(|l| l.strip_prefix("map="))
        .map(PathBuf::from)
        .collect();
    assert!(maps.len() > 5, "no mappings listed:\n{out}");
    let foreign: Vec<&PathBuf> = maps
        .iter()
        .filter(|p| !p.starts_with(&root) && !p.starts_with(&libs))
        .collect();
    assert!(
        foreign.is_empty(),
        "host files mapped into a container process: {foreign:?}\n{out}"
    );
    // The gconv module really was loaded (from the image, per the check above).
    assert!(
        maps.iter()
            .any(|p| p.file_name().is_some_and(|n| n == "UTF-16.so")),
        "iconv did not load its gconv module:\n{out}"
    );
}

/// The values each route returns (the libraries compute them; nothing on this host has them).
fn assert_every_route_loaded(out: &str) {
    for line in [
        "runpath-chain=42",
        "slash=5",
        "origin=3",
        "ldconf=9",
        "dlopen-name=11",
        "dlopen-abs=13",
        "iconv=converted,4",
    ] {
        assert!(out.lines().any(|l| l == line), "missing {line}:\n{out}");
    }
}

#[test]
fn every_library_the_loader_opens_itself_comes_from_the_image() {
    let root = loader_image();
    let out = run(&root, &["loadprobe"]);
    assert_every_route_loaded(&out);
    assert_only_image_files_mapped(&root, &out);
}

#[test]
fn children_started_after_env_i_are_still_audited() {
    let root = loader_image();
    let out = run(&root, &["/bin/sh", "-c", "exec env -i /usr/bin/loadprobe"]);
    assert_every_route_loaded(&out);
    assert_only_image_files_mapped(&root, &out);
}

#[test]
fn users_and_groups_come_from_the_image_files() {
    let root = loader_image();
    let out = run(&root, &["loadprobe"]);
    for line in [
        format!("getpwnam=/home/{IMAGE_USER}"),
        format!("getpwuid={IMAGE_USER}"),
        format!("getgrnam={IMAGE_UID}"),
    ] {
        assert!(out.lines().any(|l| l == line), "missing {line}:\n{out}");
    }
}

#[test]
fn the_audit_module_needs_no_library_at_all() {
    let lib = lambda_sim::preload_libs().join("libscar_audit.so");
    let out = Command::new("readelf")
        .arg("-d")
        .arg(&lib)
        .output()
        .expect("run readelf (binutils)");
    assert!(
        out.status.success(),
        "readelf -d {}: {out:?}",
        lib.display()
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("Dynamic section"), "{text}");
    assert!(
        !text.contains("(NEEDED)"),
        "{} has DT_NEEDED entries (a second libc in every process):\n{text}",
        lib.display()
    );
}

#[test]
fn musl_finds_libraries_of_absolute_runpaths_in_the_image() {
    let root = musl_root();
    let engine = PreloadEngine::new(lambda_sim::preload_libs()).expect("preload libraries built");
    let io = tempfile::tempdir().expect("tempdir");
    let input = io.path().join("in.txt");
    std::fs::write(&input, "hello musl\n").expect("write input");
    let mut s = spec(&root, &[MUSL_PROGRAM]);
    s.env.extend([
        (
            "SCAR_INPUT_FILE".into(),
            input.to_string_lossy().into_owned(),
        ),
        (
            "SCAR_OUTPUT_DIR".into(),
            io.path().to_string_lossy().into_owned(),
        ),
    ]);
    // The scan of the image's RUNPATHs happens on the first plan of an image, then is memoized.
    let t = Instant::now();
    let plan = engine.plan(&s).expect("plan");
    let first = t.elapsed();
    let t = Instant::now();
    engine.plan(&s).expect("plan again");
    println!(
        "musl RUNPATH scan: first plan {first:?}, memoized {:?}",
        t.elapsed()
    );
    let runpath = std::fs::canonicalize(root.join(MUSL_RUNPATH.trim_start_matches('/')))
        .expect("the RUNPATH directory exists in the image");
    let library_path = plan
        .args
        .iter()
        .skip_while(|a| *a != "--library-path")
        .nth(1)
        .map(|a| a.to_string_lossy().into_owned())
        .unwrap_or_default();
    assert!(
        library_path
            .split(':')
            .any(|d| Path::new(d) == runpath.as_path()),
        "{} missing from --library-path {library_path}",
        runpath.display()
    );
    let out = run_spec(&s);
    assert!(out.contains("through upper-plugin"), "{out}");
    let upper = std::fs::read_to_string(io.path().join("upper.txt")).expect("upper.txt");
    assert_eq!(upper, "HELLO MUSL\n");
}

#[test]
fn under_simulated_lambda_no_host_library_is_mapped() {
    let layer = lambda_sim::layer_dir();
    let image = loader_image();
    let root = "/tmp/scar/rootfs/loader";
    let line = format!(
        "mkdir -p /tmp/scar/rootfs && cp -R /images/loader {root} && \
         {scar}/scar run --engine preload --rootfs {root} -- /usr/bin/loadprobe",
        scar = lambda_sim::SCAR_DIR,
    );
    let out = lambda_sim::LambdaSim::new(layer.path())
        .with_scar()
        .ro_bind(&image, "/images/loader")
        .run(&line, &[("SCAR_PRELOAD_DIR", "/opt/preload")]);
    out.assert_success();
    assert_every_route_loaded(&out.stdout);
    let foreign: Vec<&str> = out
        .stdout
        .lines()
        .filter_map(|l| l.strip_prefix("map="))
        .filter(|p| !p.starts_with(&format!("{root}/")) && !p.starts_with("/opt/preload/"))
        .collect();
    assert!(
        foreign.is_empty(),
        "files outside the image mapped under the simulator: {foreign:?}\n{}",
        out.stdout
    );
}
