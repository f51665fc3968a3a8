//! Benchmarks of Lambda Managed Instances (issue #19): the bootstrap serving
//! `AWS_LAMBDA_MAX_CONCURRENCY` invocations at once. They PRINT figures beside peers measured in
//! the same run (the same work at concurrency 1) and assert only that the work was done, never a
//! time; a missed bound prints an "OVER THE BOUND" line.
//!
//! Bounds from the issue:
//! - four concurrent invocations of a script that sleeps 2 s, at concurrency 4, complete in
//!   ≤ 1.5× one invocation's time;
//! - sixteen 1 KiB invocations at concurrency 4 reach ≥ 3× the throughput of concurrency 1
//!   (measured with S3 answering after [`S3_LATENCY`], as a real endpoint does; the loopback
//!   figure is printed too, bounded by the machine's cores);
//! - the bootstrap's peak RSS (`VmHWM`) ≤ 40 MiB + 5 MiB per concurrent invocation.
//!
//! Run: `cargo test -p scar-e2e --test benches concurrency_bench:: -- --nocapture
//! --test-threads=1`. `SCAR_BENCH_QUICK=1` takes one round instead of three;
//! `SCAR_E2E_BOOTSTRAP=target/x86_64-unknown-linux-musl/release/bootstrap` measures a release
//! build (debug figures are pessimistic).

use std::time::{Duration, Instant};

use crate::bootstrap_support::{BUCKET, COPY_SCRIPT, Function, bootstrap_bin};

/// Sleeps 2 s, then leaves a mark so the run is known to have happened.
const SLEEP_SCRIPT: &str =
    r#"sleep 2; echo slept > "$SCAR_OUTPUT_DIR/$(basename "$SCAR_INPUT_FILE").done""#;
/// The concurrency the bounds are stated for.
const CONCURRENCY: usize = 4;
/// Invocations of the throughput benchmark.
const SMALL_INVOCATIONS: usize = 16;
/// First-byte latency modelled for S3 in the throughput benchmark: a real endpoint answers a
/// small GET or PUT in tens of milliseconds (AWS's S3 performance guidelines), a loopback server
/// in well under one.
const S3_LATENCY: Duration = Duration::from_millis(25);
const RSS_BASE_MIB: f64 = 40.0;
const RSS_PER_INVOCATION_MIB: f64 = 5.0;

fn quick() -> bool {
    std::env::var("SCAR_BENCH_QUICK").is_ok_and(|v| v == "1")
}

fn rounds() -> usize {
    if quick() { 1 } else { 3 }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn within(ok: bool) -> &'static str {
    if ok { "within" } else { "OVER THE BOUND" }
}

/// A function serving `concurrency` invocations at once (`AWS_LAMBDA_MAX_CONCURRENCY` unset
/// for 1, as outside Managed Instances), warmed by one invocation of `warm_key` (the pull).
fn function(script: &str, concurrency: usize, warm_key: &str) -> Function {
    let mut spec = Function::spec().env("SCAR_SCRIPT", script);
    if concurrency > 1 {
        spec = spec.env("AWS_LAMBDA_MAX_CONCURRENCY", &concurrency.to_string());
    }
    let function = spec.start();
    function.s3.put_object(BUCKET, warm_key, &[b'w'; 1024]);
    let warm = function.invoke_s3(&[warm_key]);
    assert_eq!(warm.status, 200, "{}\n{}", warm.body, function.log());
    function
}

/// Invoke `function` once per key, all at once; the wall time until the last answer and the
/// response documents. Every invocation must succeed.
fn invoke_all(function: &Function, keys: &[String]) -> (Duration, Vec<serde_json::Value>) {
    let started = Instant::now();
    let results = std::thread::scope(|scope| {
        let calls: Vec<_> = keys
            .iter()
            .map(|key| scope.spawn(move || function.invoke_s3(&[key.as_str()])))
            .collect();
        calls
            .into_iter()
            .map(|call| call.join().expect("an invoking thread panicked"))
            .collect::<Vec<_>>()
    });
    let elapsed = started.elapsed();
    for (key, result) in keys.iter().zip(&results) {
        assert_eq!(
            result.status,
            200,
            "{key}: {}\n{}",
            result.body,
            function.log()
        );
    }
    (elapsed, results.into_iter().map(|r| r.body).collect())
}

/// Median of `phasesMs.<name>` over `bodies`.
fn phase_median(bodies: &[serde_json::Value], name: &str) -> f64 {
    median(
        bodies
            .iter()
            .map(|b| {
                b["phasesMs"][name]
                    .as_f64()
                    .unwrap_or_else(|| panic!("no phasesMs.{name} in {b}"))
            })
            .collect(),
    )
}

/// The machine's CPU counters (`/proc/stat`, all cores): busy and total jiffies.
fn cpu_jiffies() -> (u64, u64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let fields: Vec<u64> = stat
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .filter_map(|f| f.parse().ok())
        .collect();
    let total: u64 = fields.iter().sum();
    // idle and iowait.
    let idle = fields.get(3).copied().unwrap_or(0) + fields.get(4).copied().unwrap_or(0);
    (total - idle, total)
}

/// Share of the machine's CPU time that was busy between two [`cpu_jiffies`] readings.
fn busy_share(before: (u64, u64), after: (u64, u64)) -> f64 {
    let total = after.1.saturating_sub(before.1);
    if total == 0 {
        return 0.0;
    }
    after.0.saturating_sub(before.0) as f64 / total as f64
}

fn keys(prefix: &str, n: usize) -> Vec<String> {
    (1..=n).map(|i| format!("{prefix}-{i:02}.bin")).collect()
}

#[test]
fn bench_four_concurrent_two_second_invocations_against_one() {
    let _alone = crate::alone();
    let concurrent = function(SLEEP_SCRIPT, CONCURRENCY, "warm.bin");
    let serial = function(SLEEP_SCRIPT, 1, "warm.bin");
    let four = keys("sleep", CONCURRENCY);
    for key in &four {
        concurrent.s3.put_object(BUCKET, key, b"x");
        serial.s3.put_object(BUCKET, key, b"x");
    }
    let (mut one, mut together, mut one_at_a_time) = (vec![], vec![], vec![]);
    for _ in 0..rounds() {
        one.push(invoke_all(&concurrent, &four[..1]).0.as_secs_f64());
        together.push(invoke_all(&concurrent, &four).0.as_secs_f64());
        one_at_a_time.push(invoke_all(&serial, &four).0.as_secs_f64());
    }
    for key in &four {
        assert!(
            concurrent
                .s3
                .get_object(BUCKET, &format!("output/{key}.done"))
                .is_some(),
            "{key} did not run"
        );
    }
    let (one, together, one_at_a_time) = (median(one), median(together), median(one_at_a_time));
    let ratio = together / one;
    println!(
        "\n== {CONCURRENCY} concurrent invocations of a 2 s sleep, AWS_LAMBDA_MAX_CONCURRENCY={CONCURRENCY} ({} rounds, medians) ==",
        rounds()
    );
    println!("one invocation                         {one:6.2} s");
    println!("{CONCURRENCY} at once, concurrency {CONCURRENCY}              {together:6.2} s");
    println!("peer: {CONCURRENCY} at once, concurrency 1        {one_at_a_time:6.2} s");
    println!(
        "ratio {CONCURRENCY} at once / one: {ratio:.2}x   [bound: 1.5x] {}",
        within(ratio <= 1.5)
    );
    println!("peer ratio at concurrency 1: {:.2}x", one_at_a_time / one);
    println!("bootstrap: {}", bootstrap_bin().display());
}

#[test]
fn bench_throughput_of_small_invocations_and_peak_rss_by_concurrency() {
    let _alone = crate::alone();
    let sixteen = keys("small", SMALL_INVOCATIONS);
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mut peaks = Vec::new();
    let mut ratios = Vec::new();
    for latency in [Duration::ZERO, S3_LATENCY] {
        let mut throughput = Vec::new();
        for concurrency in [1, CONCURRENCY] {
            let function = function(COPY_SCRIPT, concurrency, "warm.bin");
            for key in &sixteen {
                function.s3.put_object(BUCKET, key, &[b'x'; 1024]);
            }
            function.s3.set_latency(latency);
            let mut rates = Vec::new();
            let mut bodies = Vec::new();
            let cpu_before = cpu_jiffies();
            for _ in 0..rounds() {
                let (wall, answered) = invoke_all(&function, &sixteen);
                rates.push(SMALL_INVOCATIONS as f64 / wall.as_secs_f64());
                bodies.extend(answered);
            }
            let busy = busy_share(cpu_before, cpu_jiffies());
            function.s3.set_latency(Duration::ZERO);
            for key in &sixteen {
                assert_eq!(
                    function
                        .s3
                        .get_object(BUCKET, &format!("output/{key}"))
                        .map(|b| b.len()),
                    Some(1024),
                    "{key} was not copied"
                );
            }
            let phases = ["total", "stageIn", "run", "stageOut"].map(|p| phase_median(&bodies, p));
            throughput.push((concurrency, median(rates), phases, busy));
            if latency.is_zero() {
                let peak = function.status_kib("VmHWM");
                assert!(
                    peak > 0,
                    "no VmHWM for the bootstrap (it exited?)\n{}",
                    function.log()
                );
                peaks.push((concurrency, peak as f64 / 1024.0));
            }
        }
        println!(
            "\n== {SMALL_INVOCATIONS} invocations of 1 KiB (cp script), all invoked at once, S3 latency {} ms per request ({} rounds, medians) ==",
            latency.as_millis(),
            rounds()
        );
        for (concurrency, rate, [total, stage_in, run, stage_out], busy) in &throughput {
            println!(
                "concurrency {concurrency}: {rate:6.2} invocations/s   machine CPU busy {:3.0}%   per invocation (median): total {total:6.1} ms = stage-in {stage_in:5.1} + run {run:6.1} + stage-out {stage_out:5.1} + rest",
                busy * 100.0
            );
        }
        let ratio = throughput[1].1 / throughput[0].1;
        ratios.push((latency, ratio));
    }
    println!("cores available: {cores}");
    for (latency, ratio) in &ratios {
        if latency.is_zero() {
            // Every part (emulator, S3 server, bootstrap, containers) is CPU work on the same
            // cores: concurrency can only use the idle ones.
            println!(
                "ratio concurrency {CONCURRENCY} / concurrency 1, loopback S3 (CPU-bound, ceiling {cores} cores): {ratio:.2}x   [for reference]"
            );
        } else {
            println!(
                "ratio concurrency {CONCURRENCY} / concurrency 1, S3 answering after {} ms as a real endpoint does: {ratio:.2}x   [bound: >= 3x] {}",
                latency.as_millis(),
                within(*ratio >= 3.0)
            );
        }
    }
    println!("\n== peak RSS (VmHWM) of the bootstrap after those invocations ==");
    for (concurrency, peak) in &peaks {
        let bound = RSS_BASE_MIB + RSS_PER_INVOCATION_MIB * *concurrency as f64;
        println!(
            "concurrency {concurrency}: {peak:6.1} MiB   [bound: {bound:.0} MiB] {}",
            within(*peak <= bound)
        );
    }
    println!(
        "growth from concurrency 1 to {CONCURRENCY}: {:.1} MiB",
        peaks[1].1 - peaks[0].1
    );
    println!("bootstrap: {}", bootstrap_bin().display());
}
