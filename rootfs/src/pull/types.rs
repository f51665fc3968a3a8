//! What a pull reports: its error, its summary and its progress events. A file of its own so
//! that the files below `pull.rs` can name them without importing their head.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use super::deadline::PartialPull;
use crate::cache::CacheError;
use crate::extract::ExtractError;
use crate::reference::ReferenceError;
use crate::source::SourceError;

/// Why an image could not be made available.
#[derive(Debug, thiserror::Error)]
pub enum PullError {
    /// `SCAR_IMAGE` does not parse.
    #[error(transparent)]
    Reference(#[from] ReferenceError),
    /// The cache refused (no room, I/O).
    #[error(transparent)]
    Cache(#[from] CacheError),
    /// The image's metadata could not be read.
    #[error(transparent)]
    Source(Box<SourceError>),
    /// A layer could not be downloaded, verified or applied; nothing of the image was kept.
    #[error("layer {index}/{total} ({blob}) of {image}: {source}")]
    Layer {
        /// 1-based layer number.
        index: usize,
        /// Layer count.
        total: usize,
        /// Its digest or archive path.
        blob: String,
        /// The image.
        image: String,
        /// What failed.
        #[source]
        source: ExtractError,
    },
    /// A framed image could not be fetched, verified or applied; nothing of it was kept.
    #[error(transparent)]
    Framed(Box<crate::framed::read::ReadError>),
    /// A worker thread died.
    #[error("the extraction worker stopped unexpectedly: {0}")]
    Worker(String),
    /// The pull did not finish before [`PullOptions::deadline`]; nothing was published.
    #[error("{0}")]
    Deadline(PartialPull),
}

impl From<PartialPull> for PullError {
    fn from(partial: PartialPull) -> Self {
        Self::Deadline(partial)
    }
}

impl From<SourceError> for PullError {
    fn from(err: SourceError) -> Self {
        Self::Source(Box::new(err))
    }
}

/// What a pull did, for the one summary line of `scar pull`.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct PullReport {
    /// Layers applied (0 on a cache hit).
    pub layers: usize,
    /// Compressed bytes read from the registry or archive.
    pub bytes_downloaded: u64,
    /// Bytes of file content written.
    pub bytes_written: u64,
    /// Whether the image came from the cache as is.
    pub cached: bool,
    /// Wall time.
    pub seconds: f64,
}

/// Progress of a pull, for a progress bar.
#[derive(Clone, Debug)]
pub enum PullEvent {
    /// The image was resolved: this many layers, this many compressed bytes (when known).
    Resolved {
        /// Layer count.
        layers: usize,
        /// Sum of the layers' compressed sizes.
        total_bytes: Option<u64>,
        /// Compressed bytes read so far, updated as they stream (poll it for a smooth bar).
        downloaded: Arc<AtomicU64>,
    },
    /// So many compressed bytes have been read so far.
    Downloaded(u64),
    /// Layer number `index` (1-based) is applied.
    LayerDone(usize),
    /// Another process pulls this image into the shared cache and this pull waits for it; its
    /// heartbeat moved (it is alive and getting somewhere). Sent at each move.
    OtherPullMoved,
}

/// A progress callback.
pub type Progress = Arc<dyn Fn(PullEvent) + Send + Sync>;
