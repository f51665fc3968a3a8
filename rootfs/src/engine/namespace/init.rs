//! The helper, second stage: PID 1 of the container's PID namespace.
//!
//! It mounts `/proc`, pivots into the new root, sets no_new_privs, starts the command
//! ([`super::spawn`]) and then reaps every zombie (orphans are re-parented to it), forwards
//! SIGTERM/SIGINT/SIGHUP (and a few more) to the command, and exits when the command does. Its exit takes down every other
//! process in the namespace: the kernel kills them when a PID namespace's init dies.

use std::os::fd::OwnedFd;
use std::path::Path;

use nix::errno::Errno;
use nix::mount::{MntFlags, umount2};
use nix::sys::prctl;
use nix::sys::signal::{Signal, kill};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::{Pid, chdir, pivot_root};

use super::SetupError;
use super::config::{InitConfig, Report, Reporter};
use super::setup::{fail, waited_signals};
use super::syscall::LinuxSyscall;
use super::{mounts, spawn};

/// Become the namespace's init; never returns.
pub fn run(config: &InitConfig, reporter: &Reporter, status: OwnedFd, monitor: Pid) -> ! {
    // If the monitor is killed (the engine's SIGKILL), take the whole namespace with it.
    // (getppid() cannot confirm the monitor is still there: it lives outside this PID
    // namespace, so it reads 0; the engine also kills the init directly.)
    let _ = prctl::set_pdeathsig(Signal::SIGKILL);
    // `ps` inside shows this name for PID 1 rather than `exe`.
    let _ = prctl::set_name(c"scar-init");
    let _ = monitor;
    if let Err(err) = enter_root(config, reporter) {
        fail(reporter, err);
    }
    let command = match start_command(config) {
        Ok(pid) => pid,
        Err((pid, refusal)) => {
            reporter.send(&Report::ExecFailed {
                command: config.argv.first().cloned().unwrap_or_default(),
                reason: refusal.reason,
            });
            match pid {
                // The child exited with the refusal's code: end the way it did.
                Some(pid) => pid,
                None => std::process::exit(refusal.code),
            }
        }
    };
    // The command has executed (or failed to): the engine reads end of file now.
    let _ = nix::unistd::close(reporter_fd(reporter));
    let (ended, alone) = reap_until_exit(command);
    let [kind, value] = match ended {
        WaitStatus::Signaled(_, sig, _) => [1, sig as i32 as u8],
        WaitStatus::Exited(_, code) => [0, code as u8],
        _ => [0, 1],
    };
    let _ = nix::unistd::write(&status, &[kind, value, u8::from(alone)]);
    std::process::exit(match ended {
        WaitStatus::Signaled(_, sig, _) => 128 + sig as i32,
        WaitStatus::Exited(_, code) => code,
        _ => 1,
    })
}

fn reporter_fd(reporter: &Reporter) -> std::os::fd::RawFd {
    use std::os::fd::AsRawFd;
    reporter.fd().as_raw_fd()
}

/// `/proc`, `pivot_root`, no_new_privs: the steps that need the new PID namespace.
fn enter_root(config: &InitConfig, reporter: &Reporter) -> Result<(), SetupError> {
    let root = mounts::new_root(config);
    let mut notes = Vec::new();
    let mounted = mounts::mount_proc(&LinuxSyscall::default(), &root, &mut notes);
    for message in notes {
        reporter.send(&Report::Note { message });
    }
    mounted?;
    pivot_into(&root)?;
    prctl::set_no_new_privs().map_err(|e| SetupError::new("prctl(PR_SET_NO_NEW_PRIVS)", e))
}

/// `pivot_root(".", ".")` stacks the old root on the new one, so no `put_old` directory is
/// needed in the (possibly read-only) image; the old root is then detached.
fn pivot_into(root: &Path) -> Result<(), SetupError> {
    chdir(root).map_err(|e| SetupError::new(format!("chdir({})", root.display()), e))?;
    pivot_root(".", ".")
        .map_err(|e| SetupError::new(format!("pivot_root into {}", root.display()), e))?;
    umount2(".", MntFlags::MNT_DETACH).map_err(|e| SetupError::new("detaching the old root", e))?;
    chdir("/").map_err(|e| SetupError::new("chdir(/) in the new root", e))
}

/// Reap every child; forward signals to the command; return when the command has ended, with
/// whether this init is then alone in its PID namespace (it has no child left, and every
/// process of the namespace descends from it): its exit then has no process to kill, only the
/// namespaces to tear down, and the caller need not wait for that.
fn reap_until_exit(command: Pid) -> (WaitStatus, bool) {
    let waited = waited_signals();
    loop {
        match waited.wait() {
            Ok(Signal::SIGCHLD) => {
                let mut ended = None;
                let mut alone = false;
                loop {
                    match waitpid(None::<Pid>, Some(WaitPidFlag::WNOHANG)) {
                        Ok(WaitStatus::StillAlive) => break,
                        Err(Errno::ECHILD) => {
                            alone = true;
                            break;
                        }
                        Ok(
                            status @ (WaitStatus::Exited(pid, _) | WaitStatus::Signaled(pid, _, _)),
                        ) if pid == command => {
                            ended = Some(status);
                        }
                        Ok(_) | Err(Errno::EINTR) => continue,
                        Err(_) => break,
                    }
                }
                if let Some(status) = ended {
                    return (status, alone);
                }
            }
            Ok(sig) => {
                let _ = kill(command, sig);
            }
            Err(_) => continue,
        }
    }
}

/// Prepare the command in the container's root and start it.
fn start_command(config: &InitConfig) -> Result<Pid, (Option<Pid>, spawn::Refusal)> {
    let prepared =
        spawn::prepare(&config.argv, &config.env, &config.workdir).map_err(|r| (None, r))?;
    spawn::ensure_workdir(&prepared).map_err(|r| (None, r))?;
    spawn::start(&prepared)
}
