//! The container's root filesystem, built in the helper's new mount namespace:
//! overlay (or a read-only bind) of the image, a minimal `/dev`, a private `/tmp`, the host's
//! DNS files and the volumes. `/proc` is mounted later by the PID-namespace init.

use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::mount::MsFlags;

use super::channel::SetupError;
use super::config::{BindMount, InitConfig};
use super::syscall::{Create, Syscall};

/// How the image's root is presented.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RootMode {
    /// overlayfs: the image is the lower layer, writes go to the run directory.
    Overlay,
    /// A read-only bind: where the kernel refuses overlayfs in a user namespace.
    ReadOnlyBind,
}

/// Device nodes bound from the host.
const DEVICES: [&str; 6] = ["null", "zero", "full", "random", "urandom", "tty"];

/// Host files bound read-only so DNS works as on the host.
const HOST_FILES: [&str; 2] = ["/etc/resolv.conf", "/etc/hosts"];

/// The new root's mount point inside the run directory.
pub fn new_root(config: &InitConfig) -> PathBuf {
    config.run_dir.join("root")
}

/// Build the whole root filesystem; returns the mode and notes worth logging.
pub fn prepare_root(
    sys: &impl Syscall,
    config: &InitConfig,
    notes: &mut Vec<String>,
) -> Result<RootMode, SetupError> {
    make_mounts_private(sys)?;
    mount_run_tmpfs(sys, config)?;
    let root = new_root(config);
    let (mode, seeded) = mount_image(sys, config, &root, notes)?;
    let create = mode == RootMode::Overlay;
    mount_dev(sys, config, &root, create, notes)?;
    mount_tmp(sys, &root, create, notes)?;
    prepare_proc_mount_point(sys, &root, create, notes)?;
    bind_host_files(sys, config, &root, create, &seeded, notes)?;
    bind_volumes(sys, &root, &config.mounts, create)?;
    Ok(mode)
}

/// Nothing we mount may propagate back to the host.
fn make_mounts_private(sys: &impl Syscall) -> Result<(), SetupError> {
    sys.mount(
        None,
        Path::new("/"),
        None,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None,
    )
    .map_err(|e| SetupError::new("making / private in the new mount namespace", e))
}

/// A tmpfs on the run directory, seen only in this mount namespace: the new root's mount
/// point and the overlay's upper and work directories live in it, so nothing is written to
/// the host's disk and everything vanishes with the namespace (removing overlay work
/// directories from a disk costs milliseconds per directory).
fn mount_run_tmpfs(sys: &impl Syscall, config: &InitConfig) -> Result<(), SetupError> {
    let run_dir = &config.run_dir;
    sys.mount(
        Some(Path::new("tmpfs")),
        run_dir,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some("mode=0700"),
    )
    .map_err(|e| {
        SetupError::new(
            format!(
                "mounting a tmpfs on the run directory {}",
                run_dir.display()
            ),
            e,
        )
    })?;
    let root = new_root(config);
    sys.mkdir(&root, 0o755)
        .map_err(|e| SetupError::new(format!("creating {}", root.display()), e))
}

/// overlayfs `lowerdir=` syntax: `,` `:` and `\` are escaped with a backslash.
pub fn escape_overlay_path(path: &Path) -> String {
    let mut out = String::new();
    for c in path.to_string_lossy().chars() {
        if matches!(c, ',' | ':' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Present the image at `root`: overlay where allowed, else a read-only bind. Returns the
/// mode and the host files the overlay's upper layer was seeded with.
fn mount_image(
    sys: &impl Syscall,
    config: &InitConfig,
    root: &Path,
    notes: &mut Vec<String>,
) -> Result<(RootMode, Vec<&'static str>), SetupError> {
    let upper = config.run_dir.join("upper");
    let work = config.run_dir.join("work");
    let dirs = sys
        .mkdir(&upper, 0o755)
        .and_then(|()| sys.mkdir(&work, 0o755));
    if let Err(err) = dirs {
        notes.push(format!(
            "cannot create overlay directories in {}: {err}",
            config.run_dir.display()
        ));
    } else {
        let seeded = seed_host_files(sys, config, &upper, notes);
        let base = format!(
            "lowerdir={},upperdir={},workdir={}",
            escape_overlay_path(&config.root),
            escape_overlay_path(&upper),
            escape_overlay_path(&work)
        );
        // `volatile` (Linux 5.10+): the upper layer is thrown away after the run, so skip the
        // sync of the upper filesystem at unmount, which costs tens of milliseconds per run.
        // `userxattr` (Linux 5.11+) keeps overlay metadata in user.* xattrs, which a user
        // namespace may write; older kernels or upper filesystems without user xattrs refuse it.
        let mut last = Errno::UnknownErrno;
        let attempts = [
            format!("{base},userxattr,volatile"),
            format!("{base},volatile"),
            format!("{base},userxattr"),
            base,
        ];
        for options in attempts {
            match sys.mount(
                Some(Path::new("overlay")),
                root,
                Some("overlay"),
                MsFlags::empty(),
                Some(&options),
            ) {
                Ok(()) => return Ok((RootMode::Overlay, seeded)),
                Err(err) => last = err,
            }
        }
        notes.push(format!(
            "overlayfs refused in the user namespace ({last}): the image is mounted read-only, only /tmp and volumes are writable"
        ));
    }
    sys.mount(
        Some(&config.root),
        root,
        None,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None,
    )
    .map_err(|e| {
        SetupError::new(
            format!(
                "bind-mounting the image {} on {}",
                config.root.display(),
                root.display()
            ),
            e,
        )
    })?;
    // Read-only before anything else: a missing mount point can then never be created in the
    // cached image.
    remount_read_only(sys, root)?;
    Ok((RootMode::ReadOnlyBind, Vec::new()))
}

/// Put the host's DNS files into the overlay's upper layer before it is mounted: the overlay
/// then shows them at `/etc/resolv.conf` and `/etc/hosts` over whatever the image has there
/// (its own file, a symlink, nothing), as a later layer would. Made in the run tmpfs, they
/// cost a few system calls: writing them through the mounted overlay copied `/etc` up first
/// (some 90 µs per start), and a bind over the image's file was a mount more to make and
/// tear down. Only where the image's `/etc` is a plain directory of its root user, whose
/// mode the upper one takes; the files seeded are returned, the others are left to
/// [`bind_host_files`]. Best effort: a failure is a note, and the file is then not seeded.
fn seed_host_files(
    sys: &impl Syscall,
    config: &InitConfig,
    upper: &Path,
    notes: &mut Vec<String>,
) -> Vec<&'static str> {
    let Some(mode) = sys.root_owned_dir(&config.root.join("etc")) else {
        return Vec::new();
    };
    let etc = upper.join("etc");
    if let Err(err) = sys.mkdir(&etc, mode).and_then(|()| sys.chmod(&etc, mode)) {
        notes.push(format!("cannot create {}: {err}", etc.display()));
        return Vec::new();
    }
    let mut seeded = Vec::new();
    for file in HOST_FILES {
        if sys.host_kind(Path::new(file)) != Some(false) {
            continue;
        }
        let name = Path::new(file).file_name().unwrap_or_default();
        let copied = sys
            .read_host_file(Path::new(file))
            .and_then(|contents| sys.create_file_with(&etc.join(name), &contents));
        match copied {
            Ok(()) => seeded.push(file),
            Err(err) => notes.push(format!("host {file} not copied in ({err})")),
        }
    }
    seeded
}

/// Make the mount at `target` read-only, keeping the flags the kernel locks.
fn remount_read_only(sys: &impl Syscall, target: &Path) -> Result<(), SetupError> {
    let locked = sys
        .locked_flags(target)
        .map_err(|e| SetupError::new(format!("statvfs of {}", target.display()), e))?;
    let flags = MsFlags::MS_REMOUNT | MsFlags::MS_BIND | MsFlags::MS_RDONLY | locked;
    sys.mount(None, target, None, flags, None)
        .map_err(|e| SetupError::new(format!("remounting {} read-only", target.display()), e))
}

/// Resolve a mount point in the image; `None` (with a note) when it is missing and cannot be
/// created because the root is read-only.
fn optional_mount_point(
    sys: &impl Syscall,
    root: &Path,
    path: &str,
    kind: Create,
    create: bool,
    notes: &mut Vec<String>,
) -> Result<Option<super::syscall::Target>, SetupError> {
    let how = if create { kind } else { Create::No };
    match sys.resolve(root, Path::new(path), how) {
        Ok(target) => Ok(Some(target)),
        Err(Errno::ENOENT | Errno::EROFS) if !create => {
            notes.push(format!(
                "{path} is missing in the read-only image: not mounted"
            ));
            Ok(None)
        }
        Err(err) => Err(SetupError::new(
            format!("mount point {path} in the image"),
            err,
        )),
    }
}

/// `/dev`: a directory of the run tmpfs (bound, which is cheaper than a tmpfs of its own)
/// with the host's harmless devices bound in, stdio links, `/dev/shm` and, where the kernel
/// allows it, a private `/dev/pts`.
fn mount_dev(
    sys: &impl Syscall,
    config: &InitConfig,
    root: &Path,
    create: bool,
    notes: &mut Vec<String>,
) -> Result<(), SetupError> {
    let Some(target) = optional_mount_point(sys, root, "/dev", Create::Dir, create, notes)? else {
        return Ok(());
    };
    let source = config.run_dir.join("dev");
    sys.mkdir(&source, 0o755)
        .and_then(|()| sys.chmod(&source, 0o755))
        .and_then(|()| sys.mount(Some(&source), &target.path, None, MsFlags::MS_BIND, None))
        .map_err(|e| SetupError::new("binding a directory of the run tmpfs on /dev", e))?;
    drop(target);
    // Reopen: the bound directory, which we own entirely, is what the path must name now.
    let dev = sys
        .resolve(root, Path::new("/dev"), Create::No)
        .map_err(|e| SetupError::new("opening the new /dev", e))?;
    for name in DEVICES {
        let host = Path::new("/dev").join(name);
        let node = dev.path.join(name);
        sys.create_file(&node)
            .map_err(|e| SetupError::new(format!("creating /dev/{name}"), e))?;
        match sys.mount(Some(&host), &node, None, MsFlags::MS_BIND, None) {
            Ok(()) => {}
            // The host has no such device (a minimal /dev): neither has the container. Not
            // looked up first, which would cost a call per device on every start.
            Err(Errno::ENOENT) => sys
                .remove_file(&node)
                .map_err(|e| SetupError::new(format!("removing /dev/{name}"), e))?,
            Err(e) => {
                return Err(SetupError::new(
                    format!("binding {} into the container", host.display()),
                    e,
                ));
            }
        }
    }
    for (link, points_to) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
        ("ptmx", "pts/ptmx"),
    ] {
        sys.symlink(points_to, &dev.path.join(link))
            .map_err(|e| SetupError::new(format!("creating /dev/{link}"), e))?;
    }
    // A directory of the run tmpfs rather than a tmpfs of its own: one mount less to make and
    // tear down on every start.
    let shm = dev.path.join("shm");
    sys.mkdir(&shm, 0o1777)
        .and_then(|()| sys.chmod(&shm, 0o1777))
        .map_err(|e| SetupError::new("creating /dev/shm", e))?;
    let pts = dev.path.join("pts");
    sys.mkdir(&pts, 0o755)
        .map_err(|e| SetupError::new("creating /dev/pts", e))?;
    if let Err(err) = sys.mount(
        Some(Path::new("devpts")),
        &pts,
        Some("devpts"),
        MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
        Some("newinstance,ptmxmode=0666,mode=0620"),
    ) {
        notes.push(format!(
            "no private /dev/pts ({err}): pseudo-terminals are unavailable inside"
        ));
    }
    Ok(())
}

/// A private, writable `/tmp`. Over an overlay root the image's own `/tmp` already is (its
/// writes land in the run tmpfs and vanish with it), so only a missing one is created; a
/// read-only root gets a tmpfs.
fn mount_tmp(
    sys: &impl Syscall,
    root: &Path,
    create: bool,
    notes: &mut Vec<String>,
) -> Result<(), SetupError> {
    if create {
        return match sys.resolve(root, Path::new("/tmp"), Create::No) {
            Ok(_) => Ok(()),
            Err(Errno::ENOENT) => {
                let made = sys
                    .resolve(root, Path::new("/tmp"), Create::Dir)
                    .and_then(|tmp| sys.chmod(&tmp.path, 0o1777));
                made.map_err(|e| SetupError::new("creating /tmp in the image", e))
            }
            Err(err) => Err(SetupError::new("mount point /tmp in the image", err)),
        };
    }
    let Some(target) = optional_mount_point(sys, root, "/tmp", Create::Dir, false, notes)? else {
        return Ok(());
    };
    sys.mount(
        Some(Path::new("tmpfs")),
        &target.path,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some("mode=1777"),
    )
    .map_err(|e| SetupError::new("mounting a tmpfs on /tmp", e))
}

/// `/proc` must exist before the init mounts it.
fn prepare_proc_mount_point(
    sys: &impl Syscall,
    root: &Path,
    create: bool,
    notes: &mut Vec<String>,
) -> Result<(), SetupError> {
    optional_mount_point(sys, root, "/proc", Create::Dir, create, notes).map(drop)
}

/// The host's `/etc/resolv.conf` and `/etc/hosts`, so DNS works as on the host, those not
/// `seeded` into the overlay's upper layer already ([`seed_host_files`]). Over an overlay
/// root: a private copy in the run tmpfs bound over the image's file (writable, and gone with
/// the run, as Docker's own), or written into the overlay where the image has no such file;
/// into a read-only root: the host's file bound read-only.
fn bind_host_files(
    sys: &impl Syscall,
    config: &InitConfig,
    root: &Path,
    create: bool,
    seeded: &[&str],
    notes: &mut Vec<String>,
) -> Result<(), SetupError> {
    for file in HOST_FILES {
        if seeded.contains(&file) || sys.host_kind(Path::new(file)) != Some(false) {
            continue;
        }
        if create {
            // Best effort, as below: an image whose file is a dangling symlink (or not a
            // regular file) keeps its own.
            let copied = sys
                .read_host_file(Path::new(file))
                .and_then(|contents| copy_in(sys, config, root, file, &contents));
            if let Err(err) = copied {
                notes.push(format!("host {file} not copied in ({err})"));
            }
            continue;
        }
        // A read-only root: the file must be there to be bound over. Best effort: an image
        // whose /etc/resolv.conf is a dangling symlink keeps its own.
        let target = match sys.resolve(root, Path::new(file), Create::No) {
            Ok(target) => target,
            Err(err) => {
                notes.push(format!("host {file} not bound in ({err})"));
                continue;
            }
        };
        sys.mount(
            Some(Path::new(file)),
            &target.path,
            None,
            MsFlags::MS_BIND,
            None,
        )
        .map_err(|e| SetupError::new(format!("binding the host's {file}"), e))?;
        drop(target);
        let bound = sys
            .resolve(root, Path::new(file), Create::No)
            .map_err(|e| SetupError::new(format!("reopening {file}"), e))?;
        remount_read_only(sys, &bound.path)?;
    }
    Ok(())
}

/// Give the container `contents` at `file` over an overlay root. A copy in the run tmpfs bound
/// over the image's file costs a fraction of writing into the overlay, whose copy-up of the
/// file and of `/etc` took some 90 µs per file; where the image has no such file (or a
/// dangling symlink), it is written into the overlay.
fn copy_in(
    sys: &impl Syscall,
    config: &InitConfig,
    root: &Path,
    file: &str,
    contents: &[u8],
) -> Result<(), Errno> {
    let name = Path::new(file).file_name().unwrap_or_default();
    match sys.resolve(root, Path::new(file), Create::No) {
        Ok(target) => {
            let copy = config.run_dir.join(name);
            sys.create_file_with(&copy, contents)?;
            sys.mount(Some(&copy), &target.path, None, MsFlags::MS_BIND, None)
        }
        Err(Errno::ENOENT) => sys.write_in_root(root, Path::new(file), contents),
        Err(err) => Err(err),
    }
}

/// Volumes, parents before children (`/data` before `/data/in`).
fn bind_volumes(
    sys: &impl Syscall,
    root: &Path,
    mounts: &[BindMount],
    create: bool,
) -> Result<(), SetupError> {
    let mut ordered: Vec<&BindMount> = mounts.iter().collect();
    ordered.sort_by_key(|m| m.container.components().count());
    for mount in ordered {
        let container = mount.container.display();
        let Some(is_dir) = sys.host_kind(&mount.host) else {
            return Err(SetupError::new(
                format!(
                    "volume {}: the host path does not exist",
                    mount.host.display()
                ),
                Errno::ENOENT,
            ));
        };
        let kind = if is_dir { Create::Dir } else { Create::File };
        // Mount points under /tmp or in the overlay can be created; in a read-only image
        // they must already exist.
        let target = sys.resolve(root, &mount.container, kind).map_err(|e| {
            let hint = if create {
                ""
            } else {
                " (the image is read-only here: choose a path under /tmp or one that exists)"
            };
            SetupError::new(
                format!(
                    "mount point {container} for volume {}{hint}",
                    mount.host.display()
                ),
                e,
            )
        })?;
        sys.mount(
            Some(&mount.host),
            &target.path,
            None,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None,
        )
        .map_err(|e| {
            SetupError::new(
                format!("binding volume {} on {container}", mount.host.display()),
                e,
            )
        })?;
        drop(target);
        if mount.read_only {
            let bound = sys
                .resolve(root, &mount.container, Create::No)
                .map_err(|e| SetupError::new(format!("reopening volume {container}"), e))?;
            remount_read_only(sys, &bound.path)?;
        }
    }
    Ok(())
}

/// Mount a fresh `/proc` for the new PID namespace (run by its init); where the kernel refuses
/// (a host whose own `/proc` is partly masked), bind the host's `/proc` recursively.
pub fn mount_proc(
    sys: &impl Syscall,
    root: &Path,
    notes: &mut Vec<String>,
) -> Result<(), SetupError> {
    let target = match sys.resolve(root, Path::new("/proc"), Create::No) {
        Ok(target) => target,
        Err(_) => return Ok(()),
    };
    let flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    match sys.mount(
        Some(Path::new("proc")),
        &target.path,
        Some("proc"),
        flags,
        None,
    ) {
        Ok(()) => Ok(()),
        Err(err) => {
            notes.push(format!(
                "a fresh /proc was refused ({err}): the host's /proc is bound instead"
            ));
            sys.mount(
                Some(Path::new("/proc")),
                &target.path,
                None,
                MsFlags::MS_BIND | MsFlags::MS_REC,
                None,
            )
            .map_err(|e| SetupError::new("binding the host's /proc", e))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::syscall::double::{Recorder, config, image};
    use super::*;

    fn recorder() -> Recorder {
        image()
    }

    #[test]
    fn overlay_options_escape_commas_and_colons() {
        assert_eq!(
            escape_overlay_path(Path::new("/a,b:c\\d")),
            "/a\\,b\\:c\\\\d"
        );
    }

    #[test]
    fn the_image_is_the_lower_layer_of_an_overlay_when_the_kernel_allows_it() {
        let sys = recorder();
        let mut notes = Vec::new();
        let mode = prepare_root(&sys, &config(vec![]), &mut notes).unwrap();
        assert_eq!(mode, RootMode::Overlay);
        let lines = sys.lines();
        assert!(
            lines[0].starts_with("mount - / - MsFlags(MS_REC | MS_PRIVATE)"),
            "{lines:#?}"
        );
        let overlay = lines.iter().find(|l| l.contains(" overlay ")).unwrap();
        assert!(overlay.contains("lowerdir=/cache/rootfs/abc,upperdir=/scratch/run/upper,workdir=/scratch/run/work,userxattr,volatile"));
        assert!(
            !lines
                .iter()
                .any(|l| l.contains("MS_RDONLY") && l.contains("/scratch/run/root ")),
            "{lines:#?}"
        );
    }

    /// The image's `/etc` as a directory of its root user: the DNS files can be seeded.
    fn seedable(mut sys: Recorder) -> Recorder {
        sys.host.insert("/cache/rootfs/abc/etc".into(), true);
        sys
    }

    #[test]
    fn an_overlay_root_gets_the_hosts_files_in_its_upper_layer_before_the_mount() {
        let mut sys = seedable(recorder());
        sys.host.insert("/etc/hosts".into(), false);
        let mut notes = Vec::new();
        prepare_root(&sys, &config(vec![]), &mut notes).unwrap();
        let lines = sys.lines();
        let overlay = lines
            .iter()
            .position(|l| l.contains(" overlay "))
            .unwrap_or_else(|| panic!("{lines:#?}"));
        let seeded = [
            "mkdir /scratch/run/upper/etc 755",
            "chmod /scratch/run/upper/etc 755",
            "create /scratch/run/upper/etc/resolv.conf contents of /etc/resolv.conf",
            "create /scratch/run/upper/etc/hosts contents of /etc/hosts",
        ];
        for line in seeded {
            let at = lines.iter().position(|l| l == line);
            assert!(at.is_some_and(|at| at < overlay), "{line}: {lines:#?}");
        }
        // Neither a bind nor a write through the overlay (whose copy-ups cost).
        assert!(
            !lines
                .iter()
                .any(|l| l.contains("resolv.conf") && l.starts_with("mount ")
                    || l.contains("hosts") && l.starts_with("mount ")
                    || l.starts_with("write ")),
            "{lines:#?}"
        );
        assert!(notes.is_empty(), "{notes:?}");
    }

    #[test]
    fn a_device_the_host_lacks_is_left_out_and_the_others_are_bound() {
        let mut sys = recorder();
        sys.fail.insert("mount /dev/tty ".into(), Errno::ENOENT);
        prepare_root(&sys, &config(vec![]), &mut Vec::new()).unwrap();
        let lines = sys.lines();
        let dev = "/scratch/run/root/dev";
        for name in ["null", "zero", "full", "random", "urandom"] {
            assert!(
                lines
                    .iter()
                    .any(|l| l == &format!("mount /dev/{name} {dev}/{name} - MsFlags(MS_BIND) -")),
                "{name}: {lines:#?}"
            );
        }
        let removed = lines.iter().position(|l| l == &format!("remove {dev}/tty"));
        let tried = lines.iter().position(|l| l.starts_with("mount /dev/tty "));
        assert!(removed.is_some() && tried < removed, "{lines:#?}");
        // Any other refusal stops the start, naming the device.
        let mut sys = recorder();
        sys.fail.insert("mount /dev/zero ".into(), Errno::EPERM);
        let err = prepare_root(&sys, &config(vec![]), &mut Vec::new()).unwrap_err();
        assert!(err.to_string().contains("/dev/zero"), "{err}");
    }

    #[test]
    fn an_image_whose_etc_is_not_a_plain_root_directory_is_not_seeded() {
        // The recorder's image has no such /etc (a symlink, another owner): the copies are
        // bound over the image's file or written into the overlay, as before.
        let sys = recorder();
        prepare_root(&sys, &config(vec![]), &mut Vec::new()).unwrap();
        let lines = sys.lines();
        assert!(
            !lines.iter().any(|l| l.contains("/scratch/run/upper/etc")),
            "{lines:#?}"
        );
    }

    #[test]
    fn a_refused_overlay_binds_the_hosts_files_even_when_they_were_seeded() {
        let mut sys = seedable(recorder());
        sys.fail.insert("mount overlay".into(), Errno::EPERM);
        prepare_root(&sys, &config(vec![]), &mut Vec::new()).unwrap();
        let lines = sys.lines();
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with("mount /etc/resolv.conf /scratch/run/root/etc/resolv.conf")),
            "{lines:#?}"
        );
    }

    #[test]
    fn an_overlay_root_gets_copies_of_the_hosts_files_and_no_extra_tmpfs() {
        let sys = recorder();
        prepare_root(&sys, &config(vec![]), &mut Vec::new()).unwrap();
        let lines = sys.lines();
        // A copy in the run tmpfs, bound over the image's file: nothing written into the overlay.
        let copy = lines
            .iter()
            .position(|l| l == "create /scratch/run/resolv.conf contents of /etc/resolv.conf")
            .unwrap_or_else(|| panic!("{lines:#?}"));
        assert_eq!(
            lines[copy + 1],
            "mount /scratch/run/resolv.conf /scratch/run/root/etc/resolv.conf - MsFlags(MS_BIND) -",
            "{lines:#?}"
        );
        assert!(!lines.iter().any(|l| l.starts_with("write ")), "{lines:#?}");
        let tmpfs: Vec<&String> = lines.iter().filter(|l| l.contains(" tmpfs ")).collect();
        assert_eq!(tmpfs.len(), 1, "the run directory only: {lines:#?}");
        assert!(
            !lines.iter().any(|l| l.starts_with("mount /etc/")),
            "{lines:#?}"
        );
    }

    #[test]
    fn an_overlay_root_without_the_file_gets_it_written_into_the_overlay() {
        let mut sys = recorder();
        sys.existing.retain(|p| p != Path::new("/etc/resolv.conf"));
        let mut notes = Vec::new();
        prepare_root(&sys, &config(vec![]), &mut notes).unwrap();
        let lines = sys.lines();
        assert!(
            lines.iter().any(
                |l| l == "write /scratch/run/root/etc/resolv.conf contents of /etc/resolv.conf"
            ),
            "{lines:#?}"
        );
        assert!(
            !lines
                .iter()
                .any(|l| l.starts_with("create /scratch/run/resolv.conf")),
            "{lines:#?}"
        );
        assert!(notes.is_empty(), "{notes:?}");
    }

    #[test]
    fn a_read_only_root_binds_the_hosts_files_read_only_and_gets_a_tmpfs_on_tmp() {
        let mut sys = recorder();
        sys.fail.insert("mount overlay".into(), Errno::EPERM);
        prepare_root(&sys, &config(vec![]), &mut Vec::new()).unwrap();
        let lines = sys.lines();
        let bind = lines
            .iter()
            .position(|l| l.starts_with("mount /etc/resolv.conf "))
            .unwrap();
        assert!(lines[bind + 2].contains("MS_RDONLY"), "{lines:#?}");
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with("mount tmpfs /scratch/run/root/tmp tmpfs")),
            "{lines:#?}"
        );
        assert!(!lines.iter().any(|l| l.starts_with("write ")), "{lines:#?}");
    }

    #[test]
    fn a_refused_overlay_falls_back_to_a_read_only_bind_before_anything_is_mounted_inside() {
        let mut sys = recorder();
        sys.fail.insert("mount overlay".into(), Errno::EPERM);
        let mut notes = Vec::new();
        let mode = prepare_root(&sys, &config(vec![]), &mut notes).unwrap();
        assert_eq!(mode, RootMode::ReadOnlyBind);
        let lines = sys.lines();
        let bind = lines
            .iter()
            .position(|l| l.starts_with("mount /cache/rootfs/abc /scratch/run/root"))
            .unwrap();
        assert!(lines[bind + 1].contains("MS_RDONLY"), "{lines:#?}");
        assert!(
            lines[bind + 1].contains("MS_NOSUID"),
            "locked flags kept: {lines:#?}"
        );
        let dev = lines
            .iter()
            .position(|l| l.starts_with("mount /scratch/run/dev /scratch/run/root/dev "))
            .unwrap();
        assert!(dev > bind + 1);
        assert!(
            notes.iter().any(|n| n.contains("overlayfs refused")),
            "{notes:?}"
        );
    }

    #[test]
    fn mount_points_are_never_created_in_a_read_only_image() {
        let mut sys = recorder();
        sys.fail.insert("mount overlay".into(), Errno::EPERM);
        sys.existing.retain(|p| p != Path::new("/tmp"));
        let mut notes = Vec::new();
        prepare_root(&sys, &config(vec![]), &mut notes).unwrap();
        assert!(
            sys.lines()
                .iter()
                .all(|l| !l.starts_with("resolve /tmp Dir")),
            "{:#?}",
            sys.lines()
        );
        assert!(
            notes.iter().any(|n| n.contains("/tmp is missing")),
            "{notes:?}"
        );
    }

    #[test]
    fn volumes_are_mounted_parents_first_and_read_only_ones_are_remounted() {
        let mut sys = recorder();
        sys.host.insert("/host/in".into(), true);
        sys.host.insert("/host/data".into(), true);
        sys.existing.push("/data/in".into());
        let mounts = vec![
            BindMount {
                host: "/host/in".into(),
                container: "/data/in".into(),
                read_only: true,
            },
            BindMount {
                host: "/host/data".into(),
                container: "/data".into(),
                read_only: false,
            },
        ];
        prepare_root(&sys, &config(mounts), &mut Vec::new()).unwrap();
        let lines = sys.lines();
        let data = lines
            .iter()
            .position(|l| l.starts_with("mount /host/data"))
            .unwrap();
        let input = lines
            .iter()
            .position(|l| l.starts_with("mount /host/in"))
            .unwrap();
        assert!(data < input, "{lines:#?}");
        assert!(lines[input + 2].contains("MS_RDONLY"), "{lines:#?}");
    }

    #[test]
    fn a_missing_volume_source_is_named_in_the_error() {
        let sys = recorder();
        let mounts = vec![BindMount {
            host: "/nowhere".into(),
            container: "/data".into(),
            read_only: false,
        }];
        let err = prepare_root(&sys, &config(mounts), &mut Vec::new()).unwrap_err();
        assert!(err.to_string().contains("/nowhere"), "{err}");
    }

    #[test]
    fn proc_falls_back_to_a_bind_of_the_hosts_proc() {
        let mut sys = recorder();
        sys.fail.insert("mount proc".into(), Errno::EPERM);
        let mut notes = Vec::new();
        mount_proc(&sys, Path::new("/r"), &mut notes).unwrap();
        assert!(
            sys.lines()
                .last()
                .unwrap()
                .starts_with("mount /proc /r/proc - MsFlags(MS_BIND | MS_REC)"),
            "{:#?}",
            sys.lines()
        );
        assert_eq!(notes.len(), 1);
    }
}
