//! Why a layout could not be written: shared by the layer selection ([`super::tree`]) and the
//! layout writer ([`super::oci`]), which re-exports it.

use std::io;
use std::path::PathBuf;

use scar_tools::oci::LayoutError;

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
    /// The layout writer failed.
    #[error(transparent)]
    Layout(#[from] LayoutError),
    /// The layout's summary file is not what this program writes.
    #[error("{path} is not a layout summary written by scar bench: {source}")]
    Summary {
        /// The file.
        path: PathBuf,
        /// The parse error.
        source: serde_json::Error,
    },
}
