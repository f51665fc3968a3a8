//! File hooks: the `open`, `stat` and `access` families, links, metadata, creation and removal.
//!
//! Variadic C signatures (`open(path, flags, ...)`) are declared with their optional argument as
//! a fixed one: on x86_64 and aarch64 Linux a variadic integer travels in the same register as a
//! fixed one, and it is only read when `O_CREAT`/`O_TMPFILE` says the caller passed it.

use core::ffi::{c_char, c_int, c_uint, c_void};

use crate::config;
use crate::path::{self, Located, PathBuf, cstr, locate, locate_abs};
use crate::sys::{self, AT_FDCWD, Errno};
use crate::{ret, set_errno};

/// Offset of `st_mode` in the kernel's `struct stat`.
#[cfg(target_arch = "x86_64")]
const ST_MODE: usize = 24;
#[cfg(target_arch = "aarch64")]
const ST_MODE: usize = 16;
/// Offset of `stx_mode` in `struct statx`.
const STX_MODE: usize = 28;

fn open_writes(flags: i32) -> bool {
    flags & sys::O_ACCMODE != sys::O_RDONLY
        || flags & (sys::O_CREAT | sys::O_TRUNC | sys::O_TMPFILE_BIT) != 0
}

fn single_component(p: &[u8]) -> bool {
    !p.contains(&b'/') && p != b".." && p != b"."
}

/// `openat` with the path mapped into the image.
pub fn open_at(dirfd: i32, path: *const u8, flags: i32, mode: u32) -> Result<i32, Errno> {
    if !config::active() || path.is_null() {
        return sys::openat(dirfd, path, flags, mode);
    }
    // SAFETY: a non-null path argument of open is a C string.
    let p = unsafe { cstr(path) };
    let write = open_writes(flags);
    let follow = flags & sys::O_NOFOLLOW == 0;
    let mut abs = PathBuf::new();
    if p.starts_with(b"/") {
        path::normalize(p, &mut abs)?;
    } else {
        if p.is_empty() {
            return sys::openat(dirfd, path, flags, mode);
        }
        if single_component(p) && !write {
            if !follow {
                return sys::openat(dirfd, path, flags, mode);
            }
            // The common case, a plain file in the current directory, costs one call; a
            // symlink (ELOOP) may point anywhere in the image and is resolved below.
            if flags & sys::O_PATH == 0 {
                match sys::openat(dirfd, path, flags | sys::O_NOFOLLOW, mode) {
                    Err(sys::ELOOP) => {}
                    r => return r,
                }
            }
        }
        if !path::absolute(dirfd, p, &mut abs)? {
            if write {
                path::check_write(dirfd, p, follow)?;
            }
            return sys::openat(dirfd, path, flags, mode);
        }
    }
    let abs = abs.as_bytes();
    if path::find_bind(abs).is_some() || write {
        let mut host = PathBuf::new();
        locate_abs(abs, follow, write, &mut host)?;
        return sys::openat(AT_FDCWD, host.as_ptr(), flags, mode);
    }
    match path::image_open(abs, flags, mode) {
        // No openat2 here, or flags it refuses: resolve first, then open the host path.
        Err(sys::ENOSYS) | Err(sys::EINVAL) => {
            let mut host = PathBuf::new();
            path::resolve_image(abs, follow, &mut host)?;
            sys::openat(AT_FDCWD, host.as_ptr(), flags, mode)
        }
        r => r,
    }
}

fn c_open(dirfd: i32, path: *const c_char, flags: c_int, mode: c_uint) -> c_int {
    let mode = if flags & (sys::O_CREAT | sys::O_TMPFILE_BIT) != 0 {
        mode
    } else {
        0
    };
    ret(open_at(dirfd, path.cast(), flags, mode).map(|fd| fd as usize))
}

#[unsafe(no_mangle)]
pub extern "C" fn open(path: *const c_char, flags: c_int, mode: c_uint) -> c_int {
    c_open(AT_FDCWD, path, flags, mode)
}
#[unsafe(no_mangle)]
pub extern "C" fn open64(path: *const c_char, flags: c_int, mode: c_uint) -> c_int {
    c_open(AT_FDCWD, path, flags, mode)
}
#[unsafe(no_mangle)]
pub extern "C" fn __open_2(path: *const c_char, flags: c_int) -> c_int {
    c_open(AT_FDCWD, path, flags, 0)
}
#[unsafe(no_mangle)]
pub extern "C" fn __open64_2(path: *const c_char, flags: c_int) -> c_int {
    c_open(AT_FDCWD, path, flags, 0)
}
#[unsafe(no_mangle)]
pub extern "C" fn openat(dirfd: c_int, path: *const c_char, flags: c_int, mode: c_uint) -> c_int {
    c_open(dirfd, path, flags, mode)
}
#[unsafe(no_mangle)]
pub extern "C" fn openat64(dirfd: c_int, path: *const c_char, flags: c_int, mode: c_uint) -> c_int {
    c_open(dirfd, path, flags, mode)
}
#[unsafe(no_mangle)]
pub extern "C" fn __openat_2(dirfd: c_int, path: *const c_char, flags: c_int) -> c_int {
    c_open(dirfd, path, flags, 0)
}
#[unsafe(no_mangle)]
pub extern "C" fn __openat64_2(dirfd: c_int, path: *const c_char, flags: c_int) -> c_int {
    c_open(dirfd, path, flags, 0)
}
#[unsafe(no_mangle)]
pub extern "C" fn creat(path: *const c_char, mode: c_uint) -> c_int {
    c_open(
        AT_FDCWD,
        path,
        sys::O_CREAT | sys::O_WRONLY | sys::O_TRUNC,
        mode,
    )
}
#[unsafe(no_mangle)]
pub extern "C" fn creat64(path: *const c_char, mode: c_uint) -> c_int {
    c_open(
        AT_FDCWD,
        path,
        sys::O_CREAT | sys::O_WRONLY | sys::O_TRUNC,
        mode,
    )
}

unsafe extern "C" {
    fn fdopen(fd: c_int, mode: *const c_char) -> *mut c_void;
}

/// `fopen` mode string → `open` flags, as glibc and musl read it.
fn fopen_flags(mode: &[u8]) -> Option<i32> {
    let mut flags = match mode.first()? {
        b'r' => sys::O_RDONLY,
        b'w' => sys::O_WRONLY | sys::O_CREAT | sys::O_TRUNC,
        b'a' => sys::O_WRONLY | sys::O_CREAT | sys::O_APPEND,
        _ => return None,
    };
    for &c in mode[1..].iter().take_while(|&&c| c != b',') {
        match c {
            b'+' => flags = (flags & !sys::O_ACCMODE) | sys::O_RDWR,
            b'e' => flags |= sys::O_CLOEXEC,
            b'x' => flags |= sys::O_EXCL,
            _ => {}
        }
    }
    Some(flags)
}

fn c_fopen(path: *const c_char, mode: *const c_char) -> *mut c_void {
    if path.is_null() || mode.is_null() {
        set_errno(sys::EFAULT);
        return core::ptr::null_mut();
    }
    // SAFETY: fopen's mode is a C string.
    let Some(flags) = fopen_flags(unsafe { cstr(mode.cast()) }) else {
        set_errno(sys::EINVAL);
        return core::ptr::null_mut();
    };
    match open_at(AT_FDCWD, path.cast(), flags, 0o666) {
        Ok(fd) => {
            // SAFETY: fd is ours and open; fdopen takes ownership on success.
            let f = unsafe { fdopen(fd, mode) };
            if f.is_null() {
                sys::close(fd);
            }
            f
        }
        Err(e) => {
            set_errno(e);
            core::ptr::null_mut()
        }
    }
}

#[unsafe(no_mangle)]
pub extern "C" fn fopen(path: *const c_char, mode: *const c_char) -> *mut c_void {
    c_fopen(path, mode)
}
#[unsafe(no_mangle)]
pub extern "C" fn fopen64(path: *const c_char, mode: *const c_char) -> *mut c_void {
    c_fopen(path, mode)
}

fn c_freopen(
    path: *const c_char,
    mode: *const c_char,
    f: *mut c_void,
    sixty_four: bool,
) -> *mut c_void {
    let real = if sixty_four {
        crate::real::freopen64()
    } else {
        crate::real::freopen()
    };
    let Some(real) = real else {
        set_errno(sys::ENOSYS);
        return core::ptr::null_mut();
    };
    let mut host = PathBuf::new();
    let mut p = path;
    if !path.is_null() && !mode.is_null() && config::active() {
        // SAFETY: both are C strings per freopen's contract.
        let write = fopen_flags(unsafe { cstr(mode.cast()) }).is_some_and(open_writes);
        // SAFETY: as above.
        let name = unsafe { cstr(path.cast()) };
        match locate(AT_FDCWD, name, true, write, &mut host) {
            Ok(Located::Pass) => {}
            Ok(Located::Host) => p = host.as_ptr().cast(),
            Err(e) => {
                set_errno(e);
                return core::ptr::null_mut();
            }
        }
    }
    // SAFETY: the real freopen with a valid path (ours or the caller's) and the caller's stream.
    unsafe { real(p, mode, f) }
}

#[unsafe(no_mangle)]
pub extern "C" fn freopen(path: *const c_char, mode: *const c_char, f: *mut c_void) -> *mut c_void {
    c_freopen(path, mode, f, false)
}
#[unsafe(no_mangle)]
pub extern "C" fn freopen64(
    path: *const c_char,
    mode: *const c_char,
    f: *mut c_void,
) -> *mut c_void {
    c_freopen(path, mode, f, true)
}

/// Run `op(dirfd, path)` on the mapped location: the caller's own, or `AT_FDCWD` and a host path.
pub fn at_path(
    dirfd: i32,
    path: *const u8,
    follow: bool,
    write: bool,
    op: impl FnOnce(i32, *const u8) -> Result<usize, Errno>,
) -> Result<usize, Errno> {
    if !config::active() || path.is_null() {
        return op(dirfd, path);
    }
    let mut host = PathBuf::new();
    // SAFETY: non-null path arguments are C strings.
    match locate(dirfd, unsafe { cstr(path) }, follow, write, &mut host)? {
        Located::Pass => op(dirfd, path),
        Located::Host => op(AT_FDCWD, host.as_ptr()),
    }
}

/// `fstatat`/`statx` core: `op(dirfd, path, flags)` on the object, through an `O_PATH`
/// descriptor when it lies in the image. `mode_at` reads the file type from the result.
fn stat_like(
    dirfd: i32,
    path: *const u8,
    flags: i32,
    op: &dyn Fn(i32, *const u8, i32) -> Result<usize, Errno>,
    mode_of: &dyn Fn() -> u32,
) -> Result<usize, Errno> {
    if !config::active() || path.is_null() {
        return op(dirfd, path, flags);
    }
    // SAFETY: a non-null path is a C string.
    let p = unsafe { cstr(path) };
    let follow = flags & sys::AT_SYMLINK_NOFOLLOW == 0;
    let mut abs = PathBuf::new();
    if p.starts_with(b"/") {
        path::normalize(p, &mut abs)?;
    } else {
        if p.is_empty() || (single_component(p) && !follow) {
            return op(dirfd, path, flags);
        }
        if single_component(p) {
            let r = op(dirfd, path, flags | sys::AT_SYMLINK_NOFOLLOW);
            if r.is_err() || mode_of() & sys::S_IFMT != sys::S_IFLNK {
                return r;
            }
        }
        if !path::absolute(dirfd, p, &mut abs)? {
            return op(dirfd, path, flags);
        }
    }
    let abs = abs.as_bytes();
    let mut host = PathBuf::new();
    if path::find_bind(abs).is_some() {
        locate_abs(abs, follow, false, &mut host)?;
        return op(AT_FDCWD, host.as_ptr(), flags);
    }
    let oflags = sys::O_PATH | sys::O_CLOEXEC | if follow { 0 } else { sys::O_NOFOLLOW };
    match path::image_open(abs, oflags, 0) {
        Ok(fd) => {
            let r = op(
                fd,
                c"".as_ptr().cast(),
                (flags & !sys::AT_SYMLINK_NOFOLLOW) | sys::AT_EMPTY_PATH,
            );
            sys::close(fd);
            r
        }
        Err(sys::ENOSYS) => {
            path::resolve_image(abs, follow, &mut host)?;
            op(AT_FDCWD, host.as_ptr(), flags)
        }
        Err(e) => Err(e),
    }
}

fn c_fstatat(dirfd: c_int, path: *const c_char, buf: *mut c_void, flags: c_int) -> c_int {
    let buf = buf.cast::<u8>();
    let op = |d: i32, p: *const u8, f: i32| sys::fstatat(d, p, buf, f);
    // SAFETY: after a successful fstatat the caller's buffer holds a struct stat.
    let mode = || unsafe { buf.add(ST_MODE).cast::<u32>().read_unaligned() };
    ret(stat_like(dirfd, path.cast(), flags, &op, &mode))
}

#[unsafe(no_mangle)]
pub extern "C" fn stat(path: *const c_char, buf: *mut c_void) -> c_int {
    c_fstatat(AT_FDCWD, path, buf, 0)
}
#[unsafe(no_mangle)]
pub extern "C" fn stat64(path: *const c_char, buf: *mut c_void) -> c_int {
    c_fstatat(AT_FDCWD, path, buf, 0)
}
#[unsafe(no_mangle)]
pub extern "C" fn lstat(path: *const c_char, buf: *mut c_void) -> c_int {
    c_fstatat(AT_FDCWD, path, buf, sys::AT_SYMLINK_NOFOLLOW)
}
#[unsafe(no_mangle)]
pub extern "C" fn lstat64(path: *const c_char, buf: *mut c_void) -> c_int {
    c_fstatat(AT_FDCWD, path, buf, sys::AT_SYMLINK_NOFOLLOW)
}
#[unsafe(no_mangle)]
pub extern "C" fn fstatat(
    dirfd: c_int,
    path: *const c_char,
    buf: *mut c_void,
    flags: c_int,
) -> c_int {
    c_fstatat(dirfd, path, buf, flags)
}
#[unsafe(no_mangle)]
pub extern "C" fn fstatat64(
    dirfd: c_int,
    path: *const c_char,
    buf: *mut c_void,
    flags: c_int,
) -> c_int {
    c_fstatat(dirfd, path, buf, flags)
}
// glibc before 2.33 compiled `stat()` into the program as a call to `__xstat(version, …)`; on
// x86_64 and aarch64 every version uses the kernel's struct stat layout.
#[unsafe(no_mangle)]
pub extern "C" fn __xstat(_ver: c_int, path: *const c_char, buf: *mut c_void) -> c_int {
    c_fstatat(AT_FDCWD, path, buf, 0)
}
#[unsafe(no_mangle)]
pub extern "C" fn __xstat64(_ver: c_int, path: *const c_char, buf: *mut c_void) -> c_int {
    c_fstatat(AT_FDCWD, path, buf, 0)
}
#[unsafe(no_mangle)]
pub extern "C" fn __lxstat(_ver: c_int, path: *const c_char, buf: *mut c_void) -> c_int {
    c_fstatat(AT_FDCWD, path, buf, sys::AT_SYMLINK_NOFOLLOW)
}
#[unsafe(no_mangle)]
pub extern "C" fn __lxstat64(_ver: c_int, path: *const c_char, buf: *mut c_void) -> c_int {
    c_fstatat(AT_FDCWD, path, buf, sys::AT_SYMLINK_NOFOLLOW)
}
#[unsafe(no_mangle)]
pub extern "C" fn __fxstatat(
    _ver: c_int,
    dirfd: c_int,
    path: *const c_char,
    buf: *mut c_void,
    flags: c_int,
) -> c_int {
    c_fstatat(dirfd, path, buf, flags)
}
#[unsafe(no_mangle)]
pub extern "C" fn __fxstatat64(
    _ver: c_int,
    dirfd: c_int,
    path: *const c_char,
    buf: *mut c_void,
    flags: c_int,
) -> c_int {
    c_fstatat(dirfd, path, buf, flags)
}

#[unsafe(no_mangle)]
pub extern "C" fn statx(
    dirfd: c_int,
    path: *const c_char,
    flags: c_int,
    mask: c_uint,
    buf: *mut c_void,
) -> c_int {
    let buf = buf.cast::<u8>();
    let op = |d: i32, p: *const u8, f: i32| sys::statx(d, p, f, mask, buf);
    // SAFETY: after a successful statx the caller's buffer holds a struct statx.
    let mode = || unsafe { buf.add(STX_MODE).cast::<u16>().read_unaligned() as u32 };
    ret(stat_like(dirfd, path.cast(), flags, &op, &mode))
}

fn c_access(dirfd: c_int, path: *const c_char, mode: c_int, flags: c_int) -> c_int {
    let follow = flags & sys::AT_SYMLINK_NOFOLLOW == 0;
    // Asking for write access to the image answers EROFS, as a read-only mount would.
    let write = mode & sys::W_OK != 0;
    ret(at_path(dirfd, path.cast(), follow, write, |d, p| {
        if flags == 0 {
            return sys::faccessat(d, p, mode);
        }
        match sys::faccessat2(d, p, mode, flags) {
            Err(sys::ENOSYS) => sys::faccessat(d, p, mode),
            r => r,
        }
    }))
}

#[unsafe(no_mangle)]
pub extern "C" fn access(path: *const c_char, mode: c_int) -> c_int {
    c_access(AT_FDCWD, path, mode, 0)
}
#[unsafe(no_mangle)]
pub extern "C" fn faccessat(dirfd: c_int, path: *const c_char, mode: c_int, flags: c_int) -> c_int {
    c_access(dirfd, path, mode, flags)
}
/// `AT_EACCESS`: check with the effective ids (what `test -x` uses).
const AT_EACCESS: c_int = 0x200;
#[unsafe(no_mangle)]
pub extern "C" fn euidaccess(path: *const c_char, mode: c_int) -> c_int {
    c_access(AT_FDCWD, path, mode, AT_EACCESS)
}
#[unsafe(no_mangle)]
pub extern "C" fn eaccess(path: *const c_char, mode: c_int) -> c_int {
    c_access(AT_FDCWD, path, mode, AT_EACCESS)
}

/// `readlink` of `/proc/self/exe` answers the program's path in the image; other `/proc` links
/// that point into the image (`cwd`, `fd/N`) answer container paths.
fn c_readlinkat(dirfd: c_int, path: *const c_char, buf: *mut c_char, size: usize) -> isize {
    if buf.is_null() || size == 0 {
        set_errno(sys::EINVAL);
        return -1;
    }
    // SAFETY: the caller provides `size` writable bytes.
    let out = unsafe { core::slice::from_raw_parts_mut(buf.cast::<u8>(), size) };
    if config::active() && !path.is_null() {
        // SAFETY: a C string.
        let p = unsafe { cstr(path.cast()) };
        let exe = config::get().exe;
        if !exe.is_empty() && is_own_exe(p) {
            let n = exe.len().min(size);
            out[..n].copy_from_slice(&exe[..n]);
            return n as isize;
        }
        if p.starts_with(b"/proc/") {
            let mut tmp = [0u8; path::PATH_MAX];
            let n = match sys::readlinkat(dirfd, path.cast(), &mut tmp) {
                Ok(n) => n,
                Err(e) => {
                    set_errno(e);
                    return -1;
                }
            };
            let mut c = PathBuf::new();
            let shown = match path::to_container(&tmp[..n], &mut c) {
                Ok(true) if tmp.starts_with(b"/") => c.as_bytes(),
                _ => &tmp[..n],
            };
            let n = shown.len().min(size);
            out[..n].copy_from_slice(&shown[..n]);
            return n as isize;
        }
    }
    match at_path(dirfd, path.cast(), false, false, |d, p| {
        sys::readlinkat(d, p, out)
    }) {
        Ok(n) => n as isize,
        Err(e) => {
            set_errno(e);
            -1
        }
    }
}

fn is_own_exe(p: &[u8]) -> bool {
    if p == b"/proc/self/exe" || p == b"/proc/thread-self/exe" {
        return true;
    }
    let Some(rest) = p.strip_prefix(b"/proc/") else {
        return false;
    };
    let Some(pid) = rest.strip_suffix(b"/exe") else {
        return false;
    };
    let mut digits = [0u8; 12];
    pid == path::fmt_int(sys::getpid() as i64, &mut digits)
}

#[unsafe(no_mangle)]
pub extern "C" fn readlink(path: *const c_char, buf: *mut c_char, size: usize) -> isize {
    c_readlinkat(AT_FDCWD, path, buf, size)
}
#[unsafe(no_mangle)]
pub extern "C" fn readlinkat(
    dirfd: c_int,
    path: *const c_char,
    buf: *mut c_char,
    size: usize,
) -> isize {
    c_readlinkat(dirfd, path, buf, size)
}

// Creation, removal, renaming, metadata: all writes. In the image they fail with EROFS; in a
// bind they go to the host path.

#[unsafe(no_mangle)]
pub extern "C" fn mkdir(path: *const c_char, mode: c_uint) -> c_int {
    ret(at_path(AT_FDCWD, path.cast(), false, true, |d, p| {
        sys::mkdirat(d, p, mode)
    }))
}
#[unsafe(no_mangle)]
pub extern "C" fn mkdirat(dirfd: c_int, path: *const c_char, mode: c_uint) -> c_int {
    ret(at_path(dirfd, path.cast(), false, true, |d, p| {
        sys::mkdirat(d, p, mode)
    }))
}
#[unsafe(no_mangle)]
pub extern "C" fn mkfifo(path: *const c_char, mode: c_uint) -> c_int {
    ret(at_path(AT_FDCWD, path.cast(), false, true, |d, p| {
        sys::mknodat(d, p, 0o010000 | (mode & 0o7777), 0)
    }))
}
#[unsafe(no_mangle)]
pub extern "C" fn rmdir(path: *const c_char) -> c_int {
    ret(at_path(AT_FDCWD, path.cast(), false, true, |d, p| {
        sys::unlinkat(d, p, sys::AT_REMOVEDIR)
    }))
}
#[unsafe(no_mangle)]
pub extern "C" fn unlink(path: *const c_char) -> c_int {
    ret(at_path(AT_FDCWD, path.cast(), false, true, |d, p| {
        sys::unlinkat(d, p, 0)
    }))
}
#[unsafe(no_mangle)]
pub extern "C" fn unlinkat(dirfd: c_int, path: *const c_char, flags: c_int) -> c_int {
    ret(at_path(dirfd, path.cast(), false, true, |d, p| {
        sys::unlinkat(d, p, flags)
    }))
}

/// Two-path calls (`rename`, `link`): the new name is mapped as a write; the old one as a write
/// (`rename`) or as a link source (`link`: refused with `EXDEV` when it is a file of the
/// protected tree, which the new name would let anyone write).
fn two_paths(
    ofd: i32,
    old: *const c_char,
    nfd: i32,
    new: *const c_char,
    old_write: bool,
    follow_old: bool,
    op: impl FnOnce(i32, *const u8, i32, *const u8) -> Result<usize, Errno>,
) -> c_int {
    ret(at_path(
        ofd,
        old.cast(),
        follow_old,
        old_write,
        |od, op_| {
            if !old_write && config::active() && !op_.is_null() {
                // SAFETY: a non-null path argument is a C string (ours or the caller's).
                path::check_link_source(od, unsafe { cstr(op_) }, follow_old)?;
            }
            at_path(nfd, new.cast(), false, true, |nd, np| op(od, op_, nd, np))
        },
    ))
}

#[unsafe(no_mangle)]
pub extern "C" fn rename(old: *const c_char, new: *const c_char) -> c_int {
    two_paths(AT_FDCWD, old, AT_FDCWD, new, true, false, |a, b, c, d| {
        sys::renameat2(a, b, c, d, 0)
    })
}
#[unsafe(no_mangle)]
pub extern "C" fn renameat(
    ofd: c_int,
    old: *const c_char,
    nfd: c_int,
    new: *const c_char,
) -> c_int {
    two_paths(ofd, old, nfd, new, true, false, |a, b, c, d| {
        sys::renameat2(a, b, c, d, 0)
    })
}
#[unsafe(no_mangle)]
pub extern "C" fn renameat2(
    ofd: c_int,
    old: *const c_char,
    nfd: c_int,
    new: *const c_char,
    flags: c_uint,
) -> c_int {
    two_paths(ofd, old, nfd, new, true, false, |a, b, c, d| {
        sys::renameat2(a, b, c, d, flags)
    })
}
// A hard link only reads its source, but one from the image would make an image file writable
// under the new name: refused with EXDEV (see `two_paths`).
#[unsafe(no_mangle)]
pub extern "C" fn link(old: *const c_char, new: *const c_char) -> c_int {
    two_paths(AT_FDCWD, old, AT_FDCWD, new, false, false, |a, b, c, d| {
        sys::linkat(a, b, c, d, 0)
    })
}
#[unsafe(no_mangle)]
pub extern "C" fn linkat(
    ofd: c_int,
    old: *const c_char,
    nfd: c_int,
    new: *const c_char,
    flags: c_int,
) -> c_int {
    let follow = flags & sys::AT_SYMLINK_FOLLOW != 0;
    two_paths(ofd, old, nfd, new, false, follow, |a, b, c, d| {
        sys::linkat(a, b, c, d, flags)
    })
}
// The target of a symlink is stored as written: it names a container path.
#[unsafe(no_mangle)]
pub extern "C" fn symlink(target: *const c_char, path: *const c_char) -> c_int {
    ret(at_path(AT_FDCWD, path.cast(), false, true, |d, p| {
        sys::symlinkat(target.cast(), d, p)
    }))
}
#[unsafe(no_mangle)]
pub extern "C" fn symlinkat(target: *const c_char, dirfd: c_int, path: *const c_char) -> c_int {
    ret(at_path(dirfd, path.cast(), false, true, |d, p| {
        sys::symlinkat(target.cast(), d, p)
    }))
}
#[unsafe(no_mangle)]
pub extern "C" fn chmod(path: *const c_char, mode: c_uint) -> c_int {
    ret(at_path(AT_FDCWD, path.cast(), true, true, |d, p| {
        sys::fchmodat(d, p, mode)
    }))
}
#[unsafe(no_mangle)]
pub extern "C" fn fchmodat(dirfd: c_int, path: *const c_char, mode: c_uint, flags: c_int) -> c_int {
    let follow = flags & sys::AT_SYMLINK_NOFOLLOW == 0;
    ret(at_path(dirfd, path.cast(), follow, true, |d, p| {
        sys::fchmodat(d, p, mode)
    }))
}
#[unsafe(no_mangle)]
pub extern "C" fn chown(path: *const c_char, uid: c_uint, gid: c_uint) -> c_int {
    ret(at_path(AT_FDCWD, path.cast(), true, true, |d, p| {
        sys::fchownat(d, p, uid, gid, 0)
    }))
}
#[unsafe(no_mangle)]
pub extern "C" fn lchown(path: *const c_char, uid: c_uint, gid: c_uint) -> c_int {
    ret(at_path(AT_FDCWD, path.cast(), false, true, |d, p| {
        sys::fchownat(d, p, uid, gid, sys::AT_SYMLINK_NOFOLLOW)
    }))
}
#[unsafe(no_mangle)]
pub extern "C" fn fchownat(
    dirfd: c_int,
    path: *const c_char,
    uid: c_uint,
    gid: c_uint,
    flags: c_int,
) -> c_int {
    let follow = flags & sys::AT_SYMLINK_NOFOLLOW == 0;
    ret(at_path(dirfd, path.cast(), follow, true, |d, p| {
        sys::fchownat(d, p, uid, gid, flags)
    }))
}
#[unsafe(no_mangle)]
pub extern "C" fn utimensat(
    dirfd: c_int,
    path: *const c_char,
    times: *const c_void,
    flags: c_int,
) -> c_int {
    let follow = flags & sys::AT_SYMLINK_NOFOLLOW == 0;
    ret(at_path(dirfd, path.cast(), follow, true, |d, p| {
        sys::utimensat(d, p, times.cast(), flags)
    }))
}
/// `utimes`/`utime`/`lutimes`: converted to `utimensat` (timeval → timespec).
fn c_utimes(path: *const c_char, tv: *const [i64; 4], flags: i32) -> c_int {
    let ts: [i64; 4];
    let times = if tv.is_null() {
        core::ptr::null()
    } else {
        // SAFETY: two struct timeval {sec, usec} per the utimes contract.
        let t = unsafe { *tv };
        ts = [t[0], t[1] * 1000, t[2], t[3] * 1000];
        ts.as_ptr().cast::<u8>()
    };
    ret(at_path(AT_FDCWD, path.cast(), flags == 0, true, |d, p| {
        sys::utimensat(d, p, times, flags)
    }))
}
#[unsafe(no_mangle)]
pub extern "C" fn utimes(path: *const c_char, tv: *const [i64; 4]) -> c_int {
    c_utimes(path, tv, 0)
}
#[unsafe(no_mangle)]
pub extern "C" fn lutimes(path: *const c_char, tv: *const [i64; 4]) -> c_int {
    c_utimes(path, tv, sys::AT_SYMLINK_NOFOLLOW)
}
#[unsafe(no_mangle)]
pub extern "C" fn utime(path: *const c_char, times: *const [i64; 2]) -> c_int {
    let ts: [i64; 4];
    let t = if times.is_null() {
        core::ptr::null()
    } else {
        // SAFETY: struct utimbuf {actime, modtime}.
        let u = unsafe { *times };
        ts = [u[0], 0, u[1], 0];
        ts.as_ptr().cast::<u8>()
    };
    ret(at_path(AT_FDCWD, path.cast(), true, true, |d, p| {
        sys::utimensat(d, p, t, 0)
    }))
}
#[unsafe(no_mangle)]
pub extern "C" fn truncate(path: *const c_char, len: i64) -> c_int {
    ret(at_path(AT_FDCWD, path.cast(), true, true, |d, p| {
        let _ = d; // truncate has no *at form; `p` is absolute or relative to the cwd
        sys::truncate(p, len)
    }))
}
#[unsafe(no_mangle)]
pub extern "C" fn truncate64(path: *const c_char, len: i64) -> c_int {
    truncate(path, len)
}
