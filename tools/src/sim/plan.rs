//! What the sandbox will hold, resolved on the host before any namespace is entered: host
//! paths made canonical, the busybox checked and its applets listed, `/etc`'s files read, the
//! command and its environment as C strings.

use std::ffi::{CString, OsStr, OsString};
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use super::error::SimError;
use super::spec::{Bind, LAYER_DIR, Spec, TASK_DIR, TOOLS_DIR};

/// Where a static busybox is looked for when none is given (Debian's `busybox-static`).
const BUSYBOX_CANDIDATES: [&str; 2] = ["/bin/busybox", "/usr/bin/busybox"];

/// Everything the sandbox needs, resolved on the host before any namespace is entered.
pub(super) struct Plan {
    /// The binds, parents first, sources as the host names them (canonical).
    pub(super) binds: Vec<Bind>,
    /// Whether each bind's source is a directory (else a mount point file is made).
    pub(super) dirs: Vec<bool>,
    /// `/tmp`'s size.
    pub(super) tmp_mb: u64,
    /// Files of `/etc`: (path in the sandbox, contents).
    pub(super) etc: Vec<(&'static str, Vec<u8>)>,
    /// Applet names for `/sim/bin`.
    pub(super) applets: Vec<OsString>,
    /// The command.
    pub(super) argv: Vec<CString>,
    /// Its environment.
    pub(super) env: Vec<CString>,
}

impl Plan {
    pub(super) fn prepare(spec: &Spec) -> Result<Plan, SimError> {
        if spec.argv.is_empty() {
            return Err(SimError::NoCommand);
        }
        let mut binds = Vec::new();
        let host = |what: &'static str, path: &Path| {
            path.canonicalize().map_err(|source| SimError::HostPath {
                what,
                path: path.to_path_buf(),
                source,
            })
        };
        if let Some(layer) = &spec.layer {
            binds.push(Bind {
                host: host("--layer", layer)?,
                target: LAYER_DIR.into(),
                writable: false,
            });
        }
        if let Some(task) = &spec.task {
            binds.push(Bind {
                host: host("--task", task)?,
                target: TASK_DIR.into(),
                writable: false,
            });
        }
        let busybox = find_busybox(spec.busybox.as_deref())?;
        binds.push(Bind {
            host: busybox.clone(),
            target: Path::new(TOOLS_DIR).join("busybox"),
            writable: false,
        });
        for bind in &spec.binds {
            check_target(&bind.target)?;
            binds.push(Bind {
                host: host("bind", &bind.host)?,
                target: bind.target.clone(),
                writable: bind.writable,
            });
        }
        // Parents before children, so a bind inside another lands on top of it.
        binds.sort_by_key(|bind| bind.target.components().count());
        let dirs = binds.iter().map(|bind| bind.host.is_dir()).collect();
        let applets = applets_of(&busybox)?;
        let etc = vec![
            ("/etc/passwd", PASSWD.as_bytes().to_vec()),
            ("/etc/group", GROUP.as_bytes().to_vec()),
            // Followed on the host: Debian's resolv.conf may be a link into /run.
            (
                "/etc/resolv.conf",
                std::fs::read("/etc/resolv.conf").unwrap_or_default(),
            ),
            (
                "/etc/hosts",
                std::fs::read("/etc/hosts").unwrap_or_default(),
            ),
            // Amazon Linux 2023's CA bundle path (data, not a library): TLS to registries and
            // S3 works as on Lambda, while a Debian image's own path finds nothing here.
            (CA_BUNDLE, host_ca_bundle()),
        ];
        for entry in &spec.env {
            if !entry.as_bytes().contains(&b'=') || entry.as_bytes().starts_with(b"=") {
                return Err(SimError::Env(entry.clone()));
            }
        }
        Ok(Plan {
            binds,
            dirs,
            tmp_mb: spec.tmp_mb.max(1),
            etc,
            applets,
            argv: cstrings(&spec.argv)?,
            env: cstrings(&spec.env)?,
        })
    }
}

/// `/etc/passwd` of the sandbox: Lambda's function user.
const PASSWD: &str = "root:x:0:0:root:/root:/sbin/nologin\n\
sbx_user1051:x:993:993::/home/sbx_user1051:/sbin/nologin\n\
nobody:x:65534:65534:Kernel Overflow User:/:/sbin/nologin\n";
/// Where Amazon Linux 2023 keeps its CA bundle (also linked from `/etc/ssl/certs/ca-bundle.crt`).
pub const CA_BUNDLE: &str = "/etc/pki/tls/certs/ca-bundle.crt";

/// This host's CA bundle (Debian's path, else Amazon Linux's and Fedora's), or nothing.
fn host_ca_bundle() -> Vec<u8> {
    [
        "/etc/ssl/certs/ca-certificates.crt",
        "/etc/pki/tls/certs/ca-bundle.crt",
    ]
    .iter()
    .find_map(|path| std::fs::read(path).ok())
    .unwrap_or_default()
}

/// `/etc/group` of the sandbox.
const GROUP: &str = "root:x:0:\nsbx_user1051:x:993:\nnobody:x:65534:\n";

fn cstrings(items: &[OsString]) -> Result<Vec<CString>, SimError> {
    items
        .iter()
        .map(|item| CString::new(item.as_bytes()).map_err(|_| SimError::Nul(item.clone())))
        .collect()
}

/// A sandbox path must be absolute, plain, and not one the simulator owns outright.
fn check_target(target: &Path) -> Result<(), SimError> {
    let plain = target.is_absolute()
        && target
            .components()
            .all(|c| matches!(c, Component::RootDir | Component::Normal(_)));
    let reserved = ["/", "/proc", "/dev", "/tmp"]
        .iter()
        .any(|r| target == Path::new(r))
        || target.starts_with("/proc")
        || target.starts_with("/dev");
    if plain && !reserved {
        Ok(())
    } else {
        Err(SimError::BadTarget(target.to_path_buf()))
    }
}

/// The static busybox to put at `/sim/bin/busybox`.
fn find_busybox(explicit: Option<&Path>) -> Result<PathBuf, SimError> {
    let candidates: Vec<PathBuf> = match explicit {
        Some(path) => vec![path.to_path_buf()],
        None => BUSYBOX_CANDIDATES.iter().map(PathBuf::from).collect(),
    };
    let shown = candidates
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(" or ");
    candidates
        .iter()
        .filter_map(|path| path.canonicalize().ok())
        .find(|path| is_static_elf(path))
        .ok_or(SimError::NoBusybox(shown))
}

/// An ELF executable without a program interpreter (`PT_INTERP`): it runs on a bare root.
pub fn is_static_elf(path: &Path) -> bool {
    let mut header = Vec::new();
    let Ok(file) = std::fs::File::open(path) else {
        return false;
    };
    // Program headers of the binaries concerned sit in the first few KiB.
    if file.take(64 * 1024).read_to_end(&mut header).is_err() {
        return false;
    }
    elf_has_no_interpreter(&header).unwrap_or(false)
}

/// `Some(true)` for a 64-bit little-endian ELF with no `PT_INTERP` among the program headers
/// in `bytes`; `None` when `bytes` is not such an ELF or is cut short.
fn elf_has_no_interpreter(bytes: &[u8]) -> Option<bool> {
    const PT_INTERP: u32 = 3;
    if bytes.get(..4)? != b"\x7fELF" || *bytes.get(4)? != 2 || *bytes.get(5)? != 1 {
        return None;
    }
    let u16_at = |at: usize| Some(u16::from_le_bytes(bytes.get(at..at + 2)?.try_into().ok()?));
    let u32_at = |at: usize| Some(u32::from_le_bytes(bytes.get(at..at + 4)?.try_into().ok()?));
    let u64_at = |at: usize| Some(u64::from_le_bytes(bytes.get(at..at + 8)?.try_into().ok()?));
    let phoff = usize::try_from(u64_at(0x20)?).ok()?;
    let phentsize = usize::from(u16_at(0x36)?);
    let phnum = usize::from(u16_at(0x38)?);
    for index in 0..phnum {
        if u32_at(phoff + index * phentsize)? == PT_INTERP {
            return Some(false);
        }
    }
    Some(true)
}

/// The applets `busybox --list` names (their links in `/sim/bin`).
fn applets_of(busybox: &Path) -> Result<Vec<OsString>, SimError> {
    let out = std::process::Command::new(busybox)
        .arg("--list")
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|source| SimError::HostPath {
            what: "busybox",
            path: busybox.to_path_buf(),
            source,
        })?;
    Ok(out
        .stdout
        .split(|&b| b == b'\n')
        .filter(|name| !name.is_empty() && !name.contains(&b'/') && *name != b"busybox")
        .map(|name| OsStr::from_bytes(name).to_owned())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sandbox_paths_must_be_plain_absolute_and_not_the_simulators_own() {
        assert!(check_target(Path::new("/images/debian")).is_ok());
        assert!(check_target(Path::new("/tmp/cache")).is_ok());
        for bad in [
            "relative",
            "/a/../b",
            "/",
            "/proc",
            "/proc/x",
            "/dev/null",
            "/tmp",
        ] {
            assert!(check_target(Path::new(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn busybox_static_is_told_apart_from_a_dynamic_program() {
        let this = std::env::current_exe().unwrap();
        // The test binary is linked like the host's programs: dynamic for the gnu target.
        assert_eq!(
            is_static_elf(&this),
            cfg!(target_env = "musl"),
            "{}",
            this.display()
        );
        assert!(!is_static_elf(Path::new("/nonexistent")));
        assert_eq!(elf_has_no_interpreter(b"#!/bin/sh\n"), None);
    }
}
