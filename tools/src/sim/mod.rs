//! `scar lambda-sim`: run a command as AWS Lambda runs a custom runtime's `bootstrap`, on this
//! machine. The one Lambda simulator of the project: the end-to-end tests, `scar local
//! --lambda-sim` and `./demo.sh --lambda-sim` all start it.
//!
//! What the command meets (DESIGN.md, "Local fidelity"):
//! - uid and gid 993 (`sbx_user1051`), no supplementary groups, no capabilities (bounding set
//!   empty), `no_new_privs`;
//! - a seccomp filter refusing `prctl`, `ptrace`, `seccomp` and `chroot` with EPERM and
//!   `openat2` with ENOSYS (the host's native ABI and its 32-bit compat ABI; see [`seccomp`]);
//! - user namespaces refused: it runs in a user namespace whose `user.max_user_namespaces` is 0,
//!   so creating another fails with ENOSPC (EPERM on Lambda: callers treat both as "no");
//! - its own mount, PID, IPC and UTS namespaces; the network is the host's (the tests' services
//!   listen on the host's loopback);
//! - a bare, read-only root: a fresh tmpfs holding no C library, no loader and nothing at the
//!   paths images use (`/bin`, `/lib`, `/lib64`, `/usr` are absent), so a path that leaks out
//!   of an image fails instead of finding this host's copy. In it: the layer read-only at
//!   `/opt`, the function's code read-only at `/var/task` (the working directory), a tmpfs
//!   `/tmp` of the given size (mode 1777), a fresh `/proc`, a minimal `/dev` (`null`, `zero`,
//!   `full`, `random`, `urandom`, `tty`, `shm/`, the `fd` links), `/etc` with `passwd` and
//!   `group` naming `sbx_user1051`, copies of this host's `resolv.conf` and `hosts` and of its
//!   CA certificates at Amazon Linux's `/etc/pki/tls/certs/ca-bundle.crt`, a
//!   static busybox at `/sim/bin/` for test commands (not an image path: nothing of an image
//!   finds it by accident), and the caller's explicit binds;
//! - exactly the environment given, nothing inherited. Init is a fork of the launcher, so the
//!   launcher's command line is readable inside as `/proc/1/cmdline` (its environment is not:
//!   init is root of the namespace, the command uid 993): secrets go by name (`--env NAME`),
//!   their values in the launcher's environment.
//!
//! Nothing of this host is visible unless bound explicitly, so a checkout anywhere works (also
//! under `/tmp`: the host's paths are bound before the sandbox's own `/tmp` hides them).
//!
//! # How it is built (needs root on the host)
//! Three roles, each a process:
//! 1. the **launcher** (this process) forks a **map writer**, enters new user, mount, PID, IPC
//!    and UTS namespaces with `unshare(2)`, and lets the map writer, still in the host's user
//!    namespace, write its `uid_map` and `gid_map` (identity over 0..65536: uid 993 inside is
//!    uid 993 outside). It then forks the sandbox's **init** and waits for it; its exit status
//!    is init's.
//! 2. **init** (PID 1 of the new PID namespace; `PR_SET_PDEATHSIG` = SIGKILL, so killing the
//!    launcher kills it and, with it, every process in the namespace) builds the root in
//!    [`root`], forks the command, reaps every orphan, and exits with the command's status as
//!    soon as the command ends (which ends every process it left behind, as Lambda's sandbox
//!    ends with its runtime).
//! 3. the **command** drops the capability bounding set, sets `no_new_privs`, installs the
//!    seccomp filter, drops to uid/gid 993 with no groups and no capabilities, changes to
//!    `/var/task` and executes the program (searched in the given `PATH` when it has no `/`).
//!
//! Exit statuses: the command's (128 + N when signal N ended it); 125 when the sandbox could
//! not be built, 126 when the program could not be executed, 127 when it was not found (as
//! `env` and `docker run` report them).

mod plan;
mod process;
mod root;
pub mod seccomp;

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use self::plan::Plan;
pub use self::plan::{CA_BUNDLE, is_static_elf};

/// The uid and gid the function runs as (`sbx_user1051`, as on Lambda).
pub const SANDBOX_UID: u32 = 993;
/// Where the layer is mounted (Lambda unpacks layer zips there).
pub const LAYER_DIR: &str = "/opt";
/// Where the function's code is mounted, and the command's working directory.
pub const TASK_DIR: &str = "/var/task";
/// Where the static busybox and its applets sit (test commands only).
pub const TOOLS_DIR: &str = "/sim/bin";
/// Lambda's default `/tmp` size (the `EphemeralStorage` default).
pub const DEFAULT_TMP_MB: u64 = 512;

/// Exit status when the sandbox could not be built.
pub const SETUP_FAILED: i32 = 125;
/// Exit status when the program exists but cannot be executed.
pub const EXEC_FAILED: i32 = 126;
/// Exit status when the program is not found.
pub const NOT_FOUND: i32 = 127;

/// A host path shown at a path of the sandbox.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bind {
    /// The file or directory on the host.
    pub host: PathBuf,
    /// Where it appears in the sandbox (absolute).
    pub target: PathBuf,
    /// Writable (not Lambda: a test convenience); read-only otherwise.
    pub writable: bool,
}

impl Bind {
    /// `HOST:PATH` as given on the command line.
    pub fn parse(text: &OsStr, writable: bool) -> Result<Bind, SimError> {
        let bytes = text.as_bytes();
        let colon = bytes
            .iter()
            .rposition(|&b| b == b':')
            .ok_or_else(|| SimError::BindSyntax(text.to_owned()))?;
        let (host, target) = (&bytes[..colon], &bytes[colon + 1..]);
        if host.is_empty() || target.is_empty() {
            return Err(SimError::BindSyntax(text.to_owned()));
        }
        Ok(Bind {
            host: PathBuf::from(OsStr::from_bytes(host)),
            target: PathBuf::from(OsStr::from_bytes(target)),
            writable,
        })
    }
}

/// What to run and what the sandbox holds.
#[derive(Clone, Debug, Default)]
pub struct Spec {
    /// The layer directory, read-only at `/opt` (absent: `/opt` is empty).
    pub layer: Option<PathBuf>,
    /// The function's code, read-only at `/var/task` (absent: `/var/task` is empty).
    pub task: Option<PathBuf>,
    /// Size of `/tmp` in MiB.
    pub tmp_mb: u64,
    /// Further host paths to show, in any order (they are mounted parents first).
    pub binds: Vec<Bind>,
    /// The command's whole environment, `NAME=value` each.
    pub env: Vec<OsString>,
    /// The program and its arguments.
    pub argv: Vec<OsString>,
    /// The static busybox for `/sim/bin` (default: `/bin/busybox`, else `/usr/bin/busybox`).
    pub busybox: Option<PathBuf>,
}

/// Why the sandbox could not be prepared or entered.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// Not root on the host.
    #[error(
        "the Lambda simulator needs root: it maps uids 0..65536 into a user namespace and mounts a new root (run it as root, e.g. with sudo)"
    )]
    NotRoot,
    /// Nothing to run.
    #[error("nothing to run: give the command after --")]
    NoCommand,
    /// A bind is not `HOST:PATH`.
    #[error("bind `{}`: use HOST:PATH with an absolute PATH", .0.to_string_lossy())]
    BindSyntax(OsString),
    /// A sandbox path is not absolute, holds `..`, or is reserved.
    #[error(
        "sandbox path {0}: give an absolute path without `..`, other than /, /proc, /dev and /tmp themselves"
    )]
    BadTarget(PathBuf),
    /// A host path to show does not exist.
    #[error("{what} {path}: {source}")]
    HostPath {
        /// Which argument.
        what: &'static str,
        /// The path given.
        path: PathBuf,
        /// Why it cannot be used.
        source: std::io::Error,
    },
    /// No usable busybox.
    #[error(
        "no static busybox at {0}: install the Debian package busybox-static (the sandbox's root holds no C library, so a dynamic busybox cannot run there), or pass --busybox PATH"
    )]
    NoBusybox(String),
    /// An environment entry is not `NAME=value`.
    #[error("environment entry `{}` is not NAME=value", .0.to_string_lossy())]
    Env(OsString),
    /// An argument or variable holds a NUL byte, which execve cannot pass.
    #[error("`{}` holds a NUL byte: execve cannot pass it", .0.to_string_lossy())]
    Nul(OsString),
    /// A system call of the launcher failed.
    #[error("{step}: {source}")]
    Step {
        /// What was being done.
        step: &'static str,
        /// The error.
        source: std::io::Error,
    },
}

/// Run `spec` in a new sandbox and return its exit status (see the module docs).
pub fn run(spec: &Spec) -> Result<i32, SimError> {
    let plan = Plan::prepare(spec)?;
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err(SimError::NotRoot);
    }
    process::launch(&plan)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn a_bind_splits_at_its_last_colon_and_needs_both_sides() {
        let bind = Bind::parse(OsStr::new("/a:b/c:/x/y"), false).unwrap();
        assert_eq!(bind.host, Path::new("/a:b/c"));
        assert_eq!(bind.target, Path::new("/x/y"));
        assert!(Bind::parse(OsStr::new("/a"), false).is_err());
        assert!(Bind::parse(OsStr::new(":/a"), false).is_err());
        assert!(Bind::parse(OsStr::new("/a:"), true).is_err());
    }
}
