//! OCI whiteouts: `.wh.<name>` deletes `<name>` from lower layers, `.wh..wh..opq` hides every
//! lower-layer entry of its directory.

use std::collections::HashSet;
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use super::error::ExtractError;
use super::fsops;
use super::path::Resolver;

const PREFIX: &[u8] = b".wh.";
const OPAQUE: &[u8] = b".wh..wh..opq";

/// What a whiteout entry asks for.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Whiteout {
    /// Remove one name.
    Remove(OsString),
    /// Empty the directory of lower-layer content.
    Opaque,
}

/// Whether `file_name` is a whiteout marker, and which kind.
pub(super) fn classify(file_name: &OsStr) -> Option<Whiteout> {
    let bytes = file_name.as_bytes();
    if bytes == OPAQUE {
        return Some(Whiteout::Opaque);
    }
    let rest = bytes.strip_prefix(PREFIX)?;
    Some(Whiteout::Remove(OsStr::from_bytes(rest).to_owned()))
}

/// Apply a whiteout found in directory `dir` of the layer; `written` are the names this layer
/// already wrote, which an opaque marker must keep. Returns what it removed (relative to the
/// root), so that deferred records about those paths can be dropped.
pub(super) fn apply(
    resolver: &mut Resolver,
    entry: &str,
    dir: &[OsString],
    kind: Whiteout,
    written: &HashSet<PathBuf>,
) -> Result<Vec<PathBuf>, ExtractError> {
    let mut removed = Vec::new();
    // Nothing below a missing directory to hide.
    let Some(parent) = resolver.resolve_dir(entry, dir, false)? else {
        return Ok(removed);
    };
    let root = resolver.root().to_owned();
    match kind {
        Whiteout::Remove(name) => {
            if name.is_empty() || name == "." || name == ".." || name.as_bytes().contains(&b'/') {
                return Err(ExtractError::DotDot {
                    entry: entry.to_owned(),
                });
            }
            let target = root.join(&parent).join(&name);
            if std::fs::symlink_metadata(&target).is_ok() {
                fsops::remove_any(&target)?;
                removed.push(parent.join(&name));
            }
        }
        Whiteout::Opaque => {
            let full = root.join(&parent);
            let children =
                std::fs::read_dir(&full).map_err(|e| ExtractError::io("readdir", &full, e))?;
            for child in children {
                let child = child.map_err(|e| ExtractError::io("readdir", &full, e))?;
                let rel = parent.join(child.file_name());
                if !written.contains(&rel) {
                    fsops::remove_any(&child.path())?;
                    removed.push(rel);
                }
            }
        }
    }
    resolver.invalidate();
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whiteout_names_are_recognised() {
        assert_eq!(classify(OsStr::new(".wh..wh..opq")), Some(Whiteout::Opaque));
        assert_eq!(
            classify(OsStr::new(".wh.foo")),
            Some(Whiteout::Remove("foo".into()))
        );
        assert_eq!(classify(OsStr::new("foo.wh.")), None);
    }
}
