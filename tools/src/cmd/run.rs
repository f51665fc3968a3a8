//! `scar run`: run a command inside an image the way Docker would, through the same engines
//! the Lambda bootstrap uses.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::{Duration, Instant};

use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, sigaction};
use scar_rootfs::engine::{
    self, DEFAULT_PATH, EngineError, EngineKind, EngineOptions, Mount, RunSpec, SpecError,
};
use scar_rootfs::image::ImageConfig;
use scar_rootfs::options::{PullOptions, PullPolicy};
use scar_rootfs::registry::settings::RegistrySettings;

/// Time between SIGTERM and SIGKILL when `--timeout` expires.
const STOP_GRACE: Duration = Duration::from_secs(2);

/// Exit status when the container could not be started (Docker uses the same).
const START_FAILED: u8 = 125;
/// Exit status when the command cannot be executed in the image.
const EXEC_FAILED: u8 = 127;

/// Arguments of `scar run`.
#[derive(clap::Args, Debug)]
pub struct RunArgs {
    /// Image reference, e.g. alpine:3.20 or oci:./layout:tag (omit it with --rootfs).
    #[arg(required_unless_present = "rootfs")]
    pub image: Option<String>,
    /// Run a plain directory as the root filesystem instead of an image (it is never
    /// modified; there is no image config, so give the command after --).
    #[arg(long, value_name = "DIR", conflicts_with = "image")]
    pub rootfs: Option<PathBuf>,
    /// Engine: auto (namespace when user namespaces work here, else preload), namespace, preload
    /// (its libraries: $SCAR_PRELOAD_DIR, else preload/ beside scar).
    #[arg(long, default_value = "auto", value_name = "ENGINE")]
    pub engine: EngineKind,
    /// Set an environment variable in the container (K=V; a bare K copies it from here).
    #[arg(short = 'e', long = "env", value_name = "K=V")]
    pub env: Vec<String>,
    /// Bind a host path into the container: HOST:CONTAINER[:ro].
    #[arg(short = 'v', long = "volume", value_name = "HOST:CTR[:ro]")]
    pub volumes: Vec<String>,
    /// Working directory inside the container (default: the image's WorkingDir, else /).
    #[arg(short = 'w', long = "workdir", value_name = "DIR")]
    pub workdir: Option<String>,
    /// Stop the container after this many seconds (SIGTERM, then SIGKILL 2 s later).
    #[arg(long, value_name = "SECONDS")]
    pub timeout: Option<f64>,
    /// Image cache (default: $SCAR_CACHE_DIR, else $XDG_CACHE_HOME/scar, else ~/.cache/scar).
    #[arg(long, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Contact the registry even when the image is cached.
    #[arg(long)]
    pub pull_always: bool,
    /// The command and its arguments; replaces the image's Cmd (the Entrypoint stays).
    #[arg(last = true, value_name = "CMD")]
    pub command: Vec<String>,
}

/// Why `scar run` could not start the container.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// A `-v` argument is malformed.
    #[error(
        "volume `{0}`: use HOST:CONTAINER or HOST:CONTAINER:ro with an absolute CONTAINER path"
    )]
    Volume(String),
    /// An `-e` argument is malformed.
    #[error("environment `{0}`: use NAME=value or NAME")]
    Env(String),
    /// `--timeout` is not a positive number.
    #[error("--timeout {0}: give a positive number of seconds")]
    Timeout(f64),
    /// Nothing to run.
    #[error("nothing to run: the image has no Entrypoint or Cmd; give a command after --")]
    NoCommand,
    /// The image could not be pulled.
    #[error("cannot prepare image {image}: {source}")]
    Pull {
        /// The reference.
        image: String,
        /// Why (boxed: pull errors are large).
        source: Box<scar_rootfs::pull::PullError>,
    },
    /// The `--rootfs` directory is unusable.
    #[error("--rootfs {0}: not a directory")]
    Rootfs(PathBuf),
    /// The tokio runtime for the pull could not start.
    #[error("cannot start the async runtime: {0}")]
    Runtime(std::io::Error),
    /// The engine refused or failed.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// The registry variables do not go together or are malformed.
    #[error(transparent)]
    Registry(#[from] scar_rootfs::registry::settings::RegistrySettingsError),
}

/// The PID signals to `scar` are forwarded to (0 until the container runs).
static CONTAINER_PID: AtomicI32 = AtomicI32::new(0);

impl RunArgs {
    /// The arguments after `run` in the common forms, without clap: building clap's command
    /// and parser was about a tenth of a warm start (its code is spread over the binary, a page
    /// fault per piece). `None` for anything else (help, version, an unknown or repeated
    /// option, an attached short value, a missing or odd value, a second positional, a
    /// conflict): clap then parses the line and gives its own help or error. What this accepts,
    /// it reads exactly as clap does (tested against it).
    pub fn parse_common(args: &[std::ffi::OsString]) -> Option<RunArgs> {
        let mut parsed = RunArgs {
            image: None,
            rootfs: None,
            engine: EngineKind::Auto,
            env: Vec::new(),
            volumes: Vec::new(),
            workdir: None,
            timeout: None,
            cache_dir: None,
            pull_always: false,
            command: Vec::new(),
        };
        let mut engine_set = false;
        let mut tokens = args.iter().map(|a| a.to_str());
        while let Some(token) = tokens.next() {
            let token = token?;
            if token == "--" {
                parsed.command = tokens
                    .map(|t| t.map(str::to_owned))
                    .collect::<Option<_>>()?;
                break;
            }
            if token == "--pull-always" {
                if parsed.pull_always {
                    return None;
                }
                parsed.pull_always = true;
                continue;
            }
            if !token.starts_with('-') {
                if parsed.image.replace(token.to_owned()).is_some() {
                    return None;
                }
                continue;
            }
            let (name, attached) = match token.split_once('=') {
                Some((name, value)) if name.starts_with("--") => (name, Some(value)),
                _ => (token, None),
            };
            let value = match attached {
                Some(value) => value,
                None => tokens.next()??,
            };
            if value.is_empty() || value.starts_with('-') {
                return None;
            }
            match name {
                "--engine" if !engine_set => {
                    parsed.engine = value.parse().ok()?;
                    engine_set = true;
                }
                "-e" | "--env" => parsed.env.push(value.to_owned()),
                "-v" | "--volume" => parsed.volumes.push(value.to_owned()),
                "-w" | "--workdir" if parsed.workdir.is_none() => {
                    parsed.workdir = Some(value.to_owned());
                }
                "--timeout" if parsed.timeout.is_none() => {
                    parsed.timeout = Some(value.parse().ok()?);
                }
                "--cache-dir" if parsed.cache_dir.is_none() => {
                    parsed.cache_dir = Some(PathBuf::from(value));
                }
                "--rootfs" if parsed.rootfs.is_none() => parsed.rootfs = Some(PathBuf::from(value)),
                _ => return None,
            }
        }
        // Exactly one of an image and --rootfs.
        (parsed.image.is_some() != parsed.rootfs.is_some()).then_some(parsed)
    }
}

/// Run `scar run`, pulling the image when it is not cached.
pub fn run(args: RunArgs) -> ExitCode {
    let outcome = run_container(&args, |image, options| pull(image, options).map(Some));
    match outcome {
        Ok(Some(code)) => ExitCode::from(code),
        // Not reached: a pull either gives the image or fails.
        Ok(None) => ExitCode::from(START_FAILED),
        Err(err) => failed(&err),
    }
}

/// Run `scar run` if its image is cached (or `--rootfs` names a directory); `None`, with nothing
/// done and nothing printed, when the image must be pulled first. `scar` (the launcher) starts
/// cached images with this and hands a pull to `scar-full`, so that its own binary holds no
/// pull code at all.
#[allow(dead_code)] // in `scar-full`, which pulls instead
pub fn run_cached(args: &RunArgs) -> Option<u8> {
    match run_container(args, |_, _| Ok(None)) {
        Ok(Some(code)) => Some(code),
        Ok(None) => None,
        Err(err) => Some(failure_code(&err)),
    }
}

fn failed(err: &RunError) -> ExitCode {
    ExitCode::from(failure_code(err))
}

/// Say what went wrong; the exit status for it.
fn failure_code(err: &RunError) -> u8 {
    super::fail(err);
    match err {
        RunError::Engine(EngineError::Exec { .. }) => EXEC_FAILED,
        _ => START_FAILED,
    }
}

/// The container's exit status, or `None` when the image is not cached and `uncached` gave up.
fn run_container(
    args: &RunArgs,
    uncached: impl FnOnce(String, &PullOptions) -> Result<Option<(PathBuf, ImageConfig)>, RunError>,
) -> Result<Option<u8>, RunError> {
    let deadline = match args.timeout {
        Some(seconds) if seconds.is_finite() && seconds > 0.0 => {
            Some(Instant::now() + Duration::from_secs_f64(seconds))
        }
        Some(seconds) => return Err(RunError::Timeout(seconds)),
        None => None,
    };
    let mounts = args
        .volumes
        .iter()
        .map(|v| parse_volume(v))
        .collect::<Result<Vec<_>, _>>()?;
    let Some((root, config)) = image_root(args, uncached)? else {
        return Ok(None);
    };
    // A cached image is held until the container ends, so that no eviction (a pull of another
    // `scar` or of an invocation sharing the cache) removes it meanwhile; `--rootfs` is no
    // cache's.
    let _hold = match (&args.rootfs, &args.image) {
        (None, Some(image)) => Some(scar_rootfs::cache::Hold::take(&root, image).map_err(
            |err| RunError::Pull {
                image: image.clone(),
                source: Box::new(err.into()),
            },
        )?),
        _ => None,
    };
    let spec = container_spec(root, &config, args, mounts, |name| std::env::var(name).ok())?;
    // The preload libraries: $SCAR_PRELOAD_DIR, else beside `scar` (see PreloadEngine::locate).
    let engine = engine::select(args.engine, &EngineOptions::default())?;
    // Held from before the start until the handler is in place: the command may already be
    // running (and telling the world it is ready) when `spawn` returns, and a SIGTERM in that
    // window must reach it rather than kill `scar` alone. The engines give the command an
    // empty signal mask.
    let forwarded = forwarded_signals();
    let _ = forwarded.thread_block();
    // No thread before the spawn: a single-threaded process lets the namespace engine clone
    // the container's init directly instead of re-executing a helper.
    let result = engine.spawn(&spec).and_then(|mut container| {
        CONTAINER_PID.store(container.pid() as i32, Ordering::SeqCst);
        forward_signals(&forwarded);
        let _ = forwarded.thread_unblock();
        let outcome = container.wait(deadline, STOP_GRACE);
        CONTAINER_PID.store(0, Ordering::SeqCst);
        outcome
    });
    let _ = forwarded.thread_unblock();
    let outcome = result?;
    if outcome.timed_out {
        eprintln!(
            "scar: the container was stopped after --timeout {}s",
            args.timeout.unwrap_or_default()
        );
    }
    Ok(Some(u8::try_from(outcome.exit_code()).unwrap_or(u8::MAX)))
}

/// The root filesystem and image config: `--rootfs` as is, else the cached image, else what
/// `uncached` makes of it.
fn image_root(
    args: &RunArgs,
    uncached: impl FnOnce(String, &PullOptions) -> Result<Option<(PathBuf, ImageConfig)>, RunError>,
) -> Result<Option<(PathBuf, ImageConfig)>, RunError> {
    if let Some(dir) = &args.rootfs {
        if !dir.is_dir() {
            return Err(RunError::Rootfs(dir.clone()));
        }
        return Ok(Some((dir.clone(), ImageConfig::default())));
    }
    let image = args.image.clone().unwrap_or_default();
    let mut options = PullOptions::new(
        args.cache_dir
            .clone()
            .unwrap_or_else(super::default_cache_dir),
    );
    if args.pull_always {
        options.policy = PullPolicy::Always;
    }
    // A cached image is found without an async runtime, whose worker threads would make the
    // engine re-execute a helper.
    let cached =
        scar_rootfs::pull::prepare_cached(&image, &options).map_err(|source| RunError::Pull {
            image: image.clone(),
            source: Box::new(source),
        })?;
    if let Some(prepared) = cached {
        return Ok(Some((prepared.root, prepared.config)));
    }
    uncached(image, &options)
}

/// Pull an image that is not cached. Out of line, with its future boxed: the pull's state is
/// tens of KiB, which would otherwise sit in the caller's stack frame and be faulted in on
/// every start of a cached image too.
#[inline(never)]
fn pull(image: String, options: &PullOptions) -> Result<(PathBuf, ImageConfig), RunError> {
    // What `scar pull` and the bootstrap take from the environment to reach a registry, and
    // an S3 client for `s3://` archives.
    let mut options = options.clone();
    RegistrySettings::from_process_env()?.apply(&mut options);
    options.s3 = Some(scar_rootfs::aws::S3::from_env());
    let options = &options;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(RunError::Runtime)?;
    let prepared = runtime
        .block_on(Box::pin(scar_rootfs::pull::prepare(&image, options)))
        .map_err(|source| RunError::Pull {
            image,
            source: Box::new(source),
        })?;
    Ok((prepared.root, prepared.config))
}

/// The container's spec, Docker's way: Entrypoint + (the command after `--`, else Cmd); the
/// image's Env, then `-e` (a later name replaces an earlier one in place; a bare `-e NAME`
/// copies NAME from `host`, skipped when unset), then PATH and HOME defaults when neither set
/// them; `--workdir`, else the image's WorkingDir, else `/`; the volumes; the caller's streams.
pub fn container_spec(
    root: PathBuf,
    config: &ImageConfig,
    args: &RunArgs,
    volumes: Vec<Mount>,
    host: impl Fn(&str) -> Option<String>,
) -> Result<RunSpec, RunError> {
    // The engine makes (and removes) its per-run directory in the system's temporary directory.
    let mut spec = RunSpec::builder(root, config, std::env::temp_dir())
        .args(&args.command)
        .workdir(args.workdir.clone())
        .mounts(volumes);
    for entry in &args.env {
        spec = match entry.split_once('=') {
            Some(("", _)) => return Err(RunError::Env(entry.clone())),
            Some((name, value)) => spec.env(name, value),
            None if entry.is_empty() => return Err(RunError::Env(String::new())),
            None => match host(entry) {
                Some(value) => spec.env(entry, &value),
                None => spec,
            },
        };
    }
    spec.env_default("PATH", DEFAULT_PATH)
        .env_default("HOME", "/root")
        .build()
        .map_err(|SpecError::NoCommand| RunError::NoCommand)
}

/// `HOST:CONTAINER[:ro]`.
pub fn parse_volume(text: &str) -> Result<Mount, RunError> {
    let bad = || RunError::Volume(text.to_string());
    let (rest, read_only) = match text.strip_suffix(":ro") {
        Some(rest) => (rest, true),
        None => (text.strip_suffix(":rw").unwrap_or(text), false),
    };
    let (host, container) = rest.rsplit_once(':').ok_or_else(bad)?;
    if host.is_empty() || !container.starts_with('/') {
        return Err(bad());
    }
    let host = std::path::absolute(host).map_err(|_| bad())?;
    Ok(Mount {
        host,
        container: PathBuf::from(container),
        read_only,
    })
}

/// The signals `scar run` passes on to the container.
fn forwarded_signals() -> SigSet {
    let mut set = SigSet::empty();
    for signal in [Signal::SIGTERM, Signal::SIGHUP, Signal::SIGINT] {
        set.add(signal);
    }
    set
}

/// SIGTERM and SIGHUP sent to `scar` go to the container (its init passes them on). SIGINT
/// from a terminal already reaches the container directly (same process group), and is
/// forwarded as well for `kill -INT`. A handler rather than a waiting thread: installed after
/// the start, it costs three syscalls and keeps `scar` single-threaded.
fn forward_signals(signals: &SigSet) {
    extern "C" fn forward(signal: libc::c_int) {
        match CONTAINER_PID.load(Ordering::SeqCst) {
            // SAFETY: _exit(2) is async-signal-safe.
            0 => unsafe { libc::_exit(128 + signal) },
            // SAFETY: kill(2) is async-signal-safe; the PID is the container's init.
            pid => unsafe {
                libc::kill(pid, signal);
            },
        }
    }
    let action = SigAction::new(
        SigHandler::Handler(forward),
        SaFlags::SA_RESTART,
        SigSet::empty(),
    );
    for signal in signals.iter() {
        // SAFETY: the handler only loads an atomic and calls kill(2) or _exit(2), which are
        // async-signal-safe.
        let _ = unsafe { sigaction(signal, &action) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(entrypoint: &[&str], cmd: &[&str], env: &[&str]) -> ImageConfig {
        ImageConfig {
            env: env.iter().map(|s| s.to_string()).collect(),
            entrypoint: entrypoint.iter().map(|s| s.to_string()).collect(),
            cmd: cmd.iter().map(|s| s.to_string()).collect(),
            working_dir: None,
            user: None,
        }
    }

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    /// `scar run` with `line` after `run`.
    fn args(line: &[&str]) -> RunArgs {
        let line: Vec<std::ffi::OsString> = line.iter().map(Into::into).collect();
        RunArgs::parse_common(&line).expect("a common command line")
    }

    fn spec(image: &ImageConfig, line: &[&str]) -> Result<RunSpec, RunError> {
        let host = |name: &str| (name == "FROM_HOST").then(|| "h".to_string());
        container_spec("/root".into(), image, &args(line), Vec::new(), host)
    }

    #[test]
    fn user_arguments_replace_cmd_and_keep_the_entrypoint() {
        let image = config(&["/entry", "-x"], &["default"], &[]);
        assert_eq!(
            spec(&image, &["img"]).unwrap().argv,
            strings(&["/entry", "-x", "default"])
        );
        assert_eq!(
            spec(&image, &["img", "--", "mine"]).unwrap().argv,
            strings(&["/entry", "-x", "mine"])
        );
        let plain = config(&[], &["sh"], &[]);
        assert_eq!(
            spec(&plain, &["img", "--", "id", "-u"]).unwrap().argv,
            strings(&["id", "-u"])
        );
    }

    #[test]
    fn an_image_without_entrypoint_or_cmd_needs_a_command() {
        assert!(matches!(
            spec(&config(&[], &[], &[]), &["img"]),
            Err(RunError::NoCommand)
        ));
    }

    #[test]
    fn workdir_flag_volumes_and_streams_reach_the_spec() {
        let mut image = config(&["/e"], &[], &[]);
        image.working_dir = Some("/app".into());
        assert_eq!(spec(&image, &["img"]).unwrap().workdir, "/app");
        let chosen = spec(&image, &["img", "-w", "/work"]).unwrap();
        assert_eq!(chosen.workdir, "/work");
        assert_eq!(chosen.stdin, scar_rootfs::engine::Stdio::Inherit);
        let volume = parse_volume("/data:/in:ro").unwrap();
        let with_volume = container_spec(
            "/root".into(),
            &image,
            &args(&["img"]),
            vec![volume.clone()],
            |_| None,
        )
        .unwrap();
        assert_eq!(with_volume.mounts, [volume]);
    }

    #[test]
    fn env_flags_override_the_image_env_in_place_and_defaults_fill_path_and_home() {
        let image = config(&["/e"], &[], &["A=1", "PATH=/bin", "B=2"]);
        let env = spec(
            &image,
            &[
                "img",
                "-e",
                "A=9",
                "-e",
                "C=3",
                "-e",
                "FROM_HOST",
                "-e",
                "UNSET",
            ],
        )
        .unwrap()
        .env;
        let expected = [
            ("A", "9"),
            ("PATH", "/bin"),
            ("B", "2"),
            ("C", "3"),
            ("FROM_HOST", "h"),
            ("HOME", "/root"),
        ];
        let expected: Vec<(String, String)> = expected
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert_eq!(env, expected);
        let defaults = spec(&config(&["/e"], &[], &[]), &["img"]).unwrap().env;
        assert!(defaults.contains(&("PATH".into(), DEFAULT_PATH.into())));
    }

    #[test]
    fn an_env_flag_without_a_name_is_refused() {
        let image = config(&["/e"], &[], &[]);
        assert!(matches!(
            spec(&image, &["img", "-e", "=x"]),
            Err(RunError::Env(entry)) if entry == "=x"
        ));
    }

    #[test]
    fn volumes_parse_with_and_without_ro() {
        let m = parse_volume("/data:/in:ro").unwrap();
        assert_eq!(
            (m.host, m.container, m.read_only),
            ("/data".into(), "/in".into(), true)
        );
        let m = parse_volume("/data:/out").unwrap();
        assert!(!m.read_only);
        assert!(parse_volume("/data").is_err());
        assert!(parse_volume("/data:relative").is_err());
    }
}
