//! Benchmarks of the bootstrap's HTTP answers. They PRINT figures beside the S3 path measured in
//! the same run and assert only that the work was done, never a time.
//!
//! Run: `cargo test -p scar-e2e --test benches http_bench:: -- --nocapture --test-threads=1`
//! (`SCAR_BENCH_QUICK=1`: fewer rounds, a 32 MiB stream instead of 100 MB).
//!
//! Bounds from issue #20: the supervisor overhead of an HTTP invocation with a 1 KiB body at most
//! the S3 path's; streaming a 100 MB output, the first byte leaves within 50 ms of the script's
//! end and the bootstrap's peak RSS stays under 40 MiB.

use std::io::Read;
use std::time::{Duration, Instant};

use base64::Engine as _;

use crate::bootstrap_bench::{percentile, phase, quick, summary};
use crate::bootstrap_support::{BUCKET, COPY_SCRIPT, Function};

/// The last JSON log line of `function` whose message is `message`.
fn last_logged(function: &Function, message: &str) -> serde_json::Value {
    let log = function.log();
    log.lines()
        .rev()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .find(|line| line["message"] == message)
        .unwrap_or_else(|| panic!("no {message:?} line in the bootstrap log:\n{log}"))
}

fn number(fields: &serde_json::Value, name: &str) -> f64 {
    fields[name]
        .as_f64()
        .unwrap_or_else(|| panic!("no number {name} in {fields}"))
}

/// An HTTP API (payload 2.0) request posting `body` to `/<name>`.
fn http_api_event(name: &str, body: &[u8]) -> serde_json::Value {
    serde_json::json!({
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": format!("/{name}"),
        "rawQueryString": "",
        "headers": {"content-type": "application/octet-stream", "host": "bench.example"},
        "requestContext": {
            "http": {"method": "POST", "path": format!("/{name}"), "protocol": "HTTP/1.1",
                     "sourceIp": "127.0.0.1", "userAgent": "bench"},
            "requestId": "bench", "routeKey": "$default", "stage": "$default"
        },
        "body": base64::engine::general_purpose::STANDARD.encode(body),
        "isBase64Encoded": true
    })
}

#[test]
fn bench_http_overhead_of_a_1_kib_body_against_the_s3_path() {
    let _alone = crate::alone();
    let rounds = if quick() { 10 } else { 40 };
    let function = Function::spec()
        .env("SCAR_SCRIPT", COPY_SCRIPT)
        .env("SCAR_LOG_FORMAT", "json")
        .start();
    let one_kib = [b'x'; 1024];
    function.s3.put_object(BUCKET, "one-kib.bin", &one_kib);
    let request = http_api_event("one-kib.bin", &one_kib);
    for _ in 0..3 {
        assert_eq!(function.invoke_s3(&["one-kib.bin"]).status, 200);
        assert_eq!(function.invoke(&request).status, 200);
    }
    let (mut http, mut s3, mut http_wall, mut s3_wall) = (vec![], vec![], vec![], vec![]);
    let (mut http_run, mut s3_run) = (vec![], vec![]);
    for _ in 0..rounds {
        // Alternated, so that the machine's noise falls on both alike.
        let started = Instant::now();
        let answer = function.invoke(&request);
        http_wall.push(started.elapsed().as_secs_f64() * 1e3);
        assert_eq!(answer.status, 200, "{}\n{}", answer.body, function.log());
        assert_eq!(answer.body["statusCode"], 200, "{}", answer.body);
        let body = answer.body["body"].as_str().unwrap_or_default();
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(body)
            .unwrap_or_default();
        assert_eq!(decoded, one_kib, "the answer is the copied body");
        let fields = last_logged(&function, "HTTP request processed");
        // No S3 round trip on this path (SCAR_OUTPUT unset): all but the container's run is
        // the supervisor's, the body's staging and the answer's encoding included.
        let run = number(&fields, "run_ms");
        http.push(number(&fields, "total_ms") - number(&fields, "stage_out_ms") - run);
        http_run.push(run);

        let started = Instant::now();
        let result = function.invoke_s3(&["one-kib.bin"]);
        s3_wall.push(started.elapsed().as_secs_f64() * 1e3);
        assert_eq!(result.status, 200, "{}\n{}", result.body, function.log());
        let body = &result.body;
        let s3_phases = phase(body, "stageIn") + phase(body, "stageOut");
        s3.push(phase(body, "total") - s3_phases - phase(body, "run"));
        s3_run.push(phase(body, "run"));
    }
    println!(
        "\n== supervisor overhead, HTTP 2.0 request vs S3 event, 1 KiB, cp script ({rounds} rounds each) =="
    );
    println!(
        "HTTP: total - run - S3       {}   [bound: <= the S3 path's]",
        summary(http.clone())
    );
    println!("S3:   total - run - S3       {}", summary(s3.clone()));
    println!("HTTP: container run          {}", summary(http_run));
    println!("S3:   container run          {}", summary(s3_run));
    println!("HTTP invoke, wall            {}", summary(http_wall));
    println!("S3 invoke, wall              {}", summary(s3_wall));
    http.sort_by(f64::total_cmp);
    s3.sort_by(f64::total_cmp);
    println!(
        "ratio HTTP / S3 overhead (median): {:.2}x",
        percentile(&http, 0.5) / percentile(&s3, 0.5)
    );
}

/// `POST /lambda-url/scar/<path>` on the emulator, as a Function URL; anything but a 200 fails
/// with the logs. Returns the status, the time to the response head, the time to the last byte
/// and the body's length.
fn function_url_download(function: &Function, path: &str) -> (u16, f64, f64, u64) {
    let url = format!("{}/lambda-url/scar/{path}", function.api.url());
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(300))
        .build()
        .expect("HTTP client");
    let started = Instant::now();
    let mut response = client
        .post(&url)
        .body("go")
        .send()
        .unwrap_or_else(|err| panic!("{url}: {err}\n{}", function.log()));
    let head = started.elapsed().as_secs_f64() * 1e3;
    let status = response.status().as_u16();
    if status != 200 {
        let text = response.text().unwrap_or_default();
        panic!(
            "{url} answered {status}: {text}\n--- bootstrap log ---\n{}\n--- emulator log ---\n{}",
            function.log(),
            function.api.log()
        );
    }
    let (mut total, mut buffer) = (0u64, vec![0u8; 1 << 16]);
    loop {
        let n = response.read(&mut buffer).expect("read the answer");
        if n == 0 {
            break;
        }
        total += n as u64;
    }
    (status, head, started.elapsed().as_secs_f64() * 1e3, total)
}

#[test]
fn bench_streaming_a_100_mb_output_first_byte_after_the_script_and_peak_rss() {
    let _alone = crate::alone();
    let mb: u64 = if quick() { 32 } else { 100 };
    let script = format!(
        "if [ \"$SCAR_HTTP_PATH\" = /big.bin ]; then dd if=/dev/zero of=\"$SCAR_OUTPUT_DIR/big.bin\" bs=1000000 count={mb} 2>/dev/null; else echo small > \"$SCAR_OUTPUT_DIR/small.txt\"; fi"
    );
    let function = Function::spec()
        .env("SCAR_SCRIPT", &script)
        .env("SCAR_HTTP_STREAMING", "true")
        .env("SCAR_LOG_FORMAT", "json")
        .start();
    let (_, _, _, len) = function_url_download(&function, "small.txt");
    assert_eq!(len, 6, "{}", function.log());
    let baseline = function.status_kib("VmHWM");
    let (_, head, total, len) = function_url_download(&function, "big.bin");
    assert_eq!(len, mb * 1_000_000, "the whole output arrived");
    let peak = function.status_kib("VmHWM");
    let streamed = last_logged(&function, "HTTP answer streamed");
    assert_eq!(
        streamed["bytes"].as_u64(),
        Some(mb * 1_000_000),
        "{streamed}"
    );
    let processed = last_logged(&function, "HTTP request processed");
    println!(
        "\n== streaming a {mb} MB output through a Function URL (emulator, RESPONSE_STREAM) =="
    );
    println!(
        "first byte sent after the script's end: {:6.2} ms   [bound: 50 ms]",
        number(&streamed, "since_script_end_ms")
    );
    println!(
        "peer: the script's run itself:          {:6.2} ms",
        number(&processed, "run_ms")
    );
    println!(
        "client: response head after {head:.1} ms, last byte after {total:.1} ms ({:.0} MB/s through the emulator)",
        mb as f64 / total * 1e3
    );
    println!(
        "bootstrap VmHWM after a 6-byte answer (peer): {:6.1} MiB",
        baseline as f64 / 1024.0
    );
    println!(
        "bootstrap VmHWM after the {mb} MB answer:     {:6.1} MiB   [bound: 40 MiB]",
        peak as f64 / 1024.0
    );
}
