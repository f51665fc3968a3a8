//! `libscar_audit.so`: the preload engine's `LD_AUDIT` module for glibc images.
//!
//! The image's dynamic loader opens libraries itself: absolute `RUNPATH`/`RPATH` directories,
//! `DT_NEEDED` entries with a slash, `$ORIGIN`, its default and `ld.so.conf` directories, and
//! every `dlopen`, libc's own included (NSS modules, gconv). No `LD_PRELOAD` hook sees those
//! opens, so without this module they would find the host's files (on Lambda: Amazon Linux's, or
//! nothing). glibc's audit interface hands every candidate path to `la_objsearch` before it is
//! opened; this module answers with the host path of what the candidate names *inside the
//! image*, resolved with the same rules as the `LD_PRELOAD` library (`openat2(RESOLVE_IN_ROOT)`,
//! or the userspace walk where `openat2` is missing), sharing its source files.
//!
//! What passes unchanged: bare names at `LA_SER_ORIG` (the search then proposes full paths),
//! relative paths (relative to a working directory the library already keeps in the image), and
//! the engine's own libraries. Paths already under the image root are resolved again inside the
//! image, so an absolute symlink in the image cannot point the loader at the host.
//!
//! The module has no `DT_NEEDED` entry at all: glibc loads audit modules into a link-map
//! namespace of their own, where a libc dependency would load and initialize a second libc in
//! every process. It reads its configuration (`SCAR_PRELOAD_*`, see `../src/config.rs`) from
//! `/proc/self/environ`, the environment the loader started with.
//!
//! What a container process still reads from the host under the preload engine (for the
//! README), each opened by libc or the loader internally, past every hook:
//! - `/etc/resolv.conf`, `/etc/hosts`, `/etc/nsswitch.conf`, `/etc/host.conf`, `/etc/gai.conf`:
//!   on purpose, DNS must work as the host's (the namespace engine gives the container the host's
//!   `resolv.conf` and `hosts` too). Users and groups do not go through NSS: the library's
//!   `getpw*`/`getgr*` read the image's `/etc/passwd` and `/etc/group` (glibc images).
//! - `/etc/services`, `/etc/protocols`, `/etc/networks`, `/etc/shadow`: the host's (libc's NSS).
//! - `/usr/lib/locale/locale-archive` when the image has one (`LOCPATH` would switch the archive
//!   off, so the engine sets it only for images whose locales are directories).
//! - glibc's compiled-in gconv directory's `gconv-modules` (read after `GCONV_PATH`'s); the
//!   modules it names are mapped into the image by this module.
//! - Message catalogs (`/usr/share/locale/*/LC_MESSAGES`): the host's, so messages stay English.
//! - `/etc/ld.so.preload` (the loader's; the objects it names are mapped into the image).
//! - musl images: `/etc/passwd`, `/etc/group` and zoneinfo by name (musl opens them with a raw
//!   system call), a `DT_NEEDED` with a slash, and a library missing from the image, which musl
//!   then looks for in its built-in directories on the host.
//! - Static programs and programs that make system calls themselves.

#![no_std]
#![allow(clippy::missing_safety_doc)]

#[allow(dead_code)]
#[path = "../../src/config.rs"]
mod config;
#[allow(dead_code)]
#[path = "../../src/path.rs"]
mod path;
#[allow(dead_code)]
#[path = "../../src/sys.rs"]
mod sys;

mod mem;

pub(crate) use path::cstr;

use core::cell::UnsafeCell;
use core::ffi::{c_char, c_uint};

use path::{PathBuf, under};

/// `la_objsearch` flag: the name as the program or a `DT_NEEDED` entry gave it.
const LA_SER_ORIG: c_uint = 0x01;
/// Most bytes of `/proc/self/environ` read (the kernel's `ARG_MAX` for the whole exec block).
const ENVIRON_MAX: usize = 2 * 1024 * 1024;

/// The answer handed back to the loader, which uses it before it asks again (every search runs
/// under its load lock, and at `LA_SER_ORIG` it copies the name).
struct Answer(UnsafeCell<PathBuf>);

// SAFETY: the loader calls `la_objsearch` with its load lock held, one call at a time; the buffer
// is only touched inside that call.
unsafe impl Sync for Answer {}

static ANSWER: Answer = Answer(UnsafeCell::new(PathBuf::new()));

/// First call of the loader: read the configuration, accept its interface version.
#[unsafe(no_mangle)]
pub extern "C" fn la_version(version: c_uint) -> c_uint {
    load_config();
    // Any version the loader offers: only `la_objsearch` is used, the same in versions 1 and 2.
    version
}

/// Every candidate file name the loader is about to open; returns the name to open instead.
///
/// # Safety
/// Called by the loader with a NUL-terminated `name` and its cookie of the requesting object.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn la_objsearch(
    name: *const c_char,
    cookie: *mut usize,
    flag: c_uint,
) -> *mut c_char {
    if name.is_null() || !config::active() {
        return name.cast_mut();
    }
    // SAFETY: the loader passes a NUL-terminated string.
    let given = unsafe { cstr(name.cast()) };
    // SAFETY: the loader holds its lock during the call (see `Answer`).
    let out = unsafe { &mut *ANSWER.0.get() };
    let mapped = if flag == LA_SER_ORIG && given.contains(&b'$') {
        // A `DT_NEEDED` with `$ORIGIN` is expanded by the loader against its own idea of the
        // object's directory and then opened without a further search: expand it here.
        // SAFETY: cookie per the contract (glibc starts it as the requesting link map).
        let origin = unsafe { requester_dir(cookie) };
        let mut joined = PathBuf::new();
        match origin {
            Some(dir) if expand_origin(given, dir.as_bytes(), &mut joined).is_ok() => {
                map(joined.as_bytes(), out)
            }
            _ => false,
        }
    } else if flag == LA_SER_ORIG && !given.contains(&b'/') {
        // SAFETY: cookie per the contract.
        unsafe { search_own_path(given, cookie, out) }
    } else {
        map(given, out)
    };
    if mapped {
        out.as_ptr().cast::<c_char>().cast_mut()
    } else {
        name.cast_mut()
    }
}

/// The loader's view of one loaded object (the public head of glibc's `struct link_map`).
#[repr(C)]
struct LinkMap {
    addr: usize,
    name: *const u8,
    ld: *const Dyn,
}

/// An entry of an object's dynamic section.
#[repr(C)]
struct Dyn {
    tag: i64,
    val: u64,
}

const DT_NULL: i64 = 0;
const DT_STRTAB: i64 = 5;
const DT_RPATH: i64 = 15;
const DT_RUNPATH: i64 = 29;
/// Dynamic entries read before giving up on a malformed section.
const MAX_DYN: usize = 4096;

/// Search the requesting object's own `RUNPATH` (or `RPATH`) inside the image for a bare name.
///
/// The loader searches those directories itself too, with each candidate passed through
/// [`map`]; but when a candidate is missing it `stat`s the *directory* on the host, and marks a
/// directory the host lacks (Debian's `/usr/lib/<triplet>/pulseaudio` on Amazon Linux) as
/// nonexistent for the rest of the process, so a later library or `dlopen` from there would
/// fail. Finding the file here first, and handing the loader its full path, avoids that.
///
/// # Safety
/// `cookie` is null or the loader's cookie of the requesting object (its link map).
unsafe fn search_own_path(name: &[u8], cookie: *mut usize, out: &mut PathBuf) -> bool {
    let link = if cookie.is_null() {
        0
    } else {
        // SAFETY: a non-null cookie is the loader's, readable per the contract.
        unsafe { *cookie }
    };
    if link == 0 {
        return false;
    }
    // SAFETY: glibc starts each cookie as the object's link map, whose public head it is.
    let lm = unsafe { &*(link as *const LinkMap) };
    if lm.ld.is_null() {
        return false;
    }
    let (mut strtab, mut rpath, mut runpath) = (0u64, None, None);
    for i in 0..MAX_DYN {
        // SAFETY: the dynamic section is an array ended by DT_NULL.
        let d = unsafe { &*lm.ld.add(i) };
        match d.tag {
            DT_NULL => break,
            DT_STRTAB => strtab = d.val,
            DT_RPATH => rpath = Some(d.val),
            DT_RUNPATH => runpath = Some(d.val),
            _ => {}
        }
    }
    // The loader relocates DT_STRTAB in place on x86_64 and aarch64; an unrelocated one is
    // still an offset from the load address.
    let strtab = if strtab < lm.addr as u64 {
        strtab + lm.addr as u64
    } else {
        strtab
    };
    let Some(off) = runpath.or(rpath) else {
        return false;
    };
    if strtab == 0 {
        return false;
    }
    // SAFETY: DT_RUNPATH/DT_RPATH are offsets of NUL-terminated strings in the string table.
    let list = unsafe { cstr((strtab + off) as *const u8) };
    let cfg = config::get();
    let mut candidate = PathBuf::new();
    if runpath.is_some() {
        // RUNPATH comes after LD_LIBRARY_PATH (the engine's `--library-path`, image dirs as
        // host paths): what the loader finds there needs no help.
        for dir in cfg
            .library_path
            .split(|&b| b == b':')
            .filter(|d| !d.is_empty())
        {
            if candidate.set(dir).is_ok()
                && candidate.push(b"/").is_ok()
                && candidate.push(name).is_ok()
                && sys::faccessat(sys::AT_FDCWD, candidate.as_ptr(), 0).is_ok()
            {
                return false;
            }
        }
    }
    // SAFETY: cookie per the contract.
    let origin = unsafe { requester_dir(cookie) };
    let mut dir = PathBuf::new();
    for entry in list.split(|&b| b == b':').filter(|d| !d.is_empty()) {
        let expanded = if entry.contains(&b'$') {
            match &origin {
                Some(o) if expand_origin(entry, o.as_bytes(), &mut dir).is_ok() => dir.as_bytes(),
                _ => continue,
            }
        } else {
            entry
        };
        if candidate.set(expanded).is_err()
            || candidate.push(b"/").is_err()
            || candidate.push(name).is_err()
        {
            continue;
        }
        if map(candidate.as_bytes(), out) && sys::faccessat(sys::AT_FDCWD, out.as_ptr(), 0).is_ok()
        {
            return true;
        }
    }
    false
}

/// The container directory of the object that asked for a library (the program's for the main
/// map, whose name is empty).
///
/// # Safety
/// `cookie` is null or the loader's cookie, which glibc initializes to the object's link map.
unsafe fn requester_dir(cookie: *mut usize) -> Option<PathBuf> {
    let mut file = PathBuf::new();
    let map = if cookie.is_null() {
        0
    } else {
        // SAFETY: a non-null cookie is the loader's, readable per the contract.
        unsafe { *cookie }
    };
    let name: &[u8] = if map == 0 {
        b""
    } else {
        // SAFETY: the cookie is the link map; its name is a C string (possibly empty).
        let n = unsafe { (*(map as *const LinkMap)).name };
        if n.is_null() {
            b""
        } else {
            // SAFETY: a non-null name is the loader's C string.
            unsafe { cstr(n) }
        }
    };
    let name = if name.is_empty() {
        config::get().exe
    } else {
        name
    };
    if !name.starts_with(b"/") {
        return None;
    }
    if !path::to_container(name, &mut file).ok()? {
        file.set(name).ok()?;
    }
    let b = file.as_bytes();
    let cut = b.iter().rposition(|&c| c == b'/')?;
    let mut dir = PathBuf::new();
    dir.set(if cut == 0 { b"/" } else { &b[..cut] }).ok()?;
    Some(dir)
}

/// Replace `$ORIGIN` and `${ORIGIN}` in `name` by `origin`.
fn expand_origin(name: &[u8], origin: &[u8], out: &mut PathBuf) -> Result<(), sys::Errno> {
    out.set(b"")?;
    let mut rest = name;
    while let Some(i) = rest.iter().position(|&b| b == b'$') {
        out.push(&rest[..i])?;
        let tail = &rest[i..];
        if let Some(t) = tail.strip_prefix(b"${ORIGIN}") {
            out.push(origin)?;
            rest = t;
        } else if let Some(t) = tail.strip_prefix(b"$ORIGIN").filter(|t| {
            !t.first()
                .is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'_')
        }) {
            out.push(origin)?;
            rest = t;
        } else {
            // `$LIB`, `$PLATFORM`: left to the loader, whose expansion is then searched again.
            return Err(sys::EINVAL);
        }
    }
    out.push(rest)
}

/// The host path the loader should open for `name`, in `out`; `false`: pass `name` as is.
fn map(name: &[u8], out: &mut PathBuf) -> bool {
    if !name.starts_with(b"/") {
        return false;
    }
    let cfg = config::get();
    if name == cfg.lib || name == cfg.audit || own_dir(name, cfg.lib) {
        return false;
    }
    let mut norm = PathBuf::new();
    if path::normalize(name, &mut norm).is_err() {
        return false;
    }
    // A host path into the image (the loader's `--library-path`, an object's `$ORIGIN`) is
    // resolved again inside the image: an absolute symlink there names an image file.
    let mut abs = PathBuf::new();
    match path::to_container(norm.as_bytes(), &mut abs) {
        Ok(true) if under(norm.as_bytes(), cfg.root) => {}
        _ => {
            if abs.set(norm.as_bytes()).is_err() {
                return false;
            }
        }
    }
    if path::locate_abs(abs.as_bytes(), true, false, out).is_ok() {
        return true;
    }
    // Missing in the image: a path under the root that does not exist either, so the open fails
    // there and the loader goes on with its next candidate instead of finding the host's file.
    out.set(cfg.root).is_ok() && out.push(abs.as_bytes()).is_ok()
}

/// `true` when `name` lies in the directory of the engine's libraries.
fn own_dir(name: &[u8], lib: &[u8]) -> bool {
    match lib.iter().rposition(|&c| c == b'/') {
        Some(cut) if cut > 0 => under(name, &lib[..cut]),
        _ => false,
    }
}

/// Read `SCAR_PRELOAD_*` from the environment the process was started with.
fn load_config() {
    let Ok(buf) = sys::mmap_anon(ENVIRON_MAX) else {
        return;
    };
    // SAFETY: the mapping is ours, ENVIRON_MAX bytes, released below.
    let block = unsafe { core::slice::from_raw_parts_mut(buf, ENVIRON_MAX) };
    let len = read_environ(block);
    // One NUL terminator past the data, then room for the pointer array after it.
    let ptrs_at = (len + 1).next_multiple_of(8);
    let count = block[..len].iter().filter(|&&b| b == 0).count();
    if ptrs_at + (count + 1) * 8 <= ENVIRON_MAX {
        block[len] = 0;
        let base = buf as usize;
        let mut n = 0;
        let mut start = 0;
        for (i, &b) in block[..len].iter().enumerate() {
            if b == 0 {
                // SAFETY: within the mapping, 8-byte aligned; `n <= count`.
                unsafe { *((base + ptrs_at) as *mut usize).add(n) = base + start };
                n += 1;
                start = i + 1;
            }
        }
        // SAFETY: as above, the terminating null pointer.
        unsafe { *((base + ptrs_at) as *mut usize).add(n) = 0 };
        // SAFETY: la_version runs once, before the loader maps the program's libraries, with no
        // other thread; the array is NULL-terminated and its strings NUL-terminated. `init`
        // copies what it keeps.
        unsafe { config::init((base + ptrs_at) as *const *const u8) };
    }
    sys::munmap(buf, ENVIRON_MAX);
}

/// The bytes of `/proc/self/environ` (NUL-separated entries), as many as fit.
fn read_environ(block: &mut [u8]) -> usize {
    let Ok(fd) = sys::openat(
        sys::AT_FDCWD,
        c"/proc/self/environ".as_ptr().cast(),
        sys::O_RDONLY | sys::O_CLOEXEC,
        0,
    ) else {
        return 0;
    };
    // Leave room for the terminator and the pointer array.
    let cap = block.len() / 2;
    let mut len = 0;
    while len < cap {
        match sys::read(fd, &mut block[len..cap]) {
            Ok(0) | Err(_) => break,
            Ok(n) => len += n,
        }
    }
    sys::close(fd);
    // A truncated last entry is dropped rather than read as a shorter value.
    match block[..len].iter().rposition(|&b| b == 0) {
        Some(last) => last + 1,
        None => 0,
    }
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    let _ = sys::write(2, b"scar-audit: internal error\n");
    loop {
        // SAFETY: kill(getpid(), SIGABRT) has no memory arguments.
        unsafe {
            #[cfg(target_arch = "x86_64")]
            sys::syscall6(62, [sys::getpid() as usize, 6, 0, 0, 0, 0]);
            #[cfg(target_arch = "aarch64")]
            sys::syscall6(129, [sys::getpid() as usize, 6, 0, 0, 0, 0]);
        }
    }
}
