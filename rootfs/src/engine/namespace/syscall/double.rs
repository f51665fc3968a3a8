//! A recording [`Syscall`] for unit tests.

use super::*;
use std::cell::RefCell;
use std::collections::HashMap;

use crate::engine::namespace::channel::Reporter;
use crate::engine::namespace::config::{BindMount, InitConfig};

/// A container spec for the tests: the image at `/cache/rootfs/abc`, the scratch directory
/// `/scratch/run`, the command `/bin/true`.
pub fn config(mounts: Vec<BindMount>) -> InitConfig {
    InitConfig {
        root: PathBuf::from("/cache/rootfs/abc"),
        run_dir: PathBuf::from("/scratch/run"),
        argv: vec!["/bin/true".into()],
        env: vec![],
        workdir: "/".into(),
        mounts,
        hostname: "scar".into(),
        affinity: None,
        parent_reads_record: false,
    }
}

/// A recorder whose image has `/dev`, `/tmp`, `/proc` and `/etc/resolv.conf`, on a host with
/// `/dev/null` and `/etc/resolv.conf`.
pub fn image() -> Recorder {
    let mut sys = Recorder::default();
    sys.host.insert("/dev/null".into(), false);
    sys.host.insert("/etc/resolv.conf".into(), false);
    sys.existing = vec![
        "/dev".into(),
        "/tmp".into(),
        "/proc".into(),
        "/etc/resolv.conf".into(),
    ];
    sys
}

/// A reporter on a real pipe, and the pipe's read end (for `channel::read_reports`).
pub fn reporter() -> (Reporter, OwnedFd) {
    let (read, write) = nix::unistd::pipe().expect("pipe");
    (Reporter::from_owned(write), read)
}

/// The index of the first recorded call that is `prefix` or starts with it and a space.
pub fn position(lines: &[String], prefix: &str) -> usize {
    let words = format!("{prefix} ");
    lines
        .iter()
        .position(|l| l == prefix || l.starts_with(&words))
        .unwrap_or_else(|| panic!("no `{prefix}` in {lines:#?}"))
}

/// Records every call as a line of text; `fail` makes calls whose line starts with a
/// prefix (or, ending in `$`, is that line) return an errno.
#[derive(Default)]
pub struct Recorder {
    /// The calls made, in order.
    pub calls: RefCell<Vec<String>>,
    /// Line prefix (or whole line followed by `$`) → errno to return.
    pub fail: HashMap<String, Errno>,
    /// Container paths that "exist" in the image.
    pub existing: Vec<PathBuf>,
    /// Host paths that exist (`true` for directories).
    pub host: HashMap<PathBuf, bool>,
}

impl Recorder {
    fn record(&self, line: String) -> Result<(), Errno> {
        let failure = self
            .fail
            .iter()
            .find(|(prefix, _)| match prefix.strip_suffix('$') {
                Some(exact) => line == exact,
                None => line.starts_with(prefix.as_str()),
            })
            .map(|(_, e)| *e);
        self.calls.borrow_mut().push(line);
        failure.map_or(Ok(()), Err)
    }

    /// The calls made.
    pub fn lines(&self) -> Vec<String> {
        self.calls.borrow().clone()
    }
}

impl Syscall for Recorder {
    fn unshare(&self, flags: CloneFlags) -> Result<(), Errno> {
        self.record(format!("unshare {flags:?}"))
    }

    fn write_proc_self(&self, file: ProcSelf, content: &[u8]) -> Result<(), Errno> {
        self.record(format!(
            "write {} {}",
            file.path().to_string_lossy(),
            String::from_utf8_lossy(content).trim_end()
        ))
    }

    fn sethostname(&self, name: &str) -> Result<(), Errno> {
        self.record(format!("sethostname {name}"))
    }

    fn pin(&self, path: &Path) -> Result<Target, Errno> {
        self.record(format!("pin {}", path.display()))?;
        Ok(Target::plain(Path::new("/pinned").join(relative(path))))
    }

    fn chdir(&self, path: &Path) -> Result<(), Errno> {
        self.record(format!("chdir {}", path.display()))
    }

    fn pivot_root(&self, new_root: &Path, put_old: &Path) -> Result<(), Errno> {
        self.record(format!(
            "pivot_root {} {}",
            new_root.display(),
            put_old.display()
        ))
    }

    fn umount(&self, target: &Path, flags: MntFlags) -> Result<(), Errno> {
        self.record(format!("umount {} {flags:?}", target.display()))
    }

    fn set_no_new_privs(&self) -> Result<(), Errno> {
        self.record("no_new_privs".to_string())
    }

    /// Recorded as `exec <argv[0]>`; a failure set for it is the command not found (127).
    fn start_command(&self, prepared: &Prepared) -> Result<Pid, (Option<Pid>, Refusal)> {
        self.record(format!("exec {}", prepared.command()))
            .map(|()| Pid::from_raw(4242))
            .map_err(|errno| {
                let refusal = Refusal {
                    reason: format!("not found ({errno})"),
                    code: 127,
                };
                (None, refusal)
            })
    }

    fn mount(
        &self,
        source: Option<&Path>,
        target: &Path,
        fstype: Option<&str>,
        flags: MsFlags,
        data: Option<&str>,
    ) -> Result<(), Errno> {
        self.record(format!(
            "mount {} {} {} {:?} {}",
            source.map_or("-".into(), |s| s.display().to_string()),
            target.display(),
            fstype.unwrap_or("-"),
            flags,
            data.unwrap_or("-")
        ))
    }

    fn locked_flags(&self, _target: &Path) -> Result<MsFlags, Errno> {
        Ok(MsFlags::MS_NOSUID)
    }

    fn resolve(&self, root: &Path, path: &Path, create: Create) -> Result<Target, Errno> {
        self.record(format!("resolve {} {:?}", path.display(), create))?;
        let exists = self.existing.iter().any(|p| p == path);
        if !exists && create == Create::No {
            return Err(Errno::ENOENT);
        }
        Ok(Target::plain(root.join(relative(path))))
    }

    fn mkdir(&self, path: &Path, mode: u32) -> Result<(), Errno> {
        self.record(format!("mkdir {} {mode:o}", path.display()))
    }

    fn create_file(&self, path: &Path) -> Result<(), Errno> {
        self.record(format!("create {}", path.display()))
    }

    fn remove_file(&self, path: &Path) -> Result<(), Errno> {
        self.record(format!("remove {}", path.display()))
    }

    fn create_file_with(&self, path: &Path, contents: &[u8]) -> Result<(), Errno> {
        self.record(format!(
            "create {} {}",
            path.display(),
            String::from_utf8_lossy(contents)
        ))
    }

    fn symlink(&self, target: &str, link: &Path) -> Result<(), Errno> {
        self.record(format!("symlink {} -> {target}", link.display()))
    }

    fn host_kind(&self, path: &Path) -> Option<bool> {
        self.host.get(path).copied()
    }

    fn root_owned_dir(&self, path: &Path) -> Option<u32> {
        self.host.get(path).is_some_and(|dir| *dir).then_some(0o755)
    }

    fn chmod(&self, path: &Path, mode: u32) -> Result<(), Errno> {
        self.record(format!("chmod {} {mode:o}", path.display()))
    }

    fn read_host_file(&self, path: &Path) -> Result<Vec<u8>, Errno> {
        self.record(format!("read {}", path.display()))?;
        Ok(format!("contents of {}", path.display()).into_bytes())
    }

    fn write_in_root(&self, root: &Path, path: &Path, contents: &[u8]) -> Result<(), Errno> {
        self.record(format!(
            "write {} {}",
            root.join(relative(path)).display(),
            String::from_utf8_lossy(contents)
        ))
    }
}
