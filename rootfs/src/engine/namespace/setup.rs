//! The helper, first stage: a freshly executed, single-threaded copy of the binary that
//! creates the namespaces, maps container root to the caller, builds the root filesystem,
//! forks the PID-namespace init and then stays as its monitor (forwarding signals, mirroring
//! its exit).
//!
//! The steps, in order: read the spec, unshare, setgroups, uid_map, gid_map, hostname,
//! mounts, fork the init (which mounts /proc, pivots and executes).

use std::io::Read;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

use nix::errno::Errno;
use nix::fcntl::{FcntlArg, FdFlag, OFlag, fcntl};
use nix::sys::resource::{Resource, setrlimit};
use nix::sys::signal::{SigHandler, SigSet, SigmaskHow, Signal, kill, signal, sigprocmask};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::{ForkResult, Pid, getpid, pipe2};

use super::channel::{Report, Reporter, SETUP_FAILED, SetupError, fail};
use super::config::{HELPER_ENV, InitConfig};
use super::init;
use super::steps::{self, IdMaps, waited_signals};
use super::syscall::{LinuxSyscall, Syscall, Target};
use crate::engine::fork::fork_private;

/// Run the helper when this process was started as one; otherwise return at once.
pub fn run_if_requested() {
    let Some(value) = std::env::var_os(HELPER_ENV) else {
        return;
    };
    // SAFETY: called first thing in `main`, before any other thread exists.
    unsafe { std::env::remove_var(HELPER_ENV) };
    let fds = value.to_str().and_then(|v| {
        let (config, report) = v.split_once(',')?;
        Some((config.parse::<RawFd>().ok()?, report.parse::<RawFd>().ok()?))
    });
    let Some((config_fd, report_fd)) = fds.filter(|(c, r)| fd_is_open(*c) && fd_is_open(*r)) else {
        eprintln!(
            "scar: {HELPER_ENV} is set but does not name two open file descriptors; it is reserved for the container helper"
        );
        std::process::exit(SETUP_FAILED);
    };
    // SAFETY: both fds were checked open above and were handed to this process for its sole
    // use by the engine; nothing else in this fresh process owns them.
    let (config_fd, reporter) = unsafe {
        (
            OwnedFd::from_raw_fd(config_fd),
            Reporter::from_raw(report_fd),
        )
    };
    // The report pipe must close when the command is executed: that end of file is how the
    // engine learns the exec succeeded.
    let _ = fcntl(reporter.fd(), FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC));
    let config = match read_config(config_fd) {
        Ok(config) => config,
        Err(err) => fail(&reporter, err),
    };
    match setup(&config, &reporter) {
        Ok((init_pid, status)) => {
            reporter.send(&Report::Ready {
                init_pid: init_pid.as_raw(),
            });
            drop(reporter);
            monitor(init_pid, status)
        }
        Err(err) => fail(&reporter, err),
    }
}

fn fd_is_open(fd: RawFd) -> bool {
    if fd <= 2 {
        return false;
    }
    // SAFETY: the descriptor is only queried (F_GETFD), never used or closed through the
    // borrow; a closed number makes the call fail with EBADF.
    let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
    fcntl(fd, FcntlArg::F_GETFD).is_ok()
}

fn read_config(fd: OwnedFd) -> Result<InitConfig, SetupError> {
    let mut bytes = Vec::new();
    std::fs::File::from(fd)
        .read_to_end(&mut bytes)
        .map_err(|e| SetupError::new("reading the container spec", errno_of(&e)))?;
    serde_json::from_slice(&bytes)
        .map_err(|_| SetupError::new("decoding the container spec", Errno::EINVAL))
}

fn errno_of(err: &std::io::Error) -> Errno {
    Errno::from_raw(err.raw_os_error().unwrap_or(libc::EIO))
}

/// Everything up to the fork of the init; returns its PID and the pipe it reports status on.
fn setup(config: &InitConfig, reporter: &Reporter) -> Result<(Pid, OwnedFd), SetupError> {
    // The real calls' cached descriptors are closed before the fork: the init keeps none.
    let (pinned, pins) = build(
        &LinuxSyscall::default(),
        config,
        reporter,
        &IdMaps::of_caller(),
    )?;
    fork_init(&pinned, reporter, pins)
}

/// The helper's steps before the fork, in order: unshare, setgroups, uid_map, gid_map,
/// hostname, the root filesystem.
fn build(
    sys: &impl Syscall,
    config: &InitConfig,
    reporter: &Reporter,
    maps: &IdMaps,
) -> Result<(InitConfig, Vec<Target>), SetupError> {
    steps::unshare_namespaces(sys)?;
    steps::map_ids_or_fail(sys, maps)?;
    steps::build_root(sys, config, reporter)
}

/// Fork the process that becomes PID 1 of the new PID namespace.
///
/// `pins` keep the pinned sources open until the init has pivoted (in the child, which has
/// its own copies; the parent has no more use for them).
fn fork_init(
    config: &InitConfig,
    reporter: &Reporter,
    pins: Vec<Target>,
) -> Result<(Pid, OwnedFd), SetupError> {
    // Blocked before the fork so no signal is lost between fork and the wait loops; the
    // command's child unblocks them before exec.
    sigprocmask(SigmaskHow::SIG_BLOCK, Some(&waited_signals()), None)
        .map_err(|e| SetupError::new("blocking signals", e))?;
    let (status_read, status_write) =
        pipe2(OFlag::O_CLOEXEC).map_err(|e| SetupError::new("pipe2", e))?;
    // SAFETY: this helper process is single-threaded (a fresh exec that started no threads),
    // so the child may run arbitrary code after fork.
    match unsafe { fork_private() }.map_err(|e| SetupError::new("fork of the container init", e))? {
        ForkResult::Child => {
            drop(status_read);
            let _pins = pins;
            init::run(config, reporter, status_write)
        }
        ForkResult::Parent { child } => {
            drop(pins);
            Ok((child, status_read))
        }
    }
}

/// Stay as the init's parent: forward signals to it and end the way the command ended.
fn monitor(init: Pid, status: OwnedFd) -> ! {
    let waited = waited_signals();
    let ended = loop {
        match waited.wait() {
            Ok(Signal::SIGCHLD) => match waitpid(init, Some(WaitPidFlag::WNOHANG)) {
                Ok(status @ (WaitStatus::Exited(..) | WaitStatus::Signaled(..))) => break status,
                _ => continue,
            },
            Ok(sig) => {
                let _ = kill(init, sig);
            }
            Err(_) => continue,
        }
    };
    let mut record = [0u8; 3];
    let got = nix::unistd::read(&status, &mut record).unwrap_or(0);
    match (got, record, ended) {
        (3, [1, signo, _], _) => die_by(signo as i32),
        (3, [0, code, _], _) => std::process::exit(i32::from(code)),
        // The init itself was killed (SIGKILL from the engine): mirror that.
        (_, _, WaitStatus::Signaled(_, sig, _)) => die_by(sig as i32),
        (_, _, WaitStatus::Exited(_, code)) => std::process::exit(code),
        _ => std::process::exit(SETUP_FAILED),
    }
}

/// End this process by `signo`, so the engine sees the command's signal (no core dump).
fn die_by(signo: i32) -> ! {
    if let Ok(sig) = Signal::try_from(signo) {
        let _ = setrlimit(Resource::RLIMIT_CORE, 0, 0);
        // SAFETY: restoring the default disposition installs no handler code.
        let _ = unsafe { signal(sig, SigHandler::SigDfl) };
        let mut set = SigSet::empty();
        set.add(sig);
        let _ = sigprocmask(SigmaskHow::SIG_UNBLOCK, Some(&set), None);
        let _ = kill(getpid(), sig);
    }
    std::process::exit(128 + signo)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::namespace::syscall::double::{config, image, position, reporter};
    use nix::unistd::{Gid, Uid};
    use std::path::Path;

    fn maps() -> IdMaps {
        IdMaps::of(Uid::from_raw(1000), Gid::from_raw(1001))
    }

    #[test]
    fn the_helper_unshares_then_maps_its_ids_before_the_hostname_and_any_mount() {
        let sys = image();
        let (reporter, _reports) = reporter();
        let (pinned, pins) = build(&sys, &config(vec![]), &reporter, &maps()).unwrap();
        let lines = sys.lines();
        assert_eq!(
            &lines[..5],
            [
                "unshare CloneFlags(CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWUSER | CLONE_NEWPID)",
                "write /proc/self/setgroups deny",
                "write /proc/self/uid_map 0 1000 1",
                "write /proc/self/gid_map 0 1001 1",
                "sethostname scar",
            ],
            "{lines:#?}"
        );
        // The image is pinned before the tmpfs covers the scratch directory, and mounted
        // through the pin.
        assert!(position(&lines, "pin /cache/rootfs/abc") < position(&lines, "mount tmpfs"));
        assert_eq!(pinned.root, Path::new("/pinned/cache/rootfs/abc"));
        assert_eq!(pins.len(), 1);
        let overlay = &lines[position(&lines, "mount overlay")];
        assert!(
            overlay.contains("lowerdir=/pinned/cache/rootfs/abc,"),
            "{overlay}"
        );
    }

    #[test]
    fn each_step_of_the_helper_names_itself_when_it_fails_and_stops_the_set_up() {
        for (call, step) in [
            (
                "unshare",
                "unshare(CLONE_NEWUSER|CLONE_NEWNS|CLONE_NEWPID|CLONE_NEWIPC|CLONE_NEWUTS)",
            ),
            (
                "write /proc/self/setgroups",
                "writing `deny` to /proc/self/setgroups",
            ),
            (
                "write /proc/self/uid_map",
                "writing `0 1000 1` to /proc/self/uid_map",
            ),
            (
                "write /proc/self/gid_map",
                "writing `0 1001 1` to /proc/self/gid_map",
            ),
            ("sethostname", "sethostname(scar)"),
            ("pin", "opening /cache/rootfs/abc"),
        ] {
            let mut sys = image();
            sys.fail.insert(call.into(), Errno::EPERM);
            let (reporter, _reports) = reporter();
            let err = build(&sys, &config(vec![]), &reporter, &maps()).unwrap_err();
            assert_eq!((err.step.as_str(), err.errno), (step, Errno::EPERM));
            let lines = sys.lines();
            assert!(lines.last().unwrap().starts_with(call), "{lines:#?}");
        }
    }
}
