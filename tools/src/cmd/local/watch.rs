//! Noticing files that appear under `DIR/input/`, the local stand-in for S3 `ObjectCreated`.
//!
//! The directory is polled (no inotify: it works the same on every filesystem, including
//! network and container mounts). A file is reported once its size and modification time have
//! stayed the same across two scans, so a file still being copied is not sent half-written; a
//! file that changes later is reported again, as an overwrite in S3 would be.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// What identifies one version of a file.
type Version = (u64, SystemTime);

/// Polls one directory tree.
pub struct Watcher {
    root: PathBuf,
    /// Versions already reported (or present at the start and left alone).
    reported: HashMap<PathBuf, Version>,
    /// Versions seen once, waiting to be seen unchanged.
    settling: HashMap<PathBuf, Version>,
}

fn walk(dir: &Path, found: &mut HashMap<PathBuf, Version>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        // Hidden entries are editors' and tools' temporary files (and `scar local`'s own).
        if entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        let path = entry.path();
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        if meta.is_dir() {
            walk(&path, found);
        } else if meta.is_file() {
            found.insert(
                path,
                (
                    meta.len(),
                    meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
                ),
            );
        }
    }
}

impl Watcher {
    /// Watch `root`; files already there are reported too when `existing` is set.
    pub fn new(root: &Path, existing: bool) -> Self {
        let mut reported = HashMap::new();
        if !existing {
            walk(root, &mut reported);
        }
        Self {
            root: root.to_path_buf(),
            reported,
            settling: HashMap::new(),
        }
    }

    /// The number of files left alone at the start (or reported so far).
    pub fn known(&self) -> usize {
        self.reported.len()
    }

    /// Files that settled since the last scan, sorted by path.
    pub fn scan(&mut self) -> Vec<PathBuf> {
        let mut current = HashMap::new();
        walk(&self.root, &mut current);
        self.reported.retain(|path, _| current.contains_key(path));
        self.settling.retain(|path, _| current.contains_key(path));
        let mut ready = Vec::new();
        for (path, version) in current {
            if self.reported.get(&path) == Some(&version) {
                continue;
            }
            if self.settling.get(&path) == Some(&version) {
                self.settling.remove(&path);
                self.reported.insert(path.clone(), version);
                ready.push(path);
            } else {
                self.settling.insert(path, version);
            }
        }
        ready.sort();
        ready
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_file_is_reported_once_it_stops_changing() {
        let dir = tempfile::tempdir().unwrap();
        let mut watcher = Watcher::new(dir.path(), false);
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("sub/a.png"), b"1").unwrap();
        assert!(watcher.scan().is_empty(), "reported before it settled");
        assert_eq!(watcher.scan(), [dir.path().join("sub/a.png")]);
        assert!(watcher.scan().is_empty(), "reported twice");
    }

    #[test]
    fn files_present_at_the_start_are_left_alone_unless_asked() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("old.png"), b"1").unwrap();
        let mut quiet = Watcher::new(dir.path(), false);
        assert_eq!(quiet.known(), 1);
        quiet.scan();
        assert!(quiet.scan().is_empty());
        let mut eager = Watcher::new(dir.path(), true);
        eager.scan();
        assert_eq!(eager.scan(), [dir.path().join("old.png")]);
    }

    #[test]
    fn a_rewritten_file_is_reported_again_and_hidden_files_never() {
        let dir = tempfile::tempdir().unwrap();
        let mut watcher = Watcher::new(dir.path(), false);
        let file = dir.path().join("a.png");
        std::fs::write(&file, b"1").unwrap();
        std::fs::write(dir.path().join(".part"), b"x").unwrap();
        watcher.scan();
        assert_eq!(watcher.scan(), std::slice::from_ref(&file));
        std::fs::write(&file, b"22").unwrap();
        watcher.scan();
        assert_eq!(watcher.scan(), [file]);
    }
}
