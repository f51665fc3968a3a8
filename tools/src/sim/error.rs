//! How the simulator fails: the launcher's error, and the exit statuses of a sandbox that could
//! not run its command.

use std::ffi::OsString;
use std::path::PathBuf;

/// Exit status when the sandbox could not be built.
pub const SETUP_FAILED: i32 = 125;
/// Exit status when the program exists but cannot be executed.
pub const EXEC_FAILED: i32 = 126;
/// Exit status when the program is not found.
pub const NOT_FOUND: i32 = 127;

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
