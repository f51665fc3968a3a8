//! Container paths to host paths inside an image root, the way the kernel would resolve them
//! after a `chroot`: absolute symlinks and `..` stay inside the root.

use std::ffi::OsStr;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

/// Symlinks followed before giving up, as Linux's `MAXSYMLINKS`.
const MAX_LINKS: usize = 40;

/// Resolve the container path `path` (absolute, or relative to `/`) inside `root`, following
/// every symlink, the last one too. The result may name a missing file (the caller checks).
pub fn resolve(root: &Path, path: &Path) -> io::Result<PathBuf> {
    let mut out = root.to_path_buf();
    // Components still to walk, last first (so `pop` takes the next one).
    let mut pending: Vec<Vec<u8>> = components(path);
    let mut links = 0;
    while let Some(comp) = pending.pop() {
        match comp.as_slice() {
            b"." => continue,
            b".." => {
                if out != root {
                    out.pop();
                }
                continue;
            }
            _ => {}
        }
        let next = out.join(OsStr::from_bytes(&comp));
        match std::fs::symlink_metadata(&next) {
            Ok(meta) if meta.file_type().is_symlink() => {
                links += 1;
                if links > MAX_LINKS {
                    return Err(io::Error::other(format!(
                        "too many levels of symbolic links resolving {} in {}",
                        path.display(),
                        root.display()
                    )));
                }
                let target = std::fs::read_link(&next)?;
                if target.is_absolute() {
                    out = root.to_path_buf();
                }
                pending.extend(components(&target));
            }
            Ok(_) => out = next,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                // Missing: the rest is appended as is, the caller reports what is absent.
                out = next;
                while let Some(rest) = pending.pop() {
                    out.push(OsStr::from_bytes(&rest));
                }
                return Ok(out);
            }
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

/// The normal components of `path`, reversed (`..` kept, `/` and `.` dropped).
fn components(path: &Path) -> Vec<Vec<u8>> {
    let mut v: Vec<Vec<u8>> = path
        .components()
        .filter_map(|c| match c {
            Component::Normal(s) => Some(s.as_bytes().to_vec()),
            Component::ParentDir => Some(b"..".to_vec()),
            _ => None,
        })
        .collect();
    v.reverse();
    v
}

/// The container path of a host path under `root` (`None` when it is outside).
pub fn to_container(root: &Path, host: &Path) -> Option<PathBuf> {
    host.strip_prefix(root)
        .ok()
        .map(|rest| Path::new("/").join(rest))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn absolute_symlinks_and_dotdot_stay_inside_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("usr/lib/x86_64-linux-gnu")).unwrap();
        std::fs::write(root.join("usr/lib/x86_64-linux-gnu/ld.so"), b"x").unwrap();
        symlink("usr/lib", root.join("lib")).unwrap();
        std::fs::create_dir(root.join("lib64")).unwrap();
        symlink("/lib/x86_64-linux-gnu/ld.so", root.join("lib64/ld.so")).unwrap();
        symlink("../../../../../../etc", root.join("usr/escape")).unwrap();

        let got = resolve(root, Path::new("/lib64/ld.so")).unwrap();
        assert_eq!(got, root.join("usr/lib/x86_64-linux-gnu/ld.so"));
        let got = resolve(root, Path::new("/usr/escape/passwd")).unwrap();
        assert_eq!(got, root.join("etc/passwd"));
        let got = resolve(root, Path::new("/../../lib/x86_64-linux-gnu")).unwrap();
        assert_eq!(got, root.join("usr/lib/x86_64-linux-gnu"));
    }

    #[test]
    fn a_symlink_loop_is_an_error_not_a_hang() {
        let dir = tempfile::tempdir().unwrap();
        symlink("/b", dir.path().join("a")).unwrap();
        symlink("/a", dir.path().join("b")).unwrap();
        let err = resolve(dir.path(), Path::new("/a")).unwrap_err();
        assert!(err.to_string().contains("too many levels"), "{err}");
    }

    #[test]
    fn host_paths_map_back_to_container_paths() {
        let root = Path::new("/tmp/scar/rootfs/x");
        assert_eq!(
            to_container(root, Path::new("/tmp/scar/rootfs/x/usr/bin")),
            Some(PathBuf::from("/usr/bin"))
        );
        assert_eq!(to_container(root, root), Some(PathBuf::from("/")));
        assert_eq!(to_container(root, Path::new("/etc")), None);
    }
}
