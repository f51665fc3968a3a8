//! Removing trees an image (or a script) may have made read-only, without following symlinks.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Remove a directory tree; directories an image or a script made read-only (`chmod -R a-w`,
/// mode 0 included) are made owner-writable first, since an unprivileged user could not delete
/// their entries otherwise. No step follows a symlink: `remove_dir_all` opens each directory
/// with `O_NOFOLLOW`, and so does the pass that restores the permissions (see
/// [`make_writable`]), which changes the mode of the directory it opened, not of a path.
pub fn remove_tree(path: &Path) -> io::Result<()> {
    match std::fs::remove_dir_all(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
            make_writable(path)?;
            std::fs::remove_dir_all(path)
        }
        Err(e) => Err(e),
    }
}

/// Give every directory of the tree at `path` (itself included) owner `rwx`. A symlink, at the
/// top or inside, is left alone.
fn make_writable(path: &Path) -> io::Result<()> {
    let Some(dir) = open_dir(path)? else {
        return Ok(());
    };
    writable_tree(&dir)
}

/// A directory opened with `O_PATH | O_NOFOLLOW | O_DIRECTORY` (no permission needed on it, and
/// a symlink in its place fails to open), with the path through which the open descriptor
/// itself is reached (`/proc/self/fd/N`: a swapped entry cannot redirect it).
struct Dir {
    file: File,
    handle: PathBuf,
}

fn open_dir(path: &Path) -> io::Result<Option<Dir>> {
    let opened = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_PATH | libc::O_NOFOLLOW | libc::O_DIRECTORY)
        .open(path);
    let file = match opened {
        Ok(file) => file,
        // A symlink (ELOOP), not a directory (ENOTDIR) or gone: nothing to make writable.
        Err(e)
            if e.raw_os_error() == Some(libc::ELOOP)
                || e.raw_os_error() == Some(libc::ENOTDIR)
                || e.kind() == io::ErrorKind::NotFound =>
        {
            return Ok(None);
        }
        Err(e) => return Err(e),
    };
    let by_fd = PathBuf::from(format!("/proc/self/fd/{}", file.as_raw_fd()));
    // Without /proc the path itself serves (only a concurrent swap could redirect it).
    let handle = if by_fd.exists() {
        by_fd
    } else {
        path.to_owned()
    };
    Ok(Some(Dir { file, handle }))
}

fn writable_tree(dir: &Dir) -> io::Result<()> {
    let mode = dir.file.metadata()?.permissions().mode();
    if mode & 0o700 != 0o700 {
        std::fs::set_permissions(&dir.handle, std::fs::Permissions::from_mode(mode | 0o700))?;
    }
    for child in std::fs::read_dir(&dir.handle)? {
        let child = child?;
        // `file_type` is the entry's own type (d_type or lstat): a symlink is not a directory.
        if child.file_type()?.is_dir()
            && let Some(sub) = open_dir(&dir.handle.join(child.file_name()))?
        {
            writable_tree(&sub)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(path: &Path, mode: u32) {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn nested_read_only_directories_are_removed_and_a_symlinked_directory_is_not_followed() {
        let tmp = tempfile::tempdir().unwrap();
        let outside = tmp.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        std::fs::write(outside.join("keep"), b"keep").unwrap();
        mode(&outside, 0o500);
        let tree = tmp.path().join("req");
        std::fs::create_dir_all(tree.join("output/a/b/c")).unwrap();
        std::fs::create_dir_all(tree.join("output/none")).unwrap();
        std::fs::write(tree.join("output/a/b/c/file"), b"x").unwrap();
        std::fs::write(tree.join("output/a/ro-file"), b"x").unwrap();
        std::os::unix::fs::symlink(&outside, tree.join("output/a/link")).unwrap();
        mode(&tree.join("output/a/ro-file"), 0o444);
        // `chmod -R a-w`, and a directory with no permission at all.
        for d in ["output/a/b/c", "output/a/b", "output/a", "output", ""] {
            mode(&tree.join(d), 0o555);
        }
        mode(&tree.join("output/none"), 0o000);
        // As root `remove_dir_all` alone would succeed: the pass an unprivileged user needs
        // is checked on its own first.
        make_writable(&tree).unwrap();
        for d in ["output/a/b/c", "output/a", "output/none", ""] {
            let m = std::fs::metadata(tree.join(d))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(m & 0o700, 0o700, "{d}: {m:o}");
        }
        assert_eq!(
            std::fs::metadata(tree.join("output/a/ro-file"))
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            0o444,
            "files keep their mode"
        );
        mode(&tree.join("output/a"), 0o555);
        remove_tree(&tree).unwrap();
        assert!(!tree.exists());
        // The symlink's target kept its mode and its file.
        let kept = std::fs::metadata(&outside).unwrap().permissions().mode() & 0o777;
        assert_eq!(kept, 0o500);
        assert!(outside.join("keep").exists());
        mode(&outside, 0o700);
    }

    #[test]
    fn a_symlink_given_as_the_tree_is_not_followed() {
        let tmp = tempfile::tempdir().unwrap();
        let target = tmp.path().join("target");
        std::fs::create_dir(&target).unwrap();
        mode(&target, 0o500);
        assert!(make_writable(&target.with_file_name("nothing")).is_ok());
        let link = tmp.path().join("link");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        make_writable(&link).unwrap();
        assert_eq!(
            std::fs::metadata(&target).unwrap().permissions().mode() & 0o777,
            0o500
        );
        mode(&target, 0o700);
    }
}
