//! `bind`/`connect` on `AF_UNIX` socket paths.

use core::ffi::{c_int, c_void};

use crate::config;
use crate::path::{Located, PathBuf, cstr, locate};
use crate::ret;
use crate::sys::{self, AT_FDCWD, Errno};

const AF_UNIX: u16 = 1;
/// `sizeof(sun_path)`.
const SUN_PATH: usize = 108;

/// Call `op` with the address, its `sun_path` mapped when it names a filesystem socket.
fn with_addr(
    addr: *const c_void,
    len: u32,
    write: bool,
    op: impl FnOnce(*const u8, u32) -> Result<usize, Errno>,
) -> c_int {
    let a = addr.cast::<u8>();
    if !config::active() || a.is_null() || (len as usize) < 3 {
        return ret(op(a, len));
    }
    // SAFETY: the caller passes `len` readable bytes of a sockaddr.
    let bytes = unsafe { core::slice::from_raw_parts(a, (len as usize).min(2 + SUN_PATH)) };
    // Abstract sockets (leading NUL) and other families have no path.
    if u16::from_ne_bytes([bytes[0], bytes[1]]) != AF_UNIX || bytes[2] == 0 {
        return ret(op(a, len));
    }
    let raw = &bytes[2..];
    let raw = &raw[..raw.iter().position(|&b| b == 0).unwrap_or(raw.len())];
    let mut p = PathBuf::new();
    if let Err(e) = p.set(raw) {
        return ret(Err(e));
    }
    let mut host = PathBuf::new();
    // SAFETY: `p` is NUL-terminated.
    let name = unsafe { cstr(p.as_ptr()) };
    match locate(AT_FDCWD, name, true, write, &mut host) {
        Ok(Located::Pass) => ret(op(a, len)),
        Ok(Located::Host) => {
            let h = host.as_bytes();
            if h.len() >= SUN_PATH {
                return ret(Err(sys::ENAMETOOLONG));
            }
            let mut sa = [0u8; 2 + SUN_PATH];
            sa[..2].copy_from_slice(&AF_UNIX.to_ne_bytes());
            sa[2..2 + h.len()].copy_from_slice(h);
            ret(op(sa.as_ptr(), (2 + h.len() + 1) as u32))
        }
        Err(e) => ret(Err(e)),
    }
}

#[unsafe(no_mangle)]
pub extern "C" fn bind(fd: c_int, addr: *const c_void, len: u32) -> c_int {
    with_addr(addr, len, true, |a, l| sys::bind(fd, a, l))
}

#[unsafe(no_mangle)]
pub extern "C" fn connect(fd: c_int, addr: *const c_void, len: u32) -> c_int {
    with_addr(addr, len, false, |a, l| sys::connect(fd, a, l))
}
