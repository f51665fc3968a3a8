//! Benchmark (prints tables, asserts no timing): system-call-heavy jobs inside an image, run by
//! the preload engine, the namespace engine (when this host allows user namespaces) and plainly
//! on the host over the same directory tree:
//! - `find / -xdev -type f | wc -l` (the job: a directory walk by relative names), and
//! - `find /usr -type f | xargs stat -c %s | wc -l` (every file looked up by absolute path: the
//!   worst case for the library, which resolves each one inside the image).
//!
//! Target from issue 6: preload at most 1.3 × namespace.
//!
//! Run: `cargo test -p scar-e2e --test benches preload_bench:: -- --nocapture`
//! (`SCAR_BENCH_QUICK=1`: 5 runs per engine instead of 11).

use std::io::Read;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use scar_e2e::lambda_sim;
use scar_rootfs::engine::namespace::NamespaceEngine;
use scar_rootfs::engine::preload::PreloadEngine;
use scar_rootfs::engine::{Engine, RunSpec, Stdio, probe};

/// A job: its name, the command inside the image, the same on the host (`{root}` replaced).
struct Job {
    name: &'static str,
    inside: &'static str,
    host: &'static str,
}

const JOBS: [Job; 2] = [
    Job {
        name: "directory walk",
        inside: "find / -xdev -type f | wc -l",
        host: "find '{root}' -xdev -type f | wc -l",
    },
    Job {
        name: "absolute-path stat",
        inside: "find /usr -type f | xargs stat -c %s | wc -l",
        host: "find '{root}/usr' -type f | xargs stat -c %s | wc -l",
    },
];

fn spec(root: &Path, scratch: &Path, job: &str) -> RunSpec {
    RunSpec {
        root: root.to_path_buf(),
        argv: vec!["/bin/sh".into(), "-c".into(), job.into()],
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
fn run_engine(engine: &dyn Engine, root: &Path, job: &str) -> (Duration, u64) {
    let scratch = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let mut c = engine
        .spawn(&spec(root, scratch.path(), job))
        .expect("spawn");
    let mut out = String::new();
    c.stdout.take().unwrap().read_to_string(&mut out).unwrap();
    let outcome = c.wait(None, Duration::from_secs(1)).unwrap();
    let took = started.elapsed();
    assert_eq!(outcome.code, Some(0), "{out}");
    (took, out.trim().parse().unwrap_or(0))
}

fn run_host(root: &Path, job: &str) -> (Duration, u64) {
    let started = Instant::now();
    let out = Command::new("sh")
        .arg("-c")
        .arg(job.replace("{root}", &root.display().to_string()))
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
    let _alone = crate::alone();
    let quick = std::env::var("SCAR_BENCH_QUICK").is_ok_and(|v| v == "1");
    let runs = if quick { 5 } else { 11 };
    let (image, root) = ("debian bookworm minbase", lambda_sim::debian_image());
    let preload = PreloadEngine::new(lambda_sim::preload_libs()).unwrap();
    let namespace = match probe::namespace_support() {
        probe::NamespaceSupport::Available => Some(NamespaceEngine::with_helper(
            crate::bootstrap_support::bootstrap_bin(),
        )),
        probe::NamespaceSupport::Unavailable(why) => {
            println!("namespace engine unavailable here: {why}");
            None
        }
    };
    for job in &JOBS {
        let mut rows = vec![
            measure("host (no engine)", runs, || run_host(&root, job.host)),
            measure("preload", runs, || run_engine(&preload, &root, job.inside)),
        ];
        if let Some(ns) = &namespace {
            rows.push(measure("namespace", runs, || {
                run_engine(ns, &root, job.inside)
            }));
        }
        print_table(job, image, runs, &rows);
        // Not a timing assert: the engines must agree on what they saw.
        assert_eq!(
            rows[1].files, rows[0].files,
            "{}: the preload engine saw a different tree than the host",
            job.name
        );
    }
    println!("(target: preload ≤ 1.3 × namespace)");
}

fn print_table(job: &Job, image: &str, runs: usize, rows: &[Row]) {
    let ns = rows.iter().find(|r| r.name == "namespace").map(Row::median);
    let host = rows[0].median();
    println!();
    println!(
        "{}: `{}` in the {image}, median of {runs} runs",
        job.name, job.inside
    );
    println!("| engine | median ms | min ms | max ms | count | × host | × namespace |");
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: |");
    for r in rows {
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
}
