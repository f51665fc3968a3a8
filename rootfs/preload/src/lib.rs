//! `libscar_preload.so`: the `LD_PRELOAD` library of SCAR's preload engine.
//!
//! Loaded by the image's own dynamic loader into every program of a container on hosts that
//! refuse user namespaces (AWS Lambda), it maps the absolute paths a program names into the
//! image's root filesystem, and starts child programs again through the image's loader with
//! itself preloaded. It is `no_std`, does its work with raw system calls and needs from libc only
//! symbols that glibc 2.17 already had (a test checks the versions), so one build loads into
//! images from CentOS 7 to the newest; a second build serves musl images.
//!
//! Not a security boundary: a program that makes system calls itself, or a static binary, sees
//! the host.

#![no_std]
#![allow(clippy::missing_safety_doc)]

mod config;
mod exec;
mod hooks_dir;
#[cfg(target_env = "musl")]
mod hooks_dl;
mod hooks_exec;
mod hooks_fs;
mod hooks_meta;
mod hooks_net;
#[cfg(not(target_env = "musl"))]
mod hooks_nss;
mod init;
mod path;
mod real;
mod sys;

pub(crate) use path::cstr;

use core::ffi::c_int;

// libc itself, and for glibc before 2.34 `dlsym` lives in libdl (2.34+ keeps a stub libdl.so.2).
#[link(name = "c")]
unsafe extern "C" {
    fn __errno_location() -> *mut c_int;
}
#[cfg(not(target_env = "musl"))]
#[link(name = "dl")]
unsafe extern "C" {}

/// Store `e` in the calling thread's `errno`.
#[inline]
pub(crate) fn set_errno(e: sys::Errno) {
    // SAFETY: `__errno_location` returns the calling thread's errno slot (glibc and musl).
    unsafe { *__errno_location() = e };
}

/// A C return value: the result, or −1 with `errno` set.
#[inline]
pub(crate) fn ret(r: Result<usize, sys::Errno>) -> c_int {
    match r {
        Ok(v) => v as c_int,
        Err(e) => {
            set_errno(e);
            -1
        }
    }
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    // Nothing sensible can be reported from inside another program's libc calls; stop the
    // process the way `abort()` would.
    let _ = sys::write(2, b"scar-preload: internal error\n");
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
