//! Starting the container straight from the caller, with no helper process.
//!
//! A single-threaded caller (the `scar run` command line, before it starts any thread) may
//! run arbitrary code in the child of a plain clone(2), so there the engine clones the
//! container's init directly into new user, mount, PID, IPC and UTS namespaces: no re-exec of
//! the binary, no spec over a pipe, no probe process, one process less. The init maps its
//! ids, builds the root filesystem and goes on exactly as the helper's init does
//! ([`super::init::run`]); reports come back over the same close-on-exec pipe.
//!
//! Process tree: caller (monitor) → init (PID 1) → command, the same as bubblewrap's.
//!
//! A multithreaded caller (the bootstrap, a test harness) keeps the helper path: after a
//! clone in a multithreaded process the child may only make async-signal-safe calls.

use std::os::fd::{AsRawFd, OwnedFd};
use std::process::{ChildStderr, ChildStdin, ChildStdout};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{OFlag, open};
use nix::sys::signal::{SigmaskHow, Signal, kill, sigprocmask};
use nix::sys::stat::Mode;
use nix::sys::wait::waitpid;
use nix::unistd::{Gid, Pid, Uid, pipe2};

use super::config::{InitConfig, Reporter};
use super::setup::{SETUP_FAILED, build_root, fail, waited_signals};
use super::{errno_setup, init, verdict};
use crate::engine::probe::{self, NamespaceSupport, Step};
use crate::engine::process::{outcome_of, wait_or_stop};
use crate::engine::{Container, ContainerHandle, EngineError, Outcome, Stdio};

/// Whether this process has exactly one thread (read from `/proc/self/stat`).
pub fn is_single_threaded() -> bool {
    use std::io::Read;
    // One read: the line is far shorter than the buffer.
    let mut buf = [0u8; 1024];
    let Ok(len) = std::fs::File::open("/proc/self/stat").and_then(|mut f| f.read(&mut buf)) else {
        return false;
    };
    let stat = String::from_utf8_lossy(&buf[..len]);
    // Field 20 (num_threads) is the 18th after the `)` that ends the command name.
    stat.rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().nth(17))
        .is_some_and(|threads| threads == "1")
}

/// The namespaces the init is cloned into.
const NAMESPACES: libc::c_int = libc::CLONE_NEWUSER
    | libc::CLONE_NEWNS
    | libc::CLONE_NEWPID
    | libc::CLONE_NEWIPC
    | libc::CLONE_NEWUTS;

/// One standard stream of the command: the child's end, and the caller's end of a pipe.
struct StreamEnds {
    child: Option<OwnedFd>,
    caller: Option<OwnedFd>,
}

fn stream(kind: Stdio, input: bool) -> Result<StreamEnds, EngineError> {
    match kind {
        Stdio::Inherit => Ok(StreamEnds {
            child: None,
            caller: None,
        }),
        Stdio::Null => {
            let flags = if input {
                OFlag::O_RDONLY
            } else {
                OFlag::O_WRONLY
            };
            let null = open("/dev/null", flags | OFlag::O_CLOEXEC, Mode::empty())
                .map_err(errno_setup("opening /dev/null"))?;
            Ok(StreamEnds {
                child: Some(null),
                caller: None,
            })
        }
        Stdio::Piped => {
            let (read, write) = pipe2(OFlag::O_CLOEXEC).map_err(errno_setup("pipe2"))?;
            let (child, caller) = if input { (read, write) } else { (write, read) };
            Ok(StreamEnds {
                child: Some(child),
                caller: Some(caller),
            })
        }
    }
}

/// Start the container from this single-threaded process.
pub(super) fn start(config: &InitConfig, stdio: [Stdio; 3]) -> Result<Container, EngineError> {
    let (uid, gid) = (Uid::current(), Gid::current());
    let maps = (format!("0 {uid} 1\n"), format!("0 {gid} 1\n"));
    let (report_read, report_write) = pipe2(OFlag::O_CLOEXEC).map_err(errno_setup("pipe2"))?;
    let (status_read, status_write) = pipe2(OFlag::O_CLOEXEC).map_err(errno_setup("pipe2"))?;
    let mut streams = [
        stream(stdio[0], true)?,
        stream(stdio[1], false)?,
        stream(stdio[2], false)?,
    ];
    // Blocked before the clone so that the init, which waits for them synchronously, loses
    // none; this process gets its own mask back right after.
    let mut saved = nix::sys::signal::SigSet::empty();
    sigprocmask(
        SigmaskHow::SIG_BLOCK,
        Some(&waited_signals()),
        Some(&mut saved),
    )
    .map_err(errno_setup("blocking signals"))?;
    // SAFETY: clone(2) without CLONE_VM and with a null stack behaves as fork(2): the child
    // gets a copy of this address space. This process is single-threaded (checked by the
    // caller), so no lock is held by another thread and the child may run any code. libc's
    // cached thread id goes stale in the child; nothing the child runs uses it.
    let pid = unsafe {
        libc::syscall(
            libc::SYS_clone,
            libc::c_long::from(NAMESPACES | libc::SIGCHLD),
            0 as libc::c_long,
            0 as libc::c_long,
            0 as libc::c_long,
            0 as libc::c_long,
        )
    };
    if pid == 0 {
        let child_ends = streams.each_mut().map(|s| s.child.take());
        drop(report_read);
        drop(status_read);
        child(
            config,
            &maps,
            uid,
            gid,
            report_write,
            status_write,
            child_ends,
        );
    }
    let clone_errno = Errno::last();
    let _ = sigprocmask(SigmaskHow::SIG_SETMASK, Some(&saved), None);
    if pid < 0 {
        return Err(refused(Step::CloneAll, clone_errno, uid, gid));
    }
    let init = Pid::from_raw(pid as i32);
    drop(report_write);
    drop(status_write);
    for s in &mut streams {
        s.child = None;
    }
    let (_, failure) = verdict(super::read_reports(report_read));
    if let Some(err) = failure {
        let _ = kill(init, Signal::SIGKILL);
        let _ = waitpid(init, None);
        if let EngineError::NamespaceUnavailable(reason) = &err {
            probe::record(NamespaceSupport::Unavailable(reason.clone()));
            return Err(crate::engine::namespace_unavailable(reason));
        }
        return Err(err);
    }
    probe::record(NamespaceSupport::Available);
    let [stdin, stdout, stderr] = streams.map(|s| s.caller);
    Ok(Container {
        stdin: stdin.map(ChildStdin::from),
        stdout: stdout.map(ChildStdout::from),
        stderr: stderr.map(ChildStderr::from),
        handle: Box::new(DirectHandle {
            init,
            status: Some(status_read),
            state: InitState::Running,
        }),
    })
}

/// The namespace engine cannot run here: the reason, as the probe would give it.
fn refused(step: Step, errno: Errno, uid: Uid, gid: Gid) -> EngineError {
    let reason = probe::explain(step, errno, uid, gid);
    let err = crate::engine::namespace_unavailable(&reason);
    probe::record(NamespaceSupport::Unavailable(reason));
    err
}

/// The cloned child: PID 1 of the new PID namespace. Never returns.
fn child(
    config: &InitConfig,
    maps: &(String, String),
    uid: Uid,
    gid: Gid,
    report: OwnedFd,
    status: OwnedFd,
    stdio: [Option<OwnedFd>; 3],
) -> ! {
    let reporter = Reporter::from_owned(report);
    for (target, fd) in stdio.iter().enumerate() {
        if let Some(fd) = fd {
            // SAFETY: dup2(2) of an fd this child owns onto 0, 1 or 2 of its own descriptor
            // table; the duplicate is not close-on-exec, so the command inherits it.
            if unsafe { libc::dup2(fd.as_raw_fd(), target as libc::c_int) } < 0 {
                let err = Errno::last();
                fail(
                    &reporter,
                    super::SetupError::new("dup2 of a standard stream", err),
                );
            }
        }
    }
    drop(stdio);
    if let Err((step, errno)) = probe::write_id_maps(maps.0.as_bytes(), maps.1.as_bytes()) {
        reporter.send(&super::config::Report::Unavailable {
            reason: probe::explain(step, errno, uid, gid),
        });
        std::process::exit(SETUP_FAILED);
    }
    let (pinned, _pins) = match build_root(config, &reporter) {
        Ok(built) => built,
        Err(err) => fail(&reporter, err),
    };
    // Only now: a non-dumpable process's /proc/self files belong to the host's root, so an
    // unprivileged caller could no longer write its uid_map.
    conceal_caller();
    init::run(&pinned, &reporter, status, Pid::from_raw(0))
}

/// The init is a copy of the caller, which may hold secrets (its environment, registry
/// credentials in memory). Non-dumpable, the container's root cannot read this process's
/// memory or `/proc/1/environ`: the copied address space belongs to the host's user
/// namespace, where container root has no CAP_SYS_PTRACE. The argument and environment areas
/// are overwritten as well, so `/proc/1/cmdline` reads `scar-container-init`, as with the
/// helper.
fn conceal_caller() {
    let _ = nix::sys::prctl::set_dumpable(false);
    let Some([arg_start, arg_end, env_start, env_end]) = memory_areas() else {
        return;
    };
    // SAFETY: this child is single-threaded and nothing in it reads the environment again,
    // so emptying libc's list of pointers into the area zeroed below is sound.
    unsafe { libc::clearenv() };
    let title = HELPER_TITLE;
    for (start, end, text) in [(arg_start, arg_end, title), (env_start, env_end, &b""[..])] {
        let Some(len) = end
            .checked_sub(start)
            .filter(|len| *len > 0 && *len < 1 << 24)
        else {
            continue;
        };
        // SAFETY: the kernel reports [start, end) as this process's argument or environment
        // strings, placed by execve(2) on its own writable stack; this child has its own copy
        // of them (no CLONE_VM), and nothing reads them after this point (std's saved argv
        // is never consulted in the init).
        unsafe {
            let area = std::slice::from_raw_parts_mut(start as *mut u8, len);
            area.fill(0);
            let n = text.len().min(len.saturating_sub(1));
            area[..n].copy_from_slice(&text[..n]);
        }
    }
}

/// What `/proc/1/cmdline` shows.
const HELPER_TITLE: &[u8] = b"scar-container-init";

/// `arg_start arg_end env_start env_end` from `/proc/self/stat` (fields 48 to 51).
fn memory_areas() -> Option<[usize; 4]> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    let fields: Vec<usize> = rest
        .split_whitespace()
        .skip(45)
        .take(4)
        .map(|f| f.parse().ok())
        .collect::<Option<_>>()?;
    fields.try_into().ok()
}

/// The running container: the init is this process's child.
struct DirectHandle {
    init: Pid,
    /// The init writes how the command ended here: `[0, code, alone]` or `[1, signal, alone]`.
    status: Option<OwnedFd>,
    /// What became of the init, for `Drop`.
    state: InitState,
}

/// Whether the init still needs this process.
#[derive(Clone, Copy, PartialEq, Eq)]
enum InitState {
    /// Running: `Drop` stops and reaps it.
    Running,
    /// Reaped by `wait`.
    Reaped,
    /// Its command ended and it was alone in its PID namespace: it is only tearing the
    /// namespaces down, and is reaped if it is done by the time of `Drop` (else by whoever
    /// inherits it when this process exits).
    Finishing,
}

impl DirectHandle {
    /// The init's record, read until it arrives or the init is gone (end of file).
    fn read_record(&mut self) -> Option<[u8; 3]> {
        use std::io::Read;
        let mut record = [0u8; 3];
        let mut pipe = std::fs::File::from(self.status.take()?);
        pipe.read_exact(&mut record).ok().map(|()| record)
    }
}

/// The command's end as the init recorded it.
fn recorded_outcome(init: Pid, kind: u8, value: u8, timed_out: bool) -> Outcome {
    match kind {
        1 => Outcome {
            code: None,
            signal: Some(i32::from(value)),
            timed_out,
        },
        _ => outcome_of(
            nix::sys::wait::WaitStatus::Exited(init, i32::from(value)),
            timed_out,
        ),
    }
}

impl ContainerHandle for DirectHandle {
    fn pid(&self) -> u32 {
        self.init.as_raw() as u32
    }

    fn wait(&mut self, deadline: Option<Instant>, grace: Duration) -> Result<Outcome, EngineError> {
        let init = self.init;
        if deadline.is_none() {
            // Without a deadline the record is all that is needed: when the init was alone,
            // the rest of its exit (the mount and other namespaces torn down, a few hundred
            // microseconds) need not be waited for.
            match self.read_record() {
                Some([kind, value, 1]) => {
                    self.state = InitState::Finishing;
                    return Ok(recorded_outcome(init, kind, value, false));
                }
                Some([kind, value, _]) => {
                    let outcome = wait_or_stop(init, None, grace, |_| {})?;
                    self.state = InitState::Reaped;
                    return Ok(recorded_outcome(init, kind, value, outcome.timed_out));
                }
                None => {}
            }
        }
        // SIGTERM reaches the command through the init; SIGKILL ends the init, and with it
        // every process of the PID namespace.
        let outcome = wait_or_stop(init, deadline, grace, |sig| {
            let _ = kill(init, sig);
        })?;
        self.state = InitState::Reaped;
        // The init's own status is 128 + signal for a killed command; the record says which.
        Ok(match self.read_record() {
            Some([kind, value, _]) => recorded_outcome(init, kind, value, outcome.timed_out),
            None => outcome,
        })
    }
}

impl Drop for DirectHandle {
    fn drop(&mut self) {
        match self.state {
            // A container dropped without `wait` is stopped, not leaked.
            InitState::Running => {
                let _ = kill(self.init, Signal::SIGKILL);
                let _ = waitpid(self.init, None);
            }
            InitState::Finishing => {
                let _ = waitpid(self.init, Some(nix::sys::wait::WaitPidFlag::WNOHANG));
            }
            InitState::Reaped => {}
        }
    }
}
