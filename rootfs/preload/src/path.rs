//! Container paths to host paths and back.
//!
//! A path names one of three places: a bind (`/proc`, `/dev`, `/sys`, `/tmp`, the request's
//! directories: the host's own files, the kernel resolves them), the image (resolved by the kernel
//! with `openat2(RESOLVE_IN_ROOT)` against a descriptor of the image root, so absolute symlinks
//! and `..` stay inside the image; a userspace walk where `openat2` is missing), or, for relative
//! paths whose base lies outside the image, the host as is.
//!
//! The image is never written: a write that lands in it fails with `EROFS` (documented choice;
//! the cached root filesystem is shared by every later invocation). "Lands" is decided on the
//! final host target, not on the path as written: a symlink in `/tmp` into the cache,
//! `/proc/self/root/...`, `/proc/self/fd/N` or the cache's own path all resolve to the protected
//! tree (the root plus `SCAR_PRELOAD_PROTECT`: the whole image cache, its records and `refs/`),
//! and a hard link from that tree fails with `EXDEV`, as if the image were another read-only
//! file system (tools that link then fall back to copying when they see `EXDEV`).

use core::sync::atomic::{AtomicBool, AtomicI32, Ordering};

use crate::config::{self, Bind};
use crate::sys::{self, Errno};

/// `EXDEV`: a hard link from the protected tree, refused as across file systems.
const EXDEV: Errno = 18;
/// Longest path handled, as the kernel's `PATH_MAX`.
pub const PATH_MAX: usize = 4096;

/// A NUL-terminated path in a fixed buffer (no allocation: hooks run after `vfork` and inside
/// `malloc`-sensitive code).
pub struct PathBuf {
    len: usize,
    buf: [u8; PATH_MAX],
}

impl PathBuf {
    /// An empty path.
    #[inline]
    pub const fn new() -> Self {
        Self {
            len: 0,
            buf: [0; PATH_MAX],
        }
    }

    /// The bytes without the NUL.
    #[inline]
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    /// Pointer to the NUL-terminated path.
    #[inline]
    pub fn as_ptr(&self) -> *const u8 {
        self.buf.as_ptr()
    }

    /// Replace the contents.
    pub fn set(&mut self, b: &[u8]) -> Result<(), Errno> {
        self.len = 0;
        self.push(b)
    }

    /// Append bytes.
    pub fn push(&mut self, b: &[u8]) -> Result<(), Errno> {
        if self.len + b.len() >= PATH_MAX {
            return Err(sys::ENAMETOOLONG);
        }
        self.buf[self.len..self.len + b.len()].copy_from_slice(b);
        self.len += b.len();
        self.buf[self.len] = 0;
        Ok(())
    }

    fn truncate(&mut self, len: usize) {
        self.len = len;
        self.buf[len] = 0;
    }

    /// Append one component after a `/`.
    fn push_component(&mut self, c: &[u8]) -> Result<(), Errno> {
        if !self.as_bytes().ends_with(b"/") {
            self.push(b"/")?;
        }
        self.push(c)
    }

    /// Drop the last component (never above `floor` bytes).
    fn pop_component(&mut self, floor: usize) {
        let b = self.as_bytes();
        let cut = b.iter().rposition(|&c| c == b'/').unwrap_or(0);
        self.truncate(cut.max(floor));
    }
}

/// `true` when `path` is `prefix` or lies below it.
#[inline]
pub fn under(path: &[u8], prefix: &[u8]) -> bool {
    if prefix == b"/" {
        return path.starts_with(b"/");
    }
    path.starts_with(prefix) && (path.len() == prefix.len() || path[prefix.len()] == b'/')
}

/// Lexically normalize an absolute path: no empty, `.` or `..` components (`..` stops at `/`).
pub fn normalize(path: &[u8], out: &mut PathBuf) -> Result<(), Errno> {
    out.set(b"/")?;
    for c in path.split(|&b| b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => out.pop_component(1),
            c => out.push_component(c)?,
        }
    }
    Ok(())
}

/// The bind a normalized container path falls in (the longest match).
pub fn find_bind(abs: &[u8]) -> Option<&'static Bind> {
    let c = config::get();
    let mut best: Option<&'static Bind> = None;
    for b in &c.binds[..c.nbinds] {
        if under(abs, b.container) && best.is_none_or(|x| b.container.len() > x.container.len()) {
            best = Some(b);
        }
    }
    best
}

/// Host path → container path (`None`: not a path the container can name).
pub fn to_container(host: &[u8], out: &mut PathBuf) -> Result<bool, Errno> {
    let c = config::get();
    if under(host, c.root) {
        let rest = &host[c.root.len()..];
        out.set(if rest.is_empty() { b"/" } else { rest })?;
        return Ok(true);
    }
    let mut best: Option<&Bind> = None;
    for b in &c.binds[..c.nbinds] {
        if under(host, b.host) && best.is_none_or(|x| b.host.len() > x.host.len()) {
            best = Some(b);
        }
    }
    let Some(b) = best else { return Ok(false) };
    let rest = if b.host == b"/" {
        host
    } else {
        &host[b.host.len()..]
    };
    out.set(b.container)?;
    if !rest.is_empty() && rest != b"/" {
        if out.as_bytes() == b"/" {
            out.set(rest)?;
        } else {
            out.push(rest)?;
        }
    }
    Ok(true)
}

static ROOT_FD: AtomicI32 = AtomicI32::new(-1);
static NO_OPENAT2: AtomicBool = AtomicBool::new(false);
/// Where the root descriptor is kept: high, out of the way of shells' `exec 3<file`.
const ROOT_FD_MIN: usize = 900;

fn open_root() -> Result<i32, Errno> {
    let root = config::get().root;
    let mut p = PathBuf::new();
    p.set(root)?;
    let fd = sys::openat(
        sys::AT_FDCWD,
        p.as_ptr(),
        sys::O_PATH | sys::O_DIRECTORY | sys::O_CLOEXEC,
        0,
    )?;
    let high = match sys::fcntl(fd, sys::F_DUPFD_CLOEXEC, ROOT_FD_MIN) {
        Ok(h) => {
            sys::close(fd);
            h as i32
        }
        Err(_) => fd,
    };
    Ok(high)
}

fn root_fd(refresh: bool) -> Result<i32, Errno> {
    let fd = ROOT_FD.load(Ordering::Acquire);
    if fd >= 0 && !refresh {
        return Ok(fd);
    }
    let new = open_root()?;
    match ROOT_FD.compare_exchange(fd, new, Ordering::AcqRel, Ordering::Acquire) {
        Ok(_) => Ok(new),
        Err(other) => {
            sys::close(new);
            Ok(other)
        }
    }
}

/// Open a normalized absolute container path inside the image with `openat2(RESOLVE_IN_ROOT)`.
/// `Err(ENOSYS)` means: resolve in userspace instead.
pub fn image_open(abs: &[u8], flags: i32, mode: u32) -> Result<i32, Errno> {
    if NO_OPENAT2.load(Ordering::Relaxed) || config::get().no_openat2 {
        return Err(sys::ENOSYS);
    }
    let mut p = PathBuf::new();
    p.set(abs)?;
    let creating = flags & (sys::O_CREAT | sys::O_TMPFILE_BIT) != 0;
    let how = sys::OpenHow {
        flags: flags as u32 as u64,
        mode: if creating { (mode & 0o7777) as u64 } else { 0 },
        resolve: sys::RESOLVE_IN_ROOT,
    };
    let mut refreshed = false;
    let mut tries = 0;
    loop {
        match sys::openat2(root_fd(false)?, p.as_ptr(), &how) {
            // A program closed or reused our root descriptor: reopen it once.
            Err(sys::EBADF) | Err(sys::ENOTDIR) if !refreshed => {
                refreshed = true;
                root_fd(true)?;
            }
            // A concurrent rename could have let `..` escape; the kernel asks for a retry.
            Err(sys::EAGAIN) if tries < 8 => tries += 1,
            Err(sys::ENOSYS) | Err(sys::EPERM) => {
                NO_OPENAT2.store(true, Ordering::Relaxed);
                return Err(sys::ENOSYS);
            }
            r => return r,
        }
    }
}

/// The host path of an open descriptor, through `/proc/self/fd`.
pub fn fd_path(fd: i32, out: &mut PathBuf) -> Result<(), Errno> {
    let mut link = PathBuf::new();
    link.set(b"/proc/self/fd/")?;
    let mut digits = [0u8; 12];
    link.push(fmt_int(fd as i64, &mut digits))?;
    let mut buf = [0u8; PATH_MAX];
    let n = sys::readlinkat(sys::AT_FDCWD, link.as_ptr(), &mut buf)?;
    if n >= PATH_MAX || !buf.starts_with(b"/") {
        return Err(sys::ENAMETOOLONG);
    }
    out.set(&buf[..n])
}

/// Decimal digits of `v` in `buf`.
pub fn fmt_int(v: i64, buf: &mut [u8; 12]) -> &[u8] {
    let mut n = v.unsigned_abs();
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    if v < 0 {
        i -= 1;
        buf[i] = b'-';
    }
    &buf[i..]
}

/// Resolve a normalized absolute image path to the host path of what it names.
pub fn resolve_image(abs: &[u8], follow: bool, out: &mut PathBuf) -> Result<(), Errno> {
    let flags = sys::O_PATH | sys::O_CLOEXEC | if follow { 0 } else { sys::O_NOFOLLOW };
    match image_open(abs, flags, 0) {
        Ok(fd) => {
            let r = fd_path(fd, out);
            sys::close(fd);
            match r {
                Ok(()) => Ok(()),
                // No /proc: the walk gives the same answer with more system calls.
                Err(_) => walk(abs, follow, out),
            }
        }
        Err(sys::ENOSYS) => walk(abs, follow, out),
        Err(e) => Err(e),
    }
}

/// Userspace resolution inside the root, for kernels without `openat2`: each component is
/// checked with `readlink`; an absolute link target restarts at the image root.
fn walk(abs: &[u8], follow: bool, out: &mut PathBuf) -> Result<(), Errno> {
    let root = config::get().root;
    let floor = root.len();
    out.set(root)?;
    // `pending` holds what is left to resolve; link targets are spliced in front of it.
    let mut pending = PathBuf::new();
    pending.set(abs)?;
    let mut pos = 0usize;
    let mut links = 0;
    loop {
        let rest = &pending.as_bytes()[pos..];
        let skip = rest.iter().take_while(|&&b| b == b'/').count();
        let rest = &rest[skip..];
        if rest.is_empty() {
            return Ok(());
        }
        let end = rest.iter().position(|&b| b == b'/').unwrap_or(rest.len());
        let mut comp = [0u8; 256];
        if end > comp.len() {
            return Err(sys::ENAMETOOLONG);
        }
        comp[..end].copy_from_slice(&rest[..end]);
        let comp = &comp[..end];
        let last = rest[end..].iter().all(|&b| b == b'/');
        pos += skip + end;
        match comp {
            b"." => continue,
            b".." => {
                out.pop_component(floor);
                continue;
            }
            _ => {}
        }
        let before = out.len;
        out.push_component(comp)?;
        if last && !follow {
            return Ok(());
        }
        let mut target = [0u8; PATH_MAX];
        match sys::readlinkat(sys::AT_FDCWD, out.as_ptr(), &mut target) {
            Ok(n) if n < PATH_MAX => {
                links += 1;
                if links > 40 {
                    return Err(sys::ELOOP);
                }
                out.truncate(before);
                if target.starts_with(b"/") {
                    out.truncate(floor);
                }
                let mut next = PathBuf::new();
                next.set(&target[..n])?;
                next.push(b"/")?;
                next.push(&pending.as_bytes()[pos..])?;
                pending = next;
                pos = 0;
            }
            Ok(_) => return Err(sys::ENAMETOOLONG),
            // Not a link (EINVAL) or missing: the real call reports what is wrong.
            Err(_) => {}
        }
    }
}

/// What a path-taking hook should hand to the kernel.
pub enum Located {
    /// The caller's own `dirfd` and path.
    Pass,
    /// `AT_FDCWD` and the host path left in the buffer.
    Host,
}

/// The container path that a relative `path` under `dirfd` names, when its base is in the image
/// (`Ok(false)`: the base is a bind or the host, the kernel resolves the path as is).
pub fn absolute(dirfd: i32, path: &[u8], out: &mut PathBuf) -> Result<bool, Errno> {
    let mut base = PathBuf::new();
    if dirfd == sys::AT_FDCWD {
        let mut buf = [0u8; PATH_MAX];
        let n = sys::getcwd(&mut buf)?;
        base.set(&buf[..n.saturating_sub(1)])?;
    } else {
        fd_path(dirfd, &mut base)?;
    }
    if !under(base.as_bytes(), config::get().root) {
        return Ok(false);
    }
    let mut joined = PathBuf::new();
    to_container(base.as_bytes(), &mut joined)?;
    joined.push(b"/")?;
    joined.push(path)?;
    normalize(joined.as_bytes(), out)?;
    Ok(true)
}

/// Map `path` (relative to `dirfd`) for a call that follows the last symlink or not and that
/// writes or not. On `Located::Host` the host path is in `out`.
pub fn locate(
    dirfd: i32,
    path: &[u8],
    follow: bool,
    write: bool,
    out: &mut PathBuf,
) -> Result<Located, Errno> {
    let mut abs = PathBuf::new();
    if path.starts_with(b"/") {
        normalize(path, &mut abs)?;
    } else {
        if path.is_empty() {
            // `AT_EMPTY_PATH`: the call acts on `dirfd` itself.
            if write {
                check_fd_write(dirfd)?;
            }
            return Ok(Located::Pass);
        }
        let single = !path.contains(&b'/') && path != b".." && path != b".";
        if single && !follow && !write {
            return Ok(Located::Pass);
        }
        if !absolute(dirfd, path, &mut abs)? {
            if write {
                check_write(dirfd, path, follow)?;
            }
            return Ok(Located::Pass);
        }
    }
    locate_abs(abs.as_bytes(), follow, write, out)?;
    Ok(Located::Host)
}

/// [`locate`] for a normalized absolute container path.
pub fn locate_abs(abs: &[u8], follow: bool, write: bool, out: &mut PathBuf) -> Result<(), Errno> {
    if let Some(b) = find_bind(abs) {
        out.set(b.host)?;
        let rest = if b.container == b"/" {
            abs
        } else {
            &abs[b.container.len()..]
        };
        if !rest.is_empty() {
            if out.as_bytes() == b"/" {
                out.set(rest)?;
            } else {
                out.push(rest)?;
            }
        }
        if write && !b.writable {
            return Err(sys::EROFS);
        }
        // The image cache may live under a bind (`/tmp/scar`), and a bind path may lead into
        // it (a symlink, `/proc/self/root`): never write the protected tree.
        if write {
            check_write(sys::AT_FDCWD, out.as_bytes(), follow)?;
        }
        return Ok(());
    }
    if write {
        return Err(sys::EROFS);
    }
    resolve_image(abs, follow, out)
}

/// `true` when the host path `host` lies in the protected tree: the image root or one of the
/// `SCAR_PRELOAD_PROTECT` directories.
pub fn protected(host: &[u8]) -> bool {
    let c = config::get();
    under(host, c.root)
        || c.protect
            .split(|&b| b == b':')
            .any(|dir| dir.len() > 1 && dir.starts_with(b"/") && under(host, trim_slashes(dir)))
}

fn trim_slashes(mut p: &[u8]) -> &[u8] {
    while p.len() > 1 && p.ends_with(b"/") {
        p = &p[..p.len() - 1];
    }
    p
}

/// Refuse (`EROFS`) a write through a descriptor whose file lies in the protected tree.
pub fn check_fd_write(fd: i32) -> Result<(), Errno> {
    let mut real = PathBuf::new();
    match fd_path(fd, &mut real) {
        Ok(()) if protected(real.as_bytes()) => Err(sys::EROFS),
        _ => Ok(()),
    }
}

/// Refuse (`EROFS`) a write-intent call on the host path `path` (relative to `dirfd`) when
/// what the kernel will act on lies in the protected tree. `follow`: the call follows a final
/// symlink (open without `O_NOFOLLOW`, chmod, truncate); otherwise it acts on the name itself
/// (unlink, rename, mkdir), whose parent directory is what gets written.
pub fn check_write(dirfd: i32, path: &[u8], follow: bool) -> Result<(), Errno> {
    let mut real = PathBuf::new();
    if write_target(dirfd, path, follow, &mut real)? && protected(real.as_bytes()) {
        return Err(sys::EROFS);
    }
    Ok(())
}

/// `EXDEV` when a hard link's source (`path` under `dirfd`, its final symlink followed when
/// `follow`) is a file of the protected tree: written through the new name, it would change
/// the image.
pub fn check_link_source(dirfd: i32, path: &[u8], follow: bool) -> Result<(), Errno> {
    let mut real = PathBuf::new();
    if path.is_empty() {
        // `AT_EMPTY_PATH`: the source is `dirfd` itself.
        return match fd_path(dirfd, &mut real) {
            Ok(()) if protected(real.as_bytes()) => Err(EXDEV),
            _ => Ok(()),
        };
    }
    if write_target(dirfd, path, follow, &mut real)? && protected(real.as_bytes()) {
        return Err(EXDEV);
    }
    Ok(())
}

/// The canonical host path a call on `path` (relative to `dirfd`) acts on, in `out`: the
/// object itself when it exists (every symlink and `/proc` magic link resolved by the kernel),
/// else its resolved parent plus the last name, following a dangling final symlink when
/// `follow` (`O_CREAT` creates the link's target). `Ok(false)`: nothing to decide (no parent:
/// the call itself fails).
fn write_target(dirfd: i32, path: &[u8], follow: bool, out: &mut PathBuf) -> Result<bool, Errno> {
    let mut cur = PathBuf::new();
    cur.set(path)?;
    let mut base = dirfd;
    for _ in 0..40 {
        let flags = sys::O_PATH | sys::O_CLOEXEC | if follow { 0 } else { sys::O_NOFOLLOW };
        match sys::openat(base, cur.as_ptr(), flags, 0) {
            Ok(fd) => {
                let r = fd_path(fd, out);
                sys::close(fd);
                return r
                    .map(|()| true)
                    .or_else(|_| lexical(base, cur.as_bytes(), out));
            }
            Err(sys::ENOENT) => {}
            // Anything else (EACCES, ENOTDIR, ELOOP) is what the real call reports too.
            Err(_) => return Ok(false),
        }
        let trimmed = trim_slashes(cur.as_bytes());
        let cut = trimmed.iter().rposition(|&b| b == b'/');
        let mut parent = PathBuf::new();
        let name_start = match cut {
            Some(0) => {
                parent.set(b"/")?;
                1
            }
            Some(i) => {
                parent.set(&trimmed[..i])?;
                i + 1
            }
            None => {
                parent.set(b".")?;
                0
            }
        };
        let mut name = PathBuf::new();
        name.set(&trimmed[name_start..])?;
        let Ok(pfd) = sys::openat(
            base,
            parent.as_ptr(),
            sys::O_PATH | sys::O_DIRECTORY | sys::O_CLOEXEC,
            0,
        ) else {
            return Ok(false);
        };
        let resolved = fd_path(pfd, out);
        let mut target = [0u8; PATH_MAX];
        let link = if follow && resolved.is_ok() {
            sys::readlinkat(pfd, name.as_ptr(), &mut target).ok()
        } else {
            None
        };
        sys::close(pfd);
        if resolved.is_err() {
            return lexical(base, cur.as_bytes(), out);
        }
        match link {
            // A dangling symlink: the creation goes where it points, as the kernel reads it.
            Some(n) if n < PATH_MAX => {
                if target.starts_with(b"/") {
                    cur.set(&target[..n])?;
                } else {
                    out.push_component(&target[..n])?;
                    cur.set(out.as_bytes())?;
                }
                base = sys::AT_FDCWD;
            }
            _ => {
                out.push_component(name.as_bytes())?;
                return Ok(true);
            }
        }
    }
    Err(sys::ELOOP)
}

/// Without `/proc`: the path as written, normalized (absolute paths only).
fn lexical(base: i32, path: &[u8], out: &mut PathBuf) -> Result<bool, Errno> {
    if base != sys::AT_FDCWD || !path.starts_with(b"/") {
        return Ok(false);
    }
    normalize(path, out)?;
    Ok(true)
}

/// Bytes of a NUL-terminated string, as a slice.
///
/// # Safety
/// `p` must be a valid NUL-terminated string that outlives the slice.
pub unsafe fn cstr<'a>(p: *const u8) -> &'a [u8] {
    let mut n = 0;
    // SAFETY: per the contract the string is NUL-terminated.
    while unsafe { *p.add(n) } != 0 {
        n += 1;
    }
    // SAFETY: the n bytes before the NUL are readable.
    unsafe { core::slice::from_raw_parts(p, n) }
}
