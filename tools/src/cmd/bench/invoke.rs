//! Section 3: full warm invocations through the real `bootstrap`, served by the embedded Runtime
//! API and S3 endpoint of `scar local`, with the supervisor's phases broken out from each
//! response (`durationMs`, `phasesMs`), and the bootstrap's own startup to its first
//! `GET /runtime/invocation/next`.

use std::fs::{self, File};
use std::io::{BufWriter, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use tokio::sync::mpsc;

use super::context::Bench;
use super::images::BenchImage;
use super::measure::Sample;
use super::table::{Row, Section, Series, human_bytes};
use crate::cmd::local::event::{CreatedObject, etag_of, object_created};
use crate::cmd::local::runtime_api::{Notice, Reply, RuntimeApi};
use crate::cmd::local::s3::S3Endpoint;

pub(super) const BUCKET: &str = "scar-bench";
/// The bootstrap issue's reference job: the supervisor's own cost shows, the script's does not.
const SCRIPT: &str = r#"cp "$SCAR_INPUT_FILE" "$SCAR_OUTPUT_DIR/""#;
/// Longest wait for one invocation (a 200 MiB round trip on a busy machine included).
pub(super) const INVOKE_LIMIT: Duration = Duration::from_secs(600);

/// Measure warm invocations at each input size, and the bootstrap's time to its first request.
pub fn invocations(bench: &Bench, images: &[BenchImage]) -> Vec<Row> {
    let mut rows = vec![first_request(bench)];
    let Some(image) = images.iter().find(|i| i.name == "small") else {
        rows.push(failed("any", "the small image was not built"));
        return rows;
    };
    if !bench.bootstrap.is_file() {
        rows.push(failed(
            "any",
            &format!(
                "no bootstrap at {}: build it with `cargo build -p scar-bootstrap` or pass --bootstrap",
                bench.bootstrap.display()
            ),
        ));
        return rows;
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            rows.push(failed("any", &format!("tokio runtime: {err}")));
            return rows;
        }
    };
    let sizes: &[u64] = if bench.quick {
        &[1024, 1024 * 1024]
    } else {
        &[1024, 10 * 1024 * 1024, 200 * 1024 * 1024]
    };
    for &size in sizes {
        eprintln!(
            "scar bench: warm invocations with a {} input",
            human_bytes(size)
        );
        rows.extend(runtime.block_on(invocations_of_size(bench, image, size)));
    }
    rows
}

fn failed(case: &str, reason: &str) -> Row {
    Row::from_runs(
        Section::Invocation,
        case,
        "bootstrap (end to end)",
        &[],
        Some(reason.to_string()),
    )
}

/// A row of the phase breakdown: its label and how to read it from a response.
type PhasePart = (&'static str, fn(&Phases) -> f64);

/// What one invocation's response says about it.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Phases {
    pub(super) duration_ms: f64,
    pull: f64,
    stage_in: f64,
    run: f64,
    stage_out: f64,
}

impl Phases {
    fn from_response(document: &serde_json::Value) -> Option<Phases> {
        let phases = document.get("phasesMs")?;
        let field = |name: &str| phases.get(name).and_then(serde_json::Value::as_f64);
        Some(Phases {
            duration_ms: document.get("durationMs")?.as_f64()?,
            pull: field("pull")?,
            stage_in: field("stageIn")?,
            run: field("run")?,
            stage_out: field("stageOut")?,
        })
    }

    /// What the supervisor adds besides moving bytes to and from S3 (the container's run,
    /// which includes starting it, stays in: starting it is the supervisor's job).
    fn overhead_ms(&self) -> f64 {
        (self.duration_ms - self.stage_in - self.stage_out).max(0.0)
    }
}

async fn invocations_of_size(bench: &Bench, image: &BenchImage, size: u64) -> Vec<Row> {
    let case = format!("{} input", human_bytes(size));
    match measure_size(bench, image, size, &case).await {
        Ok(rows) => rows,
        Err(reason) => vec![failed(&case, &reason)],
    }
}

/// A function's services: an S3 endpoint serving `data` (bucket [`BUCKET`]) and a Runtime API,
/// with the receiver of what the Runtime API notices.
pub(super) async fn services(
    data: &Path,
) -> Result<(S3Endpoint, RuntimeApi, mpsc::UnboundedReceiver<Notice>), String> {
    let s3 = S3Endpoint::start(data, &[BUCKET.to_string()])
        .await
        .map_err(|e| format!("S3 endpoint: {e}"))?;
    let (notices_tx, notices) = mpsc::unbounded_channel();
    let api = RuntimeApi::start(
        "arn:aws:lambda:us-east-1:000000000000:function:scar-bench".to_string(),
        INVOKE_LIMIT,
        notices_tx,
    )
    .await
    .map_err(|e| format!("Runtime API: {e}"))?;
    Ok((s3, api, notices))
}

/// The environment of a benchmark function: the Runtime API and S3 endpoint given, the image
/// `bench/<image>` of the bench's registry, and `script`.
pub(super) fn function_env(
    bench: &Bench,
    api: &RuntimeApi,
    s3: &S3Endpoint,
    image: &str,
    script: &str,
) -> Vec<(String, String)> {
    [
        ("PATH", "/usr/local/bin:/usr/bin:/bin".to_string()),
        ("AWS_LAMBDA_RUNTIME_API", api.address().to_string()),
        ("AWS_LAMBDA_FUNCTION_NAME", "scar-bench".to_string()),
        ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST".to_string()),
        ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "1024".to_string()),
        ("AWS_REGION", "us-east-1".to_string()),
        ("AWS_ACCESS_KEY_ID", s3.access_key.clone()),
        ("AWS_SECRET_ACCESS_KEY", s3.secret_key.clone()),
        ("AWS_ENDPOINT_URL_S3", s3.url()),
        ("AWS_EC2_METADATA_DISABLED", "true".to_string()),
        ("SCAR_IMAGE", bench.registry.reference(image)),
        ("SCAR_INSECURE_REGISTRIES", bench.registry.host()),
        ("SCAR_SCRIPT", script.to_string()),
        ("SCAR_OUTPUT", format!("s3://{BUCKET}/output/")),
        ("SCAR_LOG", "info".to_string()),
    ]
    .into_iter()
    .map(|(name, value)| (name.to_string(), value))
    .collect()
}

/// A bootstrap process, killed when dropped.
pub(super) struct Bootstrap {
    child: Child,
    log: PathBuf,
}

impl Drop for Bootstrap {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Bootstrap {
    /// Start `command` (a bootstrap, or a sandbox around one) with its output in `log`.
    pub(super) fn start(command: &mut Command, log: &Path) -> Result<Bootstrap, String> {
        let log_file = File::create(log).map_err(|e| format!("{}: {e}", log.display()))?;
        let log_err = log_file.try_clone().map_err(|e| e.to_string())?;
        let child = command
            .stdin(Stdio::null())
            .stdout(log_file)
            .stderr(log_err)
            .spawn()
            .map_err(|e| format!("starting {:?}: {e}", command.get_program()))?;
        Ok(Bootstrap {
            child,
            log: log.to_path_buf(),
        })
    }

    /// Peak RSS so far (`VmHWM`), KiB.
    fn peak_rss_kib(&self) -> u64 {
        let status = fs::read_to_string(format!("/proc/{}/status", self.child.id()));
        status
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    }

    pub(super) fn log_tail(&self) -> String {
        let text = fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
        lines[lines.len().saturating_sub(2)..].join(" / ")
    }
}

async fn measure_size(
    bench: &Bench,
    image: &BenchImage,
    size: u64,
    case: &str,
) -> Result<Vec<Row>, String> {
    let dir = bench.work.join(format!("invoke-{size}"));
    let data = dir.join("data");
    let key = format!("input/input-{size}.bin");
    let input = data.join(&key);
    write_input(&input, size).map_err(|e| format!("writing {}: {e}", input.display()))?;
    let object = CreatedObject {
        bucket: BUCKET.to_string(),
        key: key.clone(),
        size,
        etag: etag_of(&input).map_err(|e| format!("hashing {}: {e}", input.display()))?,
    };
    let (s3, api, mut notices) = services(&data).await?;

    let cache = dir.join("cache");
    let env = function_env(bench, &api, &s3, image.name, SCRIPT)
        .into_iter()
        .chain([
            ("SCAR_CACHE_DIR".to_string(), cache.display().to_string()),
            ("TMPDIR".to_string(), dir.display().to_string()),
        ]);
    let bootstrap = Bootstrap::start(
        Command::new(&bench.bootstrap).env_clear().envs(env),
        &dir.join("bootstrap.log"),
    )?;

    let event = Bytes::from(object_created(
        std::slice::from_ref(&object),
        "us-east-1",
        SystemTime::now(),
    ));
    // The first invocation pulls the image (cold) and is not counted: the rows are warm ones.
    invoke_once(&api, &mut notices, &bootstrap, event.clone()).await?;
    let output = data.join("output").join(format!("input-{size}.bin"));
    let written = fs::metadata(&output).map(|m| m.len()).unwrap_or(0);
    if written != size {
        return Err(format!(
            "the output {} has {written} bytes, not {size}: {}",
            output.display(),
            bootstrap.log_tail()
        ));
    }

    let mut end_to_end = Series::default();
    let mut reported = Vec::new();
    for _ in 0..bench.runs.invoke {
        let started = Instant::now();
        let phases = invoke_once(&api, &mut notices, &bootstrap, event.clone()).await?;
        end_to_end.record(Ok(Sample {
            secs: started.elapsed().as_secs_f64(),
            max_rss_kib: 0,
        }));
        reported.push(phases);
    }
    end_to_end.warm_up_rss_kib = bootstrap.peak_rss_kib();
    drop(bootstrap);
    drop(api);
    drop(s3);
    super::pull::remove_tree(&dir);

    let mut rows = Vec::new();
    let mut total = end_to_end.into_row(Section::Invocation, case, "bootstrap (end to end)");
    total.x = Some(size as f64);
    total.note = "event queued → response received; peak RSS is the bootstrap's VmHWM".into();
    rows.push(total);
    let parts: [PhasePart; 6] = [
        ("durationMs (bootstrap's own)", |p| p.duration_ms),
        ("phase: pull (cache hit)", |p| p.pull),
        ("phase: stage-in (S3 download)", |p| p.stage_in),
        ("phase: run (container)", |p| p.run),
        ("phase: stage-out (S3 upload)", |p| p.stage_out),
        ("supervisor overhead", Phases::overhead_ms),
    ];
    for (label, part) in parts {
        let samples: Vec<Sample> = reported
            .iter()
            .map(|p| Sample {
                secs: part(p) / 1e3,
                max_rss_kib: 0,
            })
            .collect();
        let mut row = Row::from_runs(Section::Invocation, case, label, &samples, None);
        // The parts that grow with the input go on the scaling plot next to the total.
        if label.starts_with("phase: stage") || label.starts_with("phase: run") {
            row.x = Some(size as f64);
        }
        if label == "supervisor overhead" {
            row.note = "durationMs − stage-in − stage-out (S3 round trips excluded)".into();
        } else if label.starts_with("durationMs") {
            row.note = "from the response JSON (whole milliseconds)".into();
        }
        rows.push(row);
    }
    Ok(rows)
}

/// Queue `event`, wait for the bootstrap's answer, and read the phases from the response.
pub(super) async fn invoke_once(
    api: &RuntimeApi,
    notices: &mut mpsc::UnboundedReceiver<Notice>,
    bootstrap: &Bootstrap,
    event: Bytes,
) -> Result<Phases, String> {
    let invocation = api.invoke(event);
    let reply = match tokio::time::timeout(INVOKE_LIMIT, invocation.reply).await {
        Ok(Ok(reply)) => reply,
        Ok(Err(_)) => return Err("the Runtime API dropped the invocation".into()),
        Err(_) => {
            let mut reason = format!(
                "no answer within {} s: {}",
                INVOKE_LIMIT.as_secs(),
                bootstrap.log_tail()
            );
            while let Ok(notice) = notices.try_recv() {
                if let Notice::InitError { error_type, .. } = notice {
                    reason = format!("init error {error_type}: {}", bootstrap.log_tail());
                }
            }
            return Err(reason);
        }
    };
    match reply {
        Reply::Response(body) => {
            let document: serde_json::Value = serde_json::from_slice(&body)
                .map_err(|e| format!("the response is not JSON ({e})"))?;
            Phases::from_response(&document)
                .ok_or_else(|| format!("no durationMs/phasesMs in the response {document}"))
        }
        Reply::Stream(_) => Err("the bootstrap streamed its answer to an S3 event".into()),
        Reply::Error { error_type, body } => Err(format!(
            "{error_type}: {}",
            String::from_utf8_lossy(&body)
                .chars()
                .take(200)
                .collect::<String>()
        )),
    }
}

/// `size` bytes of a fixed pseudo-random pattern (xorshift), so runs see the same data.
fn write_input(path: &Path, size: u64) -> std::io::Result<()> {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent)?;
    }
    let mut out = BufWriter::with_capacity(1 << 20, File::create(path)?);
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut left = size;
    let mut block = vec![0u8; 1 << 16];
    while left > 0 {
        for chunk in block.chunks_mut(8) {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            chunk.copy_from_slice(&state.to_le_bytes()[..chunk.len()]);
        }
        let n = left.min(block.len() as u64) as usize;
        out.write_all(&block[..n])?;
        left -= n as u64;
    }
    out.flush()
}

/// Time from exec of `bootstrap` (prefetch off) to its first `GET /runtime/invocation/next`
/// reaching a listener of ours: the workspace issue's startup bound.
fn first_request(bench: &Bench) -> Row {
    let case = "init (prefetch off)";
    let tool = "bootstrap exec → first GET /next";
    if !bench.bootstrap.is_file() {
        return Row::from_runs(
            Section::Invocation,
            case,
            tool,
            &[],
            Some(format!("no bootstrap at {}", bench.bootstrap.display())),
        );
    }
    let mut series = Series::default();
    for _ in 0..bench.runs.start {
        match time_to_first_request(bench) {
            Ok(secs) => series.samples.push(Sample {
                secs,
                max_rss_kib: 0,
            }),
            Err(reason) => {
                series.failure = Some(reason);
                break;
            }
        }
    }
    let mut row = series.into_row(Section::Invocation, case, tool);
    if row.result.is_ok() {
        row.note = "bound ≤ 20 ms".into();
    }
    row
}

fn time_to_first_request(bench: &Bench) -> Result<f64, String> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("bind: {e}"))?;
    listener
        .set_nonblocking(true)
        .map_err(|e| format!("nonblocking: {e}"))?;
    let address = listener.local_addr().map_err(|e| e.to_string())?;
    let dir = bench.work.join("first-request");
    let _ = fs::create_dir_all(&dir);
    let mut command = Command::new(&bench.bootstrap);
    command
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("AWS_LAMBDA_RUNTIME_API", address.to_string())
        .env("AWS_LAMBDA_FUNCTION_NAME", "scar-bench")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "AKIDSCARBENCH")
        .env("AWS_SECRET_ACCESS_KEY", "scar-bench")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("SCAR_IMAGE", bench.registry.reference("small"))
        .env("SCAR_SCRIPT", "true")
        .env("SCAR_PREFETCH", "false")
        .env("SCAR_CACHE_DIR", dir.join("cache"))
        .env("SCAR_LOG", "warn")
        .env("TMPDIR", &dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let started = Instant::now();
    let mut child = command
        .spawn()
        .map_err(|e| format!("starting bootstrap: {e}"))?;
    let result = loop {
        match listener.accept() {
            Ok((stream, _)) => {
                let line = request_line(stream);
                let secs = started.elapsed().as_secs_f64();
                break if line.starts_with("GET ") && line.contains("/runtime/invocation/next") {
                    Ok(secs)
                } else {
                    Err(format!("the first request was `{line}`"))
                };
            }
            Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(err) => break Err(format!("accept: {err}")),
        }
        if let Ok(Some(status)) = child.try_wait() {
            break Err(format!(
                "bootstrap exited ({status}) before asking for an invocation"
            ));
        }
        if started.elapsed() > Duration::from_secs(30) {
            break Err("no request within 30 s".into());
        }
        // Spin: a sleep would round every figure up to its granularity.
        std::thread::yield_now();
    };
    let _ = child.kill();
    let _ = child.wait();
    result
}

fn request_line(mut stream: TcpStream) -> String {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let mut buffer = [0u8; 256];
    let n = stream.read(&mut buffer).unwrap_or(0);
    String::from_utf8_lossy(&buffer[..n])
        .lines()
        .next()
        .unwrap_or("")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_come_from_the_response_and_overhead_leaves_s3_out() {
        let document = serde_json::json!({
            "durationMs": 40,
            "phasesMs": {"pull": 0.5, "stageIn": 10.0, "run": 6.0, "stageOut": 20.0}
        });
        let phases = Phases::from_response(&document).unwrap();
        assert_eq!(phases.overhead_ms(), 10.0);
        assert!(Phases::from_response(&serde_json::json!({"durationMs": 1})).is_none());
    }

    #[test]
    fn inputs_have_the_exact_size_asked() {
        let path = std::env::temp_dir().join(format!("scar-bench-input-{}", std::process::id()));
        write_input(&path, 100_003).unwrap();
        assert_eq!(fs::metadata(&path).unwrap().len(), 100_003);
        fs::remove_file(&path).unwrap();
    }
}
