//! The helper, second stage: PID 1 of the container's PID namespace.
//!
//! It mounts `/proc`, pivots into the new root, sets no_new_privs, starts the command
//! ([`super::spawn`]) and then reaps every zombie (orphans are re-parented to it), forwards
//! SIGTERM/SIGINT/SIGHUP (and a few more) to the command, and exits when the command does. Its exit takes down every other
//! process in the namespace: the kernel kills them when a PID namespace's init dies.

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;

use nix::mount::{MntFlags, umount2};
use nix::sys::prctl;
use nix::sys::signal::{SigSet, Signal};
use nix::unistd::{Pid, chdir, pivot_root};

use super::SetupError;
use super::config::{InitConfig, Report, Reporter};
use super::setup::{fail, waited_signals};
use super::syscall::LinuxSyscall;
use super::{mounts, raw, spawn};

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
    // Before the hand-over: nothing after it may allocate.
    let waited = waited_signals();
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
                None => raw::exit(refusal.code),
            }
        }
    };
    // The hand-over: the command has executed (or failed to) and the engine reads end of file
    // now. From here on the caller may run again in this same address space (the direct
    // start), so only raw system calls follow: see `raw`.
    raw::close(reporter_fd(reporter));
    let (ended, alone) = reap_until_exit(command.as_raw(), &waited);
    let (record, code) = if libc::WIFSIGNALED(ended) {
        let signal = libc::WTERMSIG(ended);
        ([1, signal as u8], 128 + signal)
    } else {
        let code = libc::WEXITSTATUS(ended);
        ([0, code as u8], code)
    };
    let _ = raw::write(status.as_raw_fd(), &[record[0], record[1], u8::from(alone)]);
    if alone && config.parent_reads_record {
        linger(config, &waited);
    }
    raw::exit(code)
}

/// How long an init whose parent has its record waits for that parent to end.
const LINGER_MS: u32 = 100;

/// Alone, the command's record sent to a parent that does not wait for this exit: put the
/// exit off until the parent has ended (the parent-death signal, SIGKILL, ends this process),
/// or a forwarded signal comes, or `LINGER_MS` pass. This exit tears the namespaces down
/// (the mounts, the overlay, the user and PID namespaces: a few hundred microseconds of
/// work); made now, it would compete for the CPU with the parent's own last steps, which the
/// parent's caller waits for. The caller's CPU mask comes back first, so that the teardown
/// runs wherever a CPU is free. Raw system calls only.
fn linger(config: &InitConfig, waited: &SigSet) {
    if let Some(mask) = config.affinity {
        mask.apply();
    }
    raw::wait_signal_for(waited.as_ref(), LINGER_MS);
}

fn reporter_fd(reporter: &Reporter) -> std::os::fd::RawFd {
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

/// Reap every child; forward signals to the command; return the command's wait status when it
/// has ended, with whether this init is then alone in its PID namespace (it has no child left,
/// and every process of the namespace descends from it): its exit then has no process to
/// kill, only the namespaces to tear down, and the caller need not wait for that.
///
/// Raw system calls only (see `raw`): this runs after the hand-over.
fn reap_until_exit(command: libc::pid_t, waited: &SigSet) -> (libc::c_int, bool) {
    loop {
        let signal = raw::wait_signal(waited.as_ref());
        if signal == libc::SIGCHLD as isize {
            let mut ended = None;
            let alone = loop {
                match raw::wait_any_nohang() {
                    (pid, status) if pid > 0 => {
                        if pid == command as isize {
                            ended = Some(status);
                        }
                    }
                    (err, _) if err == -(libc::EINTR as isize) => {}
                    (err, _) => break err == -(libc::ECHILD as isize),
                }
            };
            if let Some(status) = ended {
                return (status, alone);
            }
        } else if signal > 0 {
            raw::kill(command, signal as libc::c_int);
        }
    }
}

/// Prepare the command in the container's root and start it.
fn start_command(config: &InitConfig) -> Result<Pid, (Option<Pid>, spawn::Refusal)> {
    let prepared = spawn::prepare(&config.argv, &config.env, &config.workdir)
        .map_err(|r| (None, r))?
        .with_affinity(config.affinity);
    spawn::ensure_workdir(&prepared).map_err(|r| (None, r))?;
    spawn::start(&prepared)
}
