//! The memory functions the compiler may call, for a library linked without libc.
//!
//! Every access is volatile so that the optimizer cannot recognize the loops as `memcpy` and
//! friends and turn them into calls to themselves.

use core::ffi::c_int;
use core::ptr::{read_volatile, write_volatile};

/// `memcpy(3)`.
///
/// # Safety
/// As C's: `n` bytes readable at `src`, writable at `dst`, not overlapping.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memcpy(dst: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    for i in 0..n {
        // SAFETY: per the contract.
        unsafe { write_volatile(dst.add(i), read_volatile(src.add(i))) };
    }
    dst
}

/// `memmove(3)`.
///
/// # Safety
/// As C's: `n` bytes readable at `src`, writable at `dst`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memmove(dst: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    if (dst as usize) <= (src as usize) {
        for i in 0..n {
            // SAFETY: per the contract; forward copy is safe when dst precedes src.
            unsafe { write_volatile(dst.add(i), read_volatile(src.add(i))) };
        }
    } else {
        for i in (0..n).rev() {
            // SAFETY: per the contract; backward copy is safe when dst follows src.
            unsafe { write_volatile(dst.add(i), read_volatile(src.add(i))) };
        }
    }
    dst
}

/// `memset(3)`.
///
/// # Safety
/// As C's: `n` bytes writable at `dst`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memset(dst: *mut u8, c: c_int, n: usize) -> *mut u8 {
    for i in 0..n {
        // SAFETY: per the contract.
        unsafe { write_volatile(dst.add(i), c as u8) };
    }
    dst
}

/// `memcmp(3)`.
///
/// # Safety
/// As C's: `n` bytes readable at `a` and `b`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memcmp(a: *const u8, b: *const u8, n: usize) -> c_int {
    for i in 0..n {
        // SAFETY: per the contract.
        let (x, y) = unsafe { (read_volatile(a.add(i)), read_volatile(b.add(i))) };
        if x != y {
            return x as c_int - y as c_int;
        }
    }
    0
}

/// `bcmp(3)`: zero when equal.
///
/// # Safety
/// As C's: `n` bytes readable at `a` and `b`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn bcmp(a: *const u8, b: *const u8, n: usize) -> c_int {
    // SAFETY: same contract.
    unsafe { memcmp(a, b, n) }
}

/// `strlen(3)`.
///
/// # Safety
/// As C's: `s` is NUL-terminated.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn strlen(s: *const u8) -> usize {
    let mut n = 0;
    // SAFETY: per the contract, every byte up to the NUL is readable.
    while unsafe { read_volatile(s.add(n)) } != 0 {
        n += 1;
    }
    n
}

/// `getauxval(3)`, which the aarch64 compiler runtime asks for CPU features (LSE atomics) from
/// a constructor. Answering "no features" selects its portable code paths.
#[cfg(target_arch = "aarch64")]
#[unsafe(no_mangle)]
pub extern "C" fn getauxval(_kind: core::ffi::c_ulong) -> core::ffi::c_ulong {
    0
}
