//! Section 1: cold pull + extract of each image from the loopback registry, this project next to
//! skopeo + umoci, udocker and the `gzip -dc` floor, in interleaved rounds.

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};

use super::context::Bench;
use super::images::BenchImage;
use super::measure::{RunError, Sample, measure};
use super::table::{Row, Section, Series};

/// The pullers compared, in column order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Puller {
    /// `scar pull` into an empty cache.
    Scar,
    /// `skopeo copy` to an OCI layout then `umoci raw unpack --rootless`.
    SkopeoUmoci,
    /// `udocker pull` then `udocker create`.
    Udocker,
    /// `gzip -dc` of the layer blobs to /dev/null, one after another.
    GzipFloor,
}

impl Puller {
    /// All of them.
    pub const ALL: [Puller; 4] = [
        Puller::Scar,
        Puller::SkopeoUmoci,
        Puller::Udocker,
        Puller::GzipFloor,
    ];

    /// Name in the table.
    pub fn label(self) -> &'static str {
        match self {
            Puller::Scar => "scar pull",
            Puller::SkopeoUmoci => "skopeo copy + umoci raw unpack --rootless",
            Puller::Udocker => "udocker pull + create",
            Puller::GzipFloor => "floor: gzip -dc of the blobs",
        }
    }
}

/// Measure every puller on every image; also the warm (cached) resolution of `scar pull`.
pub fn cold_pulls(bench: &Bench, images: &[BenchImage]) -> Vec<Row> {
    let mut rows = Vec::new();
    for image in images {
        let case = format!(
            "{} ({} gz, {} unpacked)",
            image.name,
            super::table::human_bytes(image.layout.compressed_bytes),
            super::table::human_bytes(image.layout.uncompressed_bytes)
        );
        eprintln!("scar bench: cold pulls of {case}");
        let mut series: Vec<Series> = Puller::ALL.iter().map(|_| Series::default()).collect();
        for round in 0..bench.runs.pull {
            for (puller, series) in Puller::ALL.iter().zip(series.iter_mut()) {
                if series.alive() {
                    series.record(pull_once(bench, image, *puller, round));
                }
            }
        }
        let mut image_rows: Vec<Row> = Puller::ALL
            .iter()
            .zip(series)
            .map(|(puller, s)| s.into_row(Section::ColdPull, &case, puller.label()))
            .collect();
        for row in &mut image_rows {
            row.x = Some(image.layout.compressed_bytes as f64);
        }
        annotate_ratios(&mut image_rows);
        rows.extend(image_rows);
        rows.push(warm_resolution(bench, image, &case));
    }
    rows
}

/// `scar pull` ratios against skopeo + umoci and against the gzip floor, the bounds of the pull
/// issue (≤ 0.5 × skopeo + umoci, ≤ 1 × gzip).
fn annotate_ratios(rows: &mut [Row]) {
    let median_of =
        |label: &str, rows: &[Row]| rows.iter().find(|r| r.tool == label).and_then(Row::median);
    let skopeo = median_of(Puller::SkopeoUmoci.label(), rows);
    let gzip = median_of(Puller::GzipFloor.label(), rows);
    for row in rows.iter_mut() {
        let Some(median) = row.median() else { continue };
        let mut notes = Vec::new();
        if let Some(base) = skopeo.filter(|_| row.tool != Puller::SkopeoUmoci.label()) {
            notes.push(format!("{:.2}× skopeo+umoci", median / base));
        }
        if let Some(base) = gzip.filter(|_| row.tool != Puller::GzipFloor.label()) {
            notes.push(format!("{:.2}× gzip", median / base));
        }
        row.note = notes.join(", ");
    }
}

fn pull_once(
    bench: &Bench,
    image: &BenchImage,
    puller: Puller,
    round: usize,
) -> Result<Sample, RunError> {
    let scratch = bench.work.join(format!("pull-{}-{round}", image.name));
    let _ = fs::remove_dir_all(&scratch);
    fs::create_dir_all(&scratch).map_err(|source| RunError::Scratch {
        path: scratch.display().to_string(),
        source,
    })?;
    let stderr = bench.work.join("stderr");
    let reference = bench.registry.reference(image.name);
    settle(bench, image, puller);
    let result = match puller {
        Puller::Scar => measure(
            bench
                .scar_command("pull")
                .arg(&reference)
                .arg("--cache")
                .arg(scratch.join("cache")),
            &stderr,
            bench.limit,
        ),
        Puller::SkopeoUmoci => {
            let layout = scratch.join("layout");
            let copy = measure(
                Command::new("skopeo")
                    .args(["copy", "--quiet", "--src-tls-verify=false"])
                    .arg(format!("docker://{reference}"))
                    .arg(format!("oci:{}:latest", layout.display())),
                &stderr,
                bench.limit,
            )?;
            let unpack = measure(
                Command::new("umoci")
                    .args(["raw", "unpack", "--rootless", "--image"])
                    .arg(format!("{}:latest", layout.display()))
                    .arg(scratch.join("rootfs")),
                &stderr,
                bench.limit,
            )?;
            Ok(copy.then(unpack))
        }
        Puller::Udocker => {
            let repo = format!("bench/{}:latest", image.name);
            let pull = measure(
                bench
                    .udocker(&scratch.join("udocker"))
                    .arg("pull")
                    .arg(format!("--registry=http://{}", bench.registry.host()))
                    .arg(&repo),
                &stderr,
                bench.limit,
            )?;
            let create = measure(
                bench
                    .udocker(&scratch.join("udocker"))
                    .args(["create", "--name=bench"])
                    .arg(&repo),
                &stderr,
                bench.limit,
            )?;
            Ok(pull.then(create))
        }
        Puller::GzipFloor => measure(
            Command::new("gzip")
                .arg("-dc")
                .args(&image.layout.layer_blobs),
            &stderr,
            bench.limit,
        ),
    };
    remove_tree(&scratch);
    result
}

/// Untimed, before every timed cold pull, the same for every tool: the same starting state.
///
/// 1. `sync`: write back what the earlier runs left dirty (up to a gigabyte per tool for the
///    large image), so that no run pays for another's writeback.
/// 2. Drop the clean page cache (as root), then read back the run's inputs (the registry's
///    blobs, the layout's blobs for the gzip floor) and start the tool once (`--version`), so
///    that inputs and programs are cached exactly as before and only the file system's metadata
///    cache is cold. Why: on an ext4 without a journal (this machine's root file system, and
///    commonly a VM's scratch disk), a new inode skips every inode of its group freed in the
///    last 60 s whose inode-table block is still cached (`recently_deleted()` in
///    fs/ext4/ialloc.c; 300 s more while that block is dirty), one buffer-cache lookup each.
///    After the previous run's tree of ~28 000 files was removed, every file the next run
///    creates scans thousands of them: `perf` showed `find_get_block_common` and
///    `recently_deleted` as the top kernel symbols and the large image's extraction taking
///    12-17 s of system time instead of 1.0-1.4 s, for scar and umoci alike (not for gzip,
///    which creates no files). Waiting does not help: the run's own new inodes dirty those
///    inode-table blocks again (measured: 6.7 s of system time after `sync` and a 61 s wait).
///    With the inode-table blocks out of the cache the check finds nothing and costs
///    nothing. Without root the cache stays and a warning says so.
fn settle(bench: &Bench, image: &BenchImage, puller: Puller) {
    if let Err(err) = drop_page_cache() {
        static WARNED: std::sync::Once = std::sync::Once::new();
        WARNED.call_once(|| {
            eprintln!(
                "scar bench: cannot drop the page cache ({err}); on an ext4 without a journal, pulls right after the previous run's tree was removed pay ext4's recently-deleted inode scan"
            );
        });
        return;
    }
    read_tree(&bench.registry.storage);
    read_tree(&image.layout.dir);
    let version = |mut command: Command| {
        let _ = command
            .arg("--version")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    };
    match puller {
        Puller::Scar => version(Command::new(&bench.scar)),
        Puller::SkopeoUmoci => {
            version(Command::new("skopeo"));
            version(Command::new("umoci"));
        }
        // Its own repository, kept for the whole run: `--version` creates one.
        Puller::Udocker => version(bench.udocker(&bench.work.join("udocker-warm"))),
        Puller::GzipFloor => version(Command::new("gzip")),
    }
}

/// Write back what is dirty, then drop the clean page cache (root only).
pub fn drop_page_cache() -> std::io::Result<()> {
    nix::unistd::sync();
    fs::write("/proc/sys/vm/drop_caches", "1")
}

/// Read every file under `dir` (into the page cache).
pub fn read_tree(dir: &Path) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        match entry.file_type() {
            Ok(t) if t.is_dir() => read_tree(&path),
            Ok(t) if t.is_file() => {
                if let Ok(mut file) = fs::File::open(&path) {
                    let _ = std::io::copy(&mut file, &mut std::io::sink());
                }
            }
            _ => {}
        }
    }
}

/// `scar pull` of an image already in the cache: the warm resolution of the pull issue's
/// bound (≤ 5 ms, no network).
fn warm_resolution(bench: &Bench, image: &BenchImage, case: &str) -> Row {
    let label = "scar pull, warm (cached)";
    let cache = bench.work.join(format!("warm-resolve-{}", image.name));
    let reference = bench.registry.reference(image.name);
    let stderr = bench.work.join("stderr");
    let mut series = Series::default();
    series.record(
        measure(
            bench
                .scar_command("pull")
                .arg(&reference)
                .arg("--cache")
                .arg(&cache),
            &stderr,
            bench.limit,
        )
        .map(|_| Sample {
            secs: 0.0,
            max_rss_kib: 0,
        }),
    );
    series.samples.clear();
    // The warm-up pull left up to a gigabyte dirty: written back now, not under the timed runs.
    nix::unistd::sync();
    for _ in 0..bench.runs.start {
        if !series.alive() {
            break;
        }
        series.record(measure(
            bench
                .scar_command("pull")
                .arg(&reference)
                .arg("--cache")
                .arg(&cache),
            &stderr,
            bench.limit,
        ));
    }
    remove_tree(&cache);
    let mut row = Row::from_runs(
        Section::ColdPull,
        case,
        label,
        &series.samples,
        series.failure,
    );
    if row.result.is_ok() {
        row.note = "bound ≤ 5 ms (includes process start)".to_string();
    }
    row
}

/// Remove a scratch tree, making read-only directories (umoci, udocker) writable first.
pub fn remove_tree(path: &Path) {
    if fs::remove_dir_all(path).is_ok() || !path.exists() {
        return;
    }
    let _ = Command::new("chmod")
        .arg("-R")
        .arg("u+rwX")
        .arg(path)
        .status();
    let _ = fs::remove_dir_all(path);
}
