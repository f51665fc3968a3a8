//! The system calls the start paths make to build and enter a container (namespaces, id
//! maps, hostname, mounts, `pivot_root`, the command's start), behind one trait so that the
//! set-up, the init and the direct start are unit-tested with a recording double
//! ([`double::Recorder`]); the real calls ([`LinuxSyscall`]) are exercised by the end-to-end
//! tests.

use std::ffi::CStr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{OFlag, OpenHow, ResolveFlag, openat, openat2};
use nix::mount::{MntFlags, MsFlags};
use nix::sched::CloneFlags;
use nix::unistd::Pid;

use super::spawn::{self, Prepared, Refusal};
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

/// A file of `/proc/self` that the set-up writes: the user namespace's id maps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProcSelf {
    /// `setgroups`: `deny` before an unprivileged gid map.
    Setgroups,
    /// `uid_map`.
    UidMap,
    /// `gid_map`.
    GidMap,
}

impl ProcSelf {
    /// The file's path.
    pub fn path(self) -> &'static CStr {
        match self {
            Self::Setgroups => c"/proc/self/setgroups",
            Self::UidMap => c"/proc/self/uid_map",
            Self::GidMap => c"/proc/self/gid_map",
        }
    }
}

/// The system calls behind the container's set-up and start.
pub trait Syscall {
    /// unshare(2) into new namespaces.
    fn unshare(&self, flags: CloneFlags) -> Result<(), Errno>;
    /// Write `content` to a file of `/proc/self` in one write(2), without allocating (the
    /// direct start's init and the probe's child may call it).
    fn write_proc_self(&self, file: ProcSelf, content: &[u8]) -> Result<(), Errno>;
    /// sethostname(2).
    fn sethostname(&self, name: &str) -> Result<(), Errno>;
    /// An `O_PATH` descriptor of a host path, named by its target's path whatever gets
    /// mounted over the path itself afterwards.
    fn pin(&self, path: &Path) -> Result<Target, Errno>;
    /// chdir(2).
    fn chdir(&self, path: &Path) -> Result<(), Errno>;
    /// pivot_root(2).
    fn pivot_root(&self, new_root: &Path, put_old: &Path) -> Result<(), Errno>;
    /// umount2(2).
    fn umount(&self, target: &Path, flags: MntFlags) -> Result<(), Errno>;
    /// prctl(PR_SET_NO_NEW_PRIVS).
    fn set_no_new_privs(&self) -> Result<(), Errno>;
    /// Start the prepared command in the current root (creating a missing working directory
    /// as Docker does): its PID, or why it cannot start, with the PID of a child that exited
    /// with the refusal's code.
    fn start_command(&self, prepared: &Prepared) -> Result<Pid, (Option<Pid>, Refusal)>;
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
    fn unshare(&self, flags: CloneFlags) -> Result<(), Errno> {
        nix::sched::unshare(flags)
    }

    fn write_proc_self(&self, file: ProcSelf, content: &[u8]) -> Result<(), Errno> {
        write_proc_file(file.path(), content)
    }

    fn sethostname(&self, name: &str) -> Result<(), Errno> {
        nix::unistd::sethostname(name)
    }

    fn pin(&self, path: &Path) -> Result<Target, Errno> {
        openat(
            nix::fcntl::AT_FDCWD,
            path,
            OFlag::O_PATH | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map(fd_target)
    }

    fn chdir(&self, path: &Path) -> Result<(), Errno> {
        nix::unistd::chdir(path)
    }

    fn pivot_root(&self, new_root: &Path, put_old: &Path) -> Result<(), Errno> {
        nix::unistd::pivot_root(new_root, put_old)
    }

    fn umount(&self, target: &Path, flags: MntFlags) -> Result<(), Errno> {
        nix::mount::umount2(target, flags)
    }

    fn set_no_new_privs(&self) -> Result<(), Errno> {
        nix::sys::prctl::set_no_new_privs()
    }

    fn start_command(&self, prepared: &Prepared) -> Result<Pid, (Option<Pid>, Refusal)> {
        spawn::ensure_workdir(prepared).map_err(|r| (None, r))?;
        spawn::start(prepared)
    }

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

/// open + write + close of a `/proc` file: async-signal-safe and nothing allocated (the
/// probe's child of a multithreaded process writes the id maps; a `CStr` path is passed as
/// is).
fn write_proc_file(path: &CStr, content: &[u8]) -> Result<(), Errno> {
    // openat: the C library's open(2) may add an fcntl(2) for O_CLOEXEC.
    let fd = openat(
        nix::fcntl::AT_FDCWD,
        path,
        OFlag::O_WRONLY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?;
    nix::unistd::write(&fd, content).map(drop)
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
pub mod double;

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
