//! Where an image's manifest, config and layers come from: a registry, an OCI layout directory,
//! an OCI archive or a `docker save` archive (the last two from a path or S3).

mod archive;
mod layout;
mod s3;

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::PathBuf;
use std::sync::Arc;

use crate::cache::Cache;
use crate::digest::{Digest, chain_id};
use crate::image::ImageConfig;
use crate::pull::PullOptions;
use crate::reference::{ImageRef, Location, Reference};
use crate::registry::manifest::{self, Document, ManifestError, Platform};
use crate::registry::{RegistryClient, RegistryError};

/// Why an image's metadata could not be read from its source.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// A registry failure.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// A bad document.
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    /// File access.
    #[error("{op} {path}: {source}")]
    Io {
        /// The call.
        op: &'static str,
        /// Its path.
        path: PathBuf,
        /// OS error.
        #[source]
        source: io::Error,
    },
    /// Not a layout / archive of the expected kind.
    #[error("{path} is not {kind}: {detail}")]
    NotAnImage {
        /// The path.
        path: String,
        /// What it should be.
        kind: &'static str,
        /// What is wrong.
        detail: String,
    },
    /// Tag not in the layout.
    #[error("{path} has no image tagged `{tag}`; it has: {available}")]
    TagNotFound {
        /// The layout.
        path: String,
        /// Wanted tag.
        tag: String,
        /// Present tags.
        available: String,
    },
    /// Several images and no tag.
    #[error("{path} holds several images ({available}): add :<tag> to choose one")]
    Ambiguous {
        /// The layout.
        path: String,
        /// Present tags.
        available: String,
    },
    /// A blob the manifest names is absent.
    #[error("{path} names blob {what} but does not contain it: the image is incomplete")]
    MissingBlob {
        /// The layout.
        path: String,
        /// Which blob.
        what: String,
    },
    /// A small blob does not match its digest.
    #[error("{what} in {path} does not match its digest (got {actual}): the image is corrupt")]
    Digest {
        /// Where.
        path: String,
        /// Which blob.
        what: String,
        /// Its actual digest.
        actual: Digest,
    },
    /// S3 download failed.
    #[error("cannot download {location}: {detail}")]
    S3 {
        /// `s3://b/k`.
        location: String,
        /// What failed.
        detail: String,
    },
}

/// How a layer is found in its source and checked.
#[derive(Clone, Debug)]
pub enum BlobRef {
    /// A blob by digest; its compressed bytes are verified against it.
    Digest(Digest),
    /// A file in a `docker save` archive (no digest of its own); only its uncompressed bytes
    /// are verified, against the DiffID, as every layer's are.
    ArchivePath(String),
}

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

/// Access to the layer blobs of a resolved image.
pub enum Blobs {
    /// Over the registry API.
    Registry(Arc<RegistryClient>),
    /// Files of an OCI layout directory.
    Dir(PathBuf),
    /// Entries of a tar (OCI or Docker archive), by path: (offset, length).
    Archive {
        /// The tar.
        file: PathBuf,
        /// What the user named (the path or `s3://bucket/key`), for errors: an S3 archive's
        /// `file` is a temporary download nobody has heard of.
        name: String,
        /// Entry path → (data offset, length).
        entries: HashMap<String, (u64, u64)>,
        /// A temporary download removed when the pull ends.
        _download: Option<RemoveOnDrop>,
    },
}

/// Deletes a file when dropped (S3 downloads in the cache's ingest area).
pub struct RemoveOnDrop(pub PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

impl Blobs {
    /// A reader over a blob of a local source (`None` for the registry, which streams).
    pub fn open_local(&self, blob: &BlobRef) -> Result<Option<Box<dyn Read + Send>>, SourceError> {
        match self {
            Self::Registry(_) => Ok(None),
            Self::Dir(dir) => {
                let BlobRef::Digest(d) = blob else {
                    return Ok(None);
                };
                let path = dir.join("blobs/sha256").join(d.hex());
                let file = File::open(&path).map_err(|source| {
                    if source.kind() == io::ErrorKind::NotFound {
                        SourceError::MissingBlob {
                            path: dir.display().to_string(),
                            what: d.to_string(),
                        }
                    } else {
                        SourceError::Io {
                            op: "open",
                            path: path.clone(),
                            source,
                        }
                    }
                })?;
                Ok(Some(Box::new(file)))
            }
            Self::Archive {
                file,
                name: archive,
                entries,
                ..
            } => {
                let name = match blob {
                    BlobRef::Digest(d) => format!("blobs/sha256/{}", d.hex()),
                    BlobRef::ArchivePath(p) => p.clone(),
                };
                let &(offset, len) =
                    entries.get(&name).ok_or_else(|| SourceError::MissingBlob {
                        path: archive.clone(),
                        what: name.clone(),
                    })?;
                let io = |op, source| SourceError::Io {
                    op,
                    path: file.clone(),
                    source,
                };
                let mut f = File::open(file).map_err(|e| io("open", e))?;
                f.seek(SeekFrom::Start(offset)).map_err(|e| io("seek", e))?;
                Ok(Some(Box::new(f.take(len))))
            }
        }
    }

    /// A whole small blob of a local source by path within it.
    fn read_small(&self, name: &str) -> Result<Vec<u8>, SourceError> {
        let missing = || SourceError::MissingBlob {
            path: self.describe(),
            what: name.to_owned(),
        };
        let reader: Box<dyn Read + Send> = match self {
            Self::Dir(dir) => {
                let path = dir.join(name);
                match File::open(&path) {
                    Ok(f) => Box::new(f),
                    Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(missing()),
                    Err(source) => {
                        return Err(SourceError::Io {
                            op: "open",
                            path,
                            source,
                        });
                    }
                }
            }
            _ => self
                .open_local(&BlobRef::ArchivePath(name.to_owned()))?
                .ok_or_else(missing)?,
        };
        // Room for a typical index, manifest or config, so they come in one read rather than
        // a series of growing ones.
        let mut out = Vec::with_capacity(16 * 1024);
        reader
            .take(8 * 1024 * 1024)
            .read_to_end(&mut out)
            .map_err(|source| SourceError::Io {
                op: "read",
                path: PathBuf::from(self.describe()).join(name),
                source,
            })?;
        Ok(out)
    }

    /// A small blob by digest, verified.
    fn read_digest(&self, digest: &Digest) -> Result<Vec<u8>, SourceError> {
        let body = self.read_small(&format!("blobs/sha256/{}", digest.hex()))?;
        let actual = Digest::of(&body);
        if actual != *digest {
            return Err(SourceError::Digest {
                path: self.describe(),
                what: digest.to_string(),
                actual,
            });
        }
        Ok(body)
    }

    fn describe(&self) -> String {
        match self {
            Self::Registry(c) => c.host().to_owned(),
            Self::Dir(d) => d.display().to_string(),
            Self::Archive { name, .. } => name.clone(),
        }
    }
}

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
        ImageRef::OciArchive { location, .. } | ImageRef::DockerArchive { location } => {
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
    )?;
    let what = reference.to_string();
    let (body, content_type, mut digest) = client.manifest(&reference.manifest_ref()).await?;
    let manifest = match Document::parse(&what, content_type.as_deref(), &body)? {
        Document::Manifest(m) => m,
        Document::Index(index) => {
            let entry = manifest::select(&what, &index, platform)?;
            let (body, content_type, d) = client.manifest(&entry.digest.to_string()).await?;
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
    let config_body = client.small_blob(&manifest.config.digest).await?;
    let resolved = assemble(&what, Some(digest), &manifest, &config_body)?;
    Ok((resolved, Blobs::Registry(Arc::new(client))))
}

/// Combine a manifest and its config into a [`ResolvedImage`].
fn assemble(
    what: &str,
    digest: Option<Digest>,
    manifest: &manifest::Manifest,
    config_body: &[u8],
) -> Result<ResolvedImage, SourceError> {
    let (config, diff_ids) = manifest::parse_config(&format!("config of {what}"), config_body)?;
    if diff_ids.len() != manifest.layers.len() {
        return Err(ManifestError::LayerCount {
            what: what.to_owned(),
            layers: manifest.layers.len(),
            diff_ids: diff_ids.len(),
        }
        .into());
    }
    let layers = manifest
        .layers
        .iter()
        .zip(&diff_ids)
        .map(|(d, diff_id)| Layer {
            blob: BlobRef::Digest(d.digest),
            size: Some(d.size),
            media_type: d.media_type.clone(),
            diff_id: *diff_id,
        })
        .collect();
    finish(
        what,
        digest,
        config,
        Digest::of(config_body),
        layers,
        &diff_ids,
    )
}

fn finish(
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
