//! Directory hooks: listing and walking, the working directory, `realpath`.

use core::cell::UnsafeCell;
use core::ffi::{c_char, c_int, c_void};
use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicUsize, Ordering};

use crate::config;
use crate::hooks_fs::open_at;
use crate::path::{self, Located, PATH_MAX, PathBuf, cstr, locate};
use crate::real;
use crate::sys::{self, AT_FDCWD, Errno};
use crate::{ret, set_errno};

unsafe extern "C" {
    fn fdopendir(fd: c_int) -> *mut c_void;
    fn malloc(n: usize) -> *mut c_void;
}

fn null_with<T>(e: Errno) -> *mut T {
    set_errno(e);
    core::ptr::null_mut()
}

/// Map `path` for a libc function that needs a path string; `Ok(None)`: use the caller's.
fn host_string(
    path: *const c_char,
    follow: bool,
    write: bool,
    host: &mut PathBuf,
) -> Result<bool, Errno> {
    if !config::active() || path.is_null() {
        return Ok(false);
    }
    // SAFETY: non-null path arguments are C strings.
    match locate(AT_FDCWD, unsafe { cstr(path.cast()) }, follow, write, host)? {
        Located::Pass => Ok(false),
        Located::Host => Ok(true),
    }
}

#[unsafe(no_mangle)]
pub extern "C" fn opendir(path: *const c_char) -> *mut c_void {
    let flags = sys::O_RDONLY | sys::O_DIRECTORY | sys::O_CLOEXEC;
    match open_at(AT_FDCWD, path.cast(), flags, 0) {
        Ok(fd) => {
            // SAFETY: fd is an open directory we own; fdopendir takes it over on success.
            let d = unsafe { fdopendir(fd) };
            if d.is_null() {
                sys::close(fd);
            }
            d
        }
        Err(e) => null_with(e),
    }
}

fn c_scandir(
    path: *const c_char,
    list: *mut c_void,
    filter: *const c_void,
    compar: *const c_void,
    sixty_four: bool,
) -> c_int {
    let real = if sixty_four {
        real::scandir64()
    } else {
        real::scandir()
    };
    let Some(real) = real else {
        return ret(Err(sys::ENOSYS));
    };
    let mut host = PathBuf::new();
    let p = match host_string(path, true, false, &mut host) {
        Ok(true) => host.as_ptr().cast(),
        Ok(false) => path,
        Err(e) => return ret(Err(e)),
    };
    // SAFETY: the real scandir with a valid path and the caller's other arguments.
    unsafe { real(p, list, filter, compar) }
}

#[unsafe(no_mangle)]
pub extern "C" fn scandir(
    path: *const c_char,
    list: *mut c_void,
    filter: *const c_void,
    compar: *const c_void,
) -> c_int {
    c_scandir(path, list, filter, compar, false)
}
#[unsafe(no_mangle)]
pub extern "C" fn scandir64(
    path: *const c_char,
    list: *mut c_void,
    filter: *const c_void,
    compar: *const c_void,
) -> c_int {
    c_scandir(path, list, filter, compar, true)
}

/// `struct FTW`.
#[repr(C)]
struct Ftw {
    base: c_int,
    level: c_int,
}
type NftwFn = unsafe extern "C" fn(*const c_char, *const c_void, c_int, *mut Ftw) -> c_int;

/// State of the one `nftw` walk being translated: libc's walk calls back with host paths, the
/// program must see container paths. A second walk at the same time (nested or on another
/// thread, both rare) is not translated and sees host paths.
struct Walk {
    busy: AtomicBool,
    user: AtomicPtr<c_void>,
    host_len: AtomicUsize,
    shown: UnsafeCell<PathBuf>,
    out: UnsafeCell<PathBuf>,
}
// SAFETY: `shown` and `out` are only touched by the thread that holds `busy`.
unsafe impl Sync for Walk {}
static WALK: Walk = Walk {
    busy: AtomicBool::new(false),
    user: AtomicPtr::new(core::ptr::null_mut()),
    host_len: AtomicUsize::new(0),
    shown: UnsafeCell::new(PathBuf::new()),
    out: UnsafeCell::new(PathBuf::new()),
};

unsafe extern "C" fn nftw_trampoline(
    fpath: *const c_char,
    st: *const c_void,
    kind: c_int,
    ftw: *mut Ftw,
) -> c_int {
    // SAFETY: WALK.user was set to the caller's callback before the walk started.
    let user: NftwFn = unsafe { core::mem::transmute(WALK.user.load(Ordering::Relaxed)) };
    // SAFETY: this thread holds `busy` (the walk runs on the caller's thread).
    let (shown, out) = unsafe { (&*WALK.shown.get(), &mut *WALK.out.get()) };
    // SAFETY: libc passes a C string.
    let f = unsafe { cstr(fpath.cast()) };
    let host_len = WALK.host_len.load(Ordering::Relaxed).min(f.len());
    if out.set(shown.as_bytes()).is_err() || out.push(&f[host_len..]).is_err() {
        // SAFETY: the caller's callback with libc's own arguments.
        return unsafe { user(fpath, st, kind, ftw) };
    }
    // SAFETY: libc passes a valid FTW.
    let mut adjusted = unsafe {
        Ftw {
            base: (*ftw).base,
            level: (*ftw).level,
        }
    };
    adjusted.base = adjusted.base - host_len as c_int + shown.as_bytes().len() as c_int;
    // SAFETY: the caller's callback, with our translated path and FTW copy.
    unsafe { user(out.as_ptr().cast(), st, kind, &mut adjusted) }
}

fn c_nftw(
    path: *const c_char,
    f: *const c_void,
    nopenfd: c_int,
    flags: c_int,
    sixty_four: bool,
) -> c_int {
    let real = if sixty_four {
        real::nftw64()
    } else {
        real::nftw()
    };
    let Some(real) = real else {
        return ret(Err(sys::ENOSYS));
    };
    let mut host = PathBuf::new();
    match host_string(path, true, false, &mut host) {
        Ok(true) => {}
        // SAFETY: the real nftw with the caller's own arguments.
        Ok(false) => return unsafe { real(path, f, nopenfd, flags) },
        Err(e) => return ret(Err(e)),
    }
    if f.is_null() || WALK.busy.swap(true, Ordering::Acquire) {
        // SAFETY: as above, on the mapped path.
        return unsafe { real(host.as_ptr().cast(), f, nopenfd, flags) };
    }
    WALK.user.store(f as *mut c_void, Ordering::Relaxed);
    // SAFETY: a C string.
    let shown = unsafe { cstr(path.cast()) };
    // libc appends "/name" to the path it was given, minus a trailing slash.
    let host_bytes = host.as_bytes();
    WALK.host_len.store(host_bytes.len(), Ordering::Relaxed);
    // SAFETY: this thread holds `busy`.
    let ok = unsafe {
        (*WALK.shown.get())
            .set(shown.strip_suffix(b"/").unwrap_or(shown))
            .is_ok()
    };
    let tramp = nftw_trampoline as NftwFn as *const c_void;
    let r = if ok {
        // SAFETY: the real nftw with our trampoline, which forwards to the caller's callback.
        unsafe { real(host.as_ptr().cast(), tramp, nopenfd, flags) }
    } else {
        // SAFETY: as above, untranslated.
        unsafe { real(host.as_ptr().cast(), f, nopenfd, flags) }
    };
    WALK.busy.store(false, Ordering::Release);
    r
}

#[unsafe(no_mangle)]
pub extern "C" fn nftw(
    path: *const c_char,
    f: *const c_void,
    nopenfd: c_int,
    flags: c_int,
) -> c_int {
    c_nftw(path, f, nopenfd, flags, false)
}
#[unsafe(no_mangle)]
pub extern "C" fn nftw64(
    path: *const c_char,
    f: *const c_void,
    nopenfd: c_int,
    flags: c_int,
) -> c_int {
    c_nftw(path, f, nopenfd, flags, true)
}

#[unsafe(no_mangle)]
pub extern "C" fn chdir(path: *const c_char) -> c_int {
    ret(crate::hooks_fs::at_path(
        AT_FDCWD,
        path.cast(),
        true,
        false,
        |_, p| sys::chdir(p),
    ))
}

/// The working directory as the container sees it (the kernel's is a host path).
fn container_cwd(out: &mut PathBuf) -> Result<(), Errno> {
    let mut buf = [0u8; PATH_MAX];
    let n = sys::getcwd(&mut buf)?;
    let host = &buf[..n.saturating_sub(1)];
    if !config::active() || !path::to_container(host, out)? {
        out.set(host)?;
    }
    Ok(())
}

/// Copy `s` into the caller's buffer, or a `malloc`ed one when `buf` is null (glibc and musl
/// both allocate then).
fn give(s: &[u8], buf: *mut c_char, size: usize, alloc_min: usize) -> *mut c_char {
    let dst = if buf.is_null() {
        // SAFETY: plain allocation.
        let p = unsafe { malloc(alloc_min.max(s.len() + 1)) }.cast::<c_char>();
        if p.is_null() {
            return null_with(sys::ENOMEM);
        }
        p
    } else {
        if s.len() + 1 > size {
            return null_with(sys::ERANGE);
        }
        buf
    };
    // SAFETY: `dst` has room for s.len() + 1 bytes (checked or allocated above).
    unsafe {
        core::ptr::copy_nonoverlapping(s.as_ptr(), dst.cast::<u8>(), s.len());
        *dst.add(s.len()) = 0;
    }
    dst
}

#[unsafe(no_mangle)]
pub extern "C" fn getcwd(buf: *mut c_char, size: usize) -> *mut c_char {
    let mut cwd = PathBuf::new();
    if let Err(e) = container_cwd(&mut cwd) {
        return null_with(e);
    }
    if !buf.is_null() && size == 0 {
        return null_with(sys::EINVAL);
    }
    give(cwd.as_bytes(), buf, size, size)
}
#[unsafe(no_mangle)]
pub extern "C" fn getwd(buf: *mut c_char) -> *mut c_char {
    getcwd(buf, PATH_MAX)
}
#[unsafe(no_mangle)]
pub extern "C" fn get_current_dir_name() -> *mut c_char {
    getcwd(core::ptr::null_mut(), 0)
}

fn c_realpath(path: *const c_char, resolved: *mut c_char) -> *mut c_char {
    if path.is_null() {
        return null_with(sys::EINVAL);
    }
    if !config::active() {
        return match real::realpath() {
            // SAFETY: the real realpath with the caller's arguments.
            Some(r) => unsafe { r(path, resolved) },
            None => null_with(sys::ENOSYS),
        };
    }
    // SAFETY: a C string.
    let p = unsafe { cstr(path.cast()) };
    let mut abs = PathBuf::new();
    let r = if p.starts_with(b"/") {
        path::normalize(p, &mut abs)
    } else {
        let mut cwd = PathBuf::new();
        container_cwd(&mut cwd).and_then(|()| {
            let mut joined = PathBuf::new();
            joined.set(cwd.as_bytes())?;
            joined.push(b"/")?;
            joined.push(p)?;
            path::normalize(joined.as_bytes(), &mut abs)
        })
    };
    if let Err(e) = r {
        return null_with(e);
    }
    let mut host = PathBuf::new();
    let mut shown = PathBuf::new();
    let r = if path::find_bind(abs.as_bytes()).is_some() {
        // A bind is the host's: resolve there with the real realpath, then show it mapped back.
        path::locate_abs(abs.as_bytes(), true, false, &mut host).and_then(|()| {
            let mut out = [0u8; PATH_MAX];
            let real = real::realpath().ok_or(sys::ENOSYS)?;
            // SAFETY: a valid path and a PATH_MAX buffer.
            let got = unsafe { real(host.as_ptr().cast(), out.as_mut_ptr().cast()) };
            if got.is_null() {
                return Err(errno());
            }
            // SAFETY: realpath NUL-terminated it.
            let got = unsafe { cstr(out.as_ptr()) };
            if !path::to_container(got, &mut shown)? {
                shown.set(got)?;
            }
            Ok(())
        })
    } else {
        path::resolve_image(abs.as_bytes(), true, &mut host).and_then(|()| {
            // The kernel's answer for a descriptor is canonical; `walk` may leave a missing tail.
            let mut st = [0u64; 32];
            sys::fstatat(AT_FDCWD, host.as_ptr(), st.as_mut_ptr().cast(), 0)?;
            if !path::to_container(host.as_bytes(), &mut shown)? {
                shown.set(host.as_bytes())?;
            }
            Ok(())
        })
    };
    match r {
        Ok(()) => give(shown.as_bytes(), resolved, PATH_MAX, 0),
        Err(e) => null_with(e),
    }
}

fn errno() -> Errno {
    unsafe extern "C" {
        fn __errno_location() -> *mut c_int;
    }
    // SAFETY: the calling thread's errno slot.
    unsafe { *__errno_location() }
}

#[unsafe(no_mangle)]
pub extern "C" fn realpath(path: *const c_char, resolved: *mut c_char) -> *mut c_char {
    c_realpath(path, resolved)
}
#[unsafe(no_mangle)]
pub extern "C" fn __realpath_chk(
    path: *const c_char,
    resolved: *mut c_char,
    _len: usize,
) -> *mut c_char {
    c_realpath(path, resolved)
}
#[unsafe(no_mangle)]
pub extern "C" fn canonicalize_file_name(path: *const c_char) -> *mut c_char {
    c_realpath(path, core::ptr::null_mut())
}
