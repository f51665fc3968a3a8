//! The handful of file-system calls extraction needs beyond `std`, each tolerant of what an
//! unprivileged user is not allowed to do.

use std::ffi::CString;
use std::ffi::OsStr;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Component, Path};
use std::sync::atomic::{AtomicBool, Ordering};

use super::error::ExtractError;

fn cpath(path: &Path) -> Result<CString, ExtractError> {
    c_name(path.as_os_str()).map_err(|source| ExtractError::Io {
        op: "path",
        path: path.to_owned(),
        source,
    })
}

/// `name` NUL-terminated for a system call (a name with a NUL byte is `InvalidInput`).
fn c_name(name: &OsStr) -> io::Result<CString> {
    CString::new(name.as_bytes()).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))
}

/// A new file `name` in the directory `dir`, open for writing, created with `mode` (less the
/// umask) and never through a symlink (`O_EXCL`, `O_NOFOLLOW`).
///
/// `openat(2)` itself rather than `std`'s `open`: musl's `open` follows every `O_CLOEXEC` open
/// with an `fcntl(F_SETFD)` for kernels that ignored the flag (before 2.6.23), a system call per
/// file of the image for nothing.
pub(super) fn create_file_at(dir: BorrowedFd<'_>, name: &OsStr, mode: u32) -> io::Result<File> {
    let c = c_name(name)?;
    let flags = libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_CLOEXEC;
    // SAFETY: `dir` is an open descriptor borrowed for the call, `c` is NUL-terminated and
    // outlives it; with O_CREAT the mode is read as the variadic argument, passed as the
    // `c_uint` the kernel takes.
    let fd = unsafe { libc::openat(dir.as_raw_fd(), c.as_ptr(), flags, mode as libc::c_uint) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by openat and is owned by nobody else.
    Ok(File::from(unsafe { OwnedFd::from_raw_fd(fd) }))
}

/// The directory `path` open as `O_PATH` (a handle for `openat`, needing only search
/// permission), its last component not followed.
pub(super) fn open_path_dir(path: &Path) -> io::Result<OwnedFd> {
    let c = c_name(path.as_os_str())?;
    let flags = libc::O_PATH | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC;
    // SAFETY: `c` is NUL-terminated and outlives the call; the flags ask for nothing unusual.
    let fd = unsafe { libc::openat(libc::AT_FDCWD, c.as_ptr(), flags) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by openat and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `mkdir` with a mode.
pub(super) fn mkdir(path: &Path, mode: u32) -> Result<(), ExtractError> {
    std::fs::DirBuilder::new()
        .mode(mode)
        .create(path)
        .map_err(|e| ExtractError::io("mkdir", path, e))
}

/// The root of an extraction, opened once so that deferred operations start from it.
pub(super) fn open_root(root: &Path) -> Result<OwnedFd, ExtractError> {
    let c = cpath(root)?;
    // SAFETY: `c` is NUL-terminated and outlives the call; the flags ask for nothing unusual.
    let fd = unsafe {
        libc::open(
            c.as_ptr(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(ExtractError::io("open", root, io::Error::last_os_error()));
    }
    // SAFETY: `fd` was just returned by open and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Open the directory `rel` below `root` one component at a time, never following a symlink
/// (`O_NOFOLLOW` on every component; intermediate ones as `O_PATH`, which needs only search
/// permission). `None` when a component is gone, is now a symlink or is not a directory: a
/// record about that path is stale and must not be applied to whatever the name leads to now.
pub(super) fn open_dir_beneath(
    root: &OwnedFd,
    rel: &Path,
    full: &Path,
) -> Result<Option<File>, ExtractError> {
    let names: Vec<&std::ffi::OsStr> = rel
        .components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n),
            _ => None,
        })
        .collect();
    if names.len() != rel.components().count() || names.is_empty() {
        // Records hold only plain relative names; anything else is not ours to touch.
        return Ok(None);
    }
    let opened = match open_beneath(root, rel) {
        Some(opened) => opened,
        None => open_walking(root, &names),
    };
    match opened {
        Ok(fd) => Ok(Some(File::from(fd))),
        Err(err) => match err.raw_os_error() {
            Some(libc::ENOENT | libc::ELOOP | libc::ENOTDIR | libc::EXDEV) => Ok(None),
            _ => Err(ExtractError::io("open", full, err)),
        },
    }
}

/// The directory `names` below `root`, opened one component at a time with `O_NOFOLLOW`
/// (intermediate ones as `O_PATH`): where `openat2` is refused.
pub(super) fn open_walking(root: &OwnedFd, names: &[&OsStr]) -> io::Result<OwnedFd> {
    let mut current: Option<OwnedFd> = None;
    for (i, name) in names.iter().enumerate() {
        let last = i + 1 == names.len();
        let access = if last { libc::O_RDONLY } else { libc::O_PATH };
        let c = c_name(name)?;
        let dirfd = current.as_ref().unwrap_or(root).as_raw_fd();
        // SAFETY: `dirfd` is an open descriptor owned by this function or the caller, `c` is
        // NUL-terminated and outlives the call.
        let fd = unsafe {
            libc::openat(
                dirfd,
                c.as_ptr(),
                access | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just returned by openat and is owned by nobody else.
        current = Some(unsafe { OwnedFd::from_raw_fd(fd) });
    }
    current.ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))
}

/// `struct open_how` of `openat2(2)`.
#[repr(C)]
struct OpenHow {
    flags: u64,
    mode: u64,
    resolve: u64,
}

/// Set once `openat2` is refused (a kernel before 5.6, a seccomp filter that does not know it):
/// the component-by-component walk is used from then on.
static NO_OPENAT2: AtomicBool = AtomicBool::new(false);

/// The directory `rel` below `root` in one `openat2` that refuses any symlink on the way
/// (`RESOLVE_NO_SYMLINKS`) and any escape from `root` (`RESOLVE_BENEATH`): what
/// [`open_dir_beneath`] does one component at a time, in one system call instead of one per
/// component and a `close` for each. `None` when the kernel refuses `openat2` itself.
pub(super) fn open_beneath(root: &OwnedFd, rel: &Path) -> Option<io::Result<OwnedFd>> {
    if NO_OPENAT2.load(Ordering::Relaxed) {
        return None;
    }
    let c = CString::new(rel.as_os_str().as_bytes()).ok()?;
    let how = OpenHow {
        flags: (libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC) as u64,
        mode: 0,
        resolve: libc::RESOLVE_BENEATH | libc::RESOLVE_NO_SYMLINKS | libc::RESOLVE_NO_MAGICLINKS,
    };
    // SAFETY: `root` is an open descriptor, `c` is NUL-terminated and `how` is a `struct
    // open_how` of the size passed; all three outlive the call, which writes to none of them.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            root.as_raw_fd(),
            c.as_ptr(),
            &how as *const OpenHow,
            std::mem::size_of::<OpenHow>(),
        )
    };
    if fd < 0 {
        let err = io::Error::last_os_error();
        if matches!(
            err.raw_os_error(),
            Some(libc::ENOSYS | libc::EPERM | libc::EINVAL | libc::E2BIG)
        ) {
            NO_OPENAT2.store(true, Ordering::Relaxed);
            return None;
        }
        return Some(Err(err));
    }
    let fd = i32::try_from(fd).ok()?;
    // SAFETY: `fd` was just returned by openat2 and is owned by nobody else.
    Some(Ok(unsafe { OwnedFd::from_raw_fd(fd) }))
}

/// The allocation unit that file contents are charged in: the file system's fragment size
/// when it is a plausible block size, else 4096. (NFS, hence EFS, reports its transfer size,
/// up to 1 MiB, which no small file really occupies.)
pub(super) fn block_size(root: &Path) -> u64 {
    match nix::sys::statvfs::statvfs(root) {
        Ok(st) => {
            let frsize: u64 = st.fragment_size();
            if (512..=65536).contains(&frsize) && frsize.is_power_of_two() {
                frsize
            } else {
                4096
            }
        }
        Err(_) => 4096,
    }
}

/// The bits the kernel takes from the mode of a file created under `root` (the umask), when
/// nothing else decides it: then a new file can be created with its final mode and needs no
/// `fchmod` (a system call per file less on the pull's critical path). `None` when that cannot
/// be known: no `/proc/self/status` to read it from (asking `umask(2)` changes it, for every
/// thread), or a default ACL on `root`, which new files follow instead of the umask.
pub(super) fn creation_mask(root: &Path) -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let mask = status
        .lines()
        .find_map(|line| line.strip_prefix("Umask:"))
        .and_then(|value| u32::from_str_radix(value.trim(), 8).ok())?;
    let cpath = cpath(root).ok()?;
    let name = c"system.posix_acl_default";
    // SAFETY: both strings are NUL-terminated and live across the call; a null buffer of size
    // 0 asks only for the value's length, so nothing is written.
    let rc = unsafe { libc::getxattr(cpath.as_ptr(), name.as_ptr(), std::ptr::null_mut(), 0) };
    let none = rc < 0
        && matches!(
            io::Error::last_os_error().raw_os_error(),
            Some(libc::ENODATA | libc::EOPNOTSUPP)
        );
    none.then_some(mask & 0o777)
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

/// `symlinkat(target, dir, name)`: a new symlink `name` in the open directory `dir`. A name
/// already taken is `AlreadyExists` (never replaced).
pub(super) fn symlink_at(target: &[u8], dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<()> {
    nix::unistd::symlinkat(OsStr::from_bytes(target), dir, name).map_err(io::Error::from)
}

/// The owner (when `owner`) and times of the symlink `name` in the open directory `dir`, the
/// link itself, not what it points to (`AT_SYMLINK_NOFOLLOW`); refusals are ignored, as by
/// [`lchown`] and [`set_times_nofollow`].
pub(super) fn symlink_meta_at(
    dir: BorrowedFd<'_>,
    name: &OsStr,
    owner: Option<(u32, u32)>,
    mtime: i64,
) {
    if let Some((uid, gid)) = owner {
        let chowned = nix::unistd::fchownat(
            dir,
            name,
            Some(nix::unistd::Uid::from_raw(uid)),
            Some(nix::unistd::Gid::from_raw(gid)),
            nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
        );
        if let Err(err) = chowned {
            tracing::trace!(name = %Path::new(name).display(), %err, "lchown refused");
        }
    }
    let ts = nix::sys::time::TimeSpec::new(mtime, 0);
    let _ = nix::sys::stat::utimensat(
        dir,
        name,
        &ts,
        &ts,
        nix::sys::stat::UtimensatFlags::NoFollowSymlink,
    );
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

/// Where extended attributes go: an open file, or a path whose last component is not followed.
pub(super) enum XattrTarget<'a> {
    /// An open file (`fsetxattr`).
    File(&'a File),
    /// A path (`lsetxattr`: a final symlink is not followed; its parents are real directories
    /// of the private root, resolved by [`super::path::Resolver`]).
    Path,
}

/// Set extended attributes (already filtered to `user.*`), skipping quietly the ones this user
/// may not set (`user.*` on symlinks, file systems without xattrs).
pub(super) fn set_xattrs(path: &Path, target: XattrTarget<'_>, xattrs: &[(Vec<u8>, Vec<u8>)]) {
    if xattrs.is_empty() {
        return;
    }
    let Ok(cpath) = cpath(path) else { return };
    for (name, value) in xattrs {
        let Ok(cname) = CString::new(name.as_slice()) else {
            continue;
        };
        let rc = match target {
            // SAFETY: the descriptor is open for the call; the name is NUL-terminated and value
            // points to value.len() readable bytes.
            XattrTarget::File(file) => unsafe {
                libc::fsetxattr(
                    file.as_raw_fd(),
                    cname.as_ptr(),
                    value.as_ptr().cast(),
                    value.len(),
                    0,
                )
            },
            // SAFETY: both strings are NUL-terminated and live across the call; value points
            // to value.len() readable bytes.
            XattrTarget::Path => unsafe {
                libc::lsetxattr(
                    cpath.as_ptr(),
                    cname.as_ptr(),
                    value.as_ptr().cast(),
                    value.len(),
                    0,
                )
            },
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
