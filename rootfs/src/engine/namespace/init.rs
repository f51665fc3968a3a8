//! PID 1 of the container's PID namespace, forked by the helper ([`super::setup`]) or cloned
//! by the direct start ([`super::direct`]).
//!
//! It mounts `/proc`, pivots into the new root, sets no_new_privs, starts the command
//! ([`super::spawn`]) and then reaps every zombie (orphans are re-parented to it), forwards
//! SIGTERM/SIGINT/SIGHUP (and a few more) to the command, and exits when the command does.
//! Its exit takes down every other process in the namespace: the kernel kills them when a PID
//! namespace's init dies.

use std::os::fd::{AsRawFd, OwnedFd};

use nix::sys::prctl;
use nix::sys::signal::{SigSet, Signal};
use nix::unistd::Pid;

use super::channel::{Report, Reporter, SetupError, fail};
use super::config::InitConfig;
use super::raw;
use super::steps::{self, waited_signals};
use super::syscall::{LinuxSyscall, Syscall};

/// Become the namespace's init; never returns.
pub fn run(config: &InitConfig, reporter: &Reporter, status: OwnedFd) -> ! {
    // If the monitor is killed (the engine's SIGKILL), take the whole namespace with it.
    // (getppid() cannot confirm the monitor is still there: it lives outside this PID
    // namespace, so it reads 0; the engine also kills the init directly.)
    let _ = prctl::set_pdeathsig(Signal::SIGKILL);
    // `ps` inside shows this name for PID 1 rather than `exe`.
    let _ = prctl::set_name(c"scar-init");
    let command = match start(&LinuxSyscall::default(), config, reporter) {
        Ok(pid) => pid,
        Err(Stop::Setup(err)) => fail(reporter, err),
        Err(Stop::Refused(code)) => raw::exit(code),
    };
    // Before the hand-over: nothing after it may allocate.
    let waited = waited_signals();
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

/// Why the init stops before the hand-over.
#[derive(Debug)]
enum Stop {
    /// A set-up step failed (reported by [`fail`]).
    Setup(SetupError),
    /// The command could not be started at all (already reported); exit with this code.
    Refused(i32),
}

/// The init's steps before the hand-over, in order: `/proc`, `pivot_root`, no_new_privs, the
/// command. Returns the command's PID; a command that cannot be executed is reported here, and
/// its PID returned when a child exited with the refusal's code (the init ends the way it did).
fn start(sys: &impl Syscall, config: &InitConfig, reporter: &Reporter) -> Result<Pid, Stop> {
    steps::enter_root(sys, config, reporter).map_err(Stop::Setup)?;
    match steps::start_command(sys, config) {
        Ok(pid) => Ok(pid),
        Err((pid, refusal)) => {
            reporter.send(&Report::ExecFailed {
                command: config.argv.first().cloned().unwrap_or_default(),
                reason: refusal.reason,
            });
            pid.ok_or(Stop::Refused(refusal.code))
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::namespace::channel::read_reports;
    use crate::engine::namespace::syscall::double::{config, image, position, reporter};

    #[test]
    fn the_init_mounts_proc_then_pivots_detaches_the_old_root_and_only_then_executes() {
        let sys = image();
        let (reporter, reports) = reporter();
        let pid = start(&sys, &config(vec![]), &reporter).unwrap();
        assert_eq!(pid, Pid::from_raw(4242));
        let lines = sys.lines();
        let order = [
            "mount proc /scratch/run/root/proc proc",
            "chdir /scratch/run/root",
            "pivot_root . .",
            "umount . MntFlags(MNT_DETACH)",
            "chdir /",
            "no_new_privs",
            "exec /bin/true",
        ];
        let at: Vec<usize> = order.iter().map(|p| position(&lines, p)).collect();
        assert!(at.is_sorted(), "{lines:#?}");
        assert_eq!(at.last(), Some(&(lines.len() - 1)), "{lines:#?}");
        drop(reporter);
        assert_eq!(read_reports(reports), vec![]);
    }

    #[test]
    fn a_refused_pivot_is_named_and_nothing_is_executed() {
        let mut sys = image();
        sys.fail
            .insert("pivot_root".into(), nix::errno::Errno::EINVAL);
        let (reporter, _reports) = reporter();
        let Err(Stop::Setup(err)) = start(&sys, &config(vec![]), &reporter) else {
            panic!("{:#?}", sys.lines())
        };
        assert_eq!(err.step, "pivot_root into /scratch/run/root");
        assert_eq!(err.errno, nix::errno::Errno::EINVAL);
        assert!(
            !sys.lines()
                .iter()
                .any(|l| l.starts_with("umount") || l.starts_with("exec"))
        );
    }

    #[test]
    fn each_step_of_the_init_names_itself_when_it_fails() {
        for (call, step) in [
            ("chdir /scratch", "chdir(/scratch/run/root)"),
            ("umount", "detaching the old root"),
            ("chdir /$", "chdir(/) in the new root"),
            ("no_new_privs", "prctl(PR_SET_NO_NEW_PRIVS)"),
        ] {
            let mut sys = image();
            sys.fail.insert(call.into(), nix::errno::Errno::EPERM);
            let (reporter, _reports) = reporter();
            match start(&sys, &config(vec![]), &reporter) {
                Err(Stop::Setup(err)) => assert_eq!(err.step, step),
                other => panic!("{call}: {other:?}"),
            }
        }
    }

    #[test]
    fn a_command_that_cannot_start_is_reported_with_its_name_and_ends_the_init_with_its_code() {
        let mut sys = image();
        sys.fail.insert("exec".into(), nix::errno::Errno::ENOENT);
        let (reporter, reports) = reporter();
        let stop = start(&sys, &config(vec![]), &reporter);
        assert!(matches!(stop, Err(Stop::Refused(127))), "{stop:?}");
        drop(reporter);
        let reports = read_reports(reports);
        assert!(
            matches!(&reports[..], [Report::ExecFailed { command, .. }] if command == "/bin/true"),
            "{reports:?}"
        );
    }
}
