//! Process hooks: the `exec` family and `posix_spawn`. Every child re-enters through the
//! image's loader with this library preloaded and the configuration in its environment.
//!
//! `execl`-style functions are variadic; without stable C-variadic definitions in Rust they are
//! declared with [`MAX_LIST`] pointer parameters: on x86_64 and aarch64 Linux a variadic pointer
//! is passed exactly like a fixed one (registers, then 8-byte stack slots), and the list is read
//! only up to its terminating NULL.

use core::ffi::{c_char, c_int, c_void};

use crate::config;
use crate::exec::{self, prepare};
use crate::path::{self, Located, PathBuf, cstr, locate};
use crate::real;
use crate::sys::{self, AT_FDCWD};
use crate::{ret, set_errno};

unsafe extern "C" {
    static environ: *const *const c_char;
}

fn current_env() -> *const *const c_char {
    // SAFETY: reading the libc global.
    unsafe { environ }
}

fn do_exec(
    path: *const c_char,
    argv: *const *const c_char,
    envp: *const *const c_char,
    search: bool,
) -> c_int {
    if !config::active() {
        if search {
            // Not configured (a host program): libc's own PATH search.
            return match real::execvpe() {
                // SAFETY: the real execvpe with the caller's arguments.
                Some(f) => unsafe { f(path, argv, envp) },
                None => ret(Err(sys::ENOSYS)),
            };
        }
        return ret(Err(sys::execve(path.cast(), argv.cast(), envp.cast())));
    }
    match prepare(path, argv, envp, search) {
        Ok(l) => ret(Err(sys::execve(
            l.path.cast(),
            l.argv.cast(),
            l.envp.cast(),
        ))),
        Err(e) => ret(Err(e)),
    }
}

#[unsafe(no_mangle)]
pub extern "C" fn execve(
    path: *const c_char,
    argv: *const *const c_char,
    envp: *const *const c_char,
) -> c_int {
    do_exec(path, argv, envp, false)
}
#[unsafe(no_mangle)]
pub extern "C" fn execv(path: *const c_char, argv: *const *const c_char) -> c_int {
    do_exec(path, argv, current_env(), false)
}
#[unsafe(no_mangle)]
pub extern "C" fn execvp(file: *const c_char, argv: *const *const c_char) -> c_int {
    do_exec(file, argv, current_env(), true)
}
#[unsafe(no_mangle)]
pub extern "C" fn execvpe(
    file: *const c_char,
    argv: *const *const c_char,
    envp: *const *const c_char,
) -> c_int {
    do_exec(file, argv, envp, true)
}

/// Most arguments an `execl`-family call may pass (beyond that: `E2BIG`).
const MAX_LIST: usize = 32;

type P = *const c_char;

/// Collect a NULL-terminated variadic list into `out`; returns the index after the NULL.
fn collect(list: &[P; MAX_LIST], out: &mut [P; MAX_LIST + 1]) -> Option<usize> {
    for (k, &p) in list.iter().enumerate() {
        out[k] = p;
        if p.is_null() {
            return Some(k + 1);
        }
    }
    None
}

/// Declares an `execl`-family function: the first argument, then [`MAX_LIST`] list pointers
/// gathered into `$list` for `$body`.
macro_rules! exec_list_fn {
    ($name:ident, $first:ident, $list:ident, $body:block) => {
        #[unsafe(no_mangle)]
        #[allow(clippy::too_many_arguments)]
        pub extern "C" fn $name(
            $first: P,
            a0: P,
            a1: P,
            a2: P,
            a3: P,
            a4: P,
            a5: P,
            a6: P,
            a7: P,
            a8: P,
            a9: P,
            a10: P,
            a11: P,
            a12: P,
            a13: P,
            a14: P,
            a15: P,
            a16: P,
            a17: P,
            a18: P,
            a19: P,
            a20: P,
            a21: P,
            a22: P,
            a23: P,
            a24: P,
            a25: P,
            a26: P,
            a27: P,
            a28: P,
            a29: P,
            a30: P,
            a31: P,
        ) -> c_int {
            let $list: [P; MAX_LIST] = [
                a0, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, a11, a12, a13, a14, a15, a16, a17,
                a18, a19, a20, a21, a22, a23, a24, a25, a26, a27, a28, a29, a30, a31,
            ];
            $body
        }
    };
}

/// The arguments of an `execl`-style list, NULL-terminated, and the index after the NULL.
fn list_argv(list: &[P; MAX_LIST]) -> Option<([P; MAX_LIST + 1], usize)> {
    let mut argv = [core::ptr::null(); MAX_LIST + 1];
    let after = collect(list, &mut argv)?;
    Some((argv, after))
}

exec_list_fn!(execl, path, list, {
    match list_argv(&list) {
        Some((argv, _)) => do_exec(path, argv.as_ptr(), current_env(), false),
        None => ret(Err(sys::E2BIG)),
    }
});

exec_list_fn!(execlp, file, list, {
    match list_argv(&list) {
        Some((argv, _)) => do_exec(file, argv.as_ptr(), current_env(), true),
        None => ret(Err(sys::E2BIG)),
    }
});

exec_list_fn!(execle, path, list, {
    // The environment pointer follows the NULL that ends the arguments.
    match list_argv(&list) {
        Some((argv, after)) if after < MAX_LIST => {
            let envp = list[after] as *const *const c_char;
            do_exec(path, argv.as_ptr(), envp, false)
        }
        _ => ret(Err(sys::E2BIG)),
    }
});

type Args = *const *const c_char;

fn spawn(
    pid: *mut c_int,
    path: *const c_char,
    actions: *const c_void,
    attr: *const c_void,
    argv: Args,
    envp: Args,
    search: bool,
) -> c_int {
    let Some(real) = real::posix_spawn() else {
        return sys::ENOSYS;
    };
    if !config::active() {
        if search {
            // Outside a container posix_spawnp is libc's own.
            let f = real::next(&SPAWNP, b"posix_spawnp\0");
            if f.is_null() {
                return sys::ENOSYS;
            }
            // SAFETY: the real posix_spawnp, same signature as posix_spawn.
            let f: SpawnFn = unsafe { core::mem::transmute(f) };
            // SAFETY: the caller's arguments.
            return unsafe { f(pid, path, actions, attr, argv, envp) };
        }
        // SAFETY: the caller's arguments.
        return unsafe { real(pid, path, actions, attr, argv, envp) };
    }
    let envp = if envp.is_null() { current_env() } else { envp };
    match prepare(path, argv, envp, search) {
        // SAFETY: the real posix_spawn with our prepared vectors, which live until it returns.
        Ok(l) => unsafe { real(pid, l.path, actions, attr, l.argv, l.envp) },
        Err(e) => e,
    }
}

type SpawnFn = unsafe extern "C" fn(
    *mut c_int,
    *const c_char,
    *const c_void,
    *const c_void,
    Args,
    Args,
) -> c_int;
static SPAWNP: core::sync::atomic::AtomicPtr<c_void> =
    core::sync::atomic::AtomicPtr::new(core::ptr::null_mut());

#[unsafe(no_mangle)]
pub extern "C" fn posix_spawn(
    pid: *mut c_int,
    path: *const c_char,
    actions: *const c_void,
    attr: *const c_void,
    argv: Args,
    envp: Args,
) -> c_int {
    spawn(pid, path, actions, attr, argv, envp, false)
}
#[unsafe(no_mangle)]
pub extern "C" fn posix_spawnp(
    pid: *mut c_int,
    file: *const c_char,
    actions: *const c_void,
    attr: *const c_void,
    argv: Args,
    envp: Args,
) -> c_int {
    spawn(pid, file, actions, attr, argv, envp, true)
}

/// The child opens this path with libc's internal `open`, which we cannot see: map it now.
#[unsafe(no_mangle)]
pub extern "C" fn posix_spawn_file_actions_addopen(
    actions: *mut c_void,
    fd: c_int,
    path: *const c_char,
    flags: c_int,
    mode: u32,
) -> c_int {
    let Some(real) = real::addopen() else {
        return sys::ENOSYS;
    };
    let mut host = PathBuf::new();
    let mut p = path;
    if config::active() && !path.is_null() {
        let write =
            flags & sys::O_ACCMODE != sys::O_RDONLY || flags & (sys::O_CREAT | sys::O_TRUNC) != 0;
        // SAFETY: `path` is a non-null C string per open's contract.
        let name = unsafe { cstr(path.cast()) };
        match locate(AT_FDCWD, name, true, write, &mut host) {
            Ok(Located::Pass) => {}
            Ok(Located::Host) => p = host.as_ptr().cast(),
            Err(e) => return e,
        }
    }
    // SAFETY: the real function with a valid path; libc copies it.
    unsafe { real(actions, fd, p, flags, mode) }
}

/// `fexecve` runs a descriptor: nothing to map, but the program must still start through the
/// image's loader, so go through its `/proc/self/fd` path.
#[unsafe(no_mangle)]
pub extern "C" fn fexecve(
    fd: c_int,
    argv: *const *const c_char,
    envp: *const *const c_char,
) -> c_int {
    let mut host = PathBuf::new();
    if let Err(e) = path::fd_path(fd, &mut host) {
        set_errno(e);
        return -1;
    }
    let mut shown = PathBuf::new();
    match path::to_container(host.as_bytes(), &mut shown) {
        Ok(true) => do_exec(shown.as_ptr().cast(), argv, envp, false),
        _ => do_exec(host.as_ptr().cast(), argv, envp, false),
    }
}

/// Used by the constructor to re-enter a program that was started behind our back.
pub fn reexec(path: *const c_char, argv: *const *const c_char) {
    if let Ok(l) = exec::prepare(path, argv, current_env(), false) {
        sys::execve(l.path.cast(), l.argv.cast(), l.envp.cast());
    }
}
