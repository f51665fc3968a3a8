//! Resolving a tar entry's name to a place inside the root, the way a `chroot` would, while
//! refusing anything that would land outside it.
//!
//! The root under construction is private to this process (a fresh directory in the cache's
//! `tmp/`, held under the cache lock), so user-space resolution with `lstat` cannot race with
//! another writer: the only symlinks in it are the ones the layers created, and those are
//! followed here explicitly, never by the kernel.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use super::error::ExtractError;
use super::fsops;

/// Symlinks followed while resolving one name before giving up, as Linux's `MAXSYMLINKS`.
const MAX_SYMLINKS: usize = 40;

/// A tar entry name checked for the obvious escapes, split into components.
pub(super) fn clean_name(raw: &[u8]) -> Result<Vec<OsString>, ExtractError> {
    let entry = String::from_utf8_lossy(raw).into_owned();
    let path = Path::new(OsStr::from_bytes(raw));
    let mut out = Vec::new();
    for component in path.components() {
        match component {
            Component::Normal(c) => out.push(c.to_owned()),
            Component::CurDir => {}
            // CVE-2019-14271-style escapes: a layer has no business naming the host's files.
            Component::RootDir | Component::Prefix(_) => {
                return Err(ExtractError::AbsoluteName { entry });
            }
            Component::ParentDir => return Err(ExtractError::DotDot { entry }),
        }
    }
    Ok(out)
}

/// Resolves parent directories inside one root, remembering answers until the tree's shape
/// changes (a symlink or a removed directory invalidates everything).
pub(super) struct Resolver {
    root: PathBuf,
    memo: HashMap<Vec<OsString>, PathBuf>,
    /// Implicit parent directories created since [`Resolver::take_created`] was last called:
    /// they occupy space the extractor must charge.
    created: u64,
    /// The directory (relative to the root) files were last created in, open as `O_PATH`:
    /// consecutive entries of a tar share their parent, and creating each relative to it
    /// spares the kernel a walk from the root per file. Dropped with the memo.
    dir: Option<(PathBuf, OwnedFd)>,
}

impl Resolver {
    /// A resolver for `root`.
    pub(super) fn new(root: &Path) -> Self {
        Self {
            root: root.to_owned(),
            memo: HashMap::new(),
            created: 0,
            dir: None,
        }
    }

    /// How many implicit parent directories were created since the last call.
    pub(super) fn take_created(&mut self) -> u64 {
        std::mem::take(&mut self.created)
    }

    /// The root directory.
    pub(super) fn root(&self) -> &Path {
        &self.root
    }

    /// Forget memoised answers: the tree changed shape.
    pub(super) fn invalidate(&mut self) {
        self.memo.clear();
        self.dir = None;
    }

    /// `real` (a directory relative to the root, as [`Resolver::resolve_dir`] answered, made
    /// only of real directories) open for `openat`: the same descriptor as for the previous
    /// file when it is the same directory and the tree has not changed shape since.
    pub(super) fn open_dir(&mut self, real: &Path) -> io::Result<BorrowedFd<'_>> {
        let kept = match self.dir.take() {
            Some(kept) if kept.0 == real => self.dir.insert(kept),
            _ => {
                let fd = fsops::open_path_dir(&self.root.join(real))?;
                self.dir.insert((real.to_owned(), fd))
            }
        };
        Ok(kept.1.as_fd())
    }

    /// The real directory (relative to the root, made only of real directories) that `dir`
    /// names, following symlinks as a chroot would. Missing directories are created with
    /// `create`, else `None` is returned for them.
    pub(super) fn resolve_dir(
        &mut self,
        entry: &str,
        dir: &[OsString],
        create: bool,
    ) -> Result<Option<PathBuf>, ExtractError> {
        if let Some(hit) = self.memo.get(dir) {
            return Ok(Some(hit.clone()));
        }
        // Start after the longest prefix already resolved (the parent of a new directory,
        // usually): only the components past it are looked at, not every one from the root.
        let (mut real, from): (Vec<OsString>, usize) = (1..dir.len())
            .rev()
            .find_map(|k| {
                let hit = self.memo.get(&dir[..k])?;
                Some((hit.iter().map(OsStr::to_owned).collect(), k))
            })
            .unwrap_or_default();
        let mut pending: std::collections::VecDeque<OsString> =
            dir[from..].iter().cloned().collect();
        let mut followed = 0usize;
        while let Some(component) = pending.pop_front() {
            if component.is_empty() || component == "." {
                continue;
            }
            if component == ".." {
                if real.pop().is_none() {
                    return Err(ExtractError::SymlinkEscape {
                        entry: entry.to_owned(),
                    });
                }
                continue;
            }
            let mut here: PathBuf = self.root.clone();
            here.extend(&real);
            here.push(&component);
            match std::fs::symlink_metadata(&here) {
                Ok(meta) if meta.is_dir() => real.push(component),
                Ok(meta) if meta.file_type().is_symlink() => {
                    followed += 1;
                    if followed > MAX_SYMLINKS {
                        return Err(ExtractError::SymlinkLoop {
                            entry: entry.to_owned(),
                        });
                    }
                    let target = std::fs::read_link(&here).map_err(|source| ExtractError::Io {
                        op: "readlink",
                        path: here.clone(),
                        source,
                    })?;
                    if target.is_absolute() {
                        // Absolute links mean "from the image's root" (e.g. /var/run -> /run).
                        real.clear();
                    }
                    let mut spliced: Vec<OsString> = target
                        .components()
                        .filter_map(|c| match c {
                            Component::Normal(n) => Some(n.to_owned()),
                            Component::ParentDir => Some(OsString::from("..")),
                            _ => None,
                        })
                        .collect();
                    spliced.extend(pending.drain(..));
                    pending = spliced.into();
                }
                Ok(_) => {
                    return Err(ExtractError::NotADirectory {
                        entry: entry.to_owned(),
                        parent: here,
                    });
                }
                Err(err) if err.kind() == io::ErrorKind::NotFound => {
                    if !create {
                        return Ok(None);
                    }
                    // Tars may omit parent directory entries; later entries can set the mode.
                    match std::fs::DirBuilder::new().mode(0o755).create(&here) {
                        Ok(()) => self.created += 1,
                        // Made meanwhile by another extractor of the same flattened tree.
                        Err(err)
                            if err.kind() == io::ErrorKind::AlreadyExists
                                && std::fs::symlink_metadata(&here).is_ok_and(|m| m.is_dir()) => {}
                        Err(source) => {
                            return Err(ExtractError::Io {
                                op: "mkdir",
                                path: here,
                                source,
                            });
                        }
                    }
                    real.push(component);
                }
                Err(source) => {
                    return Err(ExtractError::Io {
                        op: "lstat",
                        path: here,
                        source,
                    });
                }
            }
        }
        let resolved: PathBuf = real.iter().collect();
        self.memo.insert(dir.to_vec(), resolved.clone());
        Ok(Some(resolved))
    }
}

use std::os::unix::fs::DirBuilderExt;

#[cfg(test)]
mod tests {
    use super::*;

    fn comps(s: &str) -> Vec<OsString> {
        clean_name(s.as_bytes()).unwrap()
    }

    #[test]
    fn names_with_dot_dot_or_a_leading_slash_are_refused() {
        assert!(matches!(
            clean_name(b"../etc/passwd"),
            Err(ExtractError::DotDot { .. })
        ));
        assert!(matches!(
            clean_name(b"a/../../b"),
            Err(ExtractError::DotDot { .. })
        ));
        assert!(matches!(
            clean_name(b"/etc/passwd"),
            Err(ExtractError::AbsoluteName { .. })
        ));
        assert_eq!(
            comps("./usr//bin/"),
            vec![OsString::from("usr"), "bin".into()]
        );
    }

    #[test]
    fn absolute_symlinks_resolve_inside_the_root() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir(tmp.path().join("run")).unwrap();
        std::fs::create_dir(tmp.path().join("var")).unwrap();
        std::os::unix::fs::symlink("/run", tmp.path().join("var/run")).unwrap();
        let mut r = Resolver::new(tmp.path());
        let got = r.resolve_dir("var/run/x", &comps("var/run"), true).unwrap();
        assert_eq!(got, Some(PathBuf::from("run")));
    }

    #[test]
    fn a_resolved_prefix_is_continued_from_where_it_really_is() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(tmp.path().join("run")).unwrap();
        std::fs::create_dir(tmp.path().join("var")).unwrap();
        std::os::unix::fs::symlink("/run", tmp.path().join("var/run")).unwrap();
        let mut r = Resolver::new(tmp.path());
        assert_eq!(
            r.resolve_dir("var/run/x", &comps("var/run"), true).unwrap(),
            Some(PathBuf::from("run"))
        );
        // `var/run` is known: the rest goes on from `run`, not from the literal path.
        let got = r.resolve_dir("var/run/a/b/x", &comps("var/run/a/b"), true);
        assert_eq!(got.unwrap(), Some(PathBuf::from("run/a/b")));
        assert!(tmp.path().join("run/a/b").is_dir());
        assert!(
            !tmp.path()
                .join("var/run/a")
                .symlink_metadata()
                .is_ok_and(|m| m.is_dir())
        );
        // Once the shape changes, nothing known before is trusted.
        std::fs::remove_file(tmp.path().join("var/run")).unwrap();
        std::fs::create_dir(tmp.path().join("var/run")).unwrap();
        r.invalidate();
        let got = r.resolve_dir("var/run/a/x", &comps("var/run/a"), true);
        assert_eq!(got.unwrap(), Some(PathBuf::from("var/run/a")));
    }

    #[test]
    fn a_relative_symlink_climbing_out_of_the_root_is_an_escape() {
        let tmp = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink("../../../../tmp", tmp.path().join("evil")).unwrap();
        let mut r = Resolver::new(tmp.path());
        let got = r.resolve_dir("evil/x", &comps("evil"), true);
        assert!(
            matches!(got, Err(ExtractError::SymlinkEscape { .. })),
            "{got:?}"
        );
    }

    #[test]
    fn symlink_loops_stop_with_an_error() {
        let tmp = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink("b", tmp.path().join("a")).unwrap();
        std::os::unix::fs::symlink("a", tmp.path().join("b")).unwrap();
        let mut r = Resolver::new(tmp.path());
        assert!(matches!(
            r.resolve_dir("a/x", &comps("a"), true),
            Err(ExtractError::SymlinkLoop { .. })
        ));
    }

    #[test]
    fn missing_parents_are_created_only_when_asked() {
        let tmp = tempfile::tempdir().unwrap();
        let mut r = Resolver::new(tmp.path());
        assert_eq!(r.resolve_dir("a/b/c", &comps("a/b"), false).unwrap(), None);
        assert!(!tmp.path().join("a").exists());
        let got = r.resolve_dir("a/b/c", &comps("a/b"), true).unwrap();
        assert_eq!(got, Some(PathBuf::from("a/b")));
        assert!(tmp.path().join("a/b").is_dir());
    }
}
