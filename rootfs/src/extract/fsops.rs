//! The handful of file-system calls extraction needs beyond `std`, each tolerant of what an
//! unprivileged user is not allowed to do.

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::Path;

use super::ExtractError;

fn cpath(path: &Path) -> Result<CString, ExtractError> {
    CString::new(path.as_os_str().as_bytes()).map_err(|_| ExtractError::Io {
        op: "path",
        path: path.to_owned(),
        source: io::Error::from(io::ErrorKind::InvalidInput),
    })
}

/// `mkdir` with a mode.
pub(super) fn mkdir(path: &Path, mode: u32) -> Result<(), ExtractError> {
    std::fs::DirBuilder::new()
        .mode(mode)
        .create(path)
        .map_err(|e| ExtractError::io("mkdir", path, e))
}

/// `chmod` (path-based: used only on directories we created, never through a symlink).
pub(super) fn chmod(path: &Path, mode: u32) -> Result<(), ExtractError> {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| ExtractError::io("chmod", path, e))
}

/// `fchmod` on an open file.
pub(super) fn fchmod(file: &File, path: &Path, mode: u32) -> Result<(), ExtractError> {
    file.set_permissions(std::fs::Permissions::from_mode(mode))
        .map_err(|e| ExtractError::io("fchmod", path, e))
}

/// `symlink(target, at)`.
pub(super) fn symlink(target: &[u8], at: &Path) -> Result<(), ExtractError> {
    std::os::unix::fs::symlink(std::ffi::OsStr::from_bytes(target), at)
        .map_err(|e| ExtractError::io("symlink", at, e))
}

/// `mkfifo`.
pub(super) fn mkfifo(path: &Path, mode: u32) -> Result<(), ExtractError> {
    nix::unistd::mkfifo(path, nix::sys::stat::Mode::from_bits_truncate(mode))
        .map_err(|e| ExtractError::io("mkfifo", path, io::Error::from(e)))
}

/// `lchown`, ignoring refusals (user namespaces with partial maps, NFS).
pub(super) fn lchown(path: &Path, uid: u32, gid: u32) {
    if let Err(err) = std::os::unix::fs::lchown(path, Some(uid), Some(gid)) {
        tracing::trace!(path = %path.display(), %err, "lchown refused");
    }
}

/// `fchown`, ignoring refusals.
pub(super) fn fchown(file: &File, uid: u32, gid: u32) {
    if let Err(err) = std::os::unix::fs::fchown(file, Some(uid), Some(gid)) {
        tracing::trace!(%err, "fchown refused");
    }
}

/// Set an open file's mtime (and atime to the same).
pub(super) fn set_file_mtime(file: &File, mtime: i64) {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(mtime.max(0) as u64);
    let times = std::fs::FileTimes::new().set_accessed(t).set_modified(t);
    let _ = file.set_times(times);
}

/// Set times on a path without following a final symlink.
pub(super) fn set_times_nofollow(path: &Path, mtime: i64) {
    let ts = nix::sys::time::TimeSpec::new(mtime, 0);
    let _ = nix::sys::stat::utimensat(
        nix::fcntl::AT_FDCWD,
        path,
        &ts,
        &ts,
        nix::sys::stat::UtimensatFlags::NoFollowSymlink,
    );
}

/// Set extended attributes, skipping the ones this user may not set (`security.*`,
/// `trusted.*` unprivileged, `user.*` on symlinks, file systems without xattrs).
pub(super) fn set_xattrs(path: &Path, xattrs: &[(Vec<u8>, Vec<u8>)]) {
    if xattrs.is_empty() {
        return;
    }
    let Ok(cpath) = cpath(path) else { return };
    for (name, value) in xattrs {
        let Ok(cname) = CString::new(name.as_slice()) else {
            continue;
        };
        // SAFETY: both strings are NUL-terminated and live across the call; value points to
        // value.len() readable bytes.
        let rc = unsafe {
            libc::lsetxattr(
                cpath.as_ptr(),
                cname.as_ptr(),
                value.as_ptr().cast(),
                value.len(),
                0,
            )
        };
        if rc != 0 {
            tracing::debug!(
                path = %path.display(),
                name = %String::from_utf8_lossy(name),
                err = %io::Error::last_os_error(),
                "xattr not applied"
            );
        }
    }
}

/// Remove a file, symlink or whole tree.
pub(super) fn remove_any(path: &Path) -> Result<(), ExtractError> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => remove_tree(path),
        Ok(_) => std::fs::remove_file(path).map_err(|e| ExtractError::io("unlink", path, e)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(ExtractError::io("lstat", path, e)),
    }
}

/// Remove a directory tree, making directories writable first when an image made them
/// read-only (an unprivileged user cannot otherwise delete their entries).
pub(super) fn remove_tree(path: &Path) -> Result<(), ExtractError> {
    crate::cache::remove_tree(path).map_err(|e| ExtractError::io("remove", path, e))
}
