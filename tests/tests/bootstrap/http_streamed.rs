//! End to end, streamed HTTP answers (`SCAR_HTTP_STREAMING=true`) through the emulator's
//! Function URL route, which reads the Runtime API's streaming mode (prelude, 8 NULs, body)
//! as Lambda's front end does: failures with their status in the prelude, and 50 MiB of
//! random bytes whole, timed.
//!
//! Run: `cargo test -p scar-e2e --test bootstrap http_streamed:: -- --nocapture`.

use std::io::Read as _;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use crate::bootstrap_support::{Function, INVOKE_TIMEOUT};
use crate::http::{SCRIPT, function, post};

/// Bytes of the random output streamed: 50 MiB (the script's `*/random` branch).
const RANDOM_BYTES: u64 = 50 << 20;

#[test]
fn streamed_failures_carry_their_status_and_scar_error_through_the_prelude() {
    // The emulator's deadline is 600 s away: a margin of 597 s stops the script after ~3 s.
    let function = Function::spec()
        .env("SCAR_SCRIPT", SCRIPT)
        .env("SCAR_HTTP_STREAMING", "true")
        .env("SCAR_TIMEOUT_MARGIN", "597")
        .start();
    let answer = post(&function, "fail", b"x".to_vec());
    assert_eq!(answer.status, 422, "{}\n{}", answer.text(), function.log());
    assert_eq!(answer.header("content-type"), "application/json");
    let error = answer.json();
    assert_eq!(error["errorType"], "Scar.ScriptFailed", "{error}");
    let message = error["errorMessage"].as_str().unwrap_or_default();
    assert!(message.contains("refusing: not a picture"), "{message}");
    assert!(error["requestId"].as_str().is_some_and(|id| !id.is_empty()));

    let started = Instant::now();
    let answer = post(&function, "sleep", b"x".to_vec());
    assert_eq!(answer.status, 504, "{}\n{}", answer.text(), function.log());
    assert_eq!(answer.json()["errorType"], "Scar.Timeout");
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "{:?}",
        started.elapsed()
    );
    let log = function.log_with("HTTP answer streamed", 2, Duration::from_secs(10));
    let streamed = log.matches("HTTP answer streamed").count();
    assert_eq!(streamed, 2, "both failures went as streams:\n{log}");
}

#[test]
fn fifty_mib_of_random_bytes_stream_whole_through_a_function_url() {
    let function = function(true);
    let started = Instant::now();
    let url = format!("{}/lambda-url/scar/random", function.api.url());
    let mut response = reqwest::blocking::Client::builder()
        .timeout(INVOKE_TIMEOUT)
        .build()
        .expect("HTTP client")
        .post(&url)
        .send()
        .unwrap_or_else(|err| panic!("{url}: {err}\n{}", function.log()));
    let head_after = started.elapsed();
    assert_eq!(response.status(), 200, "{}", function.log());
    let content_type = response.headers()["content-type"].clone();
    assert_eq!(content_type, "application/octet-stream");
    let mut hasher = Sha256::new();
    let mut first = [0u8; 1];
    let mut received = response.read(&mut first).expect("the first byte") as u64;
    let first_after = started.elapsed();
    hasher.update(&first[..received as usize]);
    received += std::io::copy(&mut response, &mut hasher).expect("the streamed body");
    let total = started.elapsed();
    assert_eq!(received, RANDOM_BYTES, "{}", function.log());
    let log = function.log();
    let made = log
        .split("made ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("the script's sha256 is not in the log:\n{log}"));
    assert_eq!(
        hex::encode(hasher.finalize()),
        made,
        "the bytes differ from what the script made"
    );
    let streamed = log
        .lines()
        .find(|l| l.contains("HTTP answer streamed"))
        .unwrap_or_else(|| panic!("no HTTP answer streamed in:\n{log}"));
    let since_script_end = streamed
        .split("since_script_end_ms")
        .nth(1)
        .map(|rest| {
            rest.trim_start_matches(['=', ':', '"', ' '])
                .chars()
                .take_while(|c| c.is_ascii_digit() || *c == '.')
                .collect::<String>()
        })
        .unwrap_or_default();
    let stream_secs = (total - first_after).as_secs_f64();
    println!(
        "50 MiB streamed: status after {:.0} ms (the script's run included), first body byte \
         after {:.0} ms, the rest in {:.2} s ({:.0} MiB/s), {:.2} s in all; the bootstrap sent \
         its first byte {since_script_end} ms after the script's end",
        head_after.as_secs_f64() * 1e3,
        first_after.as_secs_f64() * 1e3,
        stream_secs,
        50.0 / stream_secs,
        total.as_secs_f64()
    );
}
