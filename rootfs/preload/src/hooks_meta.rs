//! Metadata setters the other hook files leave out: extended attributes (by path and by
//! descriptor) and `fchmod`/`fchown`/`futimens`, which work on a descriptor opened for reading
//! only. A change that lands in the protected tree (the image and its cache) fails with `EROFS`,
//! as on a read-only mount.

use core::ffi::{c_char, c_int, c_uint, c_void};

use crate::hooks_fs::at_path;
use crate::path::check_fd_write;
use crate::sys::{self, AT_FDCWD, Errno};
use crate::{config, ret};

#[cfg(target_arch = "x86_64")]
mod nr {
    pub const SETXATTR: usize = 188;
    pub const LSETXATTR: usize = 189;
    pub const FSETXATTR: usize = 190;
    pub const REMOVEXATTR: usize = 197;
    pub const LREMOVEXATTR: usize = 198;
    pub const FREMOVEXATTR: usize = 199;
    pub const FCHMOD: usize = 91;
    pub const FCHOWN: usize = 93;
}
#[cfg(target_arch = "aarch64")]
mod nr {
    pub const SETXATTR: usize = 5;
    pub const LSETXATTR: usize = 6;
    pub const FSETXATTR: usize = 7;
    pub const REMOVEXATTR: usize = 14;
    pub const LREMOVEXATTR: usize = 15;
    pub const FREMOVEXATTR: usize = 16;
    pub const FCHMOD: usize = 52;
    pub const FCHOWN: usize = 55;
}

fn call(n: usize, a: [usize; 6]) -> Result<usize, Errno> {
    // SAFETY: every caller passes the C caller's own pointers (or our NUL-terminated host path)
    // in the order the kernel expects for `n`.
    sys::check(unsafe { sys::syscall6(n, a) })
}

/// Refuse a descriptor-based change to a file of the protected tree.
fn fd_guard(fd: c_int) -> Result<(), Errno> {
    if config::active() {
        check_fd_write(fd)?;
    }
    Ok(())
}

fn set_at(n: usize, path: *const c_char, follow: bool, rest: [usize; 4]) -> c_int {
    ret(at_path(AT_FDCWD, path.cast(), follow, true, |_, p| {
        call(n, [p as usize, rest[0], rest[1], rest[2], rest[3], 0])
    }))
}

#[unsafe(no_mangle)]
pub extern "C" fn setxattr(
    path: *const c_char,
    name: *const c_char,
    value: *const c_void,
    size: usize,
    flags: c_int,
) -> c_int {
    let rest = [name as usize, value as usize, size, flags as usize];
    set_at(nr::SETXATTR, path, true, rest)
}
#[unsafe(no_mangle)]
pub extern "C" fn lsetxattr(
    path: *const c_char,
    name: *const c_char,
    value: *const c_void,
    size: usize,
    flags: c_int,
) -> c_int {
    let rest = [name as usize, value as usize, size, flags as usize];
    set_at(nr::LSETXATTR, path, false, rest)
}
#[unsafe(no_mangle)]
pub extern "C" fn removexattr(path: *const c_char, name: *const c_char) -> c_int {
    set_at(nr::REMOVEXATTR, path, true, [name as usize, 0, 0, 0])
}
#[unsafe(no_mangle)]
pub extern "C" fn lremovexattr(path: *const c_char, name: *const c_char) -> c_int {
    set_at(nr::LREMOVEXATTR, path, false, [name as usize, 0, 0, 0])
}
#[unsafe(no_mangle)]
pub extern "C" fn fsetxattr(
    fd: c_int,
    name: *const c_char,
    value: *const c_void,
    size: usize,
    flags: c_int,
) -> c_int {
    ret(fd_guard(fd).and_then(|()| {
        call(
            nr::FSETXATTR,
            [
                fd as usize,
                name as usize,
                value as usize,
                size,
                flags as usize,
                0,
            ],
        )
    }))
}
#[unsafe(no_mangle)]
pub extern "C" fn fremovexattr(fd: c_int, name: *const c_char) -> c_int {
    ret(fd_guard(fd)
        .and_then(|()| call(nr::FREMOVEXATTR, [fd as usize, name as usize, 0, 0, 0, 0])))
}
#[unsafe(no_mangle)]
pub extern "C" fn fchmod(fd: c_int, mode: c_uint) -> c_int {
    ret(fd_guard(fd).and_then(|()| call(nr::FCHMOD, [fd as usize, mode as usize, 0, 0, 0, 0])))
}
#[unsafe(no_mangle)]
pub extern "C" fn fchown(fd: c_int, uid: c_uint, gid: c_uint) -> c_int {
    ret(fd_guard(fd).and_then(|()| {
        call(
            nr::FCHOWN,
            [fd as usize, uid as usize, gid as usize, 0, 0, 0],
        )
    }))
}
/// `futimens(fd, times)` is `utimensat(fd, NULL, times, 0)`.
#[unsafe(no_mangle)]
pub extern "C" fn futimens(fd: c_int, times: *const c_void) -> c_int {
    ret(fd_guard(fd).and_then(|()| sys::utimensat(fd, core::ptr::null(), times.cast(), 0)))
}
