//! Waiting for a container's top process with a deadline, and stopping its tree when the
//! deadline passes: SIGTERM, a grace period, then SIGKILL. Shared by the engines.

use std::os::fd::{AsFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::Signal;
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

use super::types::Outcome;

/// Why waiting for a process failed.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    /// waitpid(2) failed.
    #[error("waitpid({pid}) failed: {source}")]
    Wait {
        /// The process waited for.
        pid: i32,
        /// The errno.
        source: Errno,
    },
}

impl From<ProcessError> for super::types::EngineError {
    fn from(err: ProcessError) -> Self {
        let step = err.to_string();
        let ProcessError::Wait { source, .. } = err;
        super::types::EngineError::Setup {
            step,
            source: std::io::Error::from_raw_os_error(source as i32),
        }
    }
}

/// A `pidfd` for `pid` (Linux 5.3+), `None` where the kernel has none.
pub fn pidfd_open(pid: Pid) -> Option<OwnedFd> {
    // SAFETY: pidfd_open(2) takes a pid and flags and returns a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid.as_raw(), 0) };
    if fd < 0 {
        return None;
    }
    // SAFETY: the syscall returned a fresh fd that nothing else owns.
    Some(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Wait until `pidfd` becomes readable (its process ended) or `until` passes; true if it ended.
pub fn wait_readable(pidfd: &OwnedFd, until: Instant) -> bool {
    loop {
        let left = until.saturating_duration_since(Instant::now());
        let millis =
            u16::try_from(left.as_millis().min(u128::from(u16::MAX - 1))).unwrap_or(u16::MAX - 1);
        let mut fds = [PollFd::new(pidfd.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::from(millis)) {
            Ok(0) if Instant::now() >= until => return false,
            Ok(0) => continue,
            Ok(_) => return true,
            Err(Errno::EINTR) => continue,
            // Without a usable pidfd, fall back to the caller's polling.
            Err(_) => return false,
        }
    }
}

/// Translate a wait status into an [`Outcome`].
pub fn outcome_of(status: WaitStatus, timed_out: bool) -> Outcome {
    match status {
        WaitStatus::Exited(_, code) => Outcome {
            code: Some(code),
            signal: None,
            timed_out,
        },
        WaitStatus::Signaled(_, signal, _) => Outcome {
            code: None,
            signal: Some(signal as i32),
            timed_out,
        },
        _ => Outcome {
            code: None,
            signal: None,
            timed_out,
        },
    }
}

/// Reap `pid` if it has ended (`block` waits for it).
fn reap(pid: Pid, block: bool) -> Result<Option<WaitStatus>, ProcessError> {
    let flags = if block {
        None
    } else {
        Some(WaitPidFlag::WNOHANG)
    };
    loop {
        match waitpid(pid, flags) {
            Ok(WaitStatus::StillAlive) => return Ok(None),
            Ok(status @ (WaitStatus::Exited(..) | WaitStatus::Signaled(..))) => {
                return Ok(Some(status));
            }
            Ok(_) => continue,
            Err(Errno::EINTR) => continue,
            Err(source) => {
                return Err(ProcessError::Wait {
                    pid: pid.as_raw(),
                    source,
                });
            }
        }
    }
}

/// Wait for the child `pid` until `until`; `Some(status)` once it has ended and is reaped.
fn reap_until(
    pid: Pid,
    pidfd: Option<&OwnedFd>,
    until: Instant,
) -> Result<Option<WaitStatus>, ProcessError> {
    loop {
        if let Some(status) = reap(pid, false)? {
            return Ok(Some(status));
        }
        if Instant::now() >= until {
            return Ok(None);
        }
        match pidfd {
            Some(fd) => {
                wait_readable(fd, until);
            }
            // Old kernels: poll every 10 ms.
            None => std::thread::sleep(Duration::from_millis(10).min(until - Instant::now())),
        }
    }
}

/// Wait for the child `pid`; at `deadline` call `signal(SIGTERM)`, after `grace` more call
/// `signal(SIGKILL)`, then reap it. `signal` delivers to the whole tree the way the engine can.
pub fn wait_or_stop(
    pid: Pid,
    deadline: Option<Instant>,
    grace: Duration,
    mut signal: impl FnMut(Signal),
) -> Result<Outcome, ProcessError> {
    let Some(deadline) = deadline else {
        let status = reap(pid, true)?.unwrap_or(WaitStatus::StillAlive);
        return Ok(outcome_of(status, false));
    };
    let pidfd = pidfd_open(pid);
    if let Some(status) = reap_until(pid, pidfd.as_ref(), deadline)? {
        return Ok(outcome_of(status, false));
    }
    tracing::info!(
        pid = pid.as_raw(),
        grace_ms = grace.as_millis() as u64,
        "deadline reached: sending SIGTERM"
    );
    signal(Signal::SIGTERM);
    if let Some(status) = reap_until(pid, pidfd.as_ref(), Instant::now() + grace)? {
        return Ok(outcome_of(status, true));
    }
    tracing::info!(pid = pid.as_raw(), "grace period over: sending SIGKILL");
    signal(Signal::SIGKILL);
    let status = reap(pid, true)?.unwrap_or(WaitStatus::StillAlive);
    Ok(outcome_of(status, true))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::CommandExt;
    use std::process::Command;

    // The child is reaped by `wait_or_stop` through waitpid, not by `Child::wait`.
    #[allow(clippy::zombie_processes)]
    fn spawn(script: &str) -> Pid {
        let child = Command::new("/bin/sh")
            .arg("-c")
            .arg(script)
            .process_group(0)
            .spawn()
            .unwrap();
        Pid::from_raw(child.id() as i32)
    }

    #[test]
    fn an_exit_code_comes_back_without_a_deadline() {
        let outcome = wait_or_stop(spawn("exit 7"), None, Duration::ZERO, |_| {}).unwrap();
        assert_eq!(
            outcome,
            Outcome {
                code: Some(7),
                signal: None,
                timed_out: false
            }
        );
    }

    #[test]
    fn a_process_that_ignores_sigterm_is_killed_after_the_grace_period() {
        let pid = spawn("trap '' TERM; while :; do sleep 0.05; done");
        let mut sent = Vec::new();
        let outcome = wait_or_stop(
            pid,
            Some(Instant::now() + Duration::from_millis(200)),
            Duration::from_millis(300),
            |sig| {
                sent.push(sig);
                let _ = nix::sys::signal::killpg(pid, sig);
            },
        )
        .unwrap();
        assert_eq!(sent, vec![Signal::SIGTERM, Signal::SIGKILL]);
        assert!(outcome.timed_out);
        assert_eq!(outcome.exit_code(), 137);
    }

    #[test]
    fn a_process_that_obeys_sigterm_ends_with_143() {
        let pid = spawn("exec sleep 1000");
        let outcome = wait_or_stop(
            pid,
            Some(Instant::now() + Duration::from_millis(100)),
            Duration::from_secs(30),
            |sig| {
                let _ = nix::sys::signal::kill(pid, sig);
            },
        )
        .unwrap();
        assert!(outcome.timed_out);
        assert_eq!(outcome.signal, Some(libc::SIGTERM));
        assert_eq!(outcome.exit_code(), 143);
    }
}
