//! Section 4: the SCAR paper's own case — its grayify script verbatim on a short video, in an
//! image of Debian bookworm plus `ffmpeg` — as warm invocations through the real `bootstrap`,
//! side by side: on this host with the namespace engine, and inside `scar lambda-sim` (uid 993,
//! seccomp, no user namespaces, a bare root: Lambda's restrictions) with the preload engine.
//! The two functions run at the same time and take turns, so a slow minute hurts both alike.

use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::{Instant, SystemTime};

use bytes::Bytes;
use tokio::sync::mpsc;

use super::context::Bench;
use super::images::BenchImage;
use super::invoke::{BUCKET, Bootstrap, Phases, function_env, invoke_once, services};
use super::measure::Sample;
use super::table::{Row, Section, Series};
use crate::cmd::local::event::{CreatedObject, etag_of, object_created};
use crate::cmd::local::runtime_api::{Notice, RuntimeApi};
use crate::cmd::local::s3::S3Endpoint;

/// The image the case runs in (see `images.rs`).
pub const IMAGE: &str = "ffmpeg";
/// The case's label in the table (the bound in `report.rs` finds it by this prefix).
pub const CASE: &str = "grayify";
/// The row of the host run.
pub const HOST: &str = "bootstrap on this host, namespace engine";
/// The row of the simulated Lambda run.
pub const SIM: &str = "bootstrap in scar lambda-sim, preload engine";
/// The script of the SCAR paper, verbatim.
const SCRIPT: &str = r#"OUTPUT_DIR="/tmp/$REQUEST_ID/output"
FILENAME=`basename $SCAR_INPUT_FILE`
OUTPUT_FILE=$OUTPUT_DIR/$FILENAME
ffmpeg -loglevel panic -nostats -i $SCAR_INPUT_FILE -vf format=gray $OUTPUT_FILE < /dev/null
"#;
/// The input: a generated test pattern, 4 s of 640×360 at 25 frames per second.
const CLIP: &str = "testsrc=duration=4:size=640x360:rate=25";
const KEY: &str = "input/clip.mp4";
/// `/tmp` of the simulated function: the image unpacked plus the request's files.
const SIM_TMP_MB: &str = "4096";

/// Measure the case; nothing in a quick run (the image is a ~100 MB download).
pub fn grayify(bench: &Bench, images: &[BenchImage]) -> Vec<Row> {
    let Some(image) = images.iter().find(|i| i.name == IMAGE) else {
        return Vec::new();
    };
    eprintln!("scar bench: the paper's grayify, on the host and in the Lambda simulator");
    let outcome = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| format!("tokio runtime: {e}"))
        .and_then(|runtime| runtime.block_on(measure(bench, image)));
    let dir = bench.work.join("grayify");
    super::pull::remove_tree(&dir);
    match outcome {
        Ok(rows) => rows,
        Err(reason) => [HOST, SIM]
            .into_iter()
            .map(|tool| Row::from_runs(Section::Invocation, CASE, tool, &[], Some(reason.clone())))
            .collect(),
    }
}

/// One function: its S3 data directory, endpoint, Runtime API and bootstrap.
struct Function {
    data: std::path::PathBuf,
    notices: mpsc::UnboundedReceiver<Notice>,
    // Field order is drop order: the bootstrap goes before the services it talks to.
    bootstrap: Bootstrap,
    api: RuntimeApi,
    _s3: S3Endpoint,
}

impl Function {
    /// One invocation with the clip; checks an output came back.
    async fn invoke(&mut self, event: &Bytes) -> Result<Phases, String> {
        let output = self.data.join("output/clip.mp4");
        let _ = fs::remove_file(&output);
        let phases =
            invoke_once(&self.api, &mut self.notices, &self.bootstrap, event.clone()).await?;
        match fs::metadata(&output) {
            Ok(m) if m.len() > 0 => Ok(phases),
            _ => Err(format!(
                "no grayscale video at {}: {}",
                output.display(),
                self.bootstrap.log_tail()
            )),
        }
    }
}

async fn measure(bench: &Bench, image: &BenchImage) -> Result<Vec<Row>, String> {
    let dir = bench.work.join("grayify");
    let clip = dir.join("clip.mp4");
    make_clip(bench, image, &clip)?;
    let mut host = start(bench, &dir.join("host"), &clip, None).await?;
    let mut sim = start(bench, &dir.join("sim"), &clip, Some(&dir.join("layer"))).await?;
    let object = CreatedObject {
        bucket: BUCKET.to_string(),
        key: KEY.to_string(),
        size: fs::metadata(&clip).map_err(|e| e.to_string())?.len(),
        etag: etag_of(&clip).map_err(|e| format!("hashing {}: {e}", clip.display()))?,
    };
    let event = Bytes::from(object_created(
        std::slice::from_ref(&object),
        "us-east-1",
        SystemTime::now(),
    ));
    // The first invocation of each pulls the image (cold) and is not counted.
    host.invoke(&event)
        .await
        .map_err(|e| format!("on the host: {e}"))?;
    sim.invoke(&event)
        .await
        .map_err(|e| format!("in the simulator: {e}"))?;
    let mut series = [Series::default(), Series::default()];
    let mut reported: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
    for round in 0..bench.runs.invoke {
        // Alternate who goes first.
        let order = if round % 2 == 0 { [0, 1] } else { [1, 0] };
        for which in order {
            let function = if which == 0 { &mut host } else { &mut sim };
            let started = Instant::now();
            let phases = function.invoke(&event).await.map_err(|e| {
                format!(
                    "{}: {e}",
                    if which == 0 {
                        "on the host"
                    } else {
                        "in the simulator"
                    }
                )
            })?;
            series[which].record(Ok(Sample {
                secs: started.elapsed().as_secs_f64(),
                max_rss_kib: 0,
            }));
            reported[which].push(phases.duration_ms);
        }
    }
    let [host_series, sim_series] = series;
    let case = format!("{CASE} (paper's script, 4 s 640×360 clip, warm)");
    let mut rows = vec![
        host_series.into_row(Section::Invocation, &case, HOST),
        sim_series.into_row(Section::Invocation, &case, SIM),
    ];
    let median = |v: &[f64]| {
        let mut v = v.to_vec();
        v.sort_by(f64::total_cmp);
        v.get(v.len() / 2).copied().unwrap_or(0.0)
    };
    for (row, ms) in rows.iter_mut().zip(&reported) {
        row.note = format!(
            "event queued → response; durationMs median {:.0} ms",
            median(ms)
        );
    }
    Ok(rows)
}

/// The input video, made with the image's own ffmpeg (namespace engine).
fn make_clip(bench: &Bench, image: &BenchImage, clip: &Path) -> Result<(), String> {
    let out_dir = clip.parent().ok_or("the clip has no directory")?;
    fs::create_dir_all(out_dir).map_err(|e| format!("{}: {e}", out_dir.display()))?;
    let output = bench
        .scar_command("run")
        .args(["--engine", "namespace", "--rootfs"])
        .arg(&image.root)
        .arg("-v")
        .arg(format!("{}:/out", out_dir.display()))
        .args([
            "--",
            "ffmpeg",
            "-loglevel",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
            CLIP,
        ])
        .args(["-pix_fmt", "yuv420p", "/out/clip.mp4"])
        .output()
        .map_err(|e| format!("running scar run: {e}"))?;
    if !output.status.success() || !clip.is_file() {
        return Err(format!(
            "making the input clip with the image's ffmpeg failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    Ok(())
}

/// A function serving the clip from its own S3 data directory: the bootstrap on this host, or
/// (with `layer`) in the simulator with a layer made of this bootstrap and the preload
/// libraries.
async fn start(
    bench: &Bench,
    dir: &Path,
    clip: &Path,
    layer: Option<&Path>,
) -> Result<Function, String> {
    let data = dir.join("data");
    let input = data.join(KEY);
    if let Some(parent) = input.parent() {
        fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
    }
    fs::copy(clip, &input).map_err(|e| format!("{}: {e}", input.display()))?;
    let (s3, api, notices) = services(&data).await?;
    let env = function_env(bench, &api, &s3, IMAGE, SCRIPT);
    let log = dir.join("bootstrap.log");
    let bootstrap = match layer {
        None => {
            let mut command = Command::new(&bench.bootstrap);
            command
                .env_clear()
                .envs(env)
                .env("SCAR_ENGINE", "namespace")
                .env("SCAR_CACHE_DIR", dir.join("cache"))
                .env("TMPDIR", dir);
            Bootstrap::start(&mut command, &log)?
        }
        Some(layer) => {
            make_layer(bench, layer)?;
            let mut command = Command::new(&bench.scar);
            command
                .arg("lambda-sim")
                .arg("--layer")
                .arg(layer)
                .args(["--tmp-mb", SIM_TMP_MB]);
            for (name, value) in env {
                command.arg("-e").arg(format!("{name}={value}"));
            }
            command.args(["-e", "SCAR_ENGINE=preload", "--", "/opt/bootstrap"]);
            Bootstrap::start(&mut command, &log)?
        }
    };
    Ok(Function {
        data,
        notices,
        bootstrap,
        api,
        _s3: s3,
    })
}

/// A layer directory as Lambda unpacks the zip: `bootstrap` and `preload/`.
fn make_layer(bench: &Bench, layer: &Path) -> Result<(), String> {
    let preload = bench
        .preload_dir
        .as_deref()
        .ok_or("the preload libraries were not found: pass --preload-dir")?;
    if !crate::sim::is_static_elf(&bench.bootstrap) {
        return Err(format!(
            "{} is not a static binary, and the simulator's root holds no C library: pass the static one of ./build.sh with --bootstrap",
            bench.bootstrap.display()
        ));
    }
    let libs = layer.join("preload");
    fs::create_dir_all(&libs).map_err(|e| format!("{}: {e}", libs.display()))?;
    fs::copy(&bench.bootstrap, layer.join("bootstrap"))
        .map_err(|e| format!("copying the bootstrap: {e}"))?;
    for entry in fs::read_dir(preload).map_err(|e| format!("{}: {e}", preload.display()))? {
        let entry = entry.map_err(|e| e.to_string())?;
        if entry.path().is_file() {
            fs::copy(entry.path(), libs.join(entry.file_name()))
                .map_err(|e| format!("copying {}: {e}", entry.path().display()))?;
        }
    }
    Ok(())
}
