//! What the engine tells the library, read once from the environment when the library loads.
//!
//! The engine (rootfs/src/engine/preload.rs) sets these variables; the exec hooks set them again
//! for every child, so a program that clears its environment (`env -i`) still runs its children
//! inside the image:
//!
//! | variable | meaning |
//! | --- | --- |
//! | `SCAR_PRELOAD_ROOT` | host path of the image's root filesystem |
//! | `SCAR_PRELOAD_BINDS` | lines `rw<TAB>container<TAB>host` (or `ro`): paths that are not the image's (`/proc`, `/dev`, `/sys`, `/tmp`, the request's directories) |
//! | `SCAR_PRELOAD_LIBRARY_PATH` | host directories for the image loader's `--library-path` |
//! | `SCAR_PRELOAD_LIB` | host path of this library, preloaded into every child |
//! | `SCAR_PRELOAD_LIBC_ENV` | lines `NAME=value` (`GCONV_PATH`, `LOCPATH`, `TZDIR`, `TZ`) added to a child's environment when it lacks `NAME` |
//! | `SCAR_PRELOAD_AUDIT` | glibc images: host path of the `LD_AUDIT` module (`rootfs/preload/audit`), audited in every child |
//! | `SCAR_PRELOAD_FLAVOR` | `gnu` or `musl`: whether the loader accepts `--inhibit-cache` |
//! | `SCAR_PRELOAD_EXE` | the running program's path in the image (`/proc/self/exe`) |
//! | `SCAR_PRELOAD_ARGV0` | the `argv[0]` its parent asked for |
//! | `SCAR_PRELOAD_REPORT` | host path of a file a static program's path is appended to when the exec hooks start it (`ran<TAB>path`) or refuse it (`refused<TAB>path`) |
//! | `SCAR_PRELOAD_STATIC` | `refuse`: the exec hooks refuse static programs with `EACCES` (they cannot be confined) |
//! | `SCAR_PRELOAD_PROTECT` | `:`-separated host directories never written through the hooks besides the root (the image cache holding it: its records and `refs/`); a write whose target resolves there fails with `EROFS`, a hard link from there with `EXDEV` |
//! | `SCAR_PRELOAD_NO_OPENAT2` | `1`: resolve paths in userspace as on kernels before 5.6 (tests) |

use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicBool, Ordering};

use crate::cstr;

/// Most entries in `SCAR_PRELOAD_BINDS` that are honoured.
pub const MAX_BINDS: usize = 32;
/// Most `SCAR_PRELOAD_*` entries handed on to children as received.
pub const MAX_FORWARD: usize = 32;
const ARENA: usize = 64 * 1024;

/// A host directory visible at a container path.
#[derive(Clone, Copy)]
pub struct Bind {
    /// Normalized absolute container path, no trailing slash (`/` stays `/`).
    pub container: &'static [u8],
    /// Host path the container path stands for.
    pub host: &'static [u8],
    /// Writes allowed.
    pub writable: bool,
}

/// The library's configuration; immutable after the constructor.
pub struct Config {
    /// Host path of the image root, no trailing slash.
    pub root: &'static [u8],
    /// Non-image paths.
    pub binds: [Bind; MAX_BINDS],
    /// How many of `binds` are used.
    pub nbinds: usize,
    /// Loader `--library-path` value (host paths).
    pub library_path: &'static [u8],
    /// Host path of this library.
    pub lib: &'static [u8],
    /// Host path of the `LD_AUDIT` module (glibc images; empty otherwise).
    pub audit: &'static [u8],
    /// `NAME=value` lines that point libc at the image's data files, for children without them.
    pub libc_env: &'static [u8],
    /// The image's libc is musl (its loader knows no `--inhibit-cache`).
    pub musl: bool,
    /// Program path in the image for `/proc/self/exe`.
    pub exe: &'static [u8],
    /// `argv[0]` the parent asked for.
    pub argv0: &'static [u8],
    /// `SCAR_PRELOAD_BINDS` as received, handed on to children.
    pub binds_raw: &'static [u8],
    /// Never use `openat2` (exercises the userspace resolver of old kernels).
    pub no_openat2: bool,
    /// `SCAR_PRELOAD_PROTECT`: `:`-separated host directories never written (besides `root`).
    pub protect: &'static [u8],
    /// Host path of the unconfined-program report (NUL-terminated in the arena; may be empty).
    pub report: &'static [u8],
    /// Refuse to start statically linked programs.
    pub refuse_static: bool,
    /// Every `SCAR_PRELOAD_*=value` entry received except `EXE` and `ARGV0` (which each exec
    /// sets anew), handed on to every child as is: a new variable only needs the engine to set it.
    pub forward: [&'static [u8]; MAX_FORWARD],
    /// How many of `forward` are used.
    pub nforward: usize,
}

struct Cell {
    config: UnsafeCell<Config>,
    arena: UnsafeCell<[u8; ARENA]>,
}

// SAFETY: written only by `init`, which runs in the library constructor before any other thread
// of the process can call into us; afterwards it is only read.
unsafe impl Sync for Cell {}

const EMPTY_BIND: Bind = Bind {
    container: b"",
    host: b"",
    writable: false,
};

static CELL: Cell = Cell {
    config: UnsafeCell::new(Config {
        root: b"",
        binds: [EMPTY_BIND; MAX_BINDS],
        nbinds: 0,
        library_path: b"",
        lib: b"",
        audit: b"",
        libc_env: b"",
        musl: false,
        exe: b"",
        argv0: b"",
        binds_raw: b"",
        no_openat2: false,
        protect: b"",
        report: b"",
        refuse_static: false,
        forward: [b""; MAX_FORWARD],
        nforward: 0,
    }),
    arena: UnsafeCell::new([0; ARENA]),
};

static ACTIVE: AtomicBool = AtomicBool::new(false);

/// True when the library was configured by the engine; otherwise every hook passes through.
#[inline]
pub fn active() -> bool {
    ACTIVE.load(Ordering::Acquire)
}

/// The configuration (only meaningful when [`active`]).
#[inline]
pub fn get() -> &'static Config {
    // SAFETY: see `Cell`: no writer exists once the constructor returned.
    unsafe { &*CELL.config.get() }
}

/// Read the `SCAR_PRELOAD_*` variables from `envp` (a NULL-terminated array of C strings).
///
/// # Safety
/// Must run once, in the constructor, before other threads exist; `envp` must be a valid
/// environment array or null.
pub unsafe fn init(envp: *const *const u8) {
    if envp.is_null() {
        return;
    }
    // SAFETY: exclusive access per the function contract.
    let config = unsafe { &mut *CELL.config.get() };
    // SAFETY: as above; the arena is only handed out as shared slices after this point.
    let arena: &'static mut [u8; ARENA] = unsafe { &mut *CELL.arena.get() };
    let mut used = 0usize;
    let mut keep = |value: &[u8]| -> &'static [u8] {
        // Each value is stored NUL-terminated so it can be handed to C as is.
        if used + value.len() + 1 > ARENA {
            return b"";
        }
        let start = used;
        arena[start..start + value.len()].copy_from_slice(value);
        arena[start + value.len()] = 0;
        used += value.len() + 1;
        let ptr = arena[start..].as_ptr();
        // SAFETY: the arena is static and this range is never written again.
        unsafe { core::slice::from_raw_parts(ptr, value.len()) }
    };
    let mut binds: &[u8] = b"";
    let mut i = 0;
    loop {
        // SAFETY: envp is NULL-terminated per the contract.
        let entry = unsafe { *envp.add(i) };
        if entry.is_null() {
            break;
        }
        i += 1;
        // SAFETY: environment entries are NUL-terminated strings.
        let entry = unsafe { cstr(entry) };
        let Some(rest) = entry.strip_prefix(b"SCAR_PRELOAD_") else {
            continue;
        };
        let Some(eq) = rest.iter().position(|&b| b == b'=') else {
            continue;
        };
        let (name, value) = (&rest[..eq], &rest[eq + 1..]);
        if name != b"EXE" && name != b"ARGV0" && config.nforward < MAX_FORWARD {
            let kept = keep(entry);
            if !kept.is_empty() {
                config.forward[config.nforward] = kept;
                config.nforward += 1;
            }
        }
        match name {
            b"ROOT" => config.root = keep(trim_slash(value)),
            b"BINDS" => {
                binds = keep(value);
                config.binds_raw = binds;
            }
            b"LIBRARY_PATH" => config.library_path = keep(value),
            b"LIB" => config.lib = keep(value),
            b"AUDIT" => config.audit = keep(value),
            b"LIBC_ENV" => config.libc_env = keep(value),
            b"FLAVOR" => config.musl = value == b"musl",
            b"EXE" => config.exe = keep(value),
            b"ARGV0" => config.argv0 = keep(value),
            b"NO_OPENAT2" => config.no_openat2 = value == b"1",
            b"PROTECT" => config.protect = keep(value),
            b"REPORT" => config.report = keep(value),
            b"STATIC" => config.refuse_static = value == b"refuse",
            _ => {}
        }
    }
    for line in binds.split(|&b| b == b'\n') {
        let mut fields = line.splitn(3, |&b| b == b'\t');
        let (Some(mode), Some(container), Some(host)) =
            (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        if config.nbinds == MAX_BINDS || !container.starts_with(b"/") || !host.starts_with(b"/") {
            continue;
        }
        config.binds[config.nbinds] = Bind {
            container: trim_slash(container),
            host: trim_slash(host),
            writable: mode == b"rw",
        };
        config.nbinds += 1;
    }
    // A root of "" or "/" would make every path "inside the image": nothing to map.
    if config.root.len() > 1 && !config.lib.is_empty() {
        ACTIVE.store(true, Ordering::Release);
    }
}

/// `/a/b/` → `/a/b`, but `/` stays `/`.
fn trim_slash(mut p: &[u8]) -> &[u8] {
    while p.len() > 1 && p.ends_with(b"/") {
        p = &p[..p.len() - 1];
    }
    p
}
