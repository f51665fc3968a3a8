//! The sandbox's root, built by its init (root of the new user namespace, in the new mount and
//! PID namespaces), in named steps:
//!
//! 1. every mount made private, so nothing done here reaches the host;
//! 2. a fresh tmpfs mounted over the host's `/tmp` and made the root with `pivot_root`; the
//!    host's root stays reachable at `/oldroot` until step 7 (and, `pivot_root` having moved
//!    the tmpfs away, the host's `/tmp` is visible again at `/oldroot/tmp`: sources under it
//!    can be bound, which is what a checkout under `/tmp` needs);
//! 3. the skeleton: `/etc` files, `/proc`, `/dev`, the sandbox's `/tmp`;
//! 4. the binds, parents first, each made read-only (recursively, with `mount_setattr`) before
//!    the next, so a mount point is never created inside a host directory;
//! 5. the busybox applet links in `/sim/bin`;
//! 6. the host's root detached;
//! 7. the root made read-only and `user.max_user_namespaces` set to 0.
//!
//! Needs Linux 5.12 (`mount_setattr`).

use std::ffi::{CString, OsStr};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, symlink};
use std::path::{Path, PathBuf};

use super::plan::Plan;
use super::spec::{LAYER_DIR, TASK_DIR, TOOLS_DIR};

/// Where the host's root is while the sandbox's is built.
const OLD_ROOT: &str = "/oldroot";
/// Device nodes bound from the host's `/dev` (a user namespace cannot make them).
const DEVICES: [&str; 6] = ["null", "zero", "full", "random", "urandom", "tty"];
/// `mount_setattr(2)`'s `MOUNT_ATTR_RDONLY`.
const MOUNT_ATTR_RDONLY: u64 = 0x1;
/// `AT_RECURSIVE`: the whole mount tree below the path.
const AT_RECURSIVE: u32 = 0x8000;

/// A failed step, with the path it concerned.
#[derive(Debug, thiserror::Error)]
#[error("{what} {}: {source}", .path.display())]
pub struct RootError {
    what: &'static str,
    path: PathBuf,
    source: io::Error,
}

type Result<T> = std::result::Result<T, RootError>;

fn fail(what: &'static str, path: &Path) -> impl FnOnce(io::Error) -> RootError {
    let path = path.to_path_buf();
    move |source| RootError { what, path, source }
}

/// Build the sandbox's root (see the module docs).
pub fn build(plan: &Plan) -> Result<()> {
    make_mounts_private()?;
    enter_new_root()?;
    write_etc(plan)?;
    // Always there, bound or empty: Lambda's paths, and the command's working directory.
    for dir in [LAYER_DIR, TASK_DIR] {
        mkdir_all(Path::new(dir))?;
    }
    mount_proc()?;
    mount_dev()?;
    mount_tmp(plan.tmp_mb)?;
    for (bind, &is_dir) in plan.binds.iter().zip(&plan.dirs) {
        bind_mount(&bind.host, &bind.target, is_dir, bind.writable)?;
    }
    link_applets(plan)?;
    detach_old_root()?;
    set_read_only(Path::new("/"), false)?;
    std::fs::write("/proc/sys/user/max_user_namespaces", b"0").map_err(fail(
        "refuse user namespaces: write",
        Path::new("/proc/sys/user/max_user_namespaces"),
    ))
}

fn make_mounts_private() -> Result<()> {
    mount(
        None::<&str>,
        Path::new("/"),
        None,
        libc::MS_REC | libc::MS_PRIVATE,
        None,
    )
    .map_err(fail("make the mounts private:", Path::new("/")))
}

fn enter_new_root() -> Result<()> {
    let new_root = Path::new("/tmp");
    mount(
        Some("tmpfs"),
        new_root,
        Some("tmpfs"),
        libc::MS_NOSUID | libc::MS_NODEV,
        Some("mode=0755,size=16m"),
    )
    .map_err(fail("mount the new root's tmpfs on", new_root))?;
    std::env::set_current_dir(new_root).map_err(fail("change to", new_root))?;
    mkdir(Path::new("oldroot"), 0o700)?;
    let (dot, old) = (cstr(Path::new("."))?, cstr(Path::new("oldroot"))?);
    // SAFETY: pivot_root with two NUL-terminated paths.
    if unsafe { libc::syscall(libc::SYS_pivot_root, dot.as_ptr(), old.as_ptr()) } != 0 {
        return Err(fail("pivot_root into", new_root)(io::Error::last_os_error()));
    }
    std::env::set_current_dir("/").map_err(fail("change to", Path::new("/")))
}

fn write_etc(plan: &Plan) -> Result<()> {
    for (path, contents) in &plan.etc {
        let path = Path::new(path);
        if let Some(parent) = path.parent() {
            mkdir_all(parent)?;
        }
        std::fs::write(path, contents).map_err(fail("write", path))?;
    }
    let link = Path::new("/etc/ssl/certs/ca-bundle.crt");
    mkdir_all(Path::new("/etc/ssl/certs"))?;
    symlink(super::plan::CA_BUNDLE, link).map_err(fail("link", link))
}

fn mount_proc() -> Result<()> {
    let proc = Path::new("/proc");
    mkdir_all(proc)?;
    mount(
        Some("proc"),
        proc,
        Some("proc"),
        libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
        None,
    )
    .map_err(fail("mount a fresh proc on", proc))
}

fn mount_dev() -> Result<()> {
    let dev = Path::new("/dev");
    mkdir_all(dev)?;
    mount(
        Some("tmpfs"),
        dev,
        Some("tmpfs"),
        libc::MS_NOSUID | libc::MS_NOEXEC,
        Some("mode=0755,size=64k"),
    )
    .map_err(fail("mount a tmpfs on", dev))?;
    for name in DEVICES {
        let host = Path::new("/dev").join(name);
        bind_mount(&host, &host, false, true)?;
    }
    let shm = Path::new("/dev/shm");
    mkdir_all(shm)?;
    mount(
        Some("tmpfs"),
        shm,
        Some("tmpfs"),
        libc::MS_NOSUID | libc::MS_NODEV,
        Some("mode=1777"),
    )
    .map_err(fail("mount a tmpfs on", shm))?;
    for (link, target) in [
        ("/dev/fd", "/proc/self/fd"),
        ("/dev/stdin", "/proc/self/fd/0"),
        ("/dev/stdout", "/proc/self/fd/1"),
        ("/dev/stderr", "/proc/self/fd/2"),
    ] {
        symlink(target, link).map_err(fail("link", Path::new(link)))?;
    }
    Ok(())
}

fn mount_tmp(size_mb: u64) -> Result<()> {
    let tmp = Path::new("/tmp");
    mkdir_all(tmp)?;
    let options = format!("mode=1777,size={size_mb}m");
    mount(
        Some("tmpfs"),
        tmp,
        Some("tmpfs"),
        libc::MS_NOSUID | libc::MS_NODEV,
        Some(&options),
    )
    .map_err(fail("mount the sandbox's tmpfs on", tmp))
}

/// Show the host's `host` (a canonical path) at `target`, read-only unless `writable`.
fn bind_mount(host: &Path, target: &Path, is_dir: bool, writable: bool) -> Result<()> {
    let source = Path::new(OLD_ROOT).join(host.strip_prefix("/").unwrap_or(host));
    make_mount_point(target, is_dir)?;
    mount(
        Some(source.as_os_str()),
        target,
        None,
        libc::MS_BIND | libc::MS_REC,
        None,
    )
    .map_err(fail("bind the host's path onto", target))?;
    if writable {
        Ok(())
    } else {
        set_read_only(target, true)
    }
}

/// A directory or an empty file at `target` to mount on. A missing one inside a read-only bind
/// cannot be made: the error then says so.
fn make_mount_point(target: &Path, is_dir: bool) -> Result<()> {
    if let Some(parent) = target.parent() {
        mkdir_all(parent)?;
    }
    if is_dir {
        return mkdir_all(target);
    }
    match std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o644)
        .open(target)
    {
        Ok(_) => Ok(()),
        Err(err) if target.exists() => {
            let _ = err;
            Ok(())
        }
        Err(err) => Err(fail(
            "make a mount point (inside a read-only bind, it must exist already) at",
            target,
        )(err)),
    }
}

fn link_applets(plan: &Plan) -> Result<()> {
    for applet in &plan.applets {
        let link = Path::new(TOOLS_DIR).join(applet);
        symlink("busybox", &link).map_err(fail("link the busybox applet", &link))?;
    }
    Ok(())
}

fn detach_old_root() -> Result<()> {
    let old = Path::new(OLD_ROOT);
    let path = cstr(old)?;
    // SAFETY: umount2 with a NUL-terminated path.
    if unsafe { libc::umount2(path.as_ptr(), libc::MNT_DETACH) } != 0 {
        return Err(fail("detach the host's root from", old)(
            io::Error::last_os_error(),
        ));
    }
    std::fs::remove_dir(old).map_err(fail("remove", old))
}

/// Make the mount at `path` read-only (and every mount below it with `recursive`). Unlike a
/// bind remount, `mount_setattr` changes that one flag, so the flags a less privileged
/// namespace may not clear (nosuid, nodev, noexec, atime on the host's mounts) stay as they are.
fn set_read_only(path: &Path, recursive: bool) -> Result<()> {
    #[repr(C)]
    struct MountAttr {
        attr_set: u64,
        attr_clr: u64,
        propagation: u64,
        userns_fd: u64,
    }
    let attr = MountAttr {
        attr_set: MOUNT_ATTR_RDONLY,
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    let c_path = cstr(path)?;
    let flags = if recursive { AT_RECURSIVE } else { 0 };
    // SAFETY: mount_setattr with a NUL-terminated path and an attribute struct of the size given.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            libc::AT_FDCWD,
            c_path.as_ptr(),
            flags,
            &attr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(fail("make read-only (mount_setattr, Linux 5.12+)", path)(
            io::Error::last_os_error(),
        ))
    }
}

fn mkdir(path: &Path, mode: u32) -> Result<()> {
    match std::fs::DirBuilder::new().mode(mode).create(path) {
        Err(err) if err.kind() != io::ErrorKind::AlreadyExists => {
            Err(fail("create the directory", path)(err))
        }
        _ => Ok(()),
    }
}

fn mkdir_all(path: &Path) -> Result<()> {
    if path.is_dir() {
        return Ok(());
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(path)
        .map_err(fail(
            "create the directory (inside a read-only bind, it must exist already)",
            path,
        ))
}

fn cstr(path: &Path) -> Result<CString> {
    CString::new(path.as_os_str().as_bytes()).map_err(|_| RootError {
        what: "path holds a NUL byte:",
        path: path.to_path_buf(),
        source: io::Error::from(io::ErrorKind::InvalidInput),
    })
}

/// mount(2) with optional source, type and data.
fn mount(
    source: Option<impl AsRef<OsStr>>,
    target: &Path,
    fstype: Option<&str>,
    flags: libc::c_ulong,
    data: Option<&str>,
) -> io::Result<()> {
    let to_c = |s: &[u8]| CString::new(s).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput));
    let source = source.map(|s| to_c(s.as_ref().as_bytes())).transpose()?;
    let target = to_c(target.as_os_str().as_bytes())?;
    let fstype = fstype.map(|s| to_c(s.as_bytes())).transpose()?;
    let data = data.map(|s| to_c(s.as_bytes())).transpose()?;
    let ptr = |s: &Option<CString>| s.as_ref().map_or(std::ptr::null(), |s| s.as_ptr());
    // SAFETY: every pointer is null or a NUL-terminated string that outlives the call.
    let rc = unsafe {
        libc::mount(
            ptr(&source),
            target.as_ptr(),
            ptr(&fstype),
            flags,
            ptr(&data).cast(),
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}
