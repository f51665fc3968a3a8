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
//! - A statically linked program runs directly and sees host paths: never silently. The run
//!   reports it ([`Container::unconfined`]); `SCAR_PRELOAD_STATIC=refuse` ([`StaticPolicy`])
//!   refuses it instead. Children started through the exec hooks append their path to a report
//!   file (`SCAR_PRELOAD_REPORT`) read when the run ends.
//! - It is not a security boundary: raw system calls bypass the library; there is no PID
//!   namespace, so a caller holding secrets must be non-dumpable to keep its `/proc/<pid>/environ`
//!   and `mem` (AWS credentials) unreadable to the container (the bootstrap re-executes an
//!   execute-only copy of itself: `prctl` is refused on Lambda).
//! - Without a PID namespace, a process group or a subreaper, the container's processes are
//!   found by a random tag in their environment and by parent links ([`reap`]); every one of
//!   them is killed at the deadline and when the first program ends.

pub mod elf;
pub mod ldconf;
mod plan;
mod policy;
pub mod reap;
pub mod resolve;

pub use plan::{LIB_GNU, LIB_MUSL, Plan};
pub use policy::StaticPolicy;

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

use self::plan::plan;
use self::reap::{Reaper, TAG_ENV, Tag};
use super::process::wait_or_stop;
use super::types::{
    Container, ContainerHandle, Engine, EngineError, EngineKind, Outcome, RunSpec, Stdio,
    Unconfined,
};

/// Override of the library directory, read only by tests and `scar` (the bootstrap passes the
/// directory it found next to itself).
pub const PRELOAD_DIR_ENV: &str = "SCAR_PRELOAD_DIR";
/// Host path of the file the exec hooks append unconfined programs to (`ran<TAB>path` or
/// `refused<TAB>path` lines).
pub const REPORT_ENV: &str = "SCAR_PRELOAD_REPORT";
/// `refuse` makes the exec hooks refuse static programs (`EACCES`).
pub const STATIC_ENV: &str = "SCAR_PRELOAD_STATIC";

/// The preload engine; knows where its libraries are.
#[derive(Clone, Debug)]
pub struct PreloadEngine {
    dir: PathBuf,
    static_policy: StaticPolicy,
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
        Ok(Self {
            dir,
            static_policy: StaticPolicy::default(),
        })
    }

    /// The same engine with `policy` for statically linked programs.
    pub fn with_static_policy(mut self, policy: StaticPolicy) -> Self {
        self.static_policy = policy;
        self
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
        let exe = super::exe::running_exe().map_err(|e| {
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
        plan(&self.dir, self.static_policy, spec)
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
        let mut plan = plan(&self.dir, self.static_policy, spec)?;
        let tag = Tag::random().map_err(|source| EngineError::Setup {
            step: "read /dev/urandom for the container's tag".into(),
            source,
        })?;
        let report = report_file(&spec.scratch, &tag)?;
        // Ours last: the library and the sweep read these, whatever the container set.
        plan.env
            .retain(|(k, _)| k != TAG_ENV && k != REPORT_ENV && k != STATIC_ENV);
        plan.env.extend([
            (TAG_ENV.to_string(), tag.value().to_string()),
            (
                REPORT_ENV.to_string(),
                report.to_string_lossy().into_owned(),
            ),
            (
                STATIC_ENV.to_string(),
                self.static_policy.as_str().to_string(),
            ),
        ]);
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
        // SAFETY: prctl(2) is async-signal-safe; the closure touches no memory of the parent.
        unsafe {
            cmd.pre_exec(|| {
                // The container dies with its supervisor rather than outliving it.
                let _ = nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL);
                Ok(())
            });
        }
        let mut child = cmd.spawn().map_err(|e| {
            let _ = std::fs::remove_file(&report);
            EngineError::Exec {
                command: spec.argv.first().cloned().unwrap_or_default(),
                reason: format!("starting {}: {e}", plan.program.display()),
            }
        })?;
        let pid = Pid::from_raw(child.id() as i32);
        tracing::debug!(pid = pid.as_raw(), program = %plan.program.display(), "preload container started");
        let mut unconfined = Unconfined::default();
        unconfined.ran.extend(plan.unconfined.clone());
        Ok(Container {
            stdin: child.stdin.take(),
            stdout: child.stdout.take(),
            stderr: child.stderr.take(),
            handle: Box::new(PreloadHandle {
                pid,
                reaped: false,
                reaper: Reaper::new(tag, Some(pid)),
                report,
                unconfined,
            }),
        })
    }
}

/// Create the empty report file of one run in `scratch`.
fn report_file(scratch: &Path, tag: &Tag) -> Result<PathBuf, EngineError> {
    let setup = |step: String| move |source| EngineError::Setup { step, source };
    std::fs::create_dir_all(scratch).map_err(setup(format!(
        "create the run's scratch directory {}",
        scratch.display()
    )))?;
    let path = scratch.join(format!("scar-preload-{}.report", tag.value()));
    std::fs::File::create(&path)
        .map_err(setup(format!("create the report file {}", path.display())))?;
    Ok(path)
}

/// Parse the report file: `ran<TAB>path` and `refused<TAB>path` lines, each program once.
fn read_report(text: &str, into: &mut Unconfined) {
    for line in text.lines() {
        let (list, program) = match line.split_once('\t') {
            Some(("ran", p)) => (&mut into.ran, p),
            Some(("refused", p)) => (&mut into.refused, p),
            _ => continue,
        };
        if !program.is_empty() && !list.iter().any(|p| p == program) {
            list.push(program.to_string());
        }
    }
}

/// The container: its first program (leader of a process group) and every process carrying
/// its tag or descending from one.
struct PreloadHandle {
    pid: Pid,
    reaped: bool,
    reaper: Reaper,
    report: PathBuf,
    unconfined: Unconfined,
}

impl PreloadHandle {
    /// Kill whatever is left of the container: background jobs, `setsid` sessions and daemons
    /// must not outlive it.
    fn sweep(&self) {
        let _ = killpg(self.pid, Signal::SIGKILL);
        let swept = self.reaper.kill_all();
        if swept.left > 0 {
            tracing::warn!(
                left = swept.left,
                "processes of the container were still present after SIGKILL"
            );
        }
        tracing::debug!(
            killed = swept.killed,
            scans = swept.scans,
            elapsed_us = swept.elapsed.as_micros() as u64,
            "container processes swept"
        );
    }

    /// Read and remove the report file (once every writer is dead).
    fn collect_report(&mut self) {
        if let Ok(text) = std::fs::read_to_string(&self.report) {
            read_report(&text, &mut self.unconfined);
        }
        let _ = std::fs::remove_file(&self.report);
        for program in &self.unconfined.ran {
            tracing::warn!(
                program,
                "ran statically linked, without the preload library: it saw the host's files, not the image's"
            );
        }
    }
}

impl ContainerHandle for PreloadHandle {
    fn pid(&self) -> u32 {
        self.pid.as_raw() as u32
    }

    fn wait(&mut self, deadline: Option<Instant>, grace: Duration) -> Result<Outcome, EngineError> {
        let pid = self.pid;
        let reaper = &self.reaper;
        let outcome = wait_or_stop(pid, deadline, grace, |sig| {
            let _ = killpg(pid, sig);
            if sig == Signal::SIGKILL {
                reaper.kill_all();
            } else {
                reaper.signal_all(sig);
            }
        });
        self.reaped = outcome.is_ok();
        self.sweep();
        self.collect_report();
        Ok(outcome?)
    }

    fn unconfined(&self) -> Unconfined {
        self.unconfined.clone()
    }
}

impl Drop for PreloadHandle {
    fn drop(&mut self) {
        if !self.reaped {
            self.sweep();
            let _ = nix::sys::wait::waitpid(self.pid, None);
            let _ = std::fs::remove_file(&self.report);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_lines_are_sorted_into_ran_and_refused_once_each() {
        let mut u = Unconfined::default();
        read_report(
            "ran\t/bin/busybox\nrefused\t/sbin/static\nran\t/bin/busybox\ngarbage\nran\t\n",
            &mut u,
        );
        assert_eq!(u.ran, vec!["/bin/busybox".to_string()]);
        assert_eq!(u.refused, vec!["/sbin/static".to_string()]);
    }
}
