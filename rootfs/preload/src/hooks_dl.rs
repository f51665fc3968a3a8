//! `dlopen` in musl images, whose loader has no audit interface (glibc images rely on the
//! `LD_AUDIT` module instead, which sees every candidate path, and must not have `dlopen`
//! wrapped: a wrapper would become the caller whose `RUNPATH` the loader searches).
//!
//! An absolute or relative path with a `/` loads the image's file; a bare name is searched in the
//! image's library directories (the engine's `--library-path`, host paths) here, so musl never
//! falls through to the host's `/lib` and `/usr/lib`.

use core::ffi::{c_char, c_int, c_void};

use crate::config;
use crate::path::{Located, PathBuf, cstr, locate};
use crate::real;
use crate::sys::{self, AT_FDCWD};

/// `dlopen(3)`, mapped into the image.
#[unsafe(no_mangle)]
pub extern "C" fn dlopen(path: *const c_char, flags: c_int) -> *mut c_void {
    let Some(real) = real::dlopen() else {
        crate::set_errno(sys::ENOSYS);
        return core::ptr::null_mut();
    };
    if path.is_null() || !config::active() {
        // SAFETY: the real dlopen, arguments as given.
        return unsafe { real(path, flags) };
    }
    // SAFETY: a non-null C string per dlopen's contract.
    let name = unsafe { cstr(path.cast()) };
    let mut host = PathBuf::new();
    let mapped = if name.contains(&b'/') {
        matches!(
            locate(AT_FDCWD, name, true, false, &mut host),
            Ok(Located::Host)
        )
    } else {
        search(name, &mut host)
    };
    let p = if mapped { host.as_ptr().cast() } else { path };
    // SAFETY: the real dlopen with a valid C string.
    unsafe { real(p, flags) }
}

/// Find a bare library name in the image's directories; when it is nowhere, a path under the
/// image root that does not exist, so the loader reports the failure (`dlerror`) without
/// looking on the host.
fn search(name: &[u8], out: &mut PathBuf) -> bool {
    let cfg = config::get();
    for dir in cfg
        .library_path
        .split(|&b| b == b':')
        .filter(|d| !d.is_empty())
    {
        if out.set(dir).is_ok()
            && out.push(b"/").is_ok()
            && out.push(name).is_ok()
            && sys::faccessat(AT_FDCWD, out.as_ptr(), 0).is_ok()
        {
            return true;
        }
    }
    out.set(cfg.root).is_ok()
        && out.push(b"/.scar-library-not-in-image/").is_ok()
        && out.push(name).is_ok()
}
