//! Benchmarks of the bootstrap. They PRINT figures next to peers measured in the same run and
//! assert only that the work was done, never a time.
//!
//! Run: `cargo test -p scar-e2e --test benches bootstrap_bench:: -- --nocapture --test-threads=1`.
//! `SCAR_BENCH_QUICK=1` uses fewer invocations and a 32 MiB file instead of 200 MiB;
//! `SCAR_E2E_BOOTSTRAP=target/x86_64-unknown-linux-musl/release/bootstrap` measures a release
//! build instead of the debug one (debug figures are pessimistic).
//!
//! Bounds from the issue: supervisor overhead per warm invocation ≤ 15 ms (S3 round trips
//! excluded), peak RSS ≤ 40 MiB while streaming 200 MiB in and out, exec → first
//! `GET /runtime/invocation/next` ≤ 20 ms with prefetch off.

use std::io::Read;
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::bootstrap_support::{BUCKET, COPY_BIG_SCRIPT, COPY_SCRIPT, Function, bootstrap_bin};

pub(crate) fn quick() -> bool {
    std::env::var("SCAR_BENCH_QUICK").is_ok_and(|v| v == "1")
}

pub(crate) fn percentile(sorted: &[f64], p: f64) -> f64 {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

pub(crate) fn summary(mut values: Vec<f64>) -> String {
    values.sort_by(f64::total_cmp);
    format!(
        "median {:7.2} ms  p90 {:7.2} ms  min {:7.2} ms",
        percentile(&values, 0.5),
        percentile(&values, 0.9),
        values[0]
    )
}

pub(crate) fn phase(body: &serde_json::Value, name: &str) -> f64 {
    body["phasesMs"][name]
        .as_f64()
        .unwrap_or_else(|| panic!("no phasesMs.{name} in {body}"))
}

/// The same `cp` as the benchmark's script, run by a fresh busybox shell on the host: the cost
/// of a process start with no supervisor and no container around it.
fn host_cp_ms(dir: &std::path::Path) -> f64 {
    let input = dir.join("in.bin");
    std::fs::write(&input, [b'x'; 1024]).unwrap();
    let started = Instant::now();
    let status = Command::new("busybox")
        .args(["sh", "-c", "cp \"$0\" \"$1\""])
        .arg(&input)
        .arg(dir.join("out.bin"))
        .status()
        .expect("busybox");
    assert!(status.success());
    started.elapsed().as_secs_f64() * 1e3
}

#[test]
fn bench_supervisor_overhead_per_warm_invocation() {
    let _alone = crate::alone();
    let rounds = if quick() { 10 } else { 40 };
    let function = Function::spec().env("SCAR_SCRIPT", COPY_SCRIPT).start();
    function.s3.put_object(BUCKET, "one-kib.bin", &[b'x'; 1024]);
    for _ in 0..3 {
        let warm = function.invoke_s3(&["one-kib.bin"]);
        assert_eq!(warm.status, 200, "{}\n{}", warm.body, function.log());
    }
    let (mut overhead, mut bookkeeping, mut run, mut s3, mut host) =
        (vec![], vec![], vec![], vec![], vec![]);
    let scratch = tempfile::tempdir().unwrap();
    for _ in 0..rounds {
        let result = function.invoke_s3(&["one-kib.bin"]);
        assert_eq!(result.status, 200, "{}\n{}", result.body, function.log());
        assert_eq!(
            function
                .s3
                .get_object(BUCKET, "output/one-kib.bin")
                .map(|b| b.len()),
            Some(1024)
        );
        let body = &result.body;
        let s3_ms = phase(body, "stageIn") + phase(body, "stageOut");
        overhead.push(phase(body, "total") - s3_ms);
        bookkeeping.push(phase(body, "total") - s3_ms - phase(body, "run"));
        run.push(phase(body, "run"));
        s3.push(s3_ms);
        host.push(host_cp_ms(scratch.path()));
    }
    let engine = function.invoke_s3(&["one-kib.bin"]).body["engine"]
        .as_str()
        .unwrap_or("?")
        .to_owned();
    println!(
        "\n== supervisor overhead per warm invocation ({rounds} rounds, engine {engine}, 1 KiB input, cp script) =="
    );
    println!(
        "overhead (total - S3 phases)   {}   [bound: 15 ms]",
        summary(overhead.clone())
    );
    println!("  of which container run       {}", summary(run.clone()));
    println!("  of which bookkeeping         {}", summary(bookkeeping));
    println!("S3 round trips (excluded)      {}", summary(s3));
    println!("peer: same cp, host busybox    {}", summary(host.clone()));
    let mut o = overhead;
    o.sort_by(f64::total_cmp);
    let mut h = host;
    h.sort_by(f64::total_cmp);
    println!(
        "ratio overhead / host cp (median): {:.1}x",
        percentile(&o, 0.5) / percentile(&h, 0.5)
    );
    println!("bootstrap: {}", bootstrap_bin().display());
}

#[test]
fn bench_peak_rss_while_streaming_a_large_input_and_output() {
    let _alone = crate::alone();
    let mib = if quick() { 32 } else { 200 };
    let function = Function::spec().env("SCAR_SCRIPT", COPY_BIG_SCRIPT).start();
    function.s3.put_object(BUCKET, "small.bin", &[b'x'; 1024]);
    let small = function.invoke_s3(&["small.bin"]);
    assert_eq!(small.status, 200, "{}\n{}", small.body, function.log());
    let baseline = function.status_kib("VmHWM");
    let (result, _source, _stored) = function.stream_big_file(mib);
    let peak = function.status_kib("VmHWM");
    let body = &result.body;
    println!("\n== peak RSS of bootstrap, {mib} MiB in and {mib} MiB out ==");
    println!(
        "VmHWM after a 1 KiB invocation (peer): {:6.1} MiB",
        baseline as f64 / 1024.0
    );
    println!(
        "VmHWM after the {mib} MiB invocation:   {:6.1} MiB   [bound: 40 MiB]",
        peak as f64 / 1024.0
    );
    println!(
        "growth for streaming: {:.1} MiB ({:.2}% of the bytes moved)",
        (peak - baseline) as f64 / 1024.0,
        (peak - baseline) as f64 / 1024.0 / (2 * mib) as f64 * 100.0
    );
    println!(
        "stage-in {:.0} ms ({:.0} MiB/s), stage-out {:.0} ms ({:.0} MiB/s) against in-process s3s-fs",
        phase(body, "stageIn"),
        mib as f64 / phase(body, "stageIn") * 1e3,
        phase(body, "stageOut"),
        mib as f64 / phase(body, "stageOut") * 1e3
    );
}

#[test]
fn bench_exec_to_first_poll_with_prefetch_off() {
    let _alone = crate::alone();
    let rounds = if quick() { 5 } else { 20 };
    let bin = bootstrap_bin();
    let (mut bootstrap, mut peer) = (vec![], vec![]);
    for _ in 0..rounds {
        // A bare listener stands in for the Runtime API: only the arrival of the first request
        // line is timed; the bootstrap is killed afterwards.
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let started = Instant::now();
        let mut child = Command::new(&bin)
            .env_clear()
            .env("AWS_LAMBDA_RUNTIME_API", addr.to_string())
            .env("SCAR_IMAGE", "alpine:3.20")
            .env("SCAR_PREFETCH", "false")
            .env("SCAR_LOG", "warn")
            .env("AWS_REGION", "us-east-1")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let (mut socket, _) = listener.accept().unwrap();
        socket
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut first = [0u8; 64];
        let n = socket.read(&mut first).unwrap();
        let elapsed = started.elapsed().as_secs_f64() * 1e3;
        let _ = child.kill();
        let _ = child.wait();
        let line = String::from_utf8_lossy(&first[..n]);
        assert!(
            line.starts_with("GET /2018-06-01/runtime/invocation/next"),
            "{line}"
        );
        bootstrap.push(elapsed);
        let started = Instant::now();
        let status = Command::new(&bin)
            .arg("--version")
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success());
        peer.push(started.elapsed().as_secs_f64() * 1e3);
    }
    println!("\n== exec to first GET /runtime/invocation/next, prefetch off ({rounds} rounds) ==");
    println!(
        "bootstrap                       {}   [bound: 20 ms]",
        summary(bootstrap.clone())
    );
    println!("peer: bootstrap --version exit  {}", summary(peer.clone()));
    bootstrap.sort_by(f64::total_cmp);
    peer.sort_by(f64::total_cmp);
    println!(
        "init work beyond exec (median): {:.2} ms",
        percentile(&bootstrap, 0.5) - percentile(&peer, 0.5)
    );
}
