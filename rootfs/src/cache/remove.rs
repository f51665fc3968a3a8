//! Removing trees an image may have made read-only.

use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// Remove a directory tree; directories an image made read-only are made owner-writable first,
/// since an unprivileged user could not delete their entries otherwise.
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

fn make_writable(dir: &Path) -> io::Result<()> {
    let meta = std::fs::symlink_metadata(dir)?;
    if !meta.is_dir() {
        return Ok(());
    }
    let mode = meta.permissions().mode();
    if mode & 0o700 != 0o700 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode | 0o700))?;
    }
    for child in std::fs::read_dir(dir)? {
        let child = child?;
        if child.file_type()?.is_dir() {
            make_writable(&child.path())?;
        }
    }
    Ok(())
}
