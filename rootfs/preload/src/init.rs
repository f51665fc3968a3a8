//! The library constructor: read the configuration, re-enter the image when a program was
//! started behind our back, and give the program the `argv[0]` its parent asked for.

use core::ffi::{c_char, c_int};

use crate::config;
use crate::path::{self, PathBuf, cstr};
use crate::sys::{self, AT_FDCWD};

unsafe extern "C" {
    static environ: *const *const u8;
}

#[used]
#[unsafe(link_section = ".init_array")]
static INIT: unsafe extern "C" fn(c_int, *mut *const c_char, *const *const c_char) = init;

/// glibc passes `(argc, argv, envp)` to constructors; musl passes nothing, so those arguments
/// are only read in the glibc build.
unsafe extern "C" fn init(_argc: c_int, _argv: *mut *const c_char, _envp: *const *const c_char) {
    // SAFETY: constructors run before any thread of the program; `environ` is the initial
    // environment array.
    unsafe { config::init(environ) };
    if !config::active() {
        return;
    }
    reenter_if_escaped();
    let argv0 = config::get().argv0;
    if argv0.is_empty() {
        return;
    }
    // The loader started the program as `<root>/usr/bin/x`; show what the parent asked for.
    #[cfg(not(target_env = "musl"))]
    if _argc > 0 && !_argv.is_null() {
        // SAFETY: glibc's argv array is writable and is the one `main` receives; the new string
        // is NUL-terminated and lives in our static arena.
        unsafe { *_argv = argv0.as_ptr().cast() };
    }
    #[cfg(target_env = "musl")]
    set_argv0_musl(argv0);
    set_invocation_name(argv0);
}

/// glibc's `program_invocation_name` (used by `error()`, `err()`) was set from the loader's
/// `argv[0]` before we ran.
fn set_invocation_name(argv0: &'static [u8]) {
    let full = crate::real::global(b"program_invocation_name\0").cast::<*const u8>();
    let short = crate::real::global(b"program_invocation_short_name\0").cast::<*const u8>();
    let base = argv0.iter().rposition(|&b| b == b'/').map_or(0, |p| p + 1);
    // SAFETY: when present these are libc's `char *` variables; our strings are static and
    // NUL-terminated (the short name is a suffix of the full one).
    unsafe {
        if !full.is_null() {
            *full = argv0.as_ptr();
        }
        if !short.is_null() {
            *short = argv0.as_ptr().add(base);
        }
    }
}

/// musl calls constructors without arguments. Its loader leaves `argc, argv[0..argc], NULL`
/// right below the environment array, so `argv` is found from `environ`: walk down until the
/// slot holding the count of the pointers above it, and check `argv[0]` is the host path of the
/// program (under the image root) before replacing it.
#[cfg(target_env = "musl")]
fn set_argv0_musl(argv0: &'static [u8]) {
    // SAFETY: reading the libc global.
    let env = unsafe { environ } as *mut usize;
    let floor = &argv0 as *const _ as usize;
    // SAFETY: the words below the environment array are argv and argc on the initial stack,
    // above our own frames; each read is checked to stay above the current stack pointer.
    unsafe {
        if env.is_null() || *env.sub(1) != 0 {
            return;
        }
        for k in 1..4096usize {
            let slot = env.sub(2 + k);
            if (slot as usize) <= floor {
                return;
            }
            if *slot == k {
                let a0 = env.sub(1 + k);
                let p = *a0;
                if p > env as usize
                    && p < env as usize + (8 << 20)
                    && cstr(p as *const u8).starts_with(config::get().root)
                {
                    *a0 = argv0.as_ptr() as usize;
                }
                return;
            }
            if *env.sub(1 + k) == 0 {
                return;
            }
        }
    }
}

/// A program reached by an `execve` that did not go through us (libc's `system()` and
/// `popen()` call it internally) is the host's file, run by the host's loader, which loaded us
/// because `LD_PRELOAD` was inherited. Start the image's program of the same name instead.
fn reenter_if_escaped() {
    let mut exe = [0u8; path::PATH_MAX];
    let Ok(n) = sys::readlinkat(AT_FDCWD, c"/proc/self/exe".as_ptr().cast(), &mut exe) else {
        return;
    };
    if path::under(&exe[..n], config::get().root) {
        return;
    }
    let Some(execfn) = auxv_execfn() else { return };
    // The command line as the kernel received it.
    const CMDLINE_MAX: usize = 256 * 1024;
    let Ok(mem) = sys::mmap_anon(CMDLINE_MAX) else {
        return;
    };
    let r = read_cmdline(mem, CMDLINE_MAX);
    if let Some(argv) = r {
        crate::hooks_exec::reexec(execfn.as_ptr().cast(), argv);
    }
    sys::munmap(mem, CMDLINE_MAX);
}

/// `AT_EXECFN`: the path given to `execve`, as the program named it.
fn auxv_execfn() -> Option<PathBuf> {
    const AT_EXECFN: u64 = 31;
    let fd = sys::openat(
        AT_FDCWD,
        c"/proc/self/auxv".as_ptr().cast(),
        sys::O_RDONLY | sys::O_CLOEXEC,
        0,
    )
    .ok()?;
    let mut buf = [0u8; 1024];
    let n = sys::read(fd, &mut buf);
    sys::close(fd);
    let n = n.ok()?;
    for pair in buf[..n].chunks_exact(16) {
        let t = u64::from_ne_bytes(pair[..8].try_into().ok()?);
        let v = u64::from_ne_bytes(pair[8..].try_into().ok()?);
        if t == AT_EXECFN && v != 0 {
            let mut p = PathBuf::new();
            // SAFETY: the kernel put a NUL-terminated string at this address of our stack.
            p.set(unsafe { cstr(v as *const u8) }).ok()?;
            return Some(p);
        }
    }
    None
}

/// Read `/proc/self/cmdline` into `mem` and build a NULL-terminated pointer array after it.
fn read_cmdline(mem: *mut u8, cap: usize) -> Option<*const *const c_char> {
    let fd = sys::openat(
        AT_FDCWD,
        c"/proc/self/cmdline".as_ptr().cast(),
        sys::O_RDONLY | sys::O_CLOEXEC,
        0,
    )
    .ok()?;
    let half = cap / 2;
    // SAFETY: the first half of our fresh mapping holds the text.
    let text = unsafe { core::slice::from_raw_parts_mut(mem, half) };
    let mut len = 0;
    loop {
        match sys::read(fd, &mut text[len..]) {
            Ok(0) => break,
            Ok(k) => len += k,
            Err(_) => {
                sys::close(fd);
                return None;
            }
        }
        if len == half {
            sys::close(fd);
            return None;
        }
    }
    sys::close(fd);
    // SAFETY: the second half holds the pointers; it is 8-byte aligned (half of a page multiple).
    let ptrs = unsafe { mem.add(half) }.cast::<*const c_char>();
    let max = half / 8 - 1;
    let mut count = 0;
    let mut start = 0;
    for i in 0..len {
        if text[i] == 0 {
            if count == max {
                return None;
            }
            // SAFETY: within the pointer half.
            unsafe { *ptrs.add(count) = text[start..].as_ptr().cast() };
            count += 1;
            start = i + 1;
        }
    }
    // SAFETY: count <= max.
    unsafe { *ptrs.add(count) = core::ptr::null() };
    Some(ptrs.cast_const())
}
