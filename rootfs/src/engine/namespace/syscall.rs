//! The narrow set of system calls the root filesystem set-up makes, behind a trait so the
//! mount logic can be unit-tested with a recording double; the real calls are exercised by the
//! end-to-end tests.

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{OFlag, OpenHow, ResolveFlag, openat, openat2};
use nix::mount::MsFlags;
use nix::sys::stat::{Mode, mkdirat};
use nix::sys::statvfs::{FsFlags, statvfs};

/// What to do when a path inside the new root does not exist.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Create {
    /// Fail with ENOENT.
    No,
    /// Create it (and missing parents) as a directory.
    Dir,
    /// Create it as an empty file (parents as directories).
    File,
}

/// A path inside the new root, resolved so that symlinks cannot leave the root; `path` is
/// usable as a mount target for as long as the value lives.
#[derive(Debug)]
pub struct Target {
    /// `/proc/self/fd/N` for the real calls, a plain path for the test double.
    pub path: PathBuf,
    _fd: Option<OwnedFd>,
}

impl Target {
    /// A target known by a plain path (test doubles).
    pub fn plain(path: PathBuf) -> Self {
        Self { path, _fd: None }
    }
}

/// The system calls behind the root filesystem set-up.
pub trait Syscall {
    /// mount(2).
    fn mount(
        &self,
        source: Option<&Path>,
        target: &Path,
        fstype: Option<&str>,
        flags: MsFlags,
        data: Option<&str>,
    ) -> Result<(), Errno>;
    /// The flags of the mount at `target` that a remount inside a user namespace must keep
    /// (the kernel locks nosuid, nodev and noexec of mounts inherited from the host).
    fn locked_flags(&self, target: &Path) -> Result<MsFlags, Errno>;
    /// Resolve the absolute container path `path` under `root`, symlinks staying inside `root`.
    fn resolve(&self, root: &Path, path: &Path, create: Create) -> Result<Target, Errno>;
    /// mkdir(2) of a path we own (inside a tmpfs we just mounted, or the run directory).
    fn mkdir(&self, path: &Path, mode: u32) -> Result<(), Errno>;
    /// Create an empty file we own (a device node's bind target).
    fn create_file(&self, path: &Path) -> Result<(), Errno>;
    /// Remove a file we created.
    fn remove_file(&self, path: &Path) -> Result<(), Errno>;
    /// Create a file we own (in the run tmpfs) holding `contents`.
    fn create_file_with(&self, path: &Path, contents: &[u8]) -> Result<(), Errno>;
    /// symlink(2): `link` points at `target`.
    fn symlink(&self, target: &str, link: &Path) -> Result<(), Errno>;
    /// Whether a host path exists, and whether it is a directory.
    fn host_kind(&self, path: &Path) -> Option<bool>;
    /// The permission bits of `path` when it is a directory (not a symlink to one) owned by
    /// this user namespace's root user and group; `None` for anything else.
    fn root_owned_dir(&self, path: &Path) -> Option<u32>;
    /// chmod(2), umask aside (a directory we created).
    fn chmod(&self, path: &Path, mode: u32) -> Result<(), Errno>;
    /// Read a (small) host file.
    fn read_host_file(&self, path: &Path) -> Result<Vec<u8>, Errno>;
    /// Write `contents` to the absolute container path `path` under `root`, creating the file
    /// (and missing parents) as `resolve` with [`Create::File`] would, symlinks staying
    /// inside `root`; a FIFO or device there fails rather than block or write elsewhere.
    fn write_in_root(&self, root: &Path, path: &Path, contents: &[u8]) -> Result<(), Errno>;
}

/// The real system calls.
#[derive(Default)]
pub struct LinuxSyscall {
    /// The last root opened by `resolve` (the set-up resolves a dozen paths in one root).
    root: std::cell::RefCell<Option<(PathBuf, std::rc::Rc<OwnedFd>)>>,
}

impl LinuxSyscall {
    /// An `O_PATH` descriptor of `root`, opened once per root.
    fn root_fd(&self, root: &Path) -> Result<std::rc::Rc<OwnedFd>, Errno> {
        let mut cached = self.root.borrow_mut();
        if let Some((_, fd)) = cached.as_ref().filter(|(path, _)| path == root) {
            return Ok(fd.clone());
        }
        let fd = std::rc::Rc::new(openat(
            nix::fcntl::AT_FDCWD,
            root,
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )?);
        *cached = Some((root.to_path_buf(), fd.clone()));
        Ok(fd)
    }
}

impl Syscall for LinuxSyscall {
    fn mount(
        &self,
        source: Option<&Path>,
        target: &Path,
        fstype: Option<&str>,
        flags: MsFlags,
        data: Option<&str>,
    ) -> Result<(), Errno> {
        // A mount on the cached root hides what the descriptor names: open it again next time.
        let mut cached = self.root.borrow_mut();
        if cached.as_ref().is_some_and(|(root, _)| root == target) {
            *cached = None;
        }
        drop(cached);
        nix::mount::mount(source, target, fstype, flags, data)
    }

    fn locked_flags(&self, target: &Path) -> Result<MsFlags, Errno> {
        let flags = statvfs(target)?.flags();
        let mut locked = MsFlags::empty();
        for (fs, ms) in [
            (FsFlags::ST_NOSUID, MsFlags::MS_NOSUID),
            (FsFlags::ST_NODEV, MsFlags::MS_NODEV),
            (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
        ] {
            if flags.contains(fs) {
                locked |= ms;
            }
        }
        Ok(locked)
    }

    fn resolve(&self, root: &Path, path: &Path, create: Create) -> Result<Target, Errno> {
        let root_fd = self.root_fd(root)?;
        let relative = relative(path);
        match open_in_root(&root_fd, &relative) {
            Err(Errno::ENOENT) if create != Create::No => {}
            other => return other.map(fd_target),
        }
        // Create missing components one by one; every parent is resolved inside the root, so a
        // symlink in the image (`/etc -> /home/user`) can never make us create on the host.
        let mut prefix = PathBuf::new();
        let components: Vec<_> = relative.components().collect();
        for (index, component) in components.iter().enumerate() {
            let parent = open_in_root(&root_fd, &prefix)?;
            prefix.push(component);
            match open_in_root(&root_fd, &prefix) {
                Ok(_) => continue,
                Err(Errno::ENOENT) => {}
                Err(err) => return Err(err),
            }
            let last = index + 1 == components.len();
            if last && create == Create::File {
                let flags = OFlag::O_CREAT
                    | OFlag::O_EXCL
                    | OFlag::O_WRONLY
                    | OFlag::O_NOFOLLOW
                    | OFlag::O_CLOEXEC;
                drop(openat(
                    &parent,
                    component.as_os_str(),
                    flags,
                    Mode::from_bits_truncate(0o644),
                )?);
            } else {
                mkdirat(
                    &parent,
                    component.as_os_str(),
                    Mode::from_bits_truncate(0o755),
                )?;
            }
        }
        open_in_root(&root_fd, &relative).map(fd_target)
    }

    fn mkdir(&self, path: &Path, mode: u32) -> Result<(), Errno> {
        let (dir, name) = at(path);
        mkdirat(dir, name, Mode::from_bits_truncate(mode))
    }

    fn create_file(&self, path: &Path) -> Result<(), Errno> {
        // mknod of a regular file: one system call, where open and close are two.
        let (dir, name) = at(path);
        nix::sys::stat::mknodat(
            dir,
            name,
            nix::sys::stat::SFlag::S_IFREG,
            Mode::from_bits_truncate(0o644),
            0,
        )
    }

    fn remove_file(&self, path: &Path) -> Result<(), Errno> {
        let (dir, name) = at(path);
        nix::unistd::unlinkat(dir, name, nix::unistd::UnlinkatFlags::NoRemoveDir)
    }

    fn create_file_with(&self, path: &Path, contents: &[u8]) -> Result<(), Errno> {
        use std::io::Write;
        let flags = OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_WRONLY | OFlag::O_CLOEXEC;
        let (dir, name) = at(path);
        let file = openat(dir, name, flags, Mode::from_bits_truncate(0o644))?;
        std::fs::File::from(file)
            .write_all(contents)
            .map_err(errno_of)
    }

    fn symlink(&self, target: &str, link: &Path) -> Result<(), Errno> {
        let (dir, name) = at(link);
        nix::unistd::symlinkat(target, dir, name)
    }

    fn host_kind(&self, path: &Path) -> Option<bool> {
        std::fs::metadata(path).ok().map(|meta| meta.is_dir())
    }

    fn root_owned_dir(&self, path: &Path) -> Option<u32> {
        let (dir, name) = at(path);
        let stat =
            nix::sys::stat::fstatat(dir, name, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW).ok()?;
        let is_dir = stat.st_mode & libc::S_IFMT == libc::S_IFDIR;
        (is_dir && stat.st_uid == 0 && stat.st_gid == 0).then_some(stat.st_mode & 0o7777)
    }

    fn chmod(&self, path: &Path, mode: u32) -> Result<(), Errno> {
        let (dir, name) = at(path);
        nix::sys::stat::fchmodat(
            dir,
            name,
            Mode::from_bits_truncate(mode),
            nix::sys::stat::FchmodatFlags::FollowSymlink,
        )
    }

    fn read_host_file(&self, path: &Path) -> Result<Vec<u8>, Errno> {
        use std::io::Read;
        // openat and no size query: two system calls fewer than std::fs::read.
        let file = openat(
            nix::fcntl::AT_FDCWD,
            path,
            OFlag::O_RDONLY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )?;
        let mut contents = Vec::with_capacity(4096);
        // Through `take`: File's own read_to_end asks for the size first.
        std::fs::File::from(file)
            .take(u64::MAX)
            .read_to_end(&mut contents)
            .map_err(errno_of)?;
        Ok(contents)
    }

    fn write_in_root(&self, root: &Path, path: &Path, contents: &[u8]) -> Result<(), Errno> {
        use std::io::Write;
        // The common case in a few calls: the parent resolved inside the root, the file
        // opened in it without following a last symlink (O_NOFOLLOW), created or truncated.
        // Anything else (a missing parent, a symlink to follow inside the root) takes the
        // general way below.
        let relative = relative(path);
        if let (Some(parent), Some(name)) = (relative.parent(), relative.file_name()) {
            let root_fd = self.root_fd(root)?;
            if let Ok(dir) = open_in_root(&root_fd, parent) {
                let flags = OFlag::O_WRONLY
                    | OFlag::O_CREAT
                    | OFlag::O_TRUNC
                    | OFlag::O_NOFOLLOW
                    | OFlag::O_NONBLOCK
                    | OFlag::O_CLOEXEC;
                match openat(&dir, name, flags, Mode::from_bits_truncate(0o644)) {
                    Ok(file) => {
                        return std::fs::File::from(file)
                            .write_all(contents)
                            .map_err(errno_of);
                    }
                    Err(Errno::ELOOP) => {}
                    Err(err) => return Err(err),
                }
            }
        }
        let target = self.resolve(root, path, Create::File)?;
        write_file(&target.path, contents)
    }
}

/// Replace the contents of the regular file at `path`, a resolved [`Target`]'s: reopened
/// through the O_PATH descriptor's /proc link (the descriptor names the file inside the
/// root). O_NONBLOCK: a FIFO planted by a hostile image fails with ENXIO instead of blocking
/// the start forever.
fn write_file(path: &Path, contents: &[u8]) -> Result<(), Errno> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .and_then(|mut file| file.write_all(contents))
        .map_err(errno_of)
}

/// `/proc/self/fd/N/name` (a [`Target`]'s path and a name in it) as the descriptor N and the
/// name, so that the call is made relative to the descriptor without a walk through `/proc`;
/// any other path as is, relative to the working directory.
fn at(path: &Path) -> (std::os::fd::BorrowedFd<'_>, &Path) {
    let split = path.strip_prefix("/proc/self/fd").ok().and_then(|rest| {
        let mut parts = rest.components();
        let fd = parts.next()?.as_os_str().to_str()?.parse::<i32>().ok()?;
        if fd < 0 {
            return None;
        }
        let name = parts.as_path();
        (!name.as_os_str().is_empty()).then_some((fd, name))
    });
    match split {
        // SAFETY: a non-negative descriptor number, only handed to the kernel: it names the
        // descriptor the `/proc/self/fd/N` path would name (the `Target` the caller holds),
        // and a closed one makes the call fail with EBADF, as the path would with ENOENT.
        Some((fd, name)) => (unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) }, name),
        None => (nix::fcntl::AT_FDCWD, path),
    }
}

/// The errno of an I/O error (EIO when it carries none).
fn errno_of(err: std::io::Error) -> Errno {
    Errno::from_raw(err.raw_os_error().unwrap_or(libc::EIO))
}

/// `/a/b/../c` → `a/b/../c` (openat2 with RESOLVE_IN_ROOT clamps `..` at the root).
fn relative(path: &Path) -> PathBuf {
    path.components()
        .filter(|c| !matches!(c, Component::RootDir | Component::Prefix(_)))
        .collect()
}

fn open_in_root(root: &OwnedFd, relative: &Path) -> Result<OwnedFd, Errno> {
    let how = OpenHow::new()
        .flags(OFlag::O_PATH | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    let path = if relative.as_os_str().is_empty() {
        Path::new(".")
    } else {
        relative
    };
    openat2(root, path, how)
}

fn fd_target(fd: OwnedFd) -> Target {
    Target {
        path: PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd())),
        _fd: Some(fd),
    }
}

#[cfg(test)]
pub mod double {
    //! A recording [`Syscall`] for unit tests.

    use super::*;
    use std::cell::RefCell;
    use std::collections::HashMap;

    /// Records every call as a line of text; `fail` makes calls whose line starts with a
    /// prefix return an errno.
    #[derive(Default)]
    pub struct Recorder {
        /// The calls made, in order.
        pub calls: RefCell<Vec<String>>,
        /// Line prefix → errno to return.
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
                .find(|(prefix, _)| line.starts_with(prefix.as_str()))
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_under_a_descriptor_path_is_made_relative_to_the_descriptor() {
        use nix::fcntl::open;
        let dir = tempfile::tempdir().unwrap();
        let fd = open(dir.path(), OFlag::O_PATH | OFlag::O_CLOEXEC, Mode::empty()).unwrap();
        let link = PathBuf::from(format!("/proc/self/fd/{}/made", fd.as_raw_fd()));
        let (at_fd, name) = at(&link);
        assert_eq!(
            (at_fd.as_raw_fd(), name),
            (fd.as_raw_fd(), Path::new("made"))
        );
        // The real calls through it land in the directory.
        let sys = LinuxSyscall::default();
        sys.mkdir(&link, 0o700).unwrap();
        assert!(dir.path().join("made").is_dir());
        // Plain paths, a bare descriptor path and odd numbers stay paths.
        for plain in [
            "/tmp/x",
            "/proc/self/fd/3",
            "/proc/self/fd/-1/x",
            "/proc/self/fdx/1/y",
        ] {
            let (at_fd, name) = at(Path::new(plain));
            assert_eq!(
                (at_fd.as_raw_fd(), name),
                (libc::AT_FDCWD, Path::new(plain))
            );
        }
    }
}
