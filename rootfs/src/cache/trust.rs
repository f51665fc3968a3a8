//! Whose cache it is: a cache directory that another user owns or may write could hold images
//! (or references, or a symlink in place of an image) planted by that user, which the next
//! `scar run` or invocation would execute. The cache directory, `refs/`, `rootfs/` and
//! `configs/` (an image's Entrypoint and Cmd) must belong to the user running scar and be
//! writable by nobody else.
//!
//! One `stat` per directory: [`Cache::open`](super::Cache::open) calls this on every start.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use super::error::CacheError;

/// Refuse the cache at `root` unless it, `refs/`, `rootfs/` and `configs/` are directories of
/// the effective user that group and others cannot write. `configs/` may be missing (a cache
/// made by an older version gets it at its next pull).
pub(super) fn check(root: &Path) -> Result<(), CacheError> {
    let me = nix::unistd::geteuid().as_raw();
    // The root may be a symlink the user chose (a cache on EFS); what it leads to is checked.
    check_dir(root, root, std::fs::metadata(root), me)?;
    for sub in ["refs", "rootfs"] {
        let path = root.join(sub);
        check_dir(root, &path, std::fs::symlink_metadata(&path), me)?;
    }
    let configs = root.join("configs");
    match std::fs::symlink_metadata(&configs) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        meta => check_dir(root, &configs, meta, me),
    }
}

fn check_dir(
    root: &Path,
    path: &Path,
    meta: std::io::Result<std::fs::Metadata>,
    me: u32,
) -> Result<(), CacheError> {
    let meta = meta.map_err(|source| CacheError::Io {
        op: "stat",
        path: path.to_owned(),
        source,
    })?;
    let mode = meta.mode() & 0o7777;
    let what = if path == root {
        "the cache directory".to_owned()
    } else {
        format!("the cache's {}", path.display())
    };
    if !meta.is_dir() {
        return Err(CacheError::Untrusted(format!(
            "{what} {} is not a directory (a symlink or a file in its place): remove it (scar recreates it) or set SCAR_CACHE_DIR to a directory of your own",
            path.display()
        )));
    }
    if meta.uid() != me {
        return Err(CacheError::Untrusted(format!(
            "{what} {} belongs to uid {} (mode {mode:04o}), not to uid {me} that runs scar: its owner could plant images that scar would run. Set SCAR_CACHE_DIR to a directory of your own, or, if you trust its contents, `chown -R {me} {}`",
            path.display(),
            meta.uid(),
            root.display()
        )));
    }
    if mode & 0o022 != 0 {
        return Err(CacheError::Untrusted(format!(
            "{what} {} is writable by {} (mode {mode:04o}): another user could plant images that scar would run. Fix it with `chmod go-w {}` (after checking nobody else wrote into it), or set SCAR_CACHE_DIR to a directory of your own",
            path.display(),
            match (mode & 0o020 != 0, mode & 0o002 != 0) {
                (true, true) => "its group and others",
                (true, false) => "its group",
                _ => "others",
            },
            path.display()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_cache_writable_by_others_or_of_another_owner_is_refused_with_the_fix() {
        let tmp = tempfile::tempdir().unwrap();
        let cache = super::super::Cache::open(tmp.path()).unwrap();
        check(cache.root()).unwrap();
        let refs = tmp.path().join("refs");
        std::fs::set_permissions(&refs, std::fs::Permissions::from_mode(0o777)).unwrap();
        let err = check(tmp.path()).unwrap_err().to_string();
        assert!(err.contains(&refs.display().to_string()), "{err}");
        assert!(err.contains("0777") && err.contains("chmod go-w"), "{err}");
        assert!(err.contains("its group and others"), "{err}");
        std::fs::set_permissions(&refs, std::fs::Permissions::from_mode(0o755)).unwrap();
        let configs = tmp.path().join("configs");
        std::fs::set_permissions(&configs, std::fs::Permissions::from_mode(0o775)).unwrap();
        let err = check(tmp.path()).unwrap_err().to_string();
        assert!(
            err.contains("configs") && err.contains("its group"),
            "{err}"
        );
        std::fs::remove_dir(&configs).unwrap();
        check(tmp.path()).expect("a cache of an older version, without configs/, is accepted");
        std::fs::create_dir(&configs).unwrap();
        std::fs::set_permissions(&configs, std::fs::Permissions::from_mode(0o755)).unwrap();
        let rootfs = tmp.path().join("rootfs");
        std::fs::remove_dir(&rootfs).unwrap();
        std::os::unix::fs::symlink("/", &rootfs).unwrap();
        let err = check(tmp.path()).unwrap_err().to_string();
        assert!(err.contains("not a directory"), "{err}");
        std::fs::remove_file(&rootfs).unwrap();
        std::fs::create_dir(&rootfs).unwrap();
        if nix::unistd::geteuid().is_root() {
            std::os::unix::fs::chown(tmp.path(), Some(4242), None).unwrap();
            let err = check(tmp.path()).unwrap_err().to_string();
            assert!(err.contains("belongs to uid 4242"), "{err}");
            assert!(err.contains("SCAR_CACHE_DIR"), "{err}");
        }
    }
}
