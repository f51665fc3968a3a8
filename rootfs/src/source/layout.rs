//! OCI image layouts (`oci-layout`, `index.json`, `blobs/`), in a directory or a tar.

use super::blobs::Blobs;
use super::error::SourceError;
use super::resolved::{ResolvedImage, assemble};
use crate::registry::manifest::{self, Descriptor, Document, Platform};

/// Annotation naming a manifest in a layout's index.
const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// Resolve the image `tag` (or the only image) of a layout.
pub(super) fn resolve(
    blobs: &Blobs,
    what: &str,
    tag: Option<&str>,
    platform: &Platform,
) -> Result<ResolvedImage, SourceError> {
    let not_layout = |detail: String| SourceError::NotAnImage {
        path: blobs.describe(),
        kind: "an OCI image layout",
        detail,
    };
    let body = blobs
        .read_small("index.json")
        .map_err(|e| not_layout(format!("index.json is unreadable ({e})")))?;
    let index = match Document::parse(what, None, &body)? {
        Document::Index(i) => i,
        Document::Manifest(_) => return Err(not_layout("index.json is not an index".into())),
    };
    let names = || {
        let v: Vec<&str> = index
            .manifests
            .iter()
            .filter_map(|d| d.annotations.get(REF_NAME).map(String::as_str))
            .collect();
        if v.is_empty() {
            "no tagged images".to_owned()
        } else {
            v.join(", ")
        }
    };
    let candidates: Vec<&Descriptor> = match tag {
        Some(tag) => index
            .manifests
            .iter()
            .filter(|d| {
                d.annotations.get(REF_NAME).is_some_and(|n| {
                    // skopeo writes the bare tag; other tools write a whole reference.
                    n == tag || n.rsplit_once(':').is_some_and(|(_, t)| t == tag)
                })
            })
            .collect(),
        None => index.manifests.iter().collect(),
    };
    let descriptor = match candidates.as_slice() {
        [] => {
            return Err(SourceError::TagNotFound {
                path: blobs.describe(),
                tag: tag.unwrap_or("").to_owned(),
                available: names(),
            });
        }
        [one] => (*one).clone(),
        many if many.iter().all(|d| d.platform.is_some()) => {
            // One image in several platforms listed directly in index.json.
            let sub = manifest::Index {
                manifests: many.iter().map(|d| (*d).clone()).collect(),
            };
            manifest::select(what, &sub, platform)?.clone()
        }
        _ => {
            return Err(SourceError::Ambiguous {
                path: blobs.describe(),
                available: names(),
            });
        }
    };
    let body = blobs.read_digest(&descriptor.digest)?;
    let manifest = match Document::parse(what, Some(&descriptor.media_type), &body)? {
        Document::Manifest(m) => m,
        Document::Index(sub) => {
            let entry = manifest::select(what, &sub, platform)?;
            let body = blobs.read_digest(&entry.digest)?;
            match Document::parse(what, Some(&entry.media_type), &body)? {
                Document::Manifest(m) => m,
                Document::Index(_) => return Err(not_layout("nested indexes are too deep".into())),
            }
        }
    };
    let digest = Some(crate::digest::Digest::of(&body));
    let config = blobs.read_digest(&manifest.config.digest)?;
    assemble(what, digest, &manifest, &config)
}
