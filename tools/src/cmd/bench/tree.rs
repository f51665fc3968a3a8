//! Which entries of a directory tree go into a layer: the whole tree, or what changed relative
//! to a lower tree (new and changed entries, whiteouts for removed ones), in a stable order.

use std::collections::{BTreeSet, HashMap};
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::oci_error::OciError;

/// What goes into one layer.
pub struct LayerSpec {
    /// The tree whose entries are written.
    pub upper: PathBuf,
    /// When set, only entries that are new or changed relative to this tree are written, and
    /// entries it has that `upper` lacks become whiteouts.
    pub lower: Option<PathBuf>,
    /// Only paths (relative, no leading `/`) under one of these prefixes; empty means all.
    pub include: Vec<String>,
    /// Paths under these prefixes are left out (they go to another layer).
    pub exclude: Vec<String>,
}

impl LayerSpec {
    /// The whole tree as one layer.
    pub fn whole(root: &Path) -> Self {
        Self {
            upper: root.to_path_buf(),
            lower: None,
            include: Vec::new(),
            exclude: Vec::new(),
        }
    }

    pub(super) fn selects(&self, rel: &str) -> bool {
        let under = |prefix: &String| rel == prefix || rel.starts_with(&format!("{prefix}/"));
        (self.include.is_empty() || self.include.iter().any(under))
            && !self.exclude.iter().any(under)
    }
}

/// One entry of a layer, in tar order.
pub(super) enum Entry {
    /// A file, directory or symlink copied from the upper tree.
    Node(String),
    /// `.wh.<name>` for a path the lower tree has and the upper one lacks.
    Whiteout(String),
}

/// Regular files, directories and symlinks under `root`, relative, parents before children,
/// siblings sorted: the same tree always gives the same tar.
fn walk(root: &Path) -> Result<Vec<(String, fs::Metadata)>, OciError> {
    let mut out = Vec::new();
    let mut stack = vec![String::new()];
    while let Some(rel) = stack.pop() {
        let dir = if rel.is_empty() {
            root.to_path_buf()
        } else {
            root.join(&rel)
        };
        let mut names: Vec<String> = fs::read_dir(&dir)
            .map_err(|source| OciError::Io {
                what: "list",
                path: dir.clone(),
                source,
            })?
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        let mut subdirs = Vec::new();
        for name in names {
            let child = if rel.is_empty() {
                name
            } else {
                format!("{rel}/{name}")
            };
            let path = root.join(&child);
            let meta = fs::symlink_metadata(&path).map_err(|source| OciError::Io {
                what: "stat",
                path: path.clone(),
                source,
            })?;
            let kind = meta.file_type();
            // Device nodes, fifos and sockets are left out: image layers should not carry them
            // and extractors skip them anyway.
            if !(kind.is_dir() || kind.is_file() || kind.is_symlink()) {
                continue;
            }
            if kind.is_dir() {
                subdirs.push(child.clone());
            }
            out.push((child, meta));
        }
        // Depth-first in sorted order: push in reverse so the first name is visited first.
        // Children come after all of their parent's siblings here, which tar does not mind: only
        // parents-before-children matters.
        stack.extend(subdirs.into_iter().rev());
    }
    Ok(out)
}

fn differs(a: &fs::Metadata, b: &fs::Metadata) -> bool {
    a.file_type() != b.file_type()
        || a.mode() != b.mode()
        || a.uid() != b.uid()
        || a.gid() != b.gid()
        || (!a.is_dir() && (a.len() != b.len() || a.mtime() != b.mtime()))
}

pub(super) fn select_entries(spec: &LayerSpec) -> Result<Vec<Entry>, OciError> {
    let upper = walk(&spec.upper)?;
    let Some(lower_root) = &spec.lower else {
        return Ok(upper
            .into_iter()
            .filter(|(rel, _)| spec.selects(rel))
            .map(|(rel, _)| Entry::Node(rel))
            .collect());
    };
    let lower: HashMap<String, fs::Metadata> = walk(lower_root)?.into_iter().collect();
    let upper_paths: BTreeSet<&str> = upper.iter().map(|(rel, _)| rel.as_str()).collect();

    let mut wanted: BTreeSet<String> = BTreeSet::new();
    for (rel, meta) in &upper {
        if !spec.selects(rel) {
            continue;
        }
        let changed = match lower.get(rel) {
            None => true,
            Some(old) => differs(meta, old),
        };
        if changed {
            wanted.insert(rel.clone());
        }
    }
    // Parents of what is written go in too, so the layer extracts on its own.
    let parents: Vec<String> = wanted
        .iter()
        .flat_map(|rel| {
            Path::new(rel)
                .ancestors()
                .skip(1)
                .map(|p| p.to_string_lossy().into_owned())
                .filter(|p| !p.is_empty())
                .collect::<Vec<_>>()
        })
        .collect();
    wanted.extend(parents);

    let mut entries: Vec<Entry> = upper
        .iter()
        .filter(|(rel, _)| wanted.contains(rel))
        .map(|(rel, _)| Entry::Node(rel.clone()))
        .collect();
    // A whiteout only for the topmost removed path: its children go with it.
    let mut removed: Vec<&String> = lower
        .keys()
        .filter(|rel| spec.selects(rel) && !upper_paths.contains(rel.as_str()))
        .collect();
    removed.sort();
    let removed_set: BTreeSet<&str> = removed.iter().map(|r| r.as_str()).collect();
    for rel in removed {
        let parent_removed = Path::new(rel.as_str())
            .ancestors()
            .skip(1)
            .any(|p| removed_set.contains(p.to_string_lossy().as_ref()));
        if !parent_removed {
            entries.push(Entry::Whiteout(rel.clone()));
        }
    }
    Ok(entries)
}
