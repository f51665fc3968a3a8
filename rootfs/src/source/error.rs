//! Why an image's metadata could not be read from its source.

use std::io;
use std::path::PathBuf;

use crate::digest::Digest;
use crate::registry::RegistryError;
use crate::registry::manifest::ManifestError;

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
