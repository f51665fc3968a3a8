//! What every engine shares: the run it is asked for ([`RunSpec`], [`Mount`], [`Stdio`]), the
//! container it hands back ([`Container`], [`ContainerHandle`], [`Outcome`]), its error and the
//! [`Engine`] trait itself. The files of `engine/` import these from here, and `engine/mod.rs`
//! re-exports them, so callers keep `scar_rootfs::engine::RunSpec`.

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
