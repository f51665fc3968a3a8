//! Where an image's manifest, config and layers come from: a registry, an OCI layout directory,
//! an OCI archive or a `docker save` archive (the last two from a path or S3), or a framed
//! image (S3 or a path).
//!
//! This file picks the source for a reference; what the sources share sits below it in files
//! of its own ([`SourceError`], [`Blobs`], [`ResolvedImage`]), so no source imports this one.

mod archive;
mod blobs;
mod error;
mod framed;
mod framed_image;
mod layout;
mod recycle;
mod resolved;
mod s3;
mod s3_ranges;

use std::sync::Arc;

pub use blobs::{BlobRef, Blobs, RemoveOnDrop};
pub use error::SourceError;
pub use framed::MEDIA_TYPE as FRAMED_MEDIA_TYPE;
pub use framed_image::{Compressed, FramedImage, Store};
pub use recycle::Recycler;
pub use resolved::{Layer, ResolvedImage};

use crate::cache::Cache;
use crate::options::PullOptions;
use crate::reference::{ImageRef, Location, Reference};
use crate::registry::RegistryClient;
use crate::registry::manifest::{self, Document, Platform};

/// Resolve `image` to its layers and config, and give access to its blobs.
pub async fn resolve(
    image: &ImageRef,
    options: &PullOptions,
    cache: &Cache,
) -> Result<(ResolvedImage, Blobs), SourceError> {
    let platform = match &options.platform {
        Some(p) => Platform::parse(p)?,
        None => Platform::host(),
    };
    match image {
        ImageRef::Registry(reference) => resolve_registry(reference, options, &platform).await,
        ImageRef::OciDir { path, tag } => {
            let blobs = Blobs::Dir(path.clone());
            let resolved = layout::resolve(&blobs, &image.to_string(), tag.as_deref(), &platform)?;
            Ok((resolved, blobs))
        }
        ImageRef::OciArchive { location, tag } => {
            let blobs = archive::open(location, cache, options).await?;
            let resolved = layout::resolve(&blobs, &image.to_string(), tag.as_deref(), &platform)?;
            Ok((resolved, blobs))
        }
        ImageRef::DockerArchive { location } => {
            let blobs = archive::open(location, cache, options).await?;
            let resolved = archive::resolve_docker(&blobs, &image.to_string())?;
            Ok((resolved, blobs))
        }
        ImageRef::Framed { location, pin } => {
            framed::resolve(location, pin.as_ref(), &image.to_string(), options).await
        }
    }
}

/// Resolve `image` when that needs neither network nor an async runtime (an OCI layout
/// directory: a few small files); `None` for every other kind.
pub fn resolve_local(
    image: &ImageRef,
    options: &PullOptions,
) -> Result<Option<ResolvedImage>, SourceError> {
    let ImageRef::OciDir { path, tag } = image else {
        return Ok(None);
    };
    let platform = match &options.platform {
        Some(p) => Platform::parse(p)?,
        None => Platform::host(),
    };
    let blobs = Blobs::Dir(path.clone());
    layout::resolve(&blobs, &image.to_string(), tag.as_deref(), &platform).map(Some)
}

/// Whether the resolution of `image` may be remembered and reused without looking again:
/// registries and S3 cost network; local files are cheap to read and may change.
pub fn remembered(image: &ImageRef) -> bool {
    match image {
        ImageRef::Registry(_) => true,
        ImageRef::OciDir { .. } => false,
        ImageRef::OciArchive { location, .. }
        | ImageRef::DockerArchive { location }
        | ImageRef::Framed { location, .. } => {
            matches!(location, Location::S3 { .. })
        }
    }
}

async fn resolve_registry(
    reference: &Reference,
    options: &PullOptions,
    platform: &Platform,
) -> Result<(ResolvedImage, Blobs), SourceError> {
    let client = RegistryClient::new(
        reference,
        options.credentials.clone(),
        &options.insecure_registries,
    )?
    .with_ranges(options.ranges);
    let what = reference.to_string();
    let (body, content_type, mut digest) = client.manifest(&reference.manifest_ref()).await?;
    let manifest = match Document::parse(&what, content_type.as_deref(), &body)? {
        Document::Manifest(m) => m,
        Document::Index(index) => {
            let entry = manifest::select(&what, index.manifests(), platform)?;
            let entry = manifest::digest_of(&what, entry)?;
            let (body, content_type, d) = client.manifest(&entry.to_string()).await?;
            digest = d;
            match Document::parse(&what, content_type.as_deref(), &body)? {
                Document::Manifest(m) => m,
                Document::Index(_) => {
                    return Err(SourceError::NotAnImage {
                        path: what,
                        kind: "an image",
                        detail: "its index points at another index".into(),
                    });
                }
            }
        }
    };
    let config_body = client
        .small_blob(&manifest::digest_of(&what, manifest.config())?)
        .await?;
    let resolved = resolved::assemble(&what, Some(digest), &manifest, &config_body)?;
    Ok((resolved, Blobs::Registry(Arc::new(client))))
}
