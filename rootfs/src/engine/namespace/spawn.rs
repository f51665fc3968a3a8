//! Starting the command from the init: everything is prepared in the init (argv, environment,
//! the PATH candidates, the working directory), then a `CLONE_VM | CLONE_VFORK` child makes
//! only raw syscalls (signal mask, chdir, execve) and, when every execve fails, leaves a
//! record of why in the suspended init's memory. No page tables are copied, so the start
//! costs the same whatever the size of this binary; the init turns a failure into the
//! message for the engine.

use std::ffi::{CStr, CString};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};

use nix::errno::Errno;
use nix::unistd::Pid;

use super::affinity::CpuMask;

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

/// The command, ready to execute: only pointers the child can use without allocating.
pub struct Prepared {
    argv: Vec<CString>,
    env: Vec<CString>,
    candidates: Vec<CString>,
    workdir: CString,
    command: String,
    path: String,
    /// The CPU mask the command starts with (see [`super::affinity`]); `None` keeps the
    /// init's.
    affinity: Option<CpuMask>,
}

impl Prepared {
    /// argv\[0\] as given.
    pub fn command(&self) -> &str {
        &self.command
    }

    /// Start the command with `mask` as its CPU affinity rather than the init's.
    pub fn with_affinity(mut self, mask: Option<CpuMask>) -> Self {
        self.affinity = mask;
        self
    }
}

/// Why the command cannot be started, for the engine's message and the exit status.
#[derive(Debug, PartialEq, Eq)]
pub struct Refusal {
    /// The text for the engine's `Exec` error.
    pub reason: String,
    /// 126 (cannot execute) or 127 (not found), as a shell would use.
    pub code: i32,
}

impl Refusal {
    fn new(reason: impl Into<String>, code: i32) -> Self {
        Self {
            reason: reason.into(),
            code,
        }
    }
}

/// Check what can be checked before the start and build the C strings.
pub fn prepare(
    argv: &[String],
    env: &[(String, String)],
    workdir: &str,
) -> Result<Prepared, Refusal> {
    let command = argv.first().cloned().unwrap_or_default();
    if command.is_empty() {
        return Err(Refusal::new(
            "no command given and the image has no Entrypoint or Cmd",
            126,
        ));
    }
    let c_argv = argv
        .iter()
        .map(|a| CString::new(a.as_bytes()).ok())
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| Refusal::new("an argument contains a NUL byte", 126))?;
    let c_env = env
        .iter()
        .map(|(k, v)| CString::new(format!("{k}={v}")).ok())
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| Refusal::new("an environment variable contains a NUL byte", 126))?;
    let path = env
        .iter()
        .rev()
        .find(|(k, _)| k == "PATH")
        .map_or(DEFAULT_PATH, |(_, v)| v.as_str())
        .to_string();
    let found = candidates(&command, &path)
        .into_iter()
        .filter_map(|c| CString::new(c.as_os_str().as_bytes()).ok())
        .collect();
    let dir = if workdir.is_empty() { "/" } else { workdir };
    let c_workdir = CString::new(dir)
        .map_err(|_| Refusal::new("the working directory contains a NUL byte", 126))?;
    Ok(Prepared {
        argv: c_argv,
        env: c_env,
        candidates: found,
        workdir: c_workdir,
        command,
        path,
        affinity: None,
    })
}

/// Create the working directory the way Docker does when it is missing.
pub fn ensure_workdir(prepared: &Prepared) -> Result<(), Refusal> {
    let dir = Path::new(std::ffi::OsStr::from_bytes(prepared.workdir.as_bytes()));
    match std::fs::metadata(dir) {
        Ok(_) => Ok(()),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => std::fs::create_dir_all(dir)
            .map_err(|e| {
                Refusal::new(
                    format!(
                        "working directory {} is missing and cannot be created: {e}",
                        dir.display()
                    ),
                    126,
                )
            }),
        // chdir in the child says what is wrong (e.g. not a directory).
        Err(_) => Ok(()),
    }
}

/// What the child found, packed in one word: `stage << 48 | index << 32 | errno`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(i64)]
enum Stage {
    /// chdir(2) into the working directory failed.
    Chdir = 1,
    /// The candidate exists but its interpreter or loader does not (ENOENT from execve).
    LoaderMissing = 2,
    /// execve(2) failed otherwise.
    Exec = 3,
    /// Only EACCES: the last candidate that exists but is not executable.
    Denied = 4,
    /// No candidate exists.
    NotFound = 5,
}

/// What the child reads (and, on failure, writes): shared memory under CLONE_VM.
struct Job<'a> {
    argv: &'a [*const libc::c_char],
    env: &'a [*const libc::c_char],
    candidates: &'a [CString],
    workdir: &'a CStr,
    affinity: Option<&'a CpuMask>,
    /// 0 until the child fails; see [`Stage`].
    failure: AtomicI64,
}

/// Start the command; returns its PID, or why it could not start (the child has then
/// exited with the refusal's code, and is reaped like any other).
pub fn start(prepared: &Prepared) -> Result<Pid, (Option<Pid>, Refusal)> {
    let argv: Vec<*const libc::c_char> = prepared
        .argv
        .iter()
        .map(|a| a.as_ptr())
        .chain(std::iter::once(std::ptr::null()))
        .collect();
    let env: Vec<*const libc::c_char> = prepared
        .env
        .iter()
        .map(|e| e.as_ptr())
        .chain(std::iter::once(std::ptr::null()))
        .collect();
    let job = Job {
        argv: &argv,
        env: &env,
        candidates: &prepared.candidates,
        workdir: &prepared.workdir,
        affinity: prepared.affinity.as_ref(),
        failure: AtomicI64::new(0),
    };
    // SAFETY: `child_entry` only makes raw syscalls on the pointers in `job` and stores into
    // its atomic; `job` and the vectors it points into live on this frame until the child has
    // executed or exited. Without CLONE_SIGHAND/CLONE_FS the child's signal dispositions and
    // working directory are its own.
    let pid = match unsafe { crate::engine::fork::vfork_run(child_entry, &job) } {
        Ok(pid) => pid,
        Err(err) => {
            return Err((
                None,
                Refusal::new(format!("starting the command: {err}"), 126),
            ));
        }
    };
    match job.failure.load(Ordering::SeqCst) {
        0 => Ok(pid),
        record => Err((Some(pid), explain(prepared, record))),
    }
}

/// The child: restore signals, enter the working directory, try each candidate.
extern "C" fn child_entry(arg: *mut libc::c_void) -> libc::c_int {
    // SAFETY: `arg` is the `Job` on the suspended parent's stack (see `start`).
    let job = unsafe { &*(arg as *const Job) };
    let fail = |stage: Stage, index: usize, errno: i32| -> libc::c_int {
        let record = ((stage as i64) << 48) | ((index as i64 & 0xffff) << 32) | i64::from(errno);
        job.failure.store(record, Ordering::SeqCst);
        let code = if matches!(stage, Stage::NotFound | Stage::LoaderMissing) {
            127
        } else {
            126
        };
        // SAFETY: _exit(2) ends this child without running anything of the parent's.
        unsafe { libc::_exit(code) }
    };
    // SAFETY: plain syscalls on this child's own signal state: an empty mask, and SIGPIPE
    // back to its default (Rust ignores it at startup and ignored signals survive exec, so
    // `yes | head` would never end).
    unsafe {
        let mut empty: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut empty);
        libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    // The caller's CPUs back: the command may use all of them. On this CPU still, so the
    // kernel moves nothing now. Should the kernel refuse (a CPU of the mask went offline
    // meanwhile), the command runs where the init does: slower, not wrong.
    if let Some(mask) = job.affinity {
        mask.apply();
    }
    // SAFETY: chdir(2) on a NUL-terminated string owned by the suspended parent.
    if unsafe { libc::chdir(job.workdir.as_ptr()) } != 0 {
        return fail(Stage::Chdir, 0, Errno::last_raw());
    }
    let mut denied = None;
    for (index, candidate) in job.candidates.iter().enumerate() {
        // SAFETY: execve(2) with NUL-terminated strings and null-terminated pointer arrays
        // owned by the suspended parent; it only returns on failure.
        unsafe { libc::execve(candidate.as_ptr(), job.argv.as_ptr(), job.env.as_ptr()) };
        let errno = Errno::last_raw();
        match errno {
            libc::ENOENT | libc::ENOTDIR => {
                // SAFETY: access(2) on the same string.
                if unsafe { libc::access(candidate.as_ptr(), libc::F_OK) } == 0 {
                    return fail(Stage::LoaderMissing, index, errno);
                }
            }
            libc::EACCES => denied = Some(index),
            _ => return fail(Stage::Exec, index, errno),
        }
    }
    match denied {
        Some(index) => fail(Stage::Denied, index, libc::EACCES),
        None => fail(Stage::NotFound, 0, libc::ENOENT),
    }
}

/// Turn the child's record into the message.
fn explain(prepared: &Prepared, record: i64) -> Refusal {
    let stage = record >> 48;
    let index = ((record >> 32) & 0xffff) as usize;
    let errno = Errno::from_raw((record & 0xffff_ffff) as i32);
    let candidate = prepared
        .candidates
        .get(index)
        .map(|c| c.to_string_lossy().into_owned())
        .unwrap_or_default();
    let workdir = prepared.workdir.to_string_lossy();
    match stage {
        s if s == Stage::Chdir as i64 => Refusal::new(format!("chdir({workdir}): {errno}"), 126),
        s if s == Stage::LoaderMissing as i64 => Refusal::new(
            format!(
                "{candidate} exists but cannot start: its interpreter or dynamic loader is missing in the image ({errno})"
            ),
            127,
        ),
        s if s == Stage::Exec as i64 => {
            Refusal::new(format!("execve({candidate}) failed: {errno}"), 126)
        }
        s if s == Stage::Denied as i64 => {
            Refusal::new(format!("{candidate} is not executable (EACCES)"), 126)
        }
        _ if prepared.command.contains('/') => Refusal::new(
            format!("{} does not exist in the image", prepared.command),
            127,
        ),
        _ => Refusal::new(
            format!("not found in the image's PATH ({})", prepared.path),
            127,
        ),
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

    #[test]
    fn a_nul_byte_or_an_empty_command_is_refused_before_the_start() {
        let env = vec![("PATH".to_string(), "/bin".to_string())];
        assert_eq!(prepare(&[], &env, "/").err().map(|r| r.code), Some(126));
        let bad = vec!["a\0b".to_string()];
        assert!(prepare(&bad, &env, "/").is_err());
    }

    #[test]
    fn a_missing_command_and_a_non_executable_file_are_told_apart() {
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("script");
        std::fs::write(&script, "#!/bin/sh\n").unwrap();
        let env = vec![("PATH".to_string(), "/nonexistent".to_string())];
        let missing = prepare(&["nope".to_string()], &env, "/").unwrap();
        let (pid, refusal) = start(&missing).unwrap_err();
        assert_eq!(refusal.code, 127);
        assert!(refusal.reason.contains("/nonexistent"), "{refusal:?}");
        nix::sys::wait::waitpid(pid.unwrap(), None).unwrap();
        let denied = prepare(&[script.display().to_string()], &env, "/").unwrap();
        let (pid, refusal) = start(&denied).unwrap_err();
        assert_eq!(refusal.code, 126);
        assert!(refusal.reason.contains("not executable"), "{refusal:?}");
        nix::sys::wait::waitpid(pid.unwrap(), None).unwrap();
    }
}
