//! The simulator's processes: the launcher's namespaces (with the map writer), init, and the
//! command's restrictions and exec (see the module docs of `sim`).

use std::ffi::CString;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use super::error::{EXEC_FAILED, NOT_FOUND, SETUP_FAILED, SimError};
use super::plan::Plan;
use super::spec::{SANDBOX_UID, TASK_DIR};
use super::{root, seccomp};

/// Enter the namespaces, fork init and wait for it: the launcher's part (see the module docs
/// of `sim`).
pub(super) fn launch(plan: &Plan) -> Result<i32, SimError> {
    enter_namespaces()?;
    // The launcher holds the write end for as long as it lives: init sees it closed if the
    // launcher died before init's PR_SET_PDEATHSIG took effect.
    let (lifeline, launcher_alive) = pipe()?;
    // SAFETY: the launcher is single-threaded (unshare(CLONE_NEWUSER) has just succeeded, which
    // the kernel refuses to a multi-threaded process), so the child may allocate and run Rust.
    match unsafe { libc::fork() } {
        -1 => Err(step("fork the sandbox's init")),
        0 => {
            drop(launcher_alive);
            init(plan, lifeline)
        }
        pid => {
            drop(lifeline);
            let status = wait_exit_status(pid).map_err(|source| SimError::Step {
                step: "wait for the sandbox's init",
                source,
            });
            drop(launcher_alive);
            status
        }
    }
}

fn step(step: &'static str) -> SimError {
    SimError::Step {
        step,
        source: std::io::Error::last_os_error(),
    }
}

/// The launcher's namespaces: new user, mount, PID, IPC and UTS namespaces, with the identity
/// map over 0..65536 written by a child that stays in the host's user namespace (a process can
/// map more than its own uid only from the parent namespace, with CAP_SETUID there).
fn enter_namespaces() -> Result<(), SimError> {
    let (ready_read, mut ready_write) = pipe()?;
    let launcher = nix::unistd::getpid().as_raw();
    // SAFETY: the launcher is single-threaded here (scar-full starts no thread before this),
    // so the child may run Rust code.
    let writer = match unsafe { libc::fork() } {
        -1 => return Err(step("fork the uid map writer")),
        0 => {
            drop(ready_write);
            write_maps(launcher, ready_read)
        }
        pid => pid,
    };
    drop(ready_read);
    let flags = libc::CLONE_NEWUSER
        | libc::CLONE_NEWNS
        | libc::CLONE_NEWPID
        | libc::CLONE_NEWIPC
        | libc::CLONE_NEWUTS;
    // SAFETY: unshare takes flags only.
    if unsafe { libc::unshare(flags) } != 0 {
        let err = step("create the user, mount, PID, IPC and UTS namespaces");
        drop(ready_write);
        let _ = wait_exit_status(writer);
        return Err(err);
    }
    let told = ready_write.write_all(b"1");
    drop(ready_write);
    let status = wait_exit_status(writer).map_err(|source| SimError::Step {
        step: "wait for the uid map writer",
        source,
    })?;
    told.map_err(|source| SimError::Step {
        step: "signal the uid map writer",
        source,
    })?;
    if status != 0 {
        return Err(SimError::Step {
            step: "write the sandbox's uid_map and gid_map",
            source: std::io::Error::other("the map writer failed (its message is above)"),
        });
    }
    Ok(())
}

/// The map writer: once the launcher has its user namespace, map 0..65536 onto the host's
/// same ids, then exit (0 on success).
fn write_maps(launcher: libc::pid_t, ready: std::fs::File) -> ! {
    let mut ready = ready;
    let mut byte = [0u8; 1];
    // EOF: the launcher failed and reports it itself.
    if !matches!(ready.read(&mut byte), Ok(1)) {
        exit_now(1);
    }
    for map in ["uid_map", "gid_map"] {
        let path = format!("/proc/{launcher}/{map}");
        if let Err(err) = std::fs::write(&path, b"0 0 65536\n") {
            eprintln!("scar lambda-sim: cannot write {path}: {err}");
            exit_now(1);
        }
    }
    exit_now(0)
}

/// PID 1 of the sandbox: build the root, start the command, reap, exit with its status.
fn init(plan: &Plan, lifeline: std::fs::File) -> ! {
    // SAFETY: prctl with integer arguments only; the launcher is host code, not Lambda code.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) };
    let mut poll = libc::pollfd {
        fd: lifeline.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: poll over one valid pollfd, without waiting.
    let ready = unsafe { libc::poll(&mut poll, 1, 0) };
    if ready != 0 {
        // Hung up: the launcher died before the death signal was armed.
        exit_now(SETUP_FAILED);
    }
    drop(lifeline);
    if let Err(err) = root::build(plan) {
        eprintln!("scar lambda-sim: cannot build the sandbox: {err}");
        exit_now(SETUP_FAILED);
    }
    // SAFETY: init is single-threaded (a fork of a single-threaded launcher).
    let command = match unsafe { libc::fork() } {
        -1 => {
            eprintln!(
                "scar lambda-sim: cannot fork the command: {}",
                std::io::Error::last_os_error()
            );
            exit_now(SETUP_FAILED);
        }
        0 => exec_command(plan),
        pid => pid,
    };
    loop {
        let mut status = 0;
        // SAFETY: waitpid writes the status into a valid local.
        let pid = unsafe { libc::waitpid(-1, &mut status, 0) };
        if pid == command {
            // Leaving PID 1 ends every process still in the namespace.
            exit_now(status_code(status));
        }
        if pid == -1 && std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            exit_now(SETUP_FAILED);
        }
    }
}

/// The command's process: Lambda's restrictions, then the program.
fn exec_command(plan: &Plan) -> ! {
    if let Err(err) = restrict() {
        eprintln!("scar lambda-sim: cannot apply Lambda's restrictions: {err}");
        exit_now(SETUP_FAILED);
    }
    let (path_dirs, direct) = search_list(plan);
    let mut argv: Vec<*const libc::c_char> = plan.argv.iter().map(|a| a.as_ptr()).collect();
    argv.push(std::ptr::null());
    let mut envp: Vec<*const libc::c_char> = plan.env.iter().map(|e| e.as_ptr()).collect();
    envp.push(std::ptr::null());
    let mut last = libc::ENOENT;
    for candidate in direct.into_iter().chain(path_dirs) {
        // SAFETY: NUL-terminated strings and null-terminated pointer arrays that outlive the call.
        unsafe { libc::execve(candidate.as_ptr(), argv.as_ptr(), envp.as_ptr()) };
        let err = std::io::Error::last_os_error().raw_os_error().unwrap_or(0);
        if err != libc::ENOENT && err != libc::ENOTDIR {
            last = err;
        }
    }
    let program = plan.argv[0].to_string_lossy();
    if last == libc::ENOENT {
        eprintln!(
            "scar lambda-sim: {program}: not found in the sandbox (its root holds only /opt, /var/task, /tmp, /sim/bin and the binds given)"
        );
        exit_now(NOT_FOUND);
    }
    eprintln!(
        "scar lambda-sim: cannot execute {program}: {}",
        std::io::Error::from_raw_os_error(last)
    );
    exit_now(EXEC_FAILED)
}

/// Where to look for the program: itself when it names a path, else each directory of the
/// environment's `PATH` (none: not found).
fn search_list(plan: &Plan) -> (Vec<CString>, Vec<CString>) {
    let program = plan.argv[0].as_bytes();
    if program.contains(&b'/') {
        return (Vec::new(), vec![plan.argv[0].clone()]);
    }
    let path = plan
        .env
        .iter()
        .find_map(|e| e.as_bytes().strip_prefix(b"PATH="))
        .unwrap_or(b"");
    let dirs = path
        .split(|&b| b == b':')
        .filter(|dir| !dir.is_empty())
        .filter_map(|dir| {
            let mut full = dir.to_vec();
            full.push(b'/');
            full.extend_from_slice(program);
            CString::new(full).ok()
        })
        .collect();
    (dirs, Vec::new())
}

/// Capabilities, no_new_privs, seccomp, uid and gid, working directory: in that order, since
/// the filter refuses the `prctl` the first two need, and the uid change ends the
/// capabilities the others need.
fn restrict() -> std::io::Result<()> {
    let context = |what: &str| {
        let err = std::io::Error::last_os_error();
        std::io::Error::new(err.kind(), format!("{what}: {err}"))
    };
    // Descriptors beyond stdio do not reach the command.
    // SAFETY: close_range with integer arguments; on a kernel without it, nothing happens.
    unsafe {
        libc::syscall(
            libc::SYS_close_range,
            3u32,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    };
    for cap in 0..64 {
        // SAFETY: prctl with integer arguments; EINVAL past the last capability ends the loop.
        if unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap, 0, 0, 0) } != 0 {
            if std::io::Error::last_os_error().raw_os_error() == Some(libc::EINVAL) {
                break;
            }
            return Err(context("drop the capability bounding set"));
        }
    }
    // SAFETY: prctl with integer arguments.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        return Err(context("set no_new_privs"));
    }
    seccomp::install().map_err(|err| std::io::Error::new(err.kind(), format!("seccomp: {err}")))?;
    let id = SANDBOX_UID;
    // SAFETY: setgroups with an empty list; setresgid/setresuid with plain ids.
    unsafe {
        if libc::setgroups(0, std::ptr::null()) != 0 {
            return Err(context("clear the supplementary groups"));
        }
        if libc::setresgid(id, id, id) != 0 {
            return Err(context("set gid 993"));
        }
        if libc::setresuid(id, id, id) != 0 {
            return Err(context("set uid 993"));
        }
    }
    clear_inheritable_capabilities().map_err(|_| context("clear the capabilities"))?;
    let task = CString::new(TASK_DIR).map_err(std::io::Error::other)?;
    // SAFETY: a NUL-terminated path.
    if unsafe { libc::chdir(task.as_ptr()) } != 0 {
        return Err(context("change to /var/task"));
    }
    Ok(())
}

/// The uid change cleared the permitted, effective and ambient sets; the inheritable set is
/// left as it was, so it is cleared here.
fn clear_inheritable_capabilities() -> std::io::Result<()> {
    /// `_LINUX_CAPABILITY_VERSION_3`: two 32-bit data words per set.
    const VERSION_3: u32 = 0x2008_0522;
    #[repr(C)]
    struct Header {
        version: u32,
        pid: i32,
    }
    #[repr(C)]
    #[derive(Clone, Copy)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    let header = Header {
        version: VERSION_3,
        pid: 0,
    };
    let data = [Data {
        effective: 0,
        permitted: 0,
        inheritable: 0,
    }; 2];
    // SAFETY: capset reads a version 3 header and two data words, both valid for the call.
    let rc = unsafe { libc::syscall(libc::SYS_capset, &header, data.as_ptr()) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// A pipe, both ends close-on-exec.
fn pipe() -> Result<(std::fs::File, std::fs::File), SimError> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two descriptors into the array.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(step("create a pipe"));
    }
    // SAFETY: both descriptors were just created and are owned by nothing else.
    let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    Ok((read.into(), write.into()))
}

/// Wait for `pid` and turn its end into an exit status (128 + N for signal N).
fn wait_exit_status(pid: libc::pid_t) -> std::io::Result<i32> {
    loop {
        let mut status = 0;
        // SAFETY: waitpid writes the status into a valid local.
        if unsafe { libc::waitpid(pid, &mut status, 0) } == pid {
            return Ok(status_code(status));
        }
        let err = std::io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::EINTR) {
            return Err(err);
        }
    }
}

fn status_code(status: i32) -> i32 {
    if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else if libc::WIFSIGNALED(status) {
        128 + libc::WTERMSIG(status)
    } else {
        SETUP_FAILED
    }
}

/// Leave a forked process without running the parent's exit handlers or flushing its buffers.
fn exit_now(code: i32) -> ! {
    let _ = std::io::stderr().flush();
    // SAFETY: _exit has no preconditions.
    unsafe { libc::_exit(code) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_program_is_searched_in_the_given_path_only_when_it_names_no_directory() {
        let plan = |argv: &str, env: &[&str]| Plan {
            binds: Vec::new(),
            dirs: Vec::new(),
            tmp_mb: 1,
            etc: Vec::new(),
            applets: Vec::new(),
            argv: vec![CString::new(argv).unwrap()],
            env: env.iter().map(|e| CString::new(*e).unwrap()).collect(),
        };
        let (dirs, direct) = search_list(&plan("sh", &["A=1", "PATH=/sim/bin::/usr/bin"]));
        assert!(direct.is_empty());
        assert_eq!(dirs, [c"/sim/bin/sh".to_owned(), c"/usr/bin/sh".to_owned()]);
        let (dirs, direct) = search_list(&plan("/opt/bootstrap", &["PATH=/x"]));
        assert!(dirs.is_empty());
        assert_eq!(direct, [c"/opt/bootstrap".to_owned()]);
        let (dirs, direct) = search_list(&plan("sh", &[]));
        assert!(dirs.is_empty() && direct.is_empty());
    }
}
