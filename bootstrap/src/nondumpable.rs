//! Keeping the bootstrap's memory and environment away from the container, without `prctl`.
//!
//! The preload engine runs the container as an ordinary process tree of the bootstrap's own uid
//! with no PID namespace, so the container sees the bootstrap in `/proc`. A dumpable process's
//! `/proc/<pid>/environ` and `/proc/<pid>/mem` are open to every process of its uid: the AWS
//! credentials (`AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `AWS_ACCESS_KEY_ID`),
//! `SCAR_REGISTRY_PASSWORD` and the SDK's copies of them in memory. `prctl(PR_SET_DUMPABLE, 0)`
//! would close them, but Lambda's system-call filter refuses every `prctl` with EPERM.
//!
//! What Lambda cannot refuse: `execve` of a file its caller may execute but not read makes the
//! new image non-dumpable (the kernel's `would_dump`, so that a reader cannot dump an unreadable
//! program through `/proc`). At start the bootstrap copies itself into an anonymous memory file
//! (`memfd_create`; a private directory in `/tmp` when that is refused), makes the copy
//! execute-only (0111) and executes it with the same arguments and environment, plus
//! [`REEXEC_ENV`] carrying the original path, so that it happens once. `/proc/<pid>/environ`,
//! `mem`, `maps`, `exe` and the rest then belong to root, and the container's processes get
//! EACCES. The flag is not inherited across the container's own `execve` (its programs are
//! readable), so the container is unaffected.
//!
//! `/proc/self/exe` now names the copy, so whatever needs the bootstrap's real location (the
//! preload libraries in `preload/` beside it, the namespace engine's helper binary) asks
//! [`scar_rootfs::engine::running_exe`], which [`protect`] tells the original path.

use std::ffi::{CString, OsStr, OsString};
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Set by the bootstrap on its own re-execution, read and removed at once by the copy:
/// `<monotonic ns at the first start>:<private directory to remove, or empty>:<original path>`.
/// Internal: never set it by hand (it only records what happened).
pub const REEXEC_ENV: &str = "SCAR_BOOTSTRAP_REEXEC";
/// `MFD_EXEC` (Linux 6.3): ask for an executable memory file explicitly, which newer kernels
/// expect (and may require, with `vm.memfd_noexec`); older kernels reject it with EINVAL.
const MFD_EXEC: libc::c_uint = 0x0010;
/// Mode of the copy: executable, readable by nobody (which is what makes it non-dumpable).
const EXECUTE_ONLY: u32 = 0o111;
/// Where the copy goes when memory files are refused.
const TMP_PARENT: &str = "/tmp";

/// What [`protect`] found or did; the caller logs it once logging is set up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Protection {
    /// Running as root: the container runs as root too and could read any process anyway, so
    /// nothing is gained by re-executing.
    Root,
    /// The process was non-dumpable from its start (a host that already arranges it).
    AlreadyNonDumpable,
    /// Re-executed from an execute-only copy and now non-dumpable.
    ReExecuted {
        /// Where the bootstrap was started from (what `/proc/self/exe` named before).
        original: PathBuf,
        /// How the copy was made.
        copy: CopyKind,
        /// From the first start to the copy's `main`: the cost of being protected.
        cost: Duration,
    },
    /// The bootstrap stays dumpable: its environment and memory are readable by the
    /// container. The text says why.
    Exposed(String),
}

/// Where the execute-only copy lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CopyKind {
    /// An anonymous memory file (`memfd_create`): nothing on disk.
    MemoryFile,
    /// A file in a private 0700 directory under `/tmp`, removed by the copy once it runs.
    TmpFile,
}

impl CopyKind {
    /// The name used in logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::MemoryFile => "memfd",
            Self::TmpFile => "tmp",
        }
    }
}

/// Make this process non-dumpable without `prctl`: re-execute it from an execute-only copy
/// unless it already is non-dumpable (or root). Returns only when no re-execution happened or
/// this is the copy; on the way it records the original path with
/// [`scar_rootfs::engine::set_running_exe`].
///
/// Must run first thing in `main`, while the process is single-threaded: it edits the
/// environment and replaces the process image.
pub fn protect() -> Protection {
    if let Some(marker) = std::env::var_os(REEXEC_ENV) {
        // SAFETY: called first in `main`, before any thread exists (no concurrent env access).
        unsafe { std::env::remove_var(REEXEC_ENV) };
        return after_reexec(&marker);
    }
    if nix::unistd::geteuid().is_root() {
        return Protection::Root;
    }
    match is_non_dumpable() {
        Ok(true) => return Protection::AlreadyNonDumpable,
        Ok(false) => {}
        Err(err) => {
            return Protection::Exposed(format!(
                "cannot tell whether this process is dumpable (stat /proc/self/environ: {err}); is /proc mounted?"
            ));
        }
    }
    let started = monotonic_ns();
    let original = match std::env::current_exe() {
        Ok(path) => path,
        Err(err) => {
            return Protection::Exposed(format!(
                "cannot find the running executable through /proc/self/exe: {err}"
            ));
        }
    };
    let memfd = match reexec_from_memory_file(&original, started) {
        Ok(never) => match never {},
        Err(err) => err,
    };
    let tmp = match reexec_from_tmp_file(&original, started) {
        Ok(never) => match never {},
        Err(err) => err,
    };
    Protection::Exposed(format!(
        "cannot re-execute from an execute-only copy (memory file: {memfd}; {TMP_PARENT}: {tmp})"
    ))
}

/// True when `/proc/self`'s files belong to root although we are not root: what the kernel
/// shows for a non-dumpable process. (Directories keep the real owner; files do not.)
pub fn is_non_dumpable() -> io::Result<bool> {
    use std::os::unix::fs::MetadataExt;
    let owner = std::fs::metadata("/proc/self/environ")?.uid();
    Ok(owner != nix::unistd::geteuid().as_raw())
}

/// The copy's side: clean up, record the original path, check that it worked.
fn after_reexec(marker: &OsStr) -> Protection {
    let Some(parsed) = Marker::parse(marker.as_bytes()) else {
        return Protection::Exposed(format!(
            "{REEXEC_ENV} is malformed ({}); it is internal to the bootstrap and must not be set",
            marker.to_string_lossy()
        ));
    };
    let copy = match &parsed.cleanup {
        Some(dir) => {
            // The process image is in memory now: the file and its directory can go.
            let _ = std::fs::remove_dir_all(dir);
            CopyKind::TmpFile
        }
        None => CopyKind::MemoryFile,
    };
    scar_rootfs::engine::set_running_exe(parsed.original.clone());
    let cost = Duration::from_nanos(monotonic_ns().saturating_sub(parsed.started_ns));
    match is_non_dumpable() {
        Ok(true) => Protection::ReExecuted {
            original: parsed.original,
            copy,
            cost,
        },
        Ok(false) => Protection::Exposed(
            "re-executed from an execute-only copy but still dumpable (is fs.suid_dumpable 1 on this host?)"
                .to_owned(),
        ),
        Err(err) => Protection::Exposed(format!(
            "re-executed, but stat /proc/self/environ failed: {err}"
        )),
    }
}

/// The decoded [`REEXEC_ENV`].
#[derive(Debug, PartialEq, Eq)]
struct Marker {
    started_ns: u64,
    cleanup: Option<PathBuf>,
    original: PathBuf,
}

impl Marker {
    fn encode(started_ns: u64, cleanup: Option<&Path>, original: &Path) -> OsString {
        let mut value = OsString::from(format!("{started_ns}:"));
        if let Some(dir) = cleanup {
            value.push(dir.as_os_str());
        }
        value.push(":");
        value.push(original.as_os_str());
        value
    }

    fn parse(value: &[u8]) -> Option<Self> {
        let mut parts = value.splitn(3, |b| *b == b':');
        let started_ns = std::str::from_utf8(parts.next()?).ok()?.parse().ok()?;
        let cleanup = parts.next()?;
        let original = parts.next().filter(|p| p.starts_with(b"/"))?;
        Some(Self {
            started_ns,
            cleanup: (!cleanup.is_empty()).then(|| PathBuf::from(OsStr::from_bytes(cleanup))),
            original: PathBuf::from(OsStr::from_bytes(original)),
        })
    }
}

/// Copy the running binary into an anonymous memory file and execute it.
fn reexec_from_memory_file(
    original: &Path,
    started: u64,
) -> Result<std::convert::Infallible, io::Error> {
    let name = c"bootstrap";
    let memfd = memfd_create(name, libc::MFD_CLOEXEC | MFD_EXEC).or_else(|err| {
        match err.raw_os_error() {
            Some(libc::EINVAL) => memfd_create(name, libc::MFD_CLOEXEC),
            _ => Err(err),
        }
    })?;
    let mut copy = File::from(memfd);
    std::io::copy(&mut File::open("/proc/self/exe")?, &mut copy)?;
    copy.set_permissions(std::fs::Permissions::from_mode(EXECUTE_ONLY))?;
    // A descriptor open for writing makes exec fail with ETXTBSY on some kernels: execute
    // through an O_PATH handle (which needs no permission) and close the writable one.
    let path_fd = open_path(&format!("/proc/self/fd/{}", copy.as_raw_fd()))?;
    drop(copy);
    let env = Marker::encode(started, None, original);
    Err(fexecve(&path_fd, &env))
}

/// Copy the running binary into a private directory of `/tmp` and execute it; the copy removes
/// the directory once it runs.
fn reexec_from_tmp_file(
    original: &Path,
    started: u64,
) -> Result<std::convert::Infallible, io::Error> {
    let pid = std::process::id();
    let dir = Path::new(TMP_PARENT).join(format!(".scar-bootstrap-{pid}-{started}"));
    // 0700 and created now (create fails if it exists): nobody else can put or swap a file in.
    std::fs::DirBuilder::new().mode(0o700).create(&dir)?;
    let file = dir.join("bootstrap");
    let written = (|| {
        let mut copy = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o700)
            .custom_flags(libc::O_CLOEXEC)
            .open(&file)?;
        std::io::copy(&mut File::open("/proc/self/exe")?, &mut copy)?;
        copy.set_permissions(std::fs::Permissions::from_mode(EXECUTE_ONLY))?;
        drop(copy);
        open_path(&file.to_string_lossy())
    })();
    let err = match written {
        Ok(path_fd) => fexecve(&path_fd, &Marker::encode(started, Some(&dir), original)),
        Err(err) => err,
    };
    let _ = std::fs::remove_dir_all(&dir);
    Err(err)
}

fn memfd_create(name: &std::ffi::CStr, flags: libc::c_uint) -> io::Result<OwnedFd> {
    // SAFETY: `name` is a valid C string; the call only returns a new descriptor.
    let fd = unsafe { libc::syscall(libc::SYS_memfd_create, name.as_ptr(), flags) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the descriptor was just created and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

fn open_path(path: &str) -> io::Result<OwnedFd> {
    let path = CString::new(path).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: `path` is a valid C string; O_PATH opens without reading anything.
    let fd = unsafe { libc::open(path.as_ptr(), libc::O_PATH | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the descriptor was just opened and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Execute `fd` with this process's arguments and environment plus [`REEXEC_ENV`]=`marker`;
/// returns only the error.
fn fexecve(fd: &OwnedFd, marker: &OsStr) -> io::Error {
    let Some(argv) = std::env::args_os()
        .map(|arg| CString::new(arg.into_vec()).ok())
        .collect::<Option<Vec<_>>>()
    else {
        return io::Error::new(io::ErrorKind::InvalidInput, "an argument holds a NUL");
    };
    let mut env: Vec<CString> = std::env::vars_os()
        .filter(|(name, _)| name != REEXEC_ENV)
        .filter_map(|(name, value)| {
            let mut entry = name.into_vec();
            entry.push(b'=');
            entry.extend_from_slice(value.as_bytes());
            CString::new(entry).ok()
        })
        .collect();
    let mut entry = REEXEC_ENV.as_bytes().to_vec();
    entry.push(b'=');
    entry.extend_from_slice(marker.as_bytes());
    match CString::new(entry) {
        Ok(entry) => env.push(entry),
        Err(_) => return io::Error::new(io::ErrorKind::InvalidInput, "the path holds a NUL"),
    }
    let mut argv_ptrs: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
    argv_ptrs.push(std::ptr::null());
    let mut env_ptrs: Vec<*const libc::c_char> = env.iter().map(|e| e.as_ptr()).collect();
    env_ptrs.push(std::ptr::null());
    // SAFETY: both arrays are NULL-terminated and point into CStrings alive across the call;
    // on success the call does not return.
    unsafe { libc::fexecve(fd.as_raw_fd(), argv_ptrs.as_ptr(), env_ptrs.as_ptr()) };
    io::Error::last_os_error()
}

fn monotonic_ns() -> u64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `now` is a valid timespec to write; CLOCK_MONOTONIC always exists.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
    (now.tv_sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(now.tv_nsec as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_marker_round_trips_with_and_without_a_directory_and_colons_in_the_path() {
        for cleanup in [None, Some(Path::new("/tmp/.scar-bootstrap-7-9"))] {
            let original = Path::new("/opt/odd:name/bootstrap");
            let encoded = Marker::encode(42, cleanup, original);
            assert_eq!(
                Marker::parse(encoded.as_bytes()),
                Some(Marker {
                    started_ns: 42,
                    cleanup: cleanup.map(Path::to_path_buf),
                    original: original.to_path_buf(),
                })
            );
        }
    }

    #[test]
    fn a_malformed_marker_is_rejected() {
        for bad in ["", "x:/a:/b", "1:", "1::relative", "1:/d"] {
            assert_eq!(Marker::parse(bad.as_bytes()), None, "{bad}");
        }
    }
}
