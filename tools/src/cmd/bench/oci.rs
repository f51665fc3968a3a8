//! Pack directory trees as gzip layers of an OCI image layout (`oci:<dir>:<tag>`), the form
//! `skopeo copy` pushes to the loopback registry. The layout is written by `scar_tools::oci`,
//! the writer of `scar image`; this module chooses the entries and keeps the bench's summary.
//!
//! A layer is either a whole tree or the difference between two trees (new and changed entries,
//! plus whiteouts for removed ones), so the large image can share its base layer with the medium
//! one the way real images do.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use scar_tools::oci::{self, LayoutError, LayoutOptions};

pub use super::oci_error::OciError;
pub use super::tree::LayerSpec;
use super::tree::{Entry, select_entries};

fn io_err(what: &'static str, path: &Path) -> impl FnOnce(io::Error) -> OciError + use<> {
    let path = path.to_path_buf();
    move |source| OciError::Io { what, path, source }
}

/// A written layout and the figures the bench reports about it.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Layout {
    /// The layout directory.
    pub dir: PathBuf,
    /// Its one tag.
    pub tag: String,
    /// Compressed layer blobs, in order (what `gzip -dc` decompresses for the floor).
    pub layer_blobs: Vec<PathBuf>,
    /// Sum of compressed layer sizes.
    pub compressed_bytes: u64,
    /// Sum of uncompressed layer (tar) sizes.
    pub uncompressed_bytes: u64,
    /// Tar entries over all layers.
    pub entries: u64,
}

const SUMMARY: &str = "scar-bench.json";

impl Layout {
    /// Read the summary of a layout written earlier by [`write_layout`].
    pub fn load(dir: &Path) -> Result<Layout, OciError> {
        let path = dir.join(SUMMARY);
        let text = fs::read(&path).map_err(io_err("read", &path))?;
        serde_json::from_slice(&text).map_err(|source| OciError::Summary { path, source })
    }
}

/// Write `layers` as an OCI image layout at `dest` (built beside it and renamed into place, so
/// an interrupted build never leaves a layout that looks complete).
pub fn write_layout(dest: &Path, tag: &str, layers: &[LayerSpec]) -> Result<Layout, OciError> {
    let staging = dest.with_extension("partial");
    if staging.exists() {
        fs::remove_dir_all(&staging).map_err(io_err("remove", &staging))?;
    }
    let blobs = oci::create_layout(&staging)?;

    let mut written = Vec::new();
    let mut summary = Layout {
        dir: dest.to_path_buf(),
        tag: tag.to_string(),
        layer_blobs: Vec::new(),
        compressed_bytes: 0,
        uncompressed_bytes: 0,
        entries: 0,
    };
    for spec in layers {
        let entries = select_entries(spec)?;
        let layer = blobs.write_layer(|builder| {
            let count = entries.len() as u64;
            let mut hardlinks = HashMap::new();
            for entry in entries {
                append_entry(builder, &spec.upper, entry, &mut hardlinks).map_err(|source| {
                    LayoutError::Io {
                        path: spec.upper.clone(),
                        source,
                    }
                })?;
            }
            Ok(count)
        })?;
        let hex = layer.digest.trim_start_matches("sha256:");
        summary
            .layer_blobs
            .push(dest.join("blobs/sha256").join(hex));
        summary.compressed_bytes += layer.size;
        summary.uncompressed_bytes += layer.uncompressed_size;
        summary.entries += layer.entries;
        written.push(layer);
    }
    let options = LayoutOptions {
        tag: tag.to_owned(),
        env: vec!["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_owned()],
        cmd: vec!["/bin/sh".to_owned()],
        ..LayoutOptions::default()
    };
    oci::write_image(&staging, &blobs, &written, &options)?;
    let summary_text = serde_json::to_vec_pretty(&summary).map_err(|source| OciError::Summary {
        path: staging.join(SUMMARY),
        source,
    })?;
    write_file(&staging.join(SUMMARY), &summary_text)?;
    if dest.exists() {
        fs::remove_dir_all(dest).map_err(io_err("remove", dest))?;
    }
    fs::rename(&staging, dest).map_err(io_err("rename into place", dest))?;
    Ok(summary)
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<(), OciError> {
    fs::write(path, bytes).map_err(io_err("write", path))
}

fn append_entry<W: Write>(
    builder: &mut tar::Builder<W>,
    root: &Path,
    entry: Entry,
    hardlinks: &mut HashMap<(u64, u64), String>,
) -> io::Result<()> {
    let rel = match entry {
        Entry::Whiteout(rel) => {
            let path = Path::new(&rel);
            let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
            let whiteout = match (path.parent(), name) {
                (Some(parent), Some(name)) => parent.join(format!(".wh.{name}")),
                _ => return Ok(()),
            };
            let mut header = tar::Header::new_gnu();
            header.set_entry_type(tar::EntryType::Regular);
            header.set_size(0);
            header.set_mode(0o644);
            return builder.append_data(&mut header, whiteout, io::empty());
        }
        Entry::Node(rel) => rel,
    };
    let path = root.join(&rel);
    let meta = fs::symlink_metadata(&path)?;
    let mut header = tar::Header::new_gnu();
    header.set_metadata_in_mode(&meta, tar::HeaderMode::Complete);
    let kind = meta.file_type();
    if kind.is_dir() {
        builder.append_data(&mut header, format!("{rel}/"), io::empty())
    } else if kind.is_symlink() {
        let target = fs::read_link(&path)?;
        builder.append_link(&mut header, &rel, target)
    } else if meta.nlink() > 1
        && let Some(first) = hardlinks.get(&(meta.dev(), meta.ino()))
    {
        header.set_entry_type(tar::EntryType::Link);
        header.set_size(0);
        builder.append_link(&mut header, &rel, first)
    } else {
        if meta.nlink() > 1 {
            hardlinks.insert((meta.dev(), meta.ino()), rel.clone());
        }
        builder.append_data(&mut header, &rel, File::open(&path)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("scar-bench-oci-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn names_in(blob: &Path) -> Vec<String> {
        let file = File::open(blob).unwrap();
        let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(file));
        archive
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn a_diff_layer_holds_changes_and_whiteouts_only() {
        let dir = scratch("diff");
        let (lower, upper) = (dir.join("lower"), dir.join("upper"));
        for root in [&lower, &upper] {
            fs::create_dir_all(root.join("etc")).unwrap();
            fs::write(root.join("etc/same"), "same").unwrap();
        }
        fs::create_dir_all(lower.join("gone/deeper")).unwrap();
        fs::write(upper.join("etc/new"), "new").unwrap();
        let layout = write_layout(
            &dir.join("layout"),
            "v1",
            &[
                LayerSpec::whole(&lower),
                LayerSpec {
                    upper: upper.clone(),
                    lower: Some(lower.clone()),
                    include: Vec::new(),
                    exclude: Vec::new(),
                },
            ],
        )
        .unwrap();
        assert_eq!(layout.layer_blobs.len(), 2);
        assert_eq!(
            names_in(&layout.layer_blobs[1]),
            ["etc/", "etc/new", ".wh.gone"]
        );
        let index: serde_json::Value =
            serde_json::from_slice(&fs::read(dir.join("layout/index.json")).unwrap()).unwrap();
        assert_eq!(
            index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"],
            "v1"
        );
        assert_eq!(
            Layout::load(&dir.join("layout")).unwrap().entries,
            layout.entries
        );
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn hardlinked_files_are_stored_once() {
        let dir = scratch("links");
        let root = dir.join("root");
        fs::create_dir_all(&root).unwrap();
        fs::write(root.join("a"), "payload").unwrap();
        fs::hard_link(root.join("a"), root.join("b")).unwrap();
        let layout = write_layout(&dir.join("layout"), "t", &[LayerSpec::whole(&root)]).unwrap();
        let file = File::open(&layout.layer_blobs[0]).unwrap();
        let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(file));
        let kinds: Vec<tar::EntryType> = archive
            .entries()
            .unwrap()
            .map(|e| e.unwrap().header().entry_type())
            .collect();
        assert_eq!(kinds, [tar::EntryType::Regular, tar::EntryType::Link]);
        fs::remove_dir_all(&dir).unwrap();
    }
}
