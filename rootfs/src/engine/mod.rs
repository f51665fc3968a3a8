//! Engines: ways of running a process inside a root filesystem.
//!
//! - [`namespace`]: user + mount + PID (+ IPC, UTS) namespaces and `pivot_root`.
//! - [`preload`]: for hosts that refuse user namespaces (AWS Lambda): the image's own dynamic
//!   loader plus an `LD_PRELOAD` library that maps absolute paths into the image.
//!
//! The bootstrap and `scar` both go through [`Engine`]; [`select`] implements `auto`.

pub mod fork;
pub mod namespace;
pub mod preload;
pub mod process;
mod spec;

/// The shared probe lives with the namespace engine it answers for.
pub use self::namespace::probe;
pub use spec::{DEFAULT_PATH, RunSpecBuilder, SpecError};

use std::fmt;
use std::path::PathBuf;
use std::process::{ChildStderr, ChildStdin, ChildStdout};
use std::str::FromStr;
use std::time::{Duration, Instant};

/// The engine a user asks for (`SCAR_ENGINE`, `scar run --engine`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum EngineKind {
    /// `namespace` when the probe says user namespaces work, else `preload`.
    #[default]
    Auto,
    /// User namespaces and `pivot_root`.
    Namespace,
    /// The image's loader with the path-mapping `LD_PRELOAD` library.
    Preload,
}

impl EngineKind {
    /// The name used in configuration and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::Namespace => "namespace",
            Self::Preload => "preload",
        }
    }
}

impl fmt::Display for EngineKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for EngineKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(Self::Auto),
            "namespace" => Ok(Self::Namespace),
            "preload" => Ok(Self::Preload),
            other => Err(format!(
                "`{other}` is not an engine: use auto, namespace or preload"
            )),
        }
    }
}

/// A host directory made visible inside the container.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mount {
    /// Existing directory or file on the host.
    pub host: PathBuf,
    /// Absolute path inside the container.
    pub container: PathBuf,
    /// Bind read-only.
    pub read_only: bool,
}

/// What happens to one standard stream of the container.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Stdio {
    /// Share the caller's stream.
    #[default]
    Inherit,
    /// `/dev/null`.
    Null,
    /// A pipe, handed back in [`Container`].
    Piped,
}

/// Everything an engine needs to start one container.
#[derive(Clone, Debug)]
pub struct RunSpec {
    /// The image's root filesystem; an engine never modifies it.
    pub root: PathBuf,
    /// The command, already resolved from Entrypoint/Cmd and the user's arguments.
    pub argv: Vec<String>,
    /// The complete environment of the process (`NAME`, `value`), in order.
    pub env: Vec<(String, String)>,
    /// Working directory inside the container (`/` when the image sets none).
    pub workdir: String,
    /// The image's `User`, `None` for container root.
    pub user: Option<String>,
    /// Host paths bound in (the request's input and output directories, volumes).
    pub mounts: Vec<Mount>,
    /// A private per-run directory the engine may use (overlay upper/work, the container's
    /// `/tmp`); the engine removes what it created there when the run ends.
    pub scratch: PathBuf,
    /// Standard input.
    pub stdin: Stdio,
    /// Standard output.
    pub stdout: Stdio,
    /// Standard error.
    pub stderr: Stdio,
}

impl RunSpec {
    /// Host directories the run must never write besides `root` (the canonical image root),
    /// `:`-joined for the preload library's `SCAR_PRELOAD_PROTECT`.
    ///
    /// Derived from the cache's layout rather than passed in: when `root` is
    /// `<cache>/rootfs/<chain id>/root` and `<cache>/refs` exists (see [`crate::cache`]), the
    /// whole `<cache>` is protected (other images, `image.json` records, `refs/`, the lock and
    /// the work areas). If `<cache>` also holds a place the run writes (the scratch directory,
    /// a writable bind, one of `passthrough` such as `/tmp` with `SCAR_CACHE_DIR=/tmp`), only
    /// the cache's own entries are. A root elsewhere (`scar run --rootfs DIR`) protects nothing
    /// more; a path holding `:` cannot be listed and is left out.
    pub fn protected_dirs(&self, root: &std::path::Path, passthrough: &[&str]) -> String {
        let Some(cache) = cache_of(root) else {
            return String::new();
        };
        let writable = std::iter::once(self.scratch.clone())
            .chain(
                self.mounts
                    .iter()
                    .filter(|m| !m.read_only)
                    .map(|m| std::fs::canonicalize(&m.host).unwrap_or_else(|_| m.host.clone())),
            )
            .chain(passthrough.iter().map(PathBuf::from))
            .collect::<Vec<_>>();
        let dirs: Vec<PathBuf> = if writable.iter().any(|w| w.starts_with(&cache)) {
            ["refs", "rootfs", "blobs", "tmp", "ingest", "lock"]
                .iter()
                .map(|entry| cache.join(entry))
                .collect()
        } else {
            vec![cache]
        };
        dirs.iter()
            .filter_map(|d| d.to_str().filter(|d| !d.contains(':')))
            .collect::<Vec<_>>()
            .join(":")
    }
}

/// The cache directory holding the image root `root`, when it is laid out as the cache lays out
/// images: `<cache>/rootfs/<chain id>/root`, with `<cache>/refs` beside.
fn cache_of(root: &std::path::Path) -> Option<PathBuf> {
    let image = root
        .parent()
        .filter(|_| root.file_name() == Some("root".as_ref()))?;
    let images = image.parent()?;
    let cache = images
        .parent()
        .filter(|_| images.file_name() == Some("rootfs".as_ref()))?;
    cache.join("refs").is_dir().then(|| cache.to_path_buf())
}

/// How a container ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// Exit status when the main process exited.
    pub code: Option<i32>,
    /// Signal number when the main process was killed by a signal.
    pub signal: Option<i32>,
    /// The deadline passed and the tree was stopped.
    pub timed_out: bool,
}

impl Outcome {
    /// The status a shell would report: the exit code, or 128 + the signal number.
    pub fn exit_code(&self) -> i32 {
        match (self.code, self.signal) {
            (Some(code), _) => code,
            (None, Some(signal)) => 128 + signal,
            (None, None) => 1,
        }
    }
}

/// Why a container could not be started or waited for.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The namespace engine was asked for but this host refuses user namespaces.
    #[error("the namespace engine is unavailable: {0}")]
    NamespaceUnavailable(String),
    /// The preload engine cannot be used.
    #[error("the preload engine is unavailable: {0}")]
    PreloadUnavailable(String),
    /// A system call failed while setting the container up.
    #[error("{step}: {source}")]
    Setup {
        /// The step that failed, e.g. `pivot_root into /tmp/scar/rootfs/sha256-…`.
        step: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The first program is statically linked and `SCAR_PRELOAD_STATIC=refuse` forbids running
    /// it unconfined (the preload engine cannot map a static program's paths).
    #[error(
        "{program} is statically linked: it would run with the host's view instead of the image's, and SCAR_PRELOAD_STATIC=refuse forbids that (set SCAR_PRELOAD_STATIC=warn to run it anyway)"
    )]
    StaticRefused {
        /// The program's path in the image.
        program: String,
    },
    /// The command could not be found or executed inside the image.
    #[error("cannot run `{command}` in the image: {reason}")]
    Exec {
        /// argv\[0\].
        command: String,
        /// What went wrong and what to do.
        reason: String,
    },
}

/// A running container: its standard streams (when piped) and a handle to stop and reap it.
pub struct Container {
    /// The container's stdin when [`Stdio::Piped`].
    pub stdin: Option<ChildStdin>,
    /// The container's stdout when [`Stdio::Piped`].
    pub stdout: Option<ChildStdout>,
    /// The container's stderr when [`Stdio::Piped`].
    pub stderr: Option<ChildStderr>,
    /// Engine-specific control of the process tree.
    pub handle: Box<dyn ContainerHandle>,
}

impl Container {
    /// Wait for the container to end; at `deadline` stop the whole tree (SIGTERM, then SIGKILL
    /// after `grace`) and report `timed_out`.
    pub fn wait(
        &mut self,
        deadline: Option<Instant>,
        grace: Duration,
    ) -> Result<Outcome, EngineError> {
        self.handle.wait(deadline, grace)
    }

    /// Host PID of the container's top process.
    pub fn pid(&self) -> u32 {
        self.handle.pid()
    }

    /// Programs that ran (or were refused) without confinement; complete once `wait` returned.
    pub fn unconfined(&self) -> Unconfined {
        self.handle.unconfined()
    }
}

/// Statically linked programs of one run, by their path in the image: the preload engine
/// cannot map their paths, so they see the host's files.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Unconfined {
    /// Programs that ran with the host's view.
    pub ran: Vec<String>,
    /// Programs refused by `SCAR_PRELOAD_STATIC=refuse`.
    pub refused: Vec<String>,
}

/// Engine-specific control of a running container's process tree.
pub trait ContainerHandle: Send {
    /// Host PID of the top process.
    fn pid(&self) -> u32;
    /// Wait until the container ends or `deadline` passes (then stop the whole tree), and
    /// release what the engine set up for this run.
    fn wait(&mut self, deadline: Option<Instant>, grace: Duration) -> Result<Outcome, EngineError>;
    /// Programs that ran unconfined (only the preload engine has any).
    fn unconfined(&self) -> Unconfined {
        Unconfined::default()
    }
}

/// A way of running processes inside a root filesystem.
pub trait Engine: Send + Sync {
    /// Which engine this is (never [`EngineKind::Auto`]).
    fn kind(&self) -> EngineKind;
    /// Start the container described by `spec`.
    fn spawn(&self, spec: &RunSpec) -> Result<Container, EngineError>;
}

/// Must be the first call in the `main` of every binary that starts containers (`bootstrap`,
/// `scar`): when an engine re-executes the current binary as a container's helper process, this
/// runs that role and never returns; otherwise it returns at once.
pub fn enter_container_if_requested() {
    namespace::setup::run_if_requested();
}

/// Where the running binary was started from, when `/proc/self/exe` no longer names it.
static RUNNING_EXE: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();

/// Record the path the running binary was started from. The bootstrap re-executes an
/// execute-only copy of itself to become non-dumpable without `prctl`; `/proc/self/exe` then
/// names that copy, which has no `preload/` beside it and, unreadable, makes a namespace helper
/// started from it non-dumpable too (unable to write its own `uid_map`).
pub fn set_running_exe(path: PathBuf) {
    let _ = RUNNING_EXE.set(path);
}

/// The running binary: the path given to [`set_running_exe`], else `current_exe()`.
pub fn running_exe() -> std::io::Result<PathBuf> {
    match RUNNING_EXE.get() {
        Some(path) => Ok(path.clone()),
        None => std::env::current_exe(),
    }
}

/// What [`select`] needs besides the engine kind.
#[derive(Clone, Debug, Default)]
pub struct EngineOptions {
    /// The binary the namespace engine re-executes as its helper; `None` means the current
    /// one (`/proc/self/exe`), whose `main` calls [`enter_container_if_requested`].
    pub helper: Option<PathBuf>,
    /// Directory of the preload libraries (`libscar_preload-*.so`); `None` means next to the
    /// running executable (see [`preload::PreloadEngine::locate`]).
    pub preload_dir: Option<PathBuf>,
    /// What the preload engine does with a statically linked program (`SCAR_PRELOAD_STATIC`).
    pub static_policy: preload::StaticPolicy,
}

/// Resolve `kind` to an engine: `auto` takes the namespace engine when the shared probe says
/// user namespaces work here, else the preload engine; the choice and its reason are logged.
///
/// A single-threaded caller that has not probed yet skips the probe: the namespace engine's
/// direct start finds the same answer on the way (see [`namespace::direct`]), and `auto`
/// falls back to preload when it does.
pub fn select(kind: EngineKind, options: &EngineOptions) -> Result<Box<dyn Engine>, EngineError> {
    // The thread check reads /proc: not made for the preload engine, which does not need it.
    let unprobed = kind != EngineKind::Preload
        && probe::known_support().is_none()
        && namespace::direct::is_single_threaded();
    match (kind, unprobed) {
        (EngineKind::Preload, _) => {
            tracing::debug!(engine = "preload", reason = "requested", "engine selected");
            preload_engine(options, "the preload engine was requested")
        }
        (EngineKind::Namespace, true) => {
            tracing::debug!(
                engine = "namespace",
                reason = "requested",
                "engine selected"
            );
            Ok(Box::new(namespace_engine(options)))
        }
        (EngineKind::Auto, true) => Ok(Box::new(AutoEngine {
            namespace: namespace_engine(options),
            options: options.clone(),
            chosen: std::sync::OnceLock::new(),
        })),
        (EngineKind::Namespace, false) => match probe::namespace_support() {
            probe::NamespaceSupport::Available => {
                tracing::info!(
                    engine = "namespace",
                    reason = "requested",
                    "engine selected"
                );
                Ok(Box::new(namespace_engine(options)))
            }
            probe::NamespaceSupport::Unavailable(reason) => Err(namespace_unavailable(reason)),
        },
        (EngineKind::Auto, false) => {
            let choice = AutoChoice::from_probe(probe::namespace_support());
            choice.announce(false);
            choice.engine(options)
        }
    }
}

/// The namespace engine cannot run here: the reason, and what to use instead.
pub(crate) fn namespace_unavailable(reason: &str) -> EngineError {
    EngineError::NamespaceUnavailable(format!(
        "{reason}; on this host use the preload engine (--engine preload, SCAR_ENGINE=preload)"
    ))
}

/// What `auto` resolves to, and why: the one place where that choice is made and worded, for
/// [`select`] (after the probe) and [`AutoEngine`] (after a direct start) alike.
#[derive(Clone, Debug, PartialEq, Eq)]
enum AutoChoice {
    /// User namespaces work here.
    Namespace,
    /// They do not, for this reason: the preload engine.
    Preload(String),
}

impl AutoChoice {
    /// The choice the probe's answer (or a direct start's, recorded as the probe's) makes.
    fn from_probe(support: &probe::NamespaceSupport) -> Self {
        match support {
            probe::NamespaceSupport::Available => Self::Namespace,
            probe::NamespaceSupport::Unavailable(reason) => Self::Preload(reason.clone()),
        }
    }

    /// The choice once the namespace engine refused to start as unavailable: preload, with
    /// the reason this process recorded, if any.
    fn after_refusal(support: Option<&probe::NamespaceSupport>) -> Self {
        match support {
            Some(probe::NamespaceSupport::Unavailable(reason)) => Self::Preload(reason.clone()),
            _ => Self::Preload("user namespaces are unavailable".to_string()),
        }
    }

    /// Log the choice. `quiet`: the namespace engine, the expected choice, at debug level
    /// (`scar run` prints nothing of its own around the command's output); the fallback to
    /// preload is always worth a line.
    fn announce(&self, quiet: bool) {
        const AVAILABLE: &str = "auto: user namespaces are available";
        match self {
            Self::Namespace if quiet => {
                tracing::debug!(engine = "namespace", reason = AVAILABLE, "engine selected")
            }
            Self::Namespace => {
                tracing::info!(engine = "namespace", reason = AVAILABLE, "engine selected")
            }
            Self::Preload(reason) => tracing::info!(
                engine = "preload",
                %reason,
                "engine selected: auto, user namespaces are unavailable"
            ),
        }
    }

    /// The engine chosen.
    fn engine(&self, options: &EngineOptions) -> Result<Box<dyn Engine>, EngineError> {
        match self {
            Self::Namespace => Ok(Box::new(namespace_engine(options))),
            Self::Preload(reason) => preload_engine(options, reason),
        }
    }
}

/// `auto` for a single-threaded caller: the namespace engine's direct start, which is itself
/// the probe, and the preload engine when it finds user namespaces unavailable.
struct AutoEngine {
    namespace: namespace::NamespaceEngine,
    options: EngineOptions,
    chosen: std::sync::OnceLock<EngineKind>,
}

impl Engine for AutoEngine {
    fn kind(&self) -> EngineKind {
        self.chosen.get().copied().unwrap_or(EngineKind::Auto)
    }

    fn spawn(&self, spec: &RunSpec) -> Result<Container, EngineError> {
        // The direct start reports unavailability precisely; a caller that has meanwhile
        // started threads asks the probe first.
        let stat = namespace::direct::SelfStat::read();
        let choice = match probe::known_support() {
            Some(support) => AutoChoice::from_probe(support),
            None if stat.single_threaded => AutoChoice::Namespace,
            None => AutoChoice::from_probe(probe::namespace_support()),
        };
        let choice = match choice {
            AutoChoice::Namespace => match self.namespace.spawn_with(spec, stat) {
                Err(EngineError::NamespaceUnavailable(_)) => {
                    AutoChoice::after_refusal(probe::known_support())
                }
                started => {
                    let _ = self.chosen.set(EngineKind::Namespace);
                    AutoChoice::Namespace.announce(true);
                    return started;
                }
            },
            preload => preload,
        };
        choice.announce(true);
        let _ = self.chosen.set(EngineKind::Preload);
        choice.engine(&self.options)?.spawn(spec)
    }
}

fn namespace_engine(options: &EngineOptions) -> namespace::NamespaceEngine {
    match &options.helper {
        Some(helper) => namespace::NamespaceEngine::with_helper(helper),
        None => match RUNNING_EXE.get() {
            Some(exe) => namespace::NamespaceEngine::with_helper(exe),
            None => namespace::NamespaceEngine::new(),
        },
    }
}

/// The single spot where the preload engine is wired in (`why` says why it is used).
fn preload_engine(options: &EngineOptions, why: &str) -> Result<Box<dyn Engine>, EngineError> {
    match preload::PreloadEngine::locate_with(options.preload_dir.as_deref()) {
        Ok(engine) => Ok(Box::new(engine.with_static_policy(options.static_policy))),
        Err(EngineError::PreloadUnavailable(e)) => {
            Err(EngineError::PreloadUnavailable(format!("{why}; and {e}")))
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(root: &std::path::Path, scratch: &std::path::Path) -> RunSpec {
        RunSpec {
            root: root.to_path_buf(),
            argv: vec!["true".into()],
            env: Vec::new(),
            workdir: "/".into(),
            user: None,
            mounts: Vec::new(),
            scratch: scratch.to_path_buf(),
            stdin: Stdio::Null,
            stdout: Stdio::Null,
            stderr: Stdio::Null,
        }
    }

    #[test]
    fn auto_takes_the_namespace_engine_where_available_and_else_preload_with_the_reason() {
        let available = probe::NamespaceSupport::Available;
        assert_eq!(AutoChoice::from_probe(&available), AutoChoice::Namespace);
        let refused = probe::NamespaceSupport::Unavailable("uid_map: EPERM".into());
        assert_eq!(
            AutoChoice::from_probe(&refused),
            AutoChoice::Preload("uid_map: EPERM".into())
        );
        assert_eq!(
            AutoChoice::after_refusal(Some(&refused)),
            AutoChoice::Preload("uid_map: EPERM".into())
        );
        // A refusal this process has no reason for still names what is missing.
        for known in [None, Some(&available)] {
            assert_eq!(
                AutoChoice::after_refusal(known),
                AutoChoice::Preload("user namespaces are unavailable".into())
            );
        }
    }

    #[test]
    fn a_preload_choice_without_preload_libraries_says_why_preload_was_chosen() {
        let empty = tempfile::tempdir().unwrap();
        let options = EngineOptions {
            preload_dir: Some(empty.path().to_path_buf()),
            ..EngineOptions::default()
        };
        let choice = AutoChoice::Preload("uid_map: EPERM".into());
        let Err(EngineError::PreloadUnavailable(text)) = choice.engine(&options) else {
            panic!("the preload libraries are not in an empty directory")
        };
        assert!(text.starts_with("uid_map: EPERM; and "), "{text}");
        let namespace = AutoChoice::Namespace.engine(&options).unwrap();
        assert_eq!(namespace.kind(), EngineKind::Namespace);
    }

    #[test]
    fn a_root_in_the_cache_protects_the_whole_cache_and_one_elsewhere_nothing_more() {
        let dir = tempfile::tempdir().unwrap();
        let cache = dir.path().join("cache");
        let root = cache.join("rootfs/abc/root");
        std::fs::create_dir_all(&root).unwrap();
        std::fs::create_dir_all(cache.join("refs")).unwrap();
        let scratch = dir.path().join("scratch");
        let s = spec(&root, &scratch);
        assert_eq!(
            s.protected_dirs(&root, &["/tmp"]),
            cache.display().to_string()
        );
        let plain = dir.path().join("plain/root");
        std::fs::create_dir_all(&plain).unwrap();
        assert_eq!(s.protected_dirs(&plain, &["/tmp"]), "");
    }

    #[test]
    fn a_cache_holding_a_writable_place_protects_only_its_own_entries() {
        let dir = tempfile::tempdir().unwrap();
        let cache = dir.path().to_path_buf();
        let root = cache.join("rootfs/abc/root");
        std::fs::create_dir_all(&root).unwrap();
        std::fs::create_dir_all(cache.join("refs")).unwrap();
        let s = spec(&root, &cache.join("request-1"));
        let list = s.protected_dirs(&root, &[]);
        let dirs: Vec<&str> = list.split(':').collect();
        assert!(
            dirs.contains(&cache.join("refs").to_str().unwrap()),
            "{list}"
        );
        assert!(
            dirs.contains(&cache.join("rootfs").to_str().unwrap()),
            "{list}"
        );
        assert!(!dirs.contains(&cache.to_str().unwrap()), "{list}");
    }
}
