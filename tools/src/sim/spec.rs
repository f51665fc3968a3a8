//! What to run and what the sandbox holds ([`Spec`], [`Bind`]), and where the sandbox puts
//! things.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use super::error::SimError;

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
