//! Benchmark (prints a table, asserts no timing): a system-call-heavy job inside an image,
//! `find / -xdev -type f | wc -l`, run by the preload engine, the namespace engine (when this
//! host allows user namespaces) and plainly on the host over the same directory tree.
//! Target from issue 6: preload at most 1.3 × namespace.
//!
//! Run: `cargo test -p scar-e2e --test preload_bench -- --nocapture`
//! (`SCAR_BENCH_QUICK=1`: 5 runs per engine instead of 11).

#[path = "bootstrap_support/mod.rs"]
mod bootstrap_support;

use std::io::Read;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use scar_e2e::lambda_sim;
use scar_rootfs::engine::namespace::NamespaceEngine;
use scar_rootfs::engine::preload::PreloadEngine;
use scar_rootfs::engine::{Engine, RunSpec, Stdio, probe};

const JOB: &str = "find / -xdev -type f | wc -l";

fn spec(root: &Path, scratch: &Path) -> RunSpec {
    RunSpec {
        root: root.to_path_buf(),
        argv: vec!["/bin/sh".into(), "-c".into(), JOB.into()],
        env: vec![("PATH".into(), "/usr/sbin:/usr/bin:/sbin:/bin".into())],
        workdir: "/".into(),
        user: None,
        mounts: Vec::new(),
        scratch: scratch.to_path_buf(),
        stdin: Stdio::Null,
        stdout: Stdio::Piped,
        stderr: Stdio::Inherit,
    }
}

/// One timed run through an engine: wall time from spawn to reaped, and the count printed.
fn run_engine(engine: &dyn Engine, root: &Path) -> (Duration, u64) {
    let scratch = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let mut c = engine.spawn(&spec(root, scratch.path())).expect("spawn");
    let mut out = String::new();
    c.stdout.take().unwrap().read_to_string(&mut out).unwrap();
    let outcome = c.wait(None, Duration::from_secs(1)).unwrap();
    let took = started.elapsed();
    assert_eq!(outcome.code, Some(0), "{out}");
    (took, out.trim().parse().unwrap_or(0))
}

fn run_host(root: &Path) -> (Duration, u64) {
    let started = Instant::now();
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!("find '{}' -xdev -type f | wc -l", root.display()))
        .output()
        .unwrap();
    let took = started.elapsed();
    assert!(out.status.success());
    (
        took,
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .unwrap_or(0),
    )
}

struct Row {
    name: String,
    times: Vec<Duration>,
    files: u64,
}

impl Row {
    fn median(&self) -> Duration {
        let mut t = self.times.clone();
        t.sort();
        t[t.len() / 2]
    }
}

fn measure(name: &str, runs: usize, mut f: impl FnMut() -> (Duration, u64)) -> Row {
    f(); // warm the page cache and the loader
    let mut times = Vec::new();
    let mut files = 0;
    for _ in 0..runs {
        let (t, n) = f();
        times.push(t);
        files = n;
    }
    Row {
        name: name.to_string(),
        times,
        files,
    }
}

#[test]
fn find_over_an_image_preload_versus_namespace_versus_host() {
    let quick = std::env::var("SCAR_BENCH_QUICK").is_ok_and(|v| v == "1");
    let runs = if quick { 5 } else { 11 };
    let (image, root) = match lambda_sim::debian_image() {
        Some(r) => ("debian bookworm minbase", r),
        None => ("dynamic test image", lambda_sim::dynamic_image()),
    };
    let preload = PreloadEngine::new(lambda_sim::preload_libs()).unwrap();
    let mut rows = vec![
        measure("host (no engine)", runs, || run_host(&root)),
        measure("preload", runs, || run_engine(&preload, &root)),
    ];
    match probe::namespace_support() {
        probe::NamespaceSupport::Available => {
            let ns = NamespaceEngine::with_helper(bootstrap_support::bootstrap_bin());
            rows.push(measure("namespace", runs, || run_engine(&ns, &root)));
        }
        probe::NamespaceSupport::Unavailable(why) => {
            println!("namespace engine unavailable here: {why}");
        }
    }
    let ns = rows.iter().find(|r| r.name == "namespace").map(Row::median);
    let host = rows[0].median();
    println!();
    println!("`{JOB}` in the {image}, median of {runs} runs");
    println!("| engine | median ms | min ms | max ms | files | × host | × namespace |");
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: |");
    for r in &rows {
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        let min = r.times.iter().min().copied().unwrap_or_default();
        let max = r.times.iter().max().copied().unwrap_or_default();
        let vs_ns = ns.map_or("n/a".to_string(), |n| {
            format!("{:.2}", r.median().as_secs_f64() / n.as_secs_f64())
        });
        println!(
            "| {} | {:.1} | {:.1} | {:.1} | {} | {:.2} | {} |",
            r.name,
            ms(r.median()),
            ms(min),
            ms(max),
            r.files,
            r.median().as_secs_f64() / host.as_secs_f64(),
            vs_ns
        );
    }
    println!("(target: preload ≤ 1.3 × namespace)");
    // Not a timing assert: the engines must agree on what they saw.
    let preload_files = rows[1].files;
    assert_eq!(
        preload_files, rows[0].files,
        "the preload engine saw a different tree than the host"
    );
}
