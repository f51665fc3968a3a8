//! The preload engine: the image's own dynamic loader plus the path-mapping `LD_PRELOAD`
//! library, for hosts that refuse user namespaces (AWS Lambda).
//!
//! A container here is an ordinary process tree of the calling user. Its first program is started
//! as `<image loader> --library-path <image dirs> --inhibit-cache <program> <args>` with
//! `libscar_preload` (built from `rootfs/preload/`) in `LD_PRELOAD`; the library maps every
//! absolute path the program names into the image and starts child programs the same way.
//!
//! Choices and limits (documented for users in the README):
//! - The cached image stays pristine: a write into the image fails with `EROFS`, as on a
//!   read-only root. `/tmp`, `/proc`, `/dev`, `/sys` and the request's directories are the host's.
//! - A statically linked program runs directly and sees host paths (warned).
//! - It is not a security boundary: raw system calls bypass the library; there is no PID
//!   namespace, so the engine makes the caller non-dumpable to keep its `/proc/<pid>/environ`
//!   (AWS credentials) unreadable to the container.

pub mod elf;
pub mod ldconf;
mod plan;
pub mod resolve;

pub use plan::Plan;

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

use self::plan::plan;
use super::process::wait_or_stop;
use super::{Container, ContainerHandle, Engine, EngineError, EngineKind, Outcome, RunSpec, Stdio};

/// Override of the library directory, read only by tests and `scar` (the bootstrap passes the
/// directory it found next to itself).
pub const PRELOAD_DIR_ENV: &str = "SCAR_PRELOAD_DIR";
/// The glibc build (glibc 2.17 and newer).
pub const LIB_GNU: &str = "libscar_preload-gnu.so";
/// The musl build.
pub const LIB_MUSL: &str = "libscar_preload-musl.so";
/// `#!` nesting the engine follows, as Linux.
const MAX_SCRIPT_DEPTH: usize = 4;
/// `PATH` when the container environment has none (Docker's default).
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// Host directories the container sees as they are.
const PASSTHROUGH: [&str; 4] = ["/proc", "/dev", "/sys", "/tmp"];

/// The preload engine; knows where its libraries are.
#[derive(Clone, Debug)]
pub struct PreloadEngine {
    dir: PathBuf,
}

impl PreloadEngine {
    /// The engine with its libraries in `dir` (at least [`LIB_GNU`] must be there).
    pub fn new(dir: impl Into<PathBuf>) -> Result<Self, EngineError> {
        let dir = dir.into();
        let gnu = dir.join(LIB_GNU);
        if !gnu.is_file() {
            return Err(EngineError::PreloadUnavailable(format!(
                "{} is missing: build it with `rootfs/preload/build.sh <arch> {}` or ship it next to the binary in preload/",
                gnu.display(),
                dir.display()
            )));
        }
        let dir = std::fs::canonicalize(&dir).unwrap_or(dir);
        Ok(Self { dir })
    }

    /// Find the libraries: `$SCAR_PRELOAD_DIR`, else next to the running executable:
    /// `<exe dir>/preload/`, then `<exe dir>/../lib/scar/preload/` (an installed `scar`).
    pub fn locate() -> Result<Self, EngineError> {
        Self::locate_with(None)
    }

    /// [`locate`](Self::locate), but `dir` first when given, then [`PRELOAD_DIR_ENV`] when
    /// set (so `scar run` and the bootstrap both honour it).
    pub fn locate_with(dir: Option<&Path>) -> Result<Self, EngineError> {
        if let Some(dir) = dir {
            return Self::new(dir);
        }
        if let Some(dir) = std::env::var_os(PRELOAD_DIR_ENV).filter(|d| !d.is_empty()) {
            return Self::new(Path::new(&dir));
        }
        let exe = std::env::current_exe().map_err(|e| {
            EngineError::PreloadUnavailable(format!("cannot find the running executable: {e}"))
        })?;
        let exe_dir = exe.parent().unwrap_or(Path::new("/"));
        let candidates = [exe_dir.join("preload"), exe_dir.join("../lib/scar/preload")];
        for c in &candidates {
            if c.join(LIB_GNU).is_file() {
                return Self::new(c);
            }
        }
        Err(EngineError::PreloadUnavailable(format!(
            "{LIB_GNU} was found in neither {} nor {}: the layer and `scar` ship it there; set {PRELOAD_DIR_ENV} when running from a build tree",
            candidates[0].display(),
            candidates[1].display()
        )))
    }

    /// The directory holding the libraries.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Work out how to start `spec` (exposed for tests and `scar run --dry-run` style output).
    pub fn plan(&self, spec: &RunSpec) -> Result<Plan, EngineError> {
        plan(self, spec)
    }
}

fn stdio(s: Stdio) -> std::process::Stdio {
    match s {
        Stdio::Inherit => std::process::Stdio::inherit(),
        Stdio::Null => std::process::Stdio::null(),
        Stdio::Piped => std::process::Stdio::piped(),
    }
}

impl Engine for PreloadEngine {
    fn kind(&self) -> EngineKind {
        EngineKind::Preload
    }

    fn spawn(&self, spec: &RunSpec) -> Result<Container, EngineError> {
        let plan = plan(self, spec)?;
        // Without a PID namespace the container sees our /proc/<pid>; non-dumpable makes
        // /proc/<pid>/environ (AWS credentials) root-owned and unreadable to it.
        // SAFETY: prctl(PR_SET_DUMPABLE, 0) only changes a flag of this process.
        if unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) } != 0 {
            tracing::warn!(err = %std::io::Error::last_os_error(), "cannot make this process non-dumpable");
        }
        let mut cmd = Command::new(&plan.program);
        if let Some((first, rest)) = plan.args.split_first() {
            cmd.arg0(first).args(rest);
        }
        cmd.env_clear()
            .envs(plan.env.iter().map(|(k, v)| (k, v)))
            .current_dir(&plan.cwd)
            .process_group(0)
            .stdin(stdio(spec.stdin))
            .stdout(stdio(spec.stdout))
            .stderr(stdio(spec.stderr));
        // SAFETY: prctl is async-signal-safe; the closure touches no memory of the parent.
        unsafe {
            cmd.pre_exec(|| {
                // The container dies with its supervisor rather than outliving it.
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0);
                Ok(())
            });
        }
        let mut child = cmd.spawn().map_err(|e| EngineError::Exec {
            command: spec.argv.first().cloned().unwrap_or_default(),
            reason: format!("starting {}: {e}", plan.program.display()),
        })?;
        let pid = Pid::from_raw(child.id() as i32);
        tracing::debug!(pid = pid.as_raw(), program = %plan.program.display(), "preload container started");
        Ok(Container {
            stdin: child.stdin.take(),
            stdout: child.stdout.take(),
            stderr: child.stderr.take(),
            handle: Box::new(PreloadHandle { pid, reaped: false }),
        })
    }
}

/// The container's process group (its leader is the first program).
struct PreloadHandle {
    pid: Pid,
    reaped: bool,
}

impl PreloadHandle {
    /// Stop what is left of the group: background jobs must not outlive the container.
    fn sweep(&self) {
        let _ = killpg(self.pid, Signal::SIGKILL);
    }
}

impl ContainerHandle for PreloadHandle {
    fn pid(&self) -> u32 {
        self.pid.as_raw() as u32
    }

    fn wait(&mut self, deadline: Option<Instant>, grace: Duration) -> Result<Outcome, EngineError> {
        let pid = self.pid;
        let outcome = wait_or_stop(pid, deadline, grace, |sig| {
            let _ = killpg(pid, sig);
        })?;
        self.reaped = true;
        self.sweep();
        Ok(outcome)
    }
}

impl Drop for PreloadHandle {
    fn drop(&mut self) {
        if !self.reaped {
            self.sweep();
            let _ = nix::sys::wait::waitpid(self.pid, None);
        }
    }
}
