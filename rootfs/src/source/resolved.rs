//! An image's metadata once resolved: its layers, config and ChainID, whatever the source.

use oci_spec::image::ImageManifest;

use super::blobs::BlobRef;
use super::error::SourceError;
use crate::digest::{Digest, chain_id};
use crate::image::ImageConfig;
use crate::registry::manifest::{self, ManifestError};

/// One layer to apply.
#[derive(Clone, Debug)]
pub struct Layer {
    /// How to get it.
    pub blob: BlobRef,
    /// Compressed size, when the source says.
    pub size: Option<u64>,
    /// Media type, when the source says.
    pub media_type: String,
    /// DiffID (digest of the uncompressed tar), from the config: a claim until the layer's
    /// uncompressed stream is hashed during extraction, which every pull does.
    pub diff_id: Digest,
}

/// An image's metadata, resolved.
#[derive(Clone, Debug)]
pub struct ResolvedImage {
    /// The normalised reference (cache key of its resolution).
    pub reference: String,
    /// Manifest digest, for sources that have one.
    pub manifest: Option<Digest>,
    /// How to run it.
    pub config: ImageConfig,
    /// sha256 of the config blob's bytes: the key of the config in the cache (`configs/`), so
    /// that two images sharing their layers never share a config.
    pub config_digest: Digest,
    /// Layers bottom first.
    pub layers: Vec<Layer>,
    /// ChainID of the layers.
    pub chain_id: Digest,
}

/// Combine a manifest and its config into a [`ResolvedImage`].
pub(super) fn assemble(
    what: &str,
    digest: Option<Digest>,
    manifest: &ImageManifest,
    config_body: &[u8],
) -> Result<ResolvedImage, SourceError> {
    let (config, diff_ids) = manifest::parse_config(&format!("config of {what}"), config_body)?;
    if diff_ids.len() != manifest.layers().len() {
        return Err(ManifestError::LayerCount {
            what: what.to_owned(),
            layers: manifest.layers().len(),
            diff_ids: diff_ids.len(),
        }
        .into());
    }
    let layers = manifest
        .layers()
        .iter()
        .zip(&diff_ids)
        .map(|(d, diff_id)| {
            Ok(Layer {
                blob: BlobRef::Digest(manifest::digest_of(what, d)?),
                size: Some(d.size()),
                media_type: d.media_type().to_string(),
                diff_id: *diff_id,
            })
        })
        .collect::<Result<_, ManifestError>>()?;
    finish(
        what,
        digest,
        config,
        Digest::of(config_body),
        layers,
        &diff_ids,
    )
}

pub(super) fn finish(
    what: &str,
    manifest: Option<Digest>,
    config: ImageConfig,
    config_digest: Digest,
    layers: Vec<Layer>,
    diff_ids: &[Digest],
) -> Result<ResolvedImage, SourceError> {
    // An image without layers is an empty root: give it the ChainID of nothing at all.
    let chain_id = chain_id(diff_ids).unwrap_or_else(|| Digest::of(b""));
    Ok(ResolvedImage {
        reference: what.to_owned(),
        manifest,
        config,
        config_digest,
        layers,
        chain_id,
    })
}
