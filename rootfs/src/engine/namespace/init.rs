//! The helper, second stage: PID 1 of the container's PID namespace.
//!
//! It mounts `/proc`, pivots into the new root, sets no_new_privs, forks the command and then
//! reaps every zombie (orphans are re-parented to it), forwards SIGTERM/SIGINT/SIGHUP (and a
//! few more) to the command, and exits when the command does. Its exit takes down every other
//! process in the namespace: the kernel kills them when a PID namespace's init dies.

use std::ffi::CString;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::mount::{MntFlags, umount2};
use nix::sys::prctl;
use nix::sys::signal::{SigHandler, SigSet, SigmaskHow, Signal, kill, signal, sigprocmask};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::{ForkResult, Pid, chdir, execve, fork, pivot_root};

use super::SetupError;
use super::config::{InitConfig, Report, Reporter};
use super::mounts;
use super::setup::{fail, waited_signals};
use super::syscall::LinuxSyscall;

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
    // SAFETY: still single-threaded (the helper never starts threads).
    let command = match unsafe { fork() } {
        Ok(ForkResult::Child) => exec_command(config, reporter),
        Ok(ForkResult::Parent { child }) => child,
        Err(err) => fail(reporter, SetupError::new("fork of the command", err)),
    };
    // Only the command keeps the report pipe: its exec closes it.
    let _ = nix::unistd::close(reporter_fd(reporter));
    let ended = reap_until_exit(command);
    let record = match ended {
        WaitStatus::Signaled(_, sig, _) => [1, sig as i32 as u8],
        WaitStatus::Exited(_, code) => [0, code as u8],
        _ => [0, 1],
    };
    let _ = nix::unistd::write(&status, &record);
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
    let mounted = mounts::mount_proc(&LinuxSyscall, &root, &mut notes);
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

/// Reap every child; forward signals to the command; return when the command has ended.
fn reap_until_exit(command: Pid) -> WaitStatus {
    let waited = waited_signals();
    loop {
        match waited.wait() {
            Ok(Signal::SIGCHLD) => {
                let mut ended = None;
                loop {
                    match waitpid(None::<Pid>, Some(WaitPidFlag::WNOHANG)) {
                        Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => break,
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
                    return status;
                }
            }
            Ok(sig) => {
                let _ = kill(command, sig);
            }
            Err(_) => continue,
        }
    }
}

/// The command's process: restore signals, enter the working directory, execute.
fn exec_command(config: &InitConfig, reporter: &Reporter) -> ! {
    let _ = sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None);
    // Rust ignores SIGPIPE at startup and ignored signals survive exec: give the command the
    // default back, or `yes | head` would never end.
    // SAFETY: restoring the default disposition installs no handler code.
    let _ = unsafe { signal(Signal::SIGPIPE, SigHandler::SigDfl) };
    let command = config.argv.first().cloned().unwrap_or_default();
    let exec_failed = |reason: String, code: i32| -> ! {
        reporter.send(&Report::ExecFailed {
            command: command.clone(),
            reason,
        });
        std::process::exit(code)
    };
    if let Err(reason) = enter_workdir(&config.workdir) {
        exec_failed(reason, 126);
    }
    let Some(argv) = config
        .argv
        .iter()
        .map(|a| CString::new(a.as_bytes()).ok())
        .collect::<Option<Vec<_>>>()
    else {
        exec_failed("an argument contains a NUL byte".into(), 126);
    };
    let Some(env) = config
        .env
        .iter()
        .map(|(k, v)| CString::new(format!("{k}={v}")).ok())
        .collect::<Option<Vec<_>>>()
    else {
        exec_failed("an environment variable contains a NUL byte".into(), 126);
    };
    if command.is_empty() {
        exec_failed(
            "no command given and the image has no Entrypoint or Cmd".into(),
            126,
        );
    }
    let path = config
        .env
        .iter()
        .rev()
        .find(|(k, _)| k == "PATH")
        .map(|(_, v)| v.as_str());
    let candidates = candidates(&command, path.unwrap_or(DEFAULT_PATH));
    let mut denied = None;
    for candidate in &candidates {
        let Ok(program) = CString::new(candidate.as_os_str().as_bytes()) else {
            continue;
        };
        let err = execve(&program, &argv, &env).unwrap_err();
        match err {
            Errno::ENOENT | Errno::ENOTDIR if candidate.exists() => exec_failed(
                format!(
                    "{} exists but cannot start: its interpreter or dynamic loader is missing in the image ({err})",
                    candidate.display()
                ),
                127,
            ),
            Errno::ENOENT | Errno::ENOTDIR => continue,
            Errno::EACCES => denied = Some(candidate.clone()),
            other => exec_failed(
                format!("execve({}) failed: {other}", candidate.display()),
                126,
            ),
        }
    }
    match denied {
        Some(path) => exec_failed(
            format!("{} is not executable (EACCES)", path.display()),
            126,
        ),
        None if command.contains('/') => {
            exec_failed(format!("{command} does not exist in the image"), 127)
        }
        None => exec_failed(
            format!(
                "not found in the image's PATH ({})",
                path.unwrap_or(DEFAULT_PATH)
            ),
            127,
        ),
    }
}

/// PATH when the image sets none (the one Docker uses).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Where execvp(3) would look for `command`.
pub fn candidates(command: &str, path: &str) -> Vec<PathBuf> {
    if command.contains('/') {
        return vec![PathBuf::from(command)];
    }
    path.split(':')
        .map(|dir| {
            if dir.is_empty() {
                Path::new(".")
            } else {
                Path::new(dir)
            }
        })
        .map(|dir| dir.join(command))
        .collect()
}

/// chdir into the working directory, creating it the way Docker does when it is missing.
fn enter_workdir(workdir: &str) -> Result<(), String> {
    let dir = if workdir.is_empty() { "/" } else { workdir };
    match chdir(dir) {
        Ok(()) => Ok(()),
        Err(Errno::ENOENT) => {
            std::fs::create_dir_all(dir).map_err(|e| {
                format!("working directory {dir} is missing and cannot be created: {e}")
            })?;
            chdir(dir).map_err(|e| format!("chdir({dir}): {e}"))
        }
        Err(err) => Err(format!("chdir({dir}): {err}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bare_command_is_searched_along_path_and_a_path_is_used_as_is() {
        assert_eq!(
            candidates("sh", "/usr/bin:/bin"),
            vec![PathBuf::from("/usr/bin/sh"), PathBuf::from("/bin/sh")]
        );
        assert_eq!(candidates("./run", "/bin"), vec![PathBuf::from("./run")]);
    }
}
