//! Raw Linux system calls.
//!
//! The library does its work with the kernel directly rather than through libc: the same binary
//! must load into images whose glibc is anything from 2.17 to the newest (and into musl images),
//! and calling libc's own `open` from inside our `open` would recurse into ourselves.

use core::arch::asm;

/// A negative errno in the kernel's convention, turned positive.
pub type Errno = i32;

pub const ENOENT: Errno = 2;
pub const EBADF: Errno = 9;
pub const ENOMEM: Errno = 12;
pub const EACCES: Errno = 13;
pub const EFAULT: Errno = 14;
pub const ENOTDIR: Errno = 20;
pub const EINVAL: Errno = 22;
pub const ENOEXEC: Errno = 8;
pub const E2BIG: Errno = 7;
pub const EROFS: Errno = 30;
pub const ERANGE: Errno = 34;
pub const ENAMETOOLONG: Errno = 36;
pub const ENOSYS: Errno = 38;
pub const ELOOP: Errno = 40;
pub const EAGAIN: Errno = 11;
pub const EPERM: Errno = 1;

pub const AT_FDCWD: i32 = -100;
pub const AT_SYMLINK_NOFOLLOW: i32 = 0x100;
pub const AT_REMOVEDIR: i32 = 0x200;
pub const AT_SYMLINK_FOLLOW: i32 = 0x400;
pub const AT_EMPTY_PATH: i32 = 0x1000;

pub const O_ACCMODE: i32 = 3;
pub const O_RDONLY: i32 = 0;
pub const O_WRONLY: i32 = 1;
pub const O_RDWR: i32 = 2;
pub const O_CREAT: i32 = 0o100;
pub const O_EXCL: i32 = 0o200;
pub const O_TRUNC: i32 = 0o1000;
pub const O_APPEND: i32 = 0o2000;
#[cfg(target_arch = "x86_64")]
pub const O_DIRECTORY: i32 = 0o200000;
#[cfg(target_arch = "x86_64")]
pub const O_NOFOLLOW: i32 = 0o400000;
#[cfg(target_arch = "aarch64")]
pub const O_DIRECTORY: i32 = 0o40000;
#[cfg(target_arch = "aarch64")]
pub const O_NOFOLLOW: i32 = 0o100000;
pub const O_CLOEXEC: i32 = 0o2000000;
pub const O_PATH: i32 = 0o10000000;
/// `O_TMPFILE` includes `O_DIRECTORY`; only the distinguishing bit is tested.
pub const O_TMPFILE_BIT: i32 = 0o20000000;

pub const RESOLVE_IN_ROOT: u64 = 0x10;

pub const S_IFMT: u32 = 0o170000;
pub const S_IFLNK: u32 = 0o120000;
pub const W_OK: i32 = 2;

pub const F_DUPFD_CLOEXEC: i32 = 1030;
pub const PROT_READ: usize = 1;
pub const PROT_WRITE: usize = 2;
pub const MAP_PRIVATE: usize = 2;
pub const MAP_ANONYMOUS: usize = 0x20;

#[cfg(target_arch = "x86_64")]
mod nr {
    pub const READ: usize = 0;
    pub const WRITE: usize = 1;
    pub const CLOSE: usize = 3;
    pub const MMAP: usize = 9;
    pub const MUNMAP: usize = 11;
    pub const PREAD64: usize = 17;
    pub const GETPID: usize = 39;
    pub const EXECVE: usize = 59;
    pub const FCNTL: usize = 72;
    pub const TRUNCATE: usize = 76;
    pub const GETCWD: usize = 79;
    pub const CHDIR: usize = 80;
    pub const OPENAT: usize = 257;
    pub const MKDIRAT: usize = 258;
    pub const MKNODAT: usize = 259;
    pub const FCHOWNAT: usize = 260;
    pub const NEWFSTATAT: usize = 262;
    pub const UNLINKAT: usize = 263;
    pub const LINKAT: usize = 265;
    pub const SYMLINKAT: usize = 266;
    pub const READLINKAT: usize = 267;
    pub const FCHMODAT: usize = 268;
    pub const FACCESSAT: usize = 269;
    pub const UTIMENSAT: usize = 280;
    pub const RENAMEAT2: usize = 316;
    pub const STATX: usize = 332;
    pub const OPENAT2: usize = 437;
    pub const FACCESSAT2: usize = 439;
    pub const CONNECT: usize = 42;
    pub const BIND: usize = 49;
}

#[cfg(target_arch = "aarch64")]
mod nr {
    pub const GETCWD: usize = 17;
    pub const FCNTL: usize = 25;
    pub const MKNODAT: usize = 33;
    pub const MKDIRAT: usize = 34;
    pub const UNLINKAT: usize = 35;
    pub const SYMLINKAT: usize = 36;
    pub const LINKAT: usize = 37;
    pub const TRUNCATE: usize = 45;
    pub const FACCESSAT: usize = 48;
    pub const CHDIR: usize = 49;
    pub const FCHMODAT: usize = 53;
    pub const FCHOWNAT: usize = 54;
    pub const OPENAT: usize = 56;
    pub const CLOSE: usize = 57;
    pub const READ: usize = 63;
    pub const WRITE: usize = 64;
    pub const PREAD64: usize = 67;
    pub const READLINKAT: usize = 78;
    pub const NEWFSTATAT: usize = 79;
    pub const UTIMENSAT: usize = 88;
    pub const GETPID: usize = 172;
    pub const MUNMAP: usize = 215;
    pub const EXECVE: usize = 221;
    pub const MMAP: usize = 222;
    pub const RENAMEAT2: usize = 276;
    pub const STATX: usize = 291;
    pub const OPENAT2: usize = 437;
    pub const FACCESSAT2: usize = 439;
    pub const BIND: usize = 200;
    pub const CONNECT: usize = 203;
}

pub use nr::*;

/// Issue system call `n` with up to six arguments; returns the raw result (−errno on failure).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub unsafe fn syscall6(n: usize, a: [usize; 6]) -> isize {
    let ret: isize;
    // SAFETY: the x86_64 Linux syscall ABI: number in rax, arguments in rdi, rsi, rdx, r10, r8,
    // r9; the kernel clobbers rcx and r11. The caller guarantees the arguments are valid for `n`.
    unsafe {
        asm!("syscall", inlateout("rax") n as isize => ret, in("rdi") a[0], in("rsi") a[1],
             in("rdx") a[2], in("r10") a[3], in("r8") a[4], in("r9") a[5],
             lateout("rcx") _, lateout("r11") _, options(nostack));
    }
    ret
}

/// Issue system call `n` with up to six arguments; returns the raw result (−errno on failure).
#[cfg(target_arch = "aarch64")]
#[inline(always)]
pub unsafe fn syscall6(n: usize, a: [usize; 6]) -> isize {
    let ret: isize;
    // SAFETY: the aarch64 Linux syscall ABI: number in x8, arguments in x0..x5, result in x0.
    // The caller guarantees the arguments are valid for `n`.
    unsafe {
        asm!("svc 0", in("x8") n, inlateout("x0") a[0] as isize => ret, in("x1") a[1],
             in("x2") a[2], in("x3") a[3], in("x4") a[4], in("x5") a[5], options(nostack));
    }
    ret
}

/// A system call result as `Result`.
#[inline(always)]
pub fn check(ret: isize) -> Result<usize, Errno> {
    if (-4095..0).contains(&ret) {
        Err(-ret as Errno)
    } else {
        Ok(ret as usize)
    }
}

macro_rules! sys {
    ($n:expr $(, $a:expr)*) => {{
        let mut args = [0usize; 6];
        let vals: &[usize] = &[$($a as usize),*];
        args[..vals.len()].copy_from_slice(vals);
        // SAFETY: every wrapper below passes pointers that are valid, NUL-terminated or sized
        // as the kernel expects for that call; the pointers come from the caller's arguments
        // or from our own buffers that outlive the call.
        check(unsafe { syscall6($n, args) })
    }};
}

/// `openat(2)`.
pub fn openat(dirfd: i32, path: *const u8, flags: i32, mode: u32) -> Result<i32, Errno> {
    sys!(OPENAT, dirfd as isize, path, flags as isize, mode).map(|fd| fd as i32)
}

/// Argument block of `openat2(2)`.
#[repr(C)]
pub struct OpenHow {
    pub flags: u64,
    pub mode: u64,
    pub resolve: u64,
}

/// `openat2(2)` (Linux 5.6+).
pub fn openat2(dirfd: i32, path: *const u8, how: &OpenHow) -> Result<i32, Errno> {
    sys!(
        OPENAT2,
        dirfd as isize,
        path,
        how as *const OpenHow,
        core::mem::size_of::<OpenHow>()
    )
    .map(|fd| fd as i32)
}

/// `close(2)`; errors are irrelevant to our callers.
pub fn close(fd: i32) {
    let _ = sys!(CLOSE, fd as isize);
}

/// `read(2)`.
pub fn read(fd: i32, buf: &mut [u8]) -> Result<usize, Errno> {
    sys!(READ, fd as isize, buf.as_mut_ptr(), buf.len())
}

/// `pread64(2)`.
pub fn pread(fd: i32, buf: &mut [u8], off: u64) -> Result<usize, Errno> {
    sys!(PREAD64, fd as isize, buf.as_mut_ptr(), buf.len(), off)
}

/// `write(2)`.
pub fn write(fd: i32, buf: &[u8]) -> Result<usize, Errno> {
    sys!(WRITE, fd as isize, buf.as_ptr(), buf.len())
}

/// `newfstatat(2)` into a caller-provided kernel `struct stat` (the same layout as glibc's and
/// musl's on x86_64 and aarch64).
pub fn fstatat(dirfd: i32, path: *const u8, st: *mut u8, flags: i32) -> Result<usize, Errno> {
    sys!(NEWFSTATAT, dirfd as isize, path, st, flags as isize)
}

/// `statx(2)`.
pub fn statx(
    dirfd: i32,
    path: *const u8,
    flags: i32,
    mask: u32,
    buf: *mut u8,
) -> Result<usize, Errno> {
    sys!(STATX, dirfd as isize, path, flags as isize, mask, buf)
}

/// `readlinkat(2)`.
pub fn readlinkat(dirfd: i32, path: *const u8, buf: &mut [u8]) -> Result<usize, Errno> {
    sys!(
        READLINKAT,
        dirfd as isize,
        path,
        buf.as_mut_ptr(),
        buf.len()
    )
}

/// `faccessat(2)` (flags are not passed: the old syscall has none; callers emulate them).
pub fn faccessat(dirfd: i32, path: *const u8, mode: i32) -> Result<usize, Errno> {
    sys!(FACCESSAT, dirfd as isize, path, mode as isize)
}

/// `faccessat2(2)` (Linux 5.8+), which honours `flags`.
pub fn faccessat2(dirfd: i32, path: *const u8, mode: i32, flags: i32) -> Result<usize, Errno> {
    sys!(
        FACCESSAT2,
        dirfd as isize,
        path,
        mode as isize,
        flags as isize
    )
}

/// `bind(2)`.
pub fn bind(fd: i32, addr: *const u8, len: u32) -> Result<usize, Errno> {
    sys!(BIND, fd as isize, addr, len)
}

/// `connect(2)`.
pub fn connect(fd: i32, addr: *const u8, len: u32) -> Result<usize, Errno> {
    sys!(CONNECT, fd as isize, addr, len)
}

/// `mkdirat(2)`.
pub fn mkdirat(dirfd: i32, path: *const u8, mode: u32) -> Result<usize, Errno> {
    sys!(MKDIRAT, dirfd as isize, path, mode)
}

/// `mknodat(2)`.
pub fn mknodat(dirfd: i32, path: *const u8, mode: u32, dev: u64) -> Result<usize, Errno> {
    sys!(MKNODAT, dirfd as isize, path, mode, dev)
}

/// `unlinkat(2)`.
pub fn unlinkat(dirfd: i32, path: *const u8, flags: i32) -> Result<usize, Errno> {
    sys!(UNLINKAT, dirfd as isize, path, flags as isize)
}

/// `renameat2(2)`.
pub fn renameat2(
    ofd: i32,
    old: *const u8,
    nfd: i32,
    new: *const u8,
    flags: u32,
) -> Result<usize, Errno> {
    sys!(RENAMEAT2, ofd as isize, old, nfd as isize, new, flags)
}

/// `linkat(2)`.
pub fn linkat(
    ofd: i32,
    old: *const u8,
    nfd: i32,
    new: *const u8,
    flags: i32,
) -> Result<usize, Errno> {
    sys!(LINKAT, ofd as isize, old, nfd as isize, new, flags as isize)
}

/// `symlinkat(2)`.
pub fn symlinkat(target: *const u8, dirfd: i32, path: *const u8) -> Result<usize, Errno> {
    sys!(SYMLINKAT, target, dirfd as isize, path)
}

/// `fchmodat(2)`.
pub fn fchmodat(dirfd: i32, path: *const u8, mode: u32) -> Result<usize, Errno> {
    sys!(FCHMODAT, dirfd as isize, path, mode)
}

/// `fchownat(2)`.
pub fn fchownat(
    dirfd: i32,
    path: *const u8,
    uid: u32,
    gid: u32,
    flags: i32,
) -> Result<usize, Errno> {
    sys!(FCHOWNAT, dirfd as isize, path, uid, gid, flags as isize)
}

/// `utimensat(2)`.
pub fn utimensat(
    dirfd: i32,
    path: *const u8,
    times: *const u8,
    flags: i32,
) -> Result<usize, Errno> {
    sys!(UTIMENSAT, dirfd as isize, path, times, flags as isize)
}

/// `truncate(2)`.
pub fn truncate(path: *const u8, len: i64) -> Result<usize, Errno> {
    sys!(TRUNCATE, path, len)
}

/// `chdir(2)`.
pub fn chdir(path: *const u8) -> Result<usize, Errno> {
    sys!(CHDIR, path)
}

/// `getcwd(2)`: the length including the NUL.
pub fn getcwd(buf: &mut [u8]) -> Result<usize, Errno> {
    sys!(GETCWD, buf.as_mut_ptr(), buf.len())
}

/// `execve(2)`; returns only on failure.
pub fn execve(path: *const u8, argv: *const *const u8, envp: *const *const u8) -> Errno {
    match sys!(EXECVE, path, argv, envp) {
        Err(e) => e,
        Ok(_) => EINVAL,
    }
}

/// `fcntl(2)` with an integer argument.
pub fn fcntl(fd: i32, cmd: i32, arg: usize) -> Result<usize, Errno> {
    sys!(FCNTL, fd as isize, cmd as isize, arg)
}

/// `getpid(2)`.
pub fn getpid() -> i32 {
    sys!(GETPID).unwrap_or(0) as i32
}

/// Anonymous private memory: our allocator for exec argument vectors (safe after `vfork`,
/// where `malloc` is not).
pub fn mmap_anon(len: usize) -> Result<*mut u8, Errno> {
    sys!(
        MMAP,
        0usize,
        len,
        PROT_READ | PROT_WRITE,
        MAP_PRIVATE | MAP_ANONYMOUS,
        -1isize,
        0usize
    )
    .map(|p| p as *mut u8)
}

/// Release memory from [`mmap_anon`].
pub fn munmap(p: *mut u8, len: usize) {
    let _ = sys!(MUNMAP, p, len);
}
