//! Users and groups from the image's `/etc/passwd` and `/etc/group` (glibc images).
//!
//! glibc's NSS reads those files (and `/etc/nsswitch.conf`) with its internal `open`, past every
//! `LD_PRELOAD` hook, so without these wrappers `getpwnam` and friends would answer from the
//! host's files. The wrappers read the image's files with libc's own parsers (`fgetpwent_r`,
//! `fgetgrent_r`) on a stream of the image's file, as the `files` NSS service would: other
//! services an image's `nsswitch.conf` may list (LDAP, SSSD, systemd) have no daemon to talk to
//! in a container anyway. musl reads the files with a raw `open` as well; see the README for that
//! limit.

use core::cell::UnsafeCell;
use core::ffi::{c_char, c_int};
use core::ptr::null_mut;
use core::sync::atomic::{AtomicPtr, Ordering};

use crate::path::{self, PathBuf, cstr};
use crate::sys::{self, AT_FDCWD};

type File = core::ffi::c_void;
type Uid = u32;
type Gid = u32;

/// `struct passwd` (glibc, 64-bit).
#[repr(C)]
pub struct Passwd {
    name: *mut c_char,
    passwd: *mut c_char,
    uid: Uid,
    gid: Gid,
    gecos: *mut c_char,
    dir: *mut c_char,
    shell: *mut c_char,
}

/// `struct group` (glibc, 64-bit).
#[repr(C)]
pub struct Group {
    name: *mut c_char,
    passwd: *mut c_char,
    gid: Gid,
    mem: *mut *mut c_char,
}

unsafe extern "C" {
    fn fdopen(fd: c_int, mode: *const c_char) -> *mut File;
    fn fclose(f: *mut File) -> c_int;
    fn fgetpwent_r(
        f: *mut File,
        pw: *mut Passwd,
        buf: *mut c_char,
        len: usize,
        result: *mut *mut Passwd,
    ) -> c_int;
    fn fgetgrent_r(
        f: *mut File,
        gr: *mut Group,
        buf: *mut c_char,
        len: usize,
        result: *mut *mut Group,
    ) -> c_int;
}

/// Bytes of the buffer behind the non-reentrant calls (glibc grows its own; a group with
/// hundreds of members fits).
const STATIC_BUF: usize = 64 * 1024;

/// Storage of the non-reentrant calls, as libc's own (not thread-safe by their contract).
struct Static<T> {
    entry: UnsafeCell<T>,
    buf: UnsafeCell<[u8; STATIC_BUF]>,
}

// SAFETY: getpwnam and friends are documented as not thread-safe; callers serialize them.
unsafe impl<T> Sync for Static<T> {}

static PW: Static<Passwd> = Static {
    entry: UnsafeCell::new(Passwd {
        name: null_mut(),
        passwd: null_mut(),
        uid: 0,
        gid: 0,
        gecos: null_mut(),
        dir: null_mut(),
        shell: null_mut(),
    }),
    buf: UnsafeCell::new([0; STATIC_BUF]),
};

static GR: Static<Group> = Static {
    entry: UnsafeCell::new(Group {
        name: null_mut(),
        passwd: null_mut(),
        gid: 0,
        mem: null_mut(),
    }),
    buf: UnsafeCell::new([0; STATIC_BUF]),
};

/// The open streams of `getpwent` and `getgrent`.
static PW_STREAM: AtomicPtr<File> = AtomicPtr::new(null_mut());
static GR_STREAM: AtomicPtr<File> = AtomicPtr::new(null_mut());

/// A read stream of the image's `file` (the host's file when the library is not configured:
/// then the process is not a container's).
fn open_image(file: &[u8]) -> Option<*mut File> {
    let mut host = PathBuf::new();
    if crate::config::active() {
        path::locate_abs(file, true, false, &mut host).ok()?;
    } else {
        host.set(file).ok()?;
    }
    let fd = sys::openat(AT_FDCWD, host.as_ptr(), sys::O_RDONLY | sys::O_CLOEXEC, 0).ok()?;
    // SAFETY: fd is ours; fdopen takes it over on success.
    let f = unsafe { fdopen(fd, c"re".as_ptr()) };
    if f.is_null() {
        sys::close(fd);
        return None;
    }
    Some(f)
}

/// libc's `fgetpwent_r`/`fgetgrent_r`: the next entry of a stream, parsed into the caller's
/// storage.
type ReadEntry<T> =
    unsafe extern "C" fn(*mut File, *mut T, *mut c_char, usize, *mut *mut T) -> c_int;

/// The first entry of the image's `file` that `pred` accepts, read with `read` into the
/// caller's storage; the `getpw*_r`/`getgr*_r` return convention (0 with a null result: not
/// found).
///
/// # Safety
/// `entry`, `buf` (`len` bytes) and `result` are valid for writing; `read` parses `file`'s format.
unsafe fn find_entry<T>(
    file: &[u8],
    read: ReadEntry<T>,
    pred: impl Fn(&T) -> bool,
    entry: *mut T,
    buf: *mut c_char,
    len: usize,
    result: *mut *mut T,
) -> c_int {
    // SAFETY: per the contract.
    unsafe { *result = null_mut() };
    let Some(f) = open_image(file) else {
        return 0;
    };
    let e = loop {
        let mut r: *mut T = null_mut();
        // SAFETY: f is an open stream; the storage is the caller's.
        let e = unsafe { read(f, entry, buf, len, &mut r) };
        if e != 0 {
            break if e == sys::ENOENT { 0 } else { e };
        }
        // SAFETY: on success r points at the caller's filled entry.
        if !r.is_null() && pred(unsafe { &*r }) {
            // SAFETY: per the contract.
            unsafe { *result = r };
            break 0;
        }
    };
    // SAFETY: f came from fdopen.
    unsafe { fclose(f) };
    e
}

/// [`find_entry`] in the image's `/etc/passwd`.
///
/// # Safety
/// As [`find_entry`].
unsafe fn find_pw(
    pred: impl Fn(&Passwd) -> bool,
    pw: *mut Passwd,
    buf: *mut c_char,
    len: usize,
    result: *mut *mut Passwd,
) -> c_int {
    // SAFETY: per the contract; fgetpwent_r parses passwd lines.
    unsafe { find_entry(b"/etc/passwd", fgetpwent_r, pred, pw, buf, len, result) }
}

/// [`find_entry`] in the image's `/etc/group`.
///
/// # Safety
/// As [`find_entry`].
unsafe fn find_gr(
    pred: impl Fn(&Group) -> bool,
    gr: *mut Group,
    buf: *mut c_char,
    len: usize,
    result: *mut *mut Group,
) -> c_int {
    // SAFETY: per the contract; fgetgrent_r parses group lines.
    unsafe { find_entry(b"/etc/group", fgetgrent_r, pred, gr, buf, len, result) }
}

/// `true` when the C string `p` equals `name`.
fn named(p: *const c_char, name: &[u8]) -> bool {
    // SAFETY: entry fields parsed by libc are C strings.
    !p.is_null() && unsafe { cstr(p.cast()) } == name
}

/// The caller's name argument as bytes (`None` for null).
fn arg(name: *const c_char) -> Option<&'static [u8]> {
    // SAFETY: a non-null name argument is a C string that outlives the call.
    (!name.is_null()).then(|| unsafe { cstr(name.cast()) })
}

/// A non-reentrant answer: the static entry, or null with `errno` set on an error.
fn static_result<T>(e: c_int, r: *mut T) -> *mut T {
    if e != 0 {
        crate::set_errno(e);
    }
    r
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn getpwnam_r(
    name: *const c_char,
    pw: *mut Passwd,
    buf: *mut c_char,
    len: usize,
    result: *mut *mut Passwd,
) -> c_int {
    let Some(name) = arg(name) else {
        return sys::EINVAL;
    };
    // SAFETY: the caller's storage per the libc contract.
    unsafe { find_pw(|p| named(p.name, name), pw, buf, len, result) }
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn getpwuid_r(
    uid: Uid,
    pw: *mut Passwd,
    buf: *mut c_char,
    len: usize,
    result: *mut *mut Passwd,
) -> c_int {
    // SAFETY: the caller's storage per the libc contract.
    unsafe { find_pw(|p| p.uid == uid, pw, buf, len, result) }
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn getgrnam_r(
    name: *const c_char,
    gr: *mut Group,
    buf: *mut c_char,
    len: usize,
    result: *mut *mut Group,
) -> c_int {
    let Some(name) = arg(name) else {
        return sys::EINVAL;
    };
    // SAFETY: the caller's storage per the libc contract.
    unsafe { find_gr(|g| named(g.name, name), gr, buf, len, result) }
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn getgrgid_r(
    gid: Gid,
    gr: *mut Group,
    buf: *mut c_char,
    len: usize,
    result: *mut *mut Group,
) -> c_int {
    // SAFETY: the caller's storage per the libc contract.
    unsafe { find_gr(|g| g.gid == gid, gr, buf, len, result) }
}

#[unsafe(no_mangle)]
pub extern "C" fn getpwnam(name: *const c_char) -> *mut Passwd {
    let mut r = null_mut();
    // SAFETY: the static storage (see `Static`).
    let e = unsafe {
        getpwnam_r(
            name,
            PW.entry.get(),
            PW.buf.get().cast(),
            STATIC_BUF,
            &mut r,
        )
    };
    static_result(e, r)
}

#[unsafe(no_mangle)]
pub extern "C" fn getpwuid(uid: Uid) -> *mut Passwd {
    let mut r = null_mut();
    // SAFETY: the static storage (see `Static`).
    let e = unsafe { getpwuid_r(uid, PW.entry.get(), PW.buf.get().cast(), STATIC_BUF, &mut r) };
    static_result(e, r)
}

#[unsafe(no_mangle)]
pub extern "C" fn getgrnam(name: *const c_char) -> *mut Group {
    let mut r = null_mut();
    // SAFETY: the static storage (see `Static`).
    let e = unsafe {
        getgrnam_r(
            name,
            GR.entry.get(),
            GR.buf.get().cast(),
            STATIC_BUF,
            &mut r,
        )
    };
    static_result(e, r)
}

#[unsafe(no_mangle)]
pub extern "C" fn getgrgid(gid: Gid) -> *mut Group {
    let mut r = null_mut();
    // SAFETY: the static storage (see `Static`).
    let e = unsafe { getgrgid_r(gid, GR.entry.get(), GR.buf.get().cast(), STATIC_BUF, &mut r) };
    static_result(e, r)
}

/// Close the stream in `slot`, if any.
fn close_stream(slot: &AtomicPtr<File>) {
    let f = slot.swap(null_mut(), Ordering::AcqRel);
    if !f.is_null() {
        // SAFETY: the stream came from fdopen and is no longer reachable through the slot.
        unsafe { fclose(f) };
    }
}

/// The stream in `slot`, opened on first use.
fn stream(slot: &AtomicPtr<File>, file: &[u8]) -> *mut File {
    let f = slot.load(Ordering::Acquire);
    if !f.is_null() {
        return f;
    }
    let Some(f) = open_image(file) else {
        return null_mut();
    };
    slot.store(f, Ordering::Release);
    f
}

#[unsafe(no_mangle)]
pub extern "C" fn setpwent() {
    close_stream(&PW_STREAM);
}

#[unsafe(no_mangle)]
pub extern "C" fn endpwent() {
    close_stream(&PW_STREAM);
}

#[unsafe(no_mangle)]
pub extern "C" fn getpwent() -> *mut Passwd {
    let f = stream(&PW_STREAM, b"/etc/passwd");
    if f.is_null() {
        return null_mut();
    }
    let mut r = null_mut();
    // SAFETY: an open stream and the static storage (see `Static`).
    let e = unsafe { fgetpwent_r(f, PW.entry.get(), PW.buf.get().cast(), STATIC_BUF, &mut r) };
    if e != 0 {
        return null_mut();
    }
    r
}

#[unsafe(no_mangle)]
pub extern "C" fn setgrent() {
    close_stream(&GR_STREAM);
}

#[unsafe(no_mangle)]
pub extern "C" fn endgrent() {
    close_stream(&GR_STREAM);
}

#[unsafe(no_mangle)]
pub extern "C" fn getgrent() -> *mut Group {
    let f = stream(&GR_STREAM, b"/etc/group");
    if f.is_null() {
        return null_mut();
    }
    let mut r = null_mut();
    // SAFETY: an open stream and the static storage (see `Static`).
    let e = unsafe { fgetgrent_r(f, GR.entry.get(), GR.buf.get().cast(), STATIC_BUF, &mut r) };
    if e != 0 {
        return null_mut();
    }
    r
}

/// `getgrouplist(3)`: `group` first, then every image group that lists `user` as a member.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn getgrouplist(
    user: *const c_char,
    group: Gid,
    groups: *mut Gid,
    ngroups: *mut c_int,
) -> c_int {
    let (Some(user), false) = (arg(user), ngroups.is_null()) else {
        return -1;
    };
    // SAFETY: the caller's count.
    let cap = unsafe { *ngroups }.max(0) as usize;
    let mut n = 0usize;
    let add = |gid: Gid, n: &mut usize| {
        if *n < cap && !groups.is_null() {
            // SAFETY: fewer than `cap` entries of the caller's array.
            unsafe { *groups.add(*n) = gid };
        }
        *n += 1;
    };
    add(group, &mut n);
    if let Some(f) = open_image(b"/etc/group") {
        // SAFETY: the static storage (see `Static`); getgrouplist is not reentrant either here.
        let (gr, buf) = (GR.entry.get(), GR.buf.get().cast::<c_char>());
        loop {
            let mut r: *mut Group = null_mut();
            // SAFETY: an open stream and the static storage.
            if unsafe { fgetgrent_r(f, gr, buf, STATIC_BUF, &mut r) } != 0 || r.is_null() {
                break;
            }
            // SAFETY: a parsed entry: gr_mem is a NULL-terminated array of C strings.
            let g = unsafe { &*r };
            if g.gid == group || g.mem.is_null() {
                continue;
            }
            for k in 0.. {
                // SAFETY: as above, up to the terminating null.
                let m = unsafe { *g.mem.add(k) };
                if m.is_null() {
                    break;
                }
                if named(m, user) {
                    add(g.gid, &mut n);
                    break;
                }
            }
        }
        // SAFETY: f came from fdopen.
        unsafe { fclose(f) };
    }
    // SAFETY: the caller's count.
    unsafe { *ngroups = n as c_int };
    if n > cap { -1 } else { n as c_int }
}
