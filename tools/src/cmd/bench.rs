//! `scar bench`: this project's pull, engines and bootstrap measured side by side with the peers
//! (skopeo + umoci, udocker, bwrap, unshare + chroot) and the raw floors, in one run, on images
//! built on this machine and served by a loopback registry, and the cold starts of a fan-out
//! (one connection per blob, parallel ranges, the S3 format; direct and through a proxy that
//! holds each connection to 40 MB/s). Prints one table and writes `benchmarks.md` with PNG
//! plots of how the costs grow.

mod cold;
mod cold_s3;
mod context;
mod fresh_fs;
mod grayify;
mod images;
mod invoke;
mod measure;
mod oci;
mod oci_error;
mod plot;
mod pull;
mod registry;
mod report;
mod report_error;
mod start;
mod table;
mod tree;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

pub use context::{Bench, Runs};
use context::{PROOT_WRAPPER, write_proot_wrapper};
use registry::Registry;

/// Arguments of `scar bench`.
#[derive(clap::Args)]
pub struct BenchArgs {
    /// Tiny images, 2 runs, small inputs: a few minutes at most (the test suite runs this).
    #[arg(long)]
    pub quick: bool,
    /// Where `benchmarks.md` and the plots go (default: `docs`, or a temporary directory with
    /// --quick).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Runs per row for pulls and invocations (default 5; 2 with --quick).
    #[arg(long)]
    pub runs: Option<usize>,
    /// Where built images are cached between runs.
    #[arg(long, default_value = "/var/tmp/scar-bench")]
    pub cache: PathBuf,
    /// Debian mirror for debootstrap.
    #[arg(long, default_value = "http://deb.debian.org/debian")]
    pub mirror: String,
    /// The `bootstrap` binary (default: next to this `scar`).
    #[arg(long)]
    pub bootstrap: Option<PathBuf>,
    /// Only these sections, comma-separated: `pull`, `start`, `invoke`, `grayify`, `cold`
    /// (default: all; `grayify` runs in full runs only).
    #[arg(long, value_delimiter = ',')]
    pub only: Vec<String>,
    /// Only these images, comma-separated: `small`, `medium`, `large`, `ffmpeg` (default: all).
    #[arg(long, value_delimiter = ',')]
    pub images: Vec<String>,
    /// Directory of the preload engine's libraries (default: $SCAR_PRELOAD_DIR, else `preload/`
    /// next to `scar`, else the build tree's `target/preload/lib`).
    #[arg(long)]
    pub preload_dir: Option<PathBuf>,
}

/// Why the bench could not run at all (a missing peer only fails its own rows).
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// Building the images failed.
    #[error("building the bench images: {0}")]
    Images(#[from] images::ImageError),
    /// The registry failed.
    #[error("loopback registry: {0}")]
    Registry(#[from] registry::RegistryError),
    /// Writing the report failed.
    #[error("writing the report: {0}")]
    Report(#[from] report::ReportError),
    /// A filesystem operation failed.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The path.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

/// Run `scar bench`.
pub fn run(args: BenchArgs) -> ExitCode {
    match bench(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => super::fail(&err),
    }
}

fn bench(args: BenchArgs) -> Result<(), BenchError> {
    let quick = args.quick;
    let runs = match (args.runs, quick) {
        (Some(n), _) => Runs {
            pull: n.max(1),
            start: (n * 4).max(1),
            invoke: n.max(1),
        },
        (None, true) => Runs {
            pull: 2,
            start: 2,
            invoke: 2,
        },
        (None, false) => Runs {
            pull: 5,
            start: 50,
            invoke: 5,
        },
    };
    let io_err = |what: &'static str, path: &Path| {
        let path = path.to_path_buf();
        move |source| BenchError::Io { what, path, source }
    };
    let work = args.cache.join(format!("run-{}", std::process::id()));
    std::fs::create_dir_all(&work).map_err(io_err("create", &work))?;
    let out = match (&args.out, quick) {
        (Some(out), _) => out.clone(),
        (None, true) => std::env::temp_dir().join(format!("scar-bench-{}", std::process::id())),
        (None, false) => PathBuf::from("docs"),
    };
    let result = bench_in(&args, quick, runs, &work, &out);
    pull::remove_tree(&work);
    result
}

fn bench_in(
    args: &BenchArgs,
    quick: bool,
    runs: Runs,
    work: &Path,
    out: &Path,
) -> Result<(), BenchError> {
    let started = std::time::SystemTime::now();
    let exe = std::env::current_exe().map_err(|source| BenchError::Io {
        what: "find",
        path: PathBuf::from("/proc/self/exe"),
        source,
    })?;
    // The bench runs in `scar-full`; what it measures is `scar`, the launcher beside it that
    // people type (it starts cached images itself).
    let scar = Some(exe.with_file_name("scar"))
        .filter(|launcher| launcher.is_file())
        .unwrap_or(exe);
    let bootstrap = args
        .bootstrap
        .clone()
        .unwrap_or_else(|| scar.with_file_name("bootstrap"));
    write_proot_wrapper(work).map_err(io_err_path("write", &work.join(PROOT_WRAPPER)))?;
    let wanted = |name: &str| args.images.is_empty() || args.images.iter().any(|n| n == name);
    let mut images = images::prepare(&args.cache, quick, &args.mirror, wanted)?;
    images.retain(|i| wanted(i.name));
    let section = |name: &str| args.only.is_empty() || args.only.iter().any(|o| o == name);
    let registry = Registry::start(&work.join("registry"))?;
    for image in &images {
        registry.push(&image.layout, image.name)?;
    }
    // Every `scar` the bench runs gets it as $SCAR_PRELOAD_DIR (see `scar_command`).
    let preload_dir = find_preload_dir(args.preload_dir.as_deref(), &scar);
    let bench = Bench {
        scar,
        bootstrap,
        preload_dir,
        registry,
        work: work.to_path_buf(),
        runs,
        limit: if quick {
            Duration::from_secs(60)
        } else {
            Duration::from_secs(900)
        },
        quick,
    };

    let mut rows = Vec::new();
    if section("pull") {
        // The grayify image is there for its own case, not for the pull table.
        let pulled: Vec<_> = images
            .iter()
            .filter(|i| i.name != grayify::IMAGE)
            .cloned()
            .collect();
        rows.extend(pull::cold_pulls(&bench, &pulled));
    }
    // Warm starts run in the dynamic Debian-like image: `medium`, or `dyn` in a quick run.
    if let Some(image) = images
        .iter()
        .find(|i| i.name == "medium" || i.name == "dyn")
        .filter(|_| section("start"))
    {
        rows.extend(start::warm_starts(&bench, image));
    }
    if section("invoke") {
        rows.extend(invoke::invocations(&bench, &images));
    }
    if section("grayify") {
        rows.extend(grayify::grayify(&bench, &images));
    }
    if section("cold") {
        rows.extend(cold::cold_starts(&bench, &images));
    }

    let report = report::Report {
        rows,
        images: images.iter().map(|i| (i.name, i.layout.clone())).collect(),
        started,
        quick,
        release_build: !cfg!(debug_assertions),
    };
    println!("{}", report.table_text());
    std::fs::create_dir_all(out).map_err(io_err_path("create", out))?;
    let written = report.write(out)?;
    for path in written {
        eprintln!("scar bench: wrote {}", path.display());
    }
    Ok(())
}

/// Where the preload libraries are: `explicit`, `$SCAR_PRELOAD_DIR`, `preload/` beside `scar`
/// (an installation), or `target/preload/lib` (where `rootfs/preload/build.sh` puts them in a
/// build tree, `scar` being `target/<profile>/scar`).
fn find_preload_dir(explicit: Option<&Path>, scar: &Path) -> Option<PathBuf> {
    if let Some(dir) = explicit {
        return Some(dir.to_path_buf());
    }
    if let Some(dir) = std::env::var_os("SCAR_PRELOAD_DIR").filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(dir));
    }
    let beside = scar.parent()?;
    [beside.join("preload"), beside.join("../preload/lib")]
        .into_iter()
        .find(|dir| dir.join("libscar_preload-gnu.so").is_file())
}

fn io_err_path(
    what: &'static str,
    path: &Path,
) -> impl FnOnce(std::io::Error) -> BenchError + use<> {
    let path = path.to_path_buf();
    move |source| BenchError::Io { what, path, source }
}
