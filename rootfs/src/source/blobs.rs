//! Access to an image's blobs in its source: streamed from a registry, or read in place from
//! an OCI layout directory or an image tar, or the frames of a framed image.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::PathBuf;
use std::sync::Arc;

use super::error::SourceError;
use super::framed_image::FramedImage;
use crate::digest::Digest;
use crate::registry::RegistryClient;

/// How a layer is found in its source and checked.
#[derive(Clone, Debug)]
pub enum BlobRef {
    /// A blob by digest; its compressed bytes are verified against it.
    Digest(Digest),
    /// A file in a `docker save` archive (no digest of its own); only its uncompressed bytes
    /// are verified, against the DiffID, as every layer's are.
    ArchivePath(String),
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
    /// The frames of a framed image, read by [`crate::framed::read`].
    Framed(Arc<FramedImage>),
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
            Self::Registry(_) | Self::Framed(_) => Ok(None),
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
    pub(super) fn read_small(&self, name: &str) -> Result<Vec<u8>, SourceError> {
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
    pub(super) fn read_digest(&self, digest: &Digest) -> Result<Vec<u8>, SourceError> {
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

    pub(super) fn describe(&self) -> String {
        match self {
            Self::Registry(c) => c.host().to_owned(),
            Self::Dir(d) => d.display().to_string(),
            Self::Archive { name, .. } => name.clone(),
            Self::Framed(image) => image.name.clone(),
        }
    }
}
