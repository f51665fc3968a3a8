//! Test root filesystems, built as plain directories from what this host already has.
//!
//! - [`busybox_root`]: Debian's `busybox-static` (`/bin/busybox`) with its applets as symlinks,
//!   `/etc/passwd`, `/etc/group` and an `/etc/os-release` whose `ID` is [`BUSYBOX_ID`].
//! - [`dynamic_root`]: the host's own dynamic loader and libc with a few dynamically linked
//!   programs (`true`, `sh` = dash, `id`, `cat`, `sleep`, …) and the libraries `ldd` names;
//!   `ID` is [`DYNAMIC_ID`].
//!
//! To use such a directory as an image the pull code reads, pack it as an OCI layout with
//! `scar_tools::oci::write_from_dir(dir, layout, &options)` (or `scar image from-dir DIR
//! -o LAYOUT`) and name it `oci:LAYOUT:TAG`.

use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::Command;

/// `ID` in the busybox root's `/etc/os-release`.
pub const BUSYBOX_ID: &str = "scar-test-busybox";
/// `ID` in the dynamic root's `/etc/os-release`.
pub const DYNAMIC_ID: &str = "scar-test-dynamic";

/// Where Debian's `busybox-static` installs the static busybox.
pub const BUSYBOX: &str = "/bin/busybox";

/// Programs copied into the dynamic root, with the libraries they need.
pub const DYNAMIC_PROGRAMS: [&str; 8] = [
    "/bin/true",
    "/bin/sh",
    "/usr/bin/id",
    "/bin/cat",
    "/bin/sleep",
    "/bin/echo",
    "/bin/ls",
    "/usr/bin/env",
];

/// Why a test root could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// A file operation failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The path.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// `/bin/busybox` is missing or not static.
    #[error("{0} is not a static busybox: apt-get install busybox-static")]
    NoStaticBusybox(PathBuf),
    /// `ldd` failed on a host program.
    #[error("ldd {program} failed: {reason}")]
    Ldd {
        /// The program.
        program: PathBuf,
        /// Its output or error.
        reason: String,
    },
}

fn io(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> ImageError {
    let path = path.to_path_buf();
    move |source| ImageError::Io { op, path, source }
}

/// The directories every test root has; `/tmp` is world-writable and sticky.
fn skeleton(dir: &Path) -> Result<(), ImageError> {
    for sub in ["etc", "proc", "dev", "sys", "tmp", "root", "var/tmp", "run"] {
        let path = dir.join(sub);
        std::fs::create_dir_all(&path).map_err(io("mkdir", &path))?;
    }
    for sticky in ["tmp", "var/tmp"] {
        let path = dir.join(sticky);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o1777))
            .map_err(io("chmod", &path))?;
    }
    write(
        dir,
        "etc/passwd",
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
    )?;
    write(dir, "etc/group", "root:x:0:\nnogroup:x:65534:\n")?;
    Ok(())
}

fn write(dir: &Path, relative: &str, text: &str) -> Result<(), ImageError> {
    let path = dir.join(relative);
    std::fs::write(&path, text).map_err(io("write", &path))
}

/// True when the ELF file at `path` has no `PT_INTERP` (a static program).
pub fn is_static_elf(path: &Path) -> bool {
    let Ok(bytes) = std::fs::read(path) else {
        return false;
    };
    if bytes.len() < 64 || &bytes[..4] != b"\x7fELF" || bytes[4] != 2 {
        return false;
    }
    let u16_at = |at: usize| u16::from_le_bytes([bytes[at], bytes[at + 1]]) as usize;
    let u64_at = |at: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&bytes[at..at + 8]);
        u64::from_le_bytes(b) as usize
    };
    let (phoff, phentsize, phnum) = (u64_at(32), u16_at(54), u16_at(56));
    (0..phnum).all(|i| {
        let at = phoff + i * phentsize;
        // PT_INTERP = 3.
        at + 4 <= bytes.len()
            && u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]) != 3
    })
}

/// Fill `dir` with a static busybox root: `/bin/busybox`, every applet as a symlink at the
/// path busybox lists for it, `/etc/passwd`, `/etc/group` and `/etc/os-release`.
pub fn busybox_root(dir: &Path) -> Result<(), ImageError> {
    let busybox = Path::new(BUSYBOX);
    if !is_static_elf(busybox) {
        return Err(ImageError::NoStaticBusybox(busybox.to_path_buf()));
    }
    skeleton(dir)?;
    for sub in ["bin", "sbin", "usr/bin", "usr/sbin"] {
        let path = dir.join(sub);
        std::fs::create_dir_all(&path).map_err(io("mkdir", &path))?;
    }
    let target = dir.join("bin/busybox");
    std::fs::copy(busybox, &target).map_err(io("copy busybox to", &target))?;
    let list = Command::new(busybox)
        .arg("--list-full")
        .output()
        .map_err(io("run", busybox))?;
    for applet in String::from_utf8_lossy(&list.stdout).lines() {
        let applet = applet.trim().trim_start_matches('/');
        if applet.is_empty() || applet == "bin/busybox" {
            continue;
        }
        let link = dir.join(applet);
        if link.symlink_metadata().is_ok() {
            continue;
        }
        if let Some(parent) = link.parent() {
            std::fs::create_dir_all(parent).map_err(io("mkdir", parent))?;
        }
        symlink("/bin/busybox", &link).map_err(io("symlink", &link))?;
    }
    write(
        dir,
        "etc/os-release",
        &format!("ID={BUSYBOX_ID}\nNAME=\"SCAR test busybox\"\n"),
    )?;
    make_readable(dir)
}

/// The libraries `ldd` lists for `program`, the dynamic loader included.
pub fn shared_libraries(program: &Path) -> Result<Vec<PathBuf>, ImageError> {
    let output = Command::new("ldd")
        .arg(program)
        .output()
        .map_err(io("run ldd on", program))?;
    if !output.status.success() {
        return Err(ImageError::Ldd {
            program: program.to_path_buf(),
            reason: String::from_utf8_lossy(&output.stderr).trim().to_string(),
        });
    }
    let mut libraries = Vec::new();
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        // `libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x…)` or `/lib64/ld-linux-x86-64.so.2 (0x…)`.
        let path = match line.split_once("=>") {
            Some((_, right)) => right.split_whitespace().next(),
            None => line
                .split_whitespace()
                .next()
                .filter(|p| p.starts_with('/')),
        };
        if let Some(path) = path.filter(|p| p.starts_with('/')) {
            libraries.push(PathBuf::from(path));
        }
    }
    Ok(libraries)
}

/// Copy the host file `host` to the same absolute path under `dir` (following symlinks in
/// `host`, so the copy is a regular file).
fn copy_to_same_path(dir: &Path, host: &Path, as_path: &Path) -> Result<(), ImageError> {
    let target = dir.join(as_path.strip_prefix("/").unwrap_or(as_path));
    if target.exists() {
        return Ok(());
    }
    if let Some(parent) = target.parent() {
        std::fs::create_dir_all(parent).map_err(io("mkdir", parent))?;
    }
    std::fs::copy(host, &target).map_err(io("copy to", &target))?;
    Ok(())
}

/// Fill `dir` with a dynamically linked root made from this host: the loader, libc and the
/// [`DYNAMIC_PROGRAMS`] with their libraries. The layout is merged-/usr (`/bin`, `/lib`,
/// `/lib64` link into `/usr`), like Debian 12, so library paths from `ldd` work as they are.
pub fn dynamic_root(dir: &Path) -> Result<(), ImageError> {
    skeleton(dir)?;
    for sub in ["usr/bin", "usr/sbin", "usr/lib", "usr/lib64"] {
        let path = dir.join(sub);
        std::fs::create_dir_all(&path).map_err(io("mkdir", &path))?;
    }
    for (link, to) in [
        ("bin", "usr/bin"),
        ("sbin", "usr/sbin"),
        ("lib", "usr/lib"),
        ("lib64", "usr/lib64"),
    ] {
        let path = dir.join(link);
        if path.symlink_metadata().is_err() {
            symlink(to, &path).map_err(io("symlink", &path))?;
        }
    }
    for program in DYNAMIC_PROGRAMS {
        let host = std::fs::canonicalize(program).map_err(io("resolve", Path::new(program)))?;
        let name = host.file_name().map(PathBuf::from).unwrap_or_default();
        // `/bin/sh` is dash on Debian: copy dash and link sh to it, as the host does.
        copy_to_same_path(dir, &host, &Path::new("/usr/bin").join(&name))?;
        let wanted = Path::new("/usr/bin").join(Path::new(program).file_name().unwrap_or_default());
        let link = dir.join(wanted.strip_prefix("/").unwrap_or(&wanted));
        if link.symlink_metadata().is_err() {
            symlink(&name, &link).map_err(io("symlink", &link))?;
        }
        let mut libraries = shared_libraries(&host)?;
        libraries.extend(glibc_companions(&libraries));
        for library in libraries {
            let resolved = std::fs::canonicalize(&library).map_err(io("resolve", &library))?;
            copy_to_same_path(dir, &resolved, &library)?;
        }
    }
    write(
        dir,
        "etc/os-release",
        &format!("ID={DYNAMIC_ID}\nNAME=\"SCAR test dynamic\"\n"),
    )?;
    make_readable(dir)
}

/// The rest of glibc's own package next to the `libc.so.6` among `libraries` (Debian's libc6
/// ships these beside it, since 2.34 as stubs): a real image has them, and a library linked
/// against one (the preload library needs `libdl.so.2`) must find it in the image, not on this
/// host.
pub fn glibc_companions(libraries: &[PathBuf]) -> Vec<PathBuf> {
    let Some(dir) = libraries
        .iter()
        .find(|lib| lib.file_name().is_some_and(|n| n == "libc.so.6"))
        .and_then(|libc| libc.parent())
    else {
        return Vec::new();
    };
    [
        "libdl.so.2",
        "libpthread.so.0",
        "librt.so.1",
        "libutil.so.1",
    ]
    .iter()
    .map(|stub| dir.join(stub))
    .filter(|path| path.exists())
    .collect()
}

/// `chmod -R a+rX`: tests run the roots as an unprivileged uid too.
pub fn make_readable(dir: &Path) -> Result<(), ImageError> {
    let status = Command::new("chmod")
        .args(["-R", "a+rX"])
        .arg(dir)
        .status()
        .map_err(io("chmod -R a+rX", dir))?;
    if !status.success() {
        return Err(ImageError::Io {
            op: "chmod -R a+rX",
            path: dir.to_path_buf(),
            source: std::io::Error::other(status.to_string()),
        });
    }
    Ok(())
}

/// `chown -R uid:gid` (as root): an unprivileged user's image cache belongs to that user, and
/// only files it owns are writable by its container root through the overlay.
pub fn chown_tree(dir: &Path, uid: u32, gid: u32) -> Result<(), ImageError> {
    let status = Command::new("chown")
        .args(["-R", "-h", &format!("{uid}:{gid}")])
        .arg(dir)
        .status()
        .map_err(io("chown -R", dir))?;
    if !status.success() {
        return Err(ImageError::Io {
            op: "chown -R",
            path: dir.to_path_buf(),
            source: std::io::Error::other(status.to_string()),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_busybox_root_has_applets_and_a_recognizable_os_release() {
        let dir = tempfile::tempdir().unwrap();
        busybox_root(dir.path()).unwrap();
        assert!(is_static_elf(&dir.path().join("bin/busybox")));
        assert_eq!(
            std::fs::read_link(dir.path().join("bin/sh")).unwrap(),
            Path::new("/bin/busybox")
        );
        let os = std::fs::read_to_string(dir.path().join("etc/os-release")).unwrap();
        assert!(os.contains(BUSYBOX_ID));
    }

    #[test]
    fn the_dynamic_root_holds_the_loader_and_libc_of_its_programs() {
        let dir = tempfile::tempdir().unwrap();
        dynamic_root(dir.path()).unwrap();
        let libraries = shared_libraries(Path::new("/bin/true")).unwrap();
        assert!(
            libraries
                .iter()
                .any(|l| l.to_string_lossy().contains("libc.so")),
            "{libraries:?}"
        );
        for library in libraries {
            assert!(
                dir.path().join(library.strip_prefix("/").unwrap()).exists(),
                "{}",
                library.display()
            );
        }
        assert!(!is_static_elf(&dir.path().join("usr/bin/true")));
        assert!(dir.path().join("bin/sh").exists());
    }
}
