//! Pack directory trees as gzip layers of an OCI image layout (`oci:<dir>:<tag>`), the form
//! `skopeo copy` pushes to the loopback registry.
//!
//! A layer is either a whole tree or the difference between two trees (new and changed entries,
//! plus whiteouts for removed ones), so the large image can share its base layer with the medium
//! one the way real images do.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use flate2::Compression;
use flate2::write::GzEncoder;
use serde_json::json;
use sha2::{Digest, Sha256};

pub use super::tree::LayerSpec;
use super::tree::{Entry, select_entries};

/// Why a layout could not be written.
#[derive(Debug, thiserror::Error)]
pub enum OciError {
    /// A filesystem operation failed.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The path.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// The layout's summary file is not what this program writes.
    #[error("{path} is not a layout summary written by scar bench: {source}")]
    Summary {
        /// The file.
        path: PathBuf,
        /// The parse error.
        source: serde_json::Error,
    },
}

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
    let blobs = staging.join("blobs/sha256");
    fs::create_dir_all(&blobs).map_err(io_err("create", &blobs))?;

    let mut descriptors = Vec::new();
    let mut diff_ids = Vec::new();
    let mut summary = Layout {
        dir: dest.to_path_buf(),
        tag: tag.to_string(),
        layer_blobs: Vec::new(),
        compressed_bytes: 0,
        uncompressed_bytes: 0,
        entries: 0,
    };
    for (index, spec) in layers.iter().enumerate() {
        let layer = write_layer(&blobs, index, spec)?;
        descriptors.push(json!({
            "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
            "digest": format!("sha256:{}", layer.digest),
            "size": layer.compressed,
        }));
        diff_ids.push(format!("sha256:{}", layer.diff_id));
        summary
            .layer_blobs
            .push(dest.join("blobs/sha256").join(&layer.digest));
        summary.compressed_bytes += layer.compressed;
        summary.uncompressed_bytes += layer.uncompressed;
        summary.entries += layer.entries;
    }

    let config = json!({
        "architecture": oci_arch(),
        "os": "linux",
        "config": {
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            "Cmd": ["/bin/sh"],
        },
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    });
    let (config_digest, config_size) = write_json_blob(&blobs, &config)?;
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": config_digest,
            "size": config_size,
        },
        "layers": descriptors,
    });
    let (manifest_digest, manifest_size) = write_json_blob(&blobs, &manifest)?;
    let index = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": manifest_digest,
            "size": manifest_size,
            "annotations": {"org.opencontainers.image.ref.name": tag},
        }],
    });
    write_file(&staging.join("index.json"), index.to_string().as_bytes())?;
    write_file(
        &staging.join("oci-layout"),
        json!({"imageLayoutVersion": "1.0.0"})
            .to_string()
            .as_bytes(),
    )?;
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

/// The OCI name of the running architecture.
pub fn oci_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<(), OciError> {
    fs::write(path, bytes).map_err(io_err("write", path))
}

fn write_json_blob(blobs: &Path, value: &serde_json::Value) -> Result<(String, u64), OciError> {
    let bytes = value.to_string().into_bytes();
    let hex = hex::encode(Sha256::digest(&bytes));
    write_file(&blobs.join(&hex), &bytes)?;
    Ok((format!("sha256:{hex}"), bytes.len() as u64))
}

/// A writer that hashes and counts what passes through it.
struct Hashing<W> {
    inner: W,
    hasher: Sha256,
    bytes: u64,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

struct WrittenLayer {
    digest: String,
    diff_id: String,
    compressed: u64,
    uncompressed: u64,
    entries: u64,
}

fn write_layer(blobs: &Path, index: usize, spec: &LayerSpec) -> Result<WrittenLayer, OciError> {
    let entries = select_entries(spec)?;
    let partial = blobs.join(format!("layer-{index}.partial"));
    let file = File::create(&partial).map_err(io_err("create", &partial))?;
    let compressed = Hashing {
        inner: BufWriter::with_capacity(1 << 20, file),
        hasher: Sha256::new(),
        bytes: 0,
    };
    let uncompressed = Hashing {
        inner: GzEncoder::new(compressed, Compression::default()),
        hasher: Sha256::new(),
        bytes: 0,
    };
    let mut builder = tar::Builder::new(uncompressed);
    let mut hardlinks: HashMap<(u64, u64), String> = HashMap::new();
    let count = entries.len() as u64;
    for entry in entries {
        append_entry(&mut builder, &spec.upper, entry, &mut hardlinks)
            .map_err(io_err("pack", &spec.upper))?;
    }
    let uncompressed = builder
        .into_inner()
        .map_err(io_err("finish tar", &partial))?;
    let diff_id = hex::encode(uncompressed.hasher.finalize());
    let uncompressed_bytes = uncompressed.bytes;
    let mut compressed = uncompressed
        .inner
        .finish()
        .map_err(io_err("finish gzip", &partial))?;
    compressed.flush().map_err(io_err("write", &partial))?;
    let digest = hex::encode(compressed.hasher.finalize());
    let target = blobs.join(&digest);
    fs::rename(&partial, &target).map_err(io_err("rename", &target))?;
    Ok(WrittenLayer {
        digest,
        diff_id,
        compressed: compressed.bytes,
        uncompressed: uncompressed_bytes,
        entries: count,
    })
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
