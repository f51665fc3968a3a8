//! Bounds of the issue, PRINTED as figures beside peers measured in the same run (no timed
//! asserts: a 2-core shared machine makes wall-clock thresholds flaky):
//! - each layer zip at most 8 MiB;
//! - `bootstrap` from exec to its first `GET /runtime/invocation/next` at most 20 ms (prefetch
//!   off), next to the time to exec `/bin/true`.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use scar_e2e::dist::{self, Arch};

const LAYER_BOUND_BYTES: u64 = 8 * 1024 * 1024;
const STARTUP_BOUND: Duration = Duration::from_millis(20);
const RUNS: usize = 15;
/// How long one bootstrap start may take before the figure is declared unavailable.
const FIRST_REQUEST_WAIT: Duration = Duration::from_secs(15);

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

#[test]
fn layer_zip_sizes_are_printed_against_the_8_mib_bound() {
    let _alone = crate::alone();
    println!(
        "bound: each layer zip at most {:.1} MiB",
        mib(LAYER_BOUND_BYTES)
    );
    for arch in Arch::ALL {
        let zip = dist::layer_zip(arch);
        let size = std::fs::metadata(&zip).expect("layer zip").len();
        let bootstrap = std::fs::metadata(dist::bootstrap(arch))
            .expect("bootstrap")
            .len();
        println!(
            "  {:<28} {:>6.2} MiB ({:>5.1}% of the bound) {}; bootstrap unpacked {:.2} MiB",
            dist::layer_zip_name(arch),
            mib(size),
            100.0 * size as f64 / LAYER_BOUND_BYTES as f64,
            if size <= LAYER_BOUND_BYTES {
                "within"
            } else {
                "OVER THE BOUND"
            },
            mib(bootstrap),
        );
        // A zip's size is deterministic (same sources, same compressor): a bound to assert.
        assert!(size > 0, "{} is empty", zip.display());
        assert!(
            size <= LAYER_BOUND_BYTES,
            "{} is {:.2} MiB, over the {:.1} MiB bound of a layer zip",
            zip.display(),
            mib(size),
            mib(LAYER_BOUND_BYTES)
        );
    }
}

/// Why one start gave no figure.
enum Unavailable {
    /// The bootstrap ended before asking for an invocation.
    Exited(String),
    /// It asked the Runtime API something else first (e.g. `/runtime/init/error`).
    OtherRequest(String),
    /// Nothing within [`FIRST_REQUEST_WAIT`].
    Silent,
}

impl std::fmt::Display for Unavailable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Unavailable::Exited(how) => write!(f, "the bootstrap exited first: {how}"),
            Unavailable::OtherRequest(line) => {
                write!(
                    f,
                    "the bootstrap's first request was {line:?}, not GET next"
                )
            }
            Unavailable::Silent => write!(
                f,
                "no request within {}s: the runtime loop does not ask for invocations yet",
                FIRST_REQUEST_WAIT.as_secs()
            ),
        }
    }
}

/// Execs the bootstrap against a listener of ours and returns the time until the request line
/// of its first `GET .../invocation/next` has arrived.
fn time_to_first_next(
    bootstrap: &std::path::Path,
    scratch: &std::path::Path,
) -> Result<Duration, Unavailable> {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.set_nonblocking(true).expect("nonblocking");
    let addr = listener.local_addr().expect("addr");
    let mut command = Command::new(bootstrap);
    command
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        // The form real Lambda uses: host:port, no scheme, no path.
        .env("AWS_LAMBDA_RUNTIME_API", addr.to_string())
        .env("AWS_LAMBDA_FUNCTION_NAME", "bounds")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "1024")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "AKIDBOUNDS")
        .env("AWS_SECRET_ACCESS_KEY", "bounds-secret")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("SCAR_IMAGE", "alpine:3.20")
        .env("SCAR_SCRIPT", "true")
        .env("SCAR_PREFETCH", "false")
        .env("SCAR_CACHE_DIR", scratch.join("cache"))
        .env("SCAR_LOG", "warn")
        .env("TMPDIR", scratch)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let start = Instant::now();
    let mut child = command.spawn().expect("spawn bootstrap");
    let result = wait_for_first_next(&listener, &mut child, start);
    let _ = child.kill();
    let _ = child.wait();
    result
}

fn wait_for_first_next(
    listener: &TcpListener,
    child: &mut Child,
    start: Instant,
) -> Result<Duration, Unavailable> {
    loop {
        match listener.accept() {
            Ok((stream, _)) => {
                let line = read_request_line(&stream);
                let elapsed = start.elapsed();
                if line.starts_with("GET ") && line.contains("/runtime/invocation/next") {
                    return Ok(elapsed);
                }
                answer_accepted(stream);
                return Err(Unavailable::OtherRequest(line));
            }
            Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(err) => panic!("accept: {err}"),
        }
        if let Ok(Some(status)) = child.try_wait() {
            let mut stderr = String::new();
            if let Some(mut pipe) = child.stderr.take() {
                let _ = std::io::Read::read_to_string(&mut pipe, &mut stderr);
            }
            let last = stderr
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("");
            return Err(Unavailable::Exited(format!("{status}: {last}")));
        }
        if start.elapsed() > FIRST_REQUEST_WAIT {
            return Err(Unavailable::Silent);
        }
        // Spin briefly: a sleep would round every figure up to its granularity.
        std::thread::yield_now();
    }
}

fn read_request_line(stream: &TcpStream) -> String {
    stream.set_nonblocking(false).expect("blocking");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let mut line = String::new();
    let _ = BufReader::new(stream).read_line(&mut line);
    line.trim_end().to_owned()
}

fn answer_accepted(mut stream: TcpStream) {
    let _ = stream
        .write_all(b"HTTP/1.1 202 Accepted\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
}

fn time_to_exec_true() -> Duration {
    let start = Instant::now();
    let status = Command::new("/bin/true").status().expect("/bin/true");
    let elapsed = start.elapsed();
    assert!(status.success());
    elapsed
}

#[test]
fn bootstrap_exec_to_first_next_request_is_printed_beside_exec_of_true() {
    let _alone = crate::alone();
    let bootstrap = dist::bootstrap(Arch::X86_64);
    let scratch = tempfile::tempdir().expect("scratch dir");
    // One warm-up of each: page cache, dynamic loader caches for /bin/true.
    let _ = time_to_exec_true();
    let warm_up = time_to_first_next(&bootstrap, scratch.path());
    if let Err(why) = warm_up {
        panic!("bootstrap exec -> first GET /runtime/invocation/next could not be measured: {why}");
    }
    let mut bootstrap_runs = Vec::with_capacity(RUNS);
    let mut true_runs = Vec::with_capacity(RUNS);
    for _ in 0..RUNS {
        // Interleaved, so both see the same machine load.
        true_runs.push(time_to_exec_true());
        match time_to_first_next(&bootstrap, scratch.path()) {
            Ok(elapsed) => bootstrap_runs.push(elapsed),
            Err(why) => panic!("bootstrap exec -> first GET next could not be measured: {why}"),
        }
    }
    let bootstrap_median = median(bootstrap_runs.clone());
    let true_median = median(true_runs);
    println!(
        "bootstrap (static x86_64, prefetch off) exec -> first GET /runtime/invocation/next, median of {RUNS}: {:.2} ms (min {:.2}, max {:.2}); bound {:.0} ms: {}",
        ms(bootstrap_median),
        ms(*bootstrap_runs.iter().min().expect("runs")),
        ms(*bootstrap_runs.iter().max().expect("runs")),
        ms(STARTUP_BOUND),
        if bootstrap_median <= STARTUP_BOUND {
            "within"
        } else {
            "OVER THE BOUND"
        },
    );
    println!(
        "peer: exec of /bin/true to exit, median of {RUNS}: {:.2} ms; bootstrap/peer ratio {:.1}x",
        ms(true_median),
        bootstrap_median.as_secs_f64() / true_median.as_secs_f64().max(1e-9),
    );
}
