//! Why the report could not be written: shared by the plots ([`super::plot`]) and the report
//! that draws them ([`super::report`]), which re-exports it.

use std::path::PathBuf;

/// Why the report could not be written.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// Writing a file failed.
    #[error("write {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// Drawing a plot failed.
    #[error("plot {path}: {message}")]
    Plot {
        /// The PNG.
        path: PathBuf,
        /// What plotters said.
        message: String,
    },
}
