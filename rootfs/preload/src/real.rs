//! The libc functions we wrap, found with `dlsym(RTLD_NEXT, …)` on first use.
//!
//! Only functions that return libc objects (`FILE`, `DIR`, a loaded library, a spawned process)
//! go to libc; everything else is a raw system call. `dlsym` is the one libc entry point that
//! changed version in glibc 2.34; the 2.17-baseline build binds the old version.

use core::ffi::{c_char, c_int, c_void};
use core::sync::atomic::{AtomicPtr, Ordering};

unsafe extern "C" {
    fn dlsym(handle: *mut c_void, name: *const c_char) -> *mut c_void;
}

/// `RTLD_NEXT` on glibc and musl.
const RTLD_NEXT: *mut c_void = -1isize as *mut c_void;
/// `RTLD_DEFAULT` on glibc and musl.
const RTLD_DEFAULT: *mut c_void = core::ptr::null_mut();

/// Look `name` (NUL-terminated) up after this library, caching the answer in `slot`.
pub fn next(slot: &AtomicPtr<c_void>, name: &[u8]) -> *mut c_void {
    let p = slot.load(Ordering::Relaxed);
    if !p.is_null() {
        return p;
    }
    // SAFETY: `name` is a NUL-terminated literal; dlsym is thread-safe.
    let p = unsafe { dlsym(RTLD_NEXT, name.as_ptr().cast()) };
    slot.store(p, Ordering::Relaxed);
    p
}

/// Look a global symbol (e.g. a libc variable) up in the whole process.
pub fn global(name: &[u8]) -> *mut c_void {
    // SAFETY: as in `next`.
    unsafe { dlsym(RTLD_DEFAULT, name.as_ptr().cast()) }
}

/// Declare an accessor for the next definition of a libc function.
macro_rules! real_fn {
    ($accessor:ident, $name:literal, $ty:ty) => {
        pub fn $accessor() -> Option<$ty> {
            static SLOT: AtomicPtr<c_void> = AtomicPtr::new(core::ptr::null_mut());
            let p = next(&SLOT, concat!($name, "\0").as_bytes());
            if p.is_null() {
                None
            } else {
                // SAFETY: the symbol named is the libc function of exactly this C signature.
                Some(unsafe { core::mem::transmute::<*mut c_void, $ty>(p) })
            }
        }
    };
}

pub type File = c_void;

real_fn!(
    freopen,
    "freopen",
    unsafe extern "C" fn(*const c_char, *const c_char, *mut File) -> *mut File
);
real_fn!(
    freopen64,
    "freopen64",
    unsafe extern "C" fn(*const c_char, *const c_char, *mut File) -> *mut File
);
real_fn!(
    scandir,
    "scandir",
    unsafe extern "C" fn(*const c_char, *mut c_void, *const c_void, *const c_void) -> c_int
);
real_fn!(
    scandir64,
    "scandir64",
    unsafe extern "C" fn(*const c_char, *mut c_void, *const c_void, *const c_void) -> c_int
);
real_fn!(
    nftw,
    "nftw",
    unsafe extern "C" fn(*const c_char, *const c_void, c_int, c_int) -> c_int
);
real_fn!(
    nftw64,
    "nftw64",
    unsafe extern "C" fn(*const c_char, *const c_void, c_int, c_int) -> c_int
);
#[cfg(target_env = "musl")]
real_fn!(
    dlopen,
    "dlopen",
    unsafe extern "C" fn(*const c_char, c_int) -> *mut c_void
);
real_fn!(
    posix_spawn,
    "posix_spawn",
    unsafe extern "C" fn(
        *mut c_int,
        *const c_char,
        *const c_void,
        *const c_void,
        *const *const c_char,
        *const *const c_char,
    ) -> c_int
);
real_fn!(
    addopen,
    "posix_spawn_file_actions_addopen",
    unsafe extern "C" fn(*mut c_void, c_int, *const c_char, c_int, u32) -> c_int
);
real_fn!(
    realpath,
    "realpath",
    unsafe extern "C" fn(*const c_char, *mut c_char) -> *mut c_char
);
real_fn!(
    execvpe,
    "execvpe",
    unsafe extern "C" fn(*const c_char, *const *const c_char, *const *const c_char) -> c_int
);
