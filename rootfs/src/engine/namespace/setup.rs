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
use nix::sched::{CloneFlags, unshare};
use nix::sys::resource::{Resource, setrlimit};
use nix::sys::signal::{SigHandler, SigSet, SigmaskHow, Signal, kill, signal, sigprocmask};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::{ForkResult, Gid, Pid, Uid, fork, getpid, pipe2, sethostname};

use super::SetupError;
use super::config::{HELPER_ENV, InitConfig, Report, Reporter};
use super::syscall::LinuxSyscall;
use super::{init, mounts};

/// Signals the monitor and the init pass on to the command.
pub const FORWARDED: [Signal; 7] = [
    Signal::SIGTERM,
    Signal::SIGINT,
    Signal::SIGHUP,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
    Signal::SIGWINCH,
];

/// Exit status of the helper when the container could not be set up.
pub(super) const SETUP_FAILED: i32 = 125;

/// The signals the monitor and the init wait for synchronously.
pub fn waited_signals() -> SigSet {
    let mut set = SigSet::empty();
    for sig in FORWARDED {
        set.add(sig);
    }
    set.add(Signal::SIGCHLD);
    set
}

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
    // SAFETY: F_GETFD only queries the descriptor table.
    fd > 2 && unsafe { libc::fcntl(fd, libc::F_GETFD) } >= 0
}

/// Report a failed step and end the helper.
pub fn fail(reporter: &Reporter, err: SetupError) -> ! {
    reporter.send(&Report::SetupFailed {
        step: err.step,
        errno: err.errno as i32,
    });
    // Nothing of the C library's exit: with the direct start this address space is the
    // caller's, which goes on.
    super::raw::exit(SETUP_FAILED)
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
    let (uid, gid) = (Uid::current(), Gid::current());
    unshare_namespaces()?;
    deny_setgroups()?;
    write_uid_map(uid)?;
    write_gid_map(gid)?;
    let (pinned, _fds) = build_root(config, reporter)?;
    fork_init(&pinned, reporter)
}

/// In the new namespaces, with the ids mapped: the hostname and the root filesystem. Returns
/// the spec with its sources pinned, and the fds that pin them (keep them open until the
/// init has pivoted).
pub(super) fn build_root(
    config: &InitConfig,
    reporter: &Reporter,
) -> Result<(InitConfig, Vec<OwnedFd>), SetupError> {
    set_hostname(&config.hostname)?;
    let (pinned, fds) = pin_sources(config)?;
    let mut notes = Vec::new();
    let mounted = mounts::prepare_root(&LinuxSyscall::default(), &pinned, &mut notes);
    for message in notes {
        reporter.send(&Report::Note { message });
    }
    mounted?;
    Ok((pinned, fds))
}

/// Open the image root and the volume sources before a tmpfs covers the scratch directory
/// (which may hold them, e.g. `scar run` uses /tmp), and name them by `/proc/self/fd/N` from
/// then on: the mounts reach them whatever gets mounted over their paths.
fn pin_sources(config: &InitConfig) -> Result<(InitConfig, Vec<OwnedFd>), SetupError> {
    use std::os::fd::AsRawFd;
    let mut fds = Vec::new();
    let mut pin = |path: &std::path::Path| -> Result<std::path::PathBuf, SetupError> {
        let fd = nix::fcntl::open(
            path,
            OFlag::O_PATH | OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )
        .map_err(|e| SetupError::new(format!("opening {}", path.display()), e))?;
        let pinned = std::path::PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()));
        fds.push(fd);
        Ok(pinned)
    };
    let mut pinned = config.clone();
    pinned.root = pin(&config.root)?;
    for mount in &mut pinned.mounts {
        mount.host = pin(&mount.host)?;
    }
    Ok((pinned, fds))
}

fn unshare_namespaces() -> Result<(), SetupError> {
    let flags = CloneFlags::CLONE_NEWUSER
        | CloneFlags::CLONE_NEWNS
        | CloneFlags::CLONE_NEWPID
        | CloneFlags::CLONE_NEWIPC
        | CloneFlags::CLONE_NEWUTS;
    unshare(flags).map_err(|e| {
        SetupError::new(
            "unshare(CLONE_NEWUSER|CLONE_NEWNS|CLONE_NEWPID|CLONE_NEWIPC|CLONE_NEWUTS)",
            e,
        )
    })
}

fn write_proc_self(file: &str, content: &str) -> Result<(), SetupError> {
    let path = format!("/proc/self/{file}");
    std::fs::write(&path, content).map_err(|e| {
        SetupError::new(
            format!("writing `{}` to {path}", content.trim()),
            errno_of(&e),
        )
    })
}

/// An unprivileged process may write its gid_map only after giving up setgroups(2).
fn deny_setgroups() -> Result<(), SetupError> {
    write_proc_self("setgroups", "deny")
}

/// Container root is the caller's uid.
fn write_uid_map(uid: Uid) -> Result<(), SetupError> {
    write_proc_self("uid_map", &format!("0 {uid} 1\n"))
}

/// Container root's group is the caller's gid.
fn write_gid_map(gid: Gid) -> Result<(), SetupError> {
    write_proc_self("gid_map", &format!("0 {gid} 1\n"))
}

fn set_hostname(name: &str) -> Result<(), SetupError> {
    sethostname(name).map_err(|e| SetupError::new(format!("sethostname({name})"), e))
}

/// Fork the process that becomes PID 1 of the new PID namespace.
fn fork_init(config: &InitConfig, reporter: &Reporter) -> Result<(Pid, OwnedFd), SetupError> {
    // Blocked before the fork so no signal is lost between fork and the wait loops; the
    // command's child unblocks them before exec.
    sigprocmask(SigmaskHow::SIG_BLOCK, Some(&waited_signals()), None)
        .map_err(|e| SetupError::new("blocking signals", e))?;
    let (status_read, status_write) =
        pipe2(OFlag::O_CLOEXEC).map_err(|e| SetupError::new("pipe2", e))?;
    let monitor = getpid();
    // SAFETY: this helper process is single-threaded (a fresh exec that started no threads),
    // so the child may run arbitrary code after fork.
    match unsafe { fork() }.map_err(|e| SetupError::new("fork of the container init", e))? {
        ForkResult::Child => {
            drop(status_read);
            init::run(config, reporter, status_write, monitor)
        }
        ForkResult::Parent { child } => Ok((child, status_read)),
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
