//! The namespace engine: user + mount + PID (+ IPC, UTS) namespaces and `pivot_root`.
//!
//! The caller (`bootstrap`, `scar`) is a multithreaded tokio program, so no namespace work
//! happens after a raw fork in it. Instead the engine re-executes the current binary with
//! [`config::HELPER_ENV`] set; [`super::enter_container_if_requested`], the first call in
//! both `main`s, turns that fresh single-threaded process into the helper ([`setup`]), which
//! builds the container and forks its init ([`init`]). The spec goes over a pipe as JSON;
//! set-up errors come back over a close-on-exec pipe, so [`NamespaceEngine::spawn`] returns
//! a clear [`EngineError`] (e.g. the command is not in the image) rather than an exit code.
//!
//! Process tree: caller → helper (monitor, host PID namespace) → init (PID 1) → command.

pub mod affinity;
pub mod channel;
pub mod config;
pub mod direct;
pub mod init;
pub mod mounts;
pub mod probe;
mod raw;
pub mod setup;
pub mod spawn;
pub mod steps;
pub mod syscall;
pub mod user;

use std::io::Write;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Component, Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use nix::fcntl::OFlag;
use nix::sys::signal::{Signal, kill};
use nix::unistd::{Pid, pipe2};

pub use self::channel::SetupError;
use self::channel::{errno_setup, read_reports, verdict};
use self::config::{BindMount, HELPER_ARG0, HELPER_ENV, InitConfig};
use self::user::UserDecision;
use super::process::{pidfd_open, wait_or_stop, wait_readable};
use super::types::{
    Container, ContainerHandle, Engine, EngineError, EngineKind, Outcome, RunSpec, Stdio,
};

/// The container's hostname.
pub const HOSTNAME: &str = "scar";

/// The namespace engine.
#[derive(Clone, Debug)]
pub struct NamespaceEngine {
    helper: PathBuf,
}

impl Default for NamespaceEngine {
    fn default() -> Self {
        Self::new()
    }
}

impl NamespaceEngine {
    /// The engine, re-executing the current binary (`/proc/self/exe`) as its helper.
    pub fn new() -> Self {
        Self {
            helper: PathBuf::from("/proc/self/exe"),
        }
    }

    /// The engine with another helper binary: one whose `main` calls
    /// [`super::enter_container_if_requested`] first (e.g. `scar` when a test drives the
    /// engine from its own process).
    pub fn with_helper(helper: impl Into<PathBuf>) -> Self {
        Self {
            helper: helper.into(),
        }
    }
}

impl Engine for NamespaceEngine {
    fn kind(&self) -> EngineKind {
        EngineKind::Namespace
    }

    fn spawn(&self, spec: &RunSpec) -> Result<Container, EngineError> {
        self.spawn_with(spec, direct::SelfStat::read())
    }
}

impl NamespaceEngine {
    /// [`Engine::spawn`] for a caller that has just read `/proc/self/stat` (some 15 µs): a
    /// single-threaded process clones the container's init directly, another starts the
    /// helper.
    pub(crate) fn spawn_with(
        &self,
        spec: &RunSpec,
        stat: direct::SelfStat,
    ) -> Result<Container, EngineError> {
        validate(spec)?;
        if let UserDecision::RootInstead(reason) = user::decide(&spec.root, spec.user.as_deref()) {
            tracing::info!(%reason, "running as container root");
        }
        std::fs::create_dir_all(&spec.scratch).map_err(|source| EngineError::Setup {
            step: format!("creating the scratch directory {}", spec.scratch.display()),
            source,
        })?;
        let config = init_config(spec);
        if stat.single_threaded {
            return direct::start(&config, [spec.stdin, spec.stdout, spec.stderr], stat);
        }
        start(&self.helper, &config, spec)
    }
}

/// Reject what the kernel would only refuse later with a less helpful errno.
fn validate(spec: &RunSpec) -> Result<(), EngineError> {
    let invalid = |step: String| EngineError::Setup {
        step,
        source: std::io::Error::from_raw_os_error(libc::EINVAL),
    };
    if !spec.root.is_dir() {
        return Err(EngineError::Setup {
            step: format!("the image root {} is not a directory", spec.root.display()),
            source: std::io::Error::from_raw_os_error(libc::ENOTDIR),
        });
    }
    for mount in &spec.mounts {
        if let Err(source) = std::fs::metadata(&mount.host) {
            return Err(EngineError::Setup {
                step: format!(
                    "volume {}: the host path is not usable",
                    mount.host.display()
                ),
                source,
            });
        }
        let path = &mount.container;
        if !path.is_absolute() || path.components().any(|c| c == Component::ParentDir) {
            return Err(invalid(format!(
                "volume target {} must be an absolute path without `..`",
                path.display()
            )));
        }
    }
    Ok(())
}

fn stdio(kind: Stdio) -> std::process::Stdio {
    match kind {
        Stdio::Inherit => std::process::Stdio::inherit(),
        Stdio::Null => std::process::Stdio::null(),
        Stdio::Piped => std::process::Stdio::piped(),
    }
}

/// What the init needs to know of the spec.
fn init_config(spec: &RunSpec) -> InitConfig {
    InitConfig {
        root: spec.root.clone(),
        run_dir: spec.scratch.clone(),
        argv: spec.argv.clone(),
        env: spec.env.clone(),
        workdir: spec.workdir.clone(),
        mounts: spec
            .mounts
            .iter()
            .map(|m| BindMount {
                host: m.host.clone(),
                container: m.container.clone(),
                read_only: m.read_only,
            })
            .collect(),
        hostname: HOSTNAME.to_string(),
        affinity: None,
        parent_reads_record: false,
    }
}

/// Start the helper, hand it the spec, and wait for its verdict.
fn start(helper: &Path, config: &InitConfig, spec: &RunSpec) -> Result<Container, EngineError> {
    let json = serde_json::to_vec(config).map_err(|e| EngineError::Setup {
        step: "encoding the container spec (paths must be UTF-8)".into(),
        source: std::io::Error::other(e),
    })?;
    let (config_read, config_write) = pipe2(OFlag::O_CLOEXEC).map_err(errno_setup("pipe2"))?;
    let (report_read, report_write) = pipe2(OFlag::O_CLOEXEC).map_err(errno_setup("pipe2"))?;
    let inherited = [config_read.as_raw_fd(), report_write.as_raw_fd()];
    let mut command = Command::new(helper);
    command
        .arg0(HELPER_ARG0)
        .env_clear()
        .env(HELPER_ENV, format!("{},{}", inherited[0], inherited[1]))
        .stdin(stdio(spec.stdin))
        .stdout(stdio(spec.stdout))
        .stderr(stdio(spec.stderr));
    // SAFETY: the closure only calls fcntl(2), which is async-signal-safe, on two fds that
    // stay open in the parent until spawn returns.
    unsafe {
        command.pre_exec(move || {
            for fd in inherited {
                if libc::fcntl(fd, libc::F_SETFD, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    let mut child = command.spawn().map_err(|source| EngineError::Setup {
        step: format!("starting the container helper {}", helper.display()),
        source,
    })?;
    drop(config_read);
    drop(report_write);
    // A helper that died early closes its end: the report below says why.
    let _ = std::fs::File::from(config_write).write_all(&json);
    let (init_pid, failure) = verdict(read_reports(report_read));
    let pid = Pid::from_raw(child.id() as i32);
    let failure = match (failure, init_pid) {
        (Some(err), _) => Some(err),
        (None, Some(_)) => None,
        (None, None) => Some(EngineError::Setup {
            step: format!(
                "the helper {} did not start the container (its main must call enter_container_if_requested() first)",
                helper.display()
            ),
            source: std::io::Error::from_raw_os_error(libc::ECHILD),
        }),
    };
    if let Some(err) = failure {
        let _ = kill(pid, Signal::SIGKILL);
        let _ = child.wait();
        return Err(err);
    }
    let init_pid = init_pid.unwrap_or(pid);
    let handle = NamespaceHandle {
        pid,
        init_pid,
        init_pidfd: pidfd_open(init_pid),
        stopped: false,
    };
    Ok(Container {
        stdin: child.stdin.take(),
        stdout: child.stdout.take(),
        stderr: child.stderr.take(),
        handle: Box::new(handle),
    })
}

/// The running container: the helper (our child) and the init behind it.
struct NamespaceHandle {
    pid: Pid,
    init_pid: Pid,
    init_pidfd: Option<OwnedFd>,
    /// Reaped by `wait` (else `Drop` stops the container).
    stopped: bool,
}

impl NamespaceHandle {
    /// The init ends only after every process of its namespace is gone: wait for that, so
    /// nothing of the container outlives `wait`.
    fn wait_for_namespace_end(&self) {
        let Some(pidfd) = &self.init_pidfd else {
            return;
        };
        if !wait_readable(pidfd, Instant::now() + Duration::from_secs(5)) {
            let _ = kill(self.init_pid, Signal::SIGKILL);
            wait_readable(pidfd, Instant::now() + Duration::from_secs(5));
        }
    }
}

impl ContainerHandle for NamespaceHandle {
    fn pid(&self) -> u32 {
        self.pid.as_raw() as u32
    }

    fn wait(&mut self, deadline: Option<Instant>, grace: Duration) -> Result<Outcome, EngineError> {
        let (helper, init) = (self.pid, self.init_pid);
        let outcome = wait_or_stop(helper, deadline, grace, |sig| {
            // The helper forwards SIGTERM through the init to the command; SIGKILL goes to
            // the init directly, which ends the whole PID namespace.
            let _ = kill(helper, sig);
            if sig == Signal::SIGKILL {
                let _ = kill(init, sig);
            }
        });
        self.wait_for_namespace_end();
        self.stopped = true;
        Ok(outcome?)
    }
}

impl Drop for NamespaceHandle {
    fn drop(&mut self) {
        // A container dropped without `wait` is stopped, not leaked.
        if !self.stopped {
            let _ = kill(self.pid, Signal::SIGKILL);
            let _ = kill(self.init_pid, Signal::SIGKILL);
            let _ = nix::sys::wait::waitpid(self.pid, None);
            self.wait_for_namespace_end();
        }
    }
}
