//! Image tars: OCI archives and `docker save` archives, read in place by entry offsets.

use std::collections::HashMap;
use std::fs::File;
use std::io::BufReader;
use std::path::PathBuf;

use serde::Deserialize;

use super::blobs::{BlobRef, Blobs, RemoveOnDrop};
use super::error::SourceError;
use super::resolved::{Layer, ResolvedImage, finish};
use crate::cache::Cache;
use crate::digest::Digest;
use crate::options::PullOptions;
use crate::reference::Location;
use crate::registry::manifest;

/// Index an archive from a path, or from S3 after downloading it into the cache's ingest area.
pub(super) async fn open(
    location: &Location,
    cache: &Cache,
    options: &PullOptions,
) -> Result<Blobs, SourceError> {
    let (file, download) = match location {
        Location::Path(p) => (p.clone(), None),
        Location::S3 { bucket, key } => {
            let dest = cache.ingest_path("archive.tar");
            let guard = RemoveOnDrop(dest.clone());
            super::s3::download(bucket, key, &dest, options).await?;
            (dest, Some(guard))
        }
    };
    let name = location.to_string();
    let (path, display) = (file.clone(), name.clone());
    let entries = tokio::task::spawn_blocking(move || index(&path, &display))
        .await
        .map_err(|e| SourceError::NotAnImage {
            path: name.clone(),
            kind: "an image archive",
            detail: format!("indexing stopped: {e}"),
        })??;
    Ok(Blobs::Archive {
        file,
        name,
        entries,
        _download: download,
    })
}

/// Entry name → (offset of its data, length), reading only the headers. `name` is what the
/// user called the archive, for errors.
fn index(path: &PathBuf, name: &str) -> Result<HashMap<String, (u64, u64)>, SourceError> {
    let io = |op, source| SourceError::Io {
        op,
        path: path.clone(),
        source,
    };
    let file = File::open(path).map_err(|e| io("open", e))?;
    let file_len = file.metadata().map_err(|e| io("stat", e))?.len();
    let mut archive = tar::Archive::new(BufReader::new(file));
    // A bad header means the object is not a tar (a zip, a gzip of a tar): say so under the
    // name the user gave, with the tar reader's words cut short (they quote raw header bytes).
    let not_a_tar = |e: std::io::Error| SourceError::NotAnImage {
        path: name.to_owned(),
        kind: "an image archive",
        detail: format!(
            "it is not a plain tar file ({}); make one with `skopeo copy ... oci-archive:FILE` or `docker save`",
            e.to_string()
                .chars()
                .filter(|c| !c.is_control())
                .take(80)
                .collect::<String>()
        ),
    };
    let mut out = HashMap::new();
    for entry in archive.entries_with_seek().map_err(not_a_tar)? {
        let entry = entry.map_err(not_a_tar)?;
        let entry_name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let entry_name = entry_name.trim_start_matches("./").to_owned();
        let (offset, len) = (entry.raw_file_position(), entry.size());
        // Seeking past the end succeeds and the tar reader takes the end of the file for the
        // end of the archive: without this check a cut archive looks like a short, complete
        // one and fails later as "missing index.json".
        let end = offset.saturating_add(len);
        if end > file_len {
            return Err(SourceError::NotAnImage {
                path: name.to_owned(),
                kind: "a complete image archive",
                detail: format!(
                    "it is truncated: entry {entry_name} ends at byte {end} but the archive has {file_len} bytes; copy or upload the whole archive again"
                ),
            });
        }
        out.insert(entry_name, (offset, len));
    }
    Ok(out)
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct SaveEntry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

/// Resolve the image of a `docker save` archive (`manifest.json` + config + layer tars).
pub(super) fn resolve_docker(blobs: &Blobs, what: &str) -> Result<ResolvedImage, SourceError> {
    let body = blobs.read_small("manifest.json")?;
    let mut entries: Vec<SaveEntry> =
        serde_json::from_slice(&body).map_err(|e| SourceError::NotAnImage {
            path: blobs.describe(),
            kind: "a docker-archive (docker save output)",
            detail: format!("manifest.json: {e}"),
        })?;
    if entries.len() > 1 {
        tracing::warn!(archive = %blobs.describe(), images = entries.len(), "docker archive holds several images; using the first");
    }
    if entries.is_empty() {
        return Err(SourceError::NotAnImage {
            path: blobs.describe(),
            kind: "a docker-archive",
            detail: "manifest.json lists no image".into(),
        });
    }
    let entry = entries.swap_remove(0);
    tracing::debug!(tags = ?entry.repo_tags, "docker archive image");
    let config_body = blobs.read_small(&entry.config)?;
    let (config, diff_ids) = manifest::parse_config(&format!("config of {what}"), &config_body)?;
    if diff_ids.len() != entry.layers.len() {
        return Err(manifest::ManifestError::LayerCount {
            what: what.to_owned(),
            layers: entry.layers.len(),
            diff_ids: diff_ids.len(),
        }
        .into());
    }
    let layers = entry
        .layers
        .iter()
        .zip(&diff_ids)
        .map(|(path, diff_id)| Layer {
            blob: BlobRef::ArchivePath(path.trim_start_matches("./").to_owned()),
            size: match blobs {
                Blobs::Archive { entries, .. } => entries.get(path.as_str()).map(|e| e.1),
                _ => None,
            },
            media_type: String::new(),
            diff_id: *diff_id,
        })
        .collect();
    let digest = Some(Digest::of(&body));
    // No descriptor names the config: its key is the digest of its bytes, as a registry's is.
    let config_digest = Digest::of(&config_body);
    finish(what, digest, config, config_digest, layers, &diff_ids)
}
