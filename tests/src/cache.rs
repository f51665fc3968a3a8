//! What tests check of an image cache directory after a pull.

use std::path::Path;

/// The cache at `cache` holds no published image, no reference and no half-built tree: what a
/// refused pull must leave.
pub fn assert_no_image_left(cache: &Path) {
    for sub in ["rootfs", "tmp", "refs"] {
        let dir = cache.join(sub);
        let left: Vec<_> = std::fs::read_dir(&dir)
            .map(|d| d.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        assert!(left.is_empty(), "{} still holds {left:?}", dir.display());
    }
}
