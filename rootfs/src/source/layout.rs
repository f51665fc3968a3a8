//! OCI image layouts (`oci-layout`, `index.json`, `blobs/`), in a directory or a tar.

use oci_spec::image::{ANNOTATION_REF_NAME, Descriptor};

use super::blobs::Blobs;
use super::error::SourceError;
use super::resolved::{ResolvedImage, assemble};
use crate::registry::manifest::{self, Document, Platform};

/// The name of a manifest in a layout's index (`org.opencontainers.image.ref.name`).
fn ref_name(d: &Descriptor) -> Option<&str> {
    d.annotations()
        .as_ref()
        .and_then(|a| a.get(ANNOTATION_REF_NAME))
        .map(String::as_str)
}

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
        let v: Vec<&str> = index.manifests().iter().filter_map(ref_name).collect();
        if v.is_empty() {
            "no tagged images".to_owned()
        } else {
            v.join(", ")
        }
    };
    let candidates: Vec<&Descriptor> = match tag {
        Some(tag) => index
            .manifests()
            .iter()
            .filter(|d| {
                ref_name(d).is_some_and(|n| {
                    // skopeo writes the bare tag; other tools write a whole reference.
                    n == tag || n.rsplit_once(':').is_some_and(|(_, t)| t == tag)
                })
            })
            .collect(),
        None => index.manifests().iter().collect(),
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
        many if many.iter().all(|d| d.platform().is_some()) => {
            // One image in several platforms listed directly in index.json.
            let sub: Vec<Descriptor> = many.iter().map(|d| (*d).clone()).collect();
            manifest::select(what, &sub, platform)?.clone()
        }
        _ => {
            return Err(SourceError::Ambiguous {
                path: blobs.describe(),
                available: names(),
            });
        }
    };
    let body = blobs.read_digest(&manifest::digest_of(what, &descriptor)?)?;
    let media_type = descriptor.media_type().to_string();
    let manifest = match Document::parse(what, Some(&media_type), &body)? {
        Document::Manifest(m) => m,
        Document::Index(sub) => {
            let entry = manifest::select(what, sub.manifests(), platform)?;
            let body = blobs.read_digest(&manifest::digest_of(what, entry)?)?;
            let media_type = entry.media_type().to_string();
            match Document::parse(what, Some(&media_type), &body)? {
                Document::Manifest(m) => m,
                Document::Index(_) => return Err(not_layout("nested indexes are too deep".into())),
            }
        }
    };
    let digest = Some(crate::digest::Digest::of(&body));
    let config = blobs.read_digest(&manifest::digest_of(what, manifest.config())?)?;
    assemble(what, digest, &manifest, &config)
}
