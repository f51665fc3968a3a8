//! `scar pull`: make an image's root filesystem available in the cache and print its path.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use scar_rootfs::image::PreparedImage;
use scar_rootfs::options::{PullOptions, PullPolicy};
use scar_rootfs::pull::{PullEvent, PullReport};
use scar_rootfs::registry::settings::{
    AWS_LAMBDA_FUNCTION_MEMORY_SIZE, RegistrySettings, RegistrySettingsError,
    SCAR_INSECURE_REGISTRIES, SCAR_PULL_RANGES, SCAR_REGISTRY_PASSWORD, SCAR_REGISTRY_USERNAME,
};

/// Cache options shared by `scar pull` and `scar cache`.
#[derive(clap::Args, Clone)]
pub struct CacheArgs {
    /// Cache directory (`--cache-dir` as in `scar run` works too; default: $SCAR_CACHE_DIR, else
    /// $XDG_CACHE_HOME/scar, else ~/.cache/scar, the cache `scar run` uses).
    #[arg(long = "cache", visible_alias = "cache-dir", value_name = "DIR")]
    dir: Option<PathBuf>,
    /// Cap for the cache in MiB (default: what the file system holds).
    #[arg(long = "max-cache-mb", env = "SCAR_CACHE_MAX_MB")]
    pub max_mb: Option<u64>,
}

impl CacheArgs {
    /// The cache directory: the option, else the one every command defaults to.
    pub fn dir(&self) -> PathBuf {
        self.dir.clone().unwrap_or_else(super::default_cache_dir)
    }

    /// The cap in bytes.
    pub fn max_bytes(&self) -> Option<u64> {
        self.max_mb.map(|mb| mb.saturating_mul(1024 * 1024))
    }
}

/// Arguments of `scar pull`.
#[derive(clap::Args)]
pub struct PullArgs {
    /// Image: alpine:3.20, ghcr.io/o/r@sha256:..., oci:<dir>[:tag], oci-archive:<path|s3://b/k>,
    /// docker-archive:<path|s3://b/k>.
    pub image: String,
    #[command(flatten)]
    pub cache: CacheArgs,
    /// Platform to select from a multi-platform image (default: this machine).
    #[arg(long, value_name = "OS/ARCH[/VARIANT]")]
    pub platform: Option<String>,
    /// Resolve the reference again even when the cache knows it.
    #[arg(long, env = "SCAR_PULL_POLICY", default_value = "if-not-present")]
    pub policy: PullPolicy,
    /// Registries reached over plain HTTP (comma-separated host:port).
    #[arg(long, env = "SCAR_INSECURE_REGISTRIES", value_delimiter = ',')]
    pub insecure: Vec<String>,
    /// Registry user name (with a password, or it is an error).
    #[arg(long, env = "SCAR_REGISTRY_USERNAME")]
    pub username: Option<String>,
    /// Registry password or token.
    #[arg(long, env = "SCAR_REGISTRY_PASSWORD", hide_env_values = true)]
    pub password: Option<String>,
    /// Keep the compressed layer blobs in the cache.
    #[arg(long)]
    pub keep_blobs: bool,
    /// Concurrent `Range` requests per blob of 32 MiB or more (a 1 MiB first part, then 8 MiB
    /// parts, fed in order); `1`: one connection per blob (default: by
    /// $AWS_LAMBDA_FUNCTION_MEMORY_SIZE as the bootstrap does, 4 off Lambda).
    // Kept as text: the bootstrap's parser checks it, so both refuse the same values with the
    // same message.
    #[arg(long, env = "SCAR_PULL_RANGES", value_name = "N")]
    pub ranges: Option<String>,
    /// Give up after this many seconds: the pull stops, says how far it got and publishes
    /// nothing (with --keep-blobs the next pull resumes from the blobs it kept).
    #[arg(long, value_name = "SECONDS", value_parser = seconds)]
    pub timeout: Option<std::time::Duration>,
}

/// `--timeout`: a positive number of seconds, fractions allowed.
fn seconds(text: &str) -> Result<std::time::Duration, String> {
    text.parse::<f64>()
        .ok()
        .filter(|s| *s > 0.0)
        .and_then(|s| std::time::Duration::try_from_secs_f64(s).ok())
        .ok_or_else(|| format!("`{text}` is not a positive number of seconds"))
}

/// The registry flags (or the variables clap read for them) with the one rule of the bootstrap
/// and `scar run`: a user name without a password is an error, not an anonymous pull.
fn registry_settings(args: &PullArgs) -> Result<RegistrySettings, RegistrySettingsError> {
    RegistrySettings::from_env(|name| match name {
        SCAR_REGISTRY_USERNAME => args.username.clone(),
        SCAR_REGISTRY_PASSWORD => args.password.clone(),
        SCAR_INSECURE_REGISTRIES => Some(args.insecure.join(",")),
        SCAR_PULL_RANGES => args.ranges.clone(),
        AWS_LAMBDA_FUNCTION_MEMORY_SIZE => std::env::var(name).ok(),
        _ => None,
    })
}

/// Run `scar pull`.
pub fn run(args: PullArgs) -> ExitCode {
    match prepare(&args) {
        Ok((prepared, report)) => {
            println!("{}", prepared.root.display());
            eprintln!("{}", summary(&args.image, &report));
            ExitCode::SUCCESS
        }
        Err(code) => code,
    }
}

/// The pull options the flags (or their variables) give; the error has been printed.
pub fn options(args: &PullArgs) -> Result<PullOptions, ExitCode> {
    let mut options = PullOptions::new(args.cache.dir());
    options.max_cache_bytes = args.cache.max_bytes();
    options.policy = args.policy;
    options.platform = args.platform.clone();
    options.keep_blobs = args.keep_blobs;
    options.deadline = args
        .timeout
        .and_then(|limit| std::time::Instant::now().checked_add(limit));
    match registry_settings(args) {
        Ok(registry) => registry.apply(&mut options),
        Err(err) => return Err(super::fail(&err)),
    }
    options.s3 = Some(scar_rootfs::aws::S3::from_env());
    Ok(options)
}

/// Make `args.image` available in the cache as `scar pull` does (`scar image push` pulls
/// with this too), with a progress bar on a terminal; the error has been printed.
pub fn prepare(args: &PullArgs) -> Result<(PreparedImage, PullReport), ExitCode> {
    let options = options(args)?;
    // A cached image needs no network, no thread and no async runtime: answer it first, so a
    // warm resolution costs little more than the process start.
    let started = std::time::Instant::now();
    match scar_rootfs::pull::prepare_cached(&args.image, &options) {
        Ok(Some(prepared)) => {
            let report = PullReport {
                cached: true,
                seconds: started.elapsed().as_secs_f64(),
                ..PullReport::default()
            };
            return Ok((prepared, report));
        }
        Ok(None) => {}
        Err(err) => return Err(super::fail(&err)),
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(err) => return Err(super::fail(&err)),
    };
    let bar = indicatif::ProgressBar::hidden();
    if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
    }
    let progress = progress_callback(bar.clone());
    let result = runtime.block_on(scar_rootfs::pull::prepare_with_progress(
        &args.image,
        &options,
        Some(progress),
    ));
    bar.finish_and_clear();
    result.map_err(|err| super::fail(&err))
}

fn progress_callback(bar: indicatif::ProgressBar) -> scar_rootfs::pull::Progress {
    Arc::new(move |event| match event {
        PullEvent::Resolved {
            layers,
            total_bytes,
            downloaded,
        } => {
            bar.set_length(total_bytes.unwrap_or(0));
            let style = indicatif::ProgressStyle::with_template(
                "{spinner} {msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> ");
            bar.set_style(style);
            bar.set_message(format!("layer 1/{layers}"));
            // The pipeline counts bytes from its own threads; the bar polls that counter.
            let ticker = bar.clone();
            std::thread::spawn(move || {
                while !ticker.is_finished() {
                    ticker.set_position(downloaded.load(Ordering::Relaxed));
                    std::thread::sleep(std::time::Duration::from_millis(100));
                }
            });
            bar.set_prefix(layers.to_string());
        }
        PullEvent::Downloaded(n) => bar.set_position(n),
        PullEvent::OtherPullMoved => {
            bar.set_message("waiting for another process's pull of this image into the cache");
            bar.tick();
        }
        PullEvent::LayerDone(i) => {
            let layers = bar.prefix();
            bar.set_message(format!(
                "layer {}/{layers}",
                (i + 1).min(layers.parse().unwrap_or(i + 1))
            ));
        }
    })
}

/// The one summary line.
pub fn summary(image: &str, r: &PullReport) -> String {
    const MIB: f64 = 1024.0 * 1024.0;
    if r.cached {
        return format!(
            "{image}: cached, 0 layers, 0 bytes downloaded, 0 bytes written, {:.3} s",
            r.seconds
        );
    }
    format!(
        "{image}: {} layers, {:.1} MiB downloaded, {:.1} MiB written, {:.2} s",
        r.layers,
        r.bytes_downloaded as f64 / MIB,
        r.bytes_written as f64 / MIB,
        r.seconds
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        pull: PullArgs,
    }

    fn settings(args: &[&str]) -> Result<RegistrySettings, RegistrySettingsError> {
        let cli = Cli::try_parse_from(["scar-pull", "alpine:3.20"].iter().chain(args))
            .expect("arguments parse");
        registry_settings(&cli.pull)
    }

    #[test]
    fn a_user_without_a_password_is_refused_as_the_bootstrap_refuses_it() {
        assert_eq!(
            settings(&["--username", "me"]),
            Err(RegistrySettingsError::MissingPassword)
        );
        assert_eq!(
            settings(&["--password", "s3cret"]),
            Err(RegistrySettingsError::MissingUsername)
        );
    }

    #[test]
    fn flags_become_credentials_and_the_plain_http_list() {
        let parsed = settings(&[
            "--username",
            "me",
            "--password",
            "s3cret",
            "--insecure",
            "127.0.0.1:5000, reg.local:80",
        ])
        .unwrap();
        assert_eq!(
            parsed.credentials.map(|c| (c.username, c.password)),
            Some(("me".to_owned(), "s3cret".to_owned()))
        );
        assert_eq!(
            parsed.insecure_registries,
            ["127.0.0.1:5000", "reg.local:80"]
        );
        assert!(settings(&["--insecure", "http://127.0.0.1:5000"]).is_err());
    }

    #[test]
    fn ranges_are_checked_as_the_bootstrap_checks_them() {
        assert_eq!(settings(&["--ranges", "1"]).unwrap().ranges, Some(1));
        assert_eq!(settings(&["--ranges", " 8 "]).unwrap().ranges, Some(8));
        for bad in ["0", "four", "100000"] {
            let err = settings(&["--ranges", bad]).unwrap_err();
            assert!(
                matches!(&err, RegistrySettingsError::BadRanges { value } if value == bad),
                "{bad}: {err:?}"
            );
        }
        // An empty value (a blank console row) is the default, as for the bootstrap.
        assert_eq!(settings(&["--ranges", ""]).unwrap().ranges, None);
    }
}
