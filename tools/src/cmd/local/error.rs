//! Why `scar local` could not run.

use std::path::{Path, PathBuf};

use super::{function, s3, sandbox, session};

/// Why `scar local` could not run (the function's own failures are outcomes, not these).
#[derive(Debug, thiserror::Error)]
pub(super) enum LocalError {
    #[error("--function is required: give the function directory, e.g. --function examples/demo")]
    NoFunction,
    #[error("--env `{0}` is not NAME=VALUE")]
    Env(String),
    #[error("give the event to send: --event EVENT.json or --input FILE")]
    NoEvent,
    #[error(transparent)]
    Function(#[from] function::FunctionError),
    #[error(transparent)]
    Sandbox(#[from] sandbox::SandboxError),
    #[error(transparent)]
    S3(#[from] s3::S3Error),
    #[error(transparent)]
    Session(#[from] session::SessionError),
    #[error("cannot serve HTTP on {address}: {error} (give a free host:port, e.g. 127.0.0.1:8080)")]
    Bind {
        address: String,
        // Not named `source`: the message already says it, and a source would repeat it.
        error: std::io::Error,
    },
    #[error("cannot start the Runtime API: {0}")]
    RuntimeApi(std::io::Error),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not a JSON event document: {source}")]
    Event {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error(
        "{path} is not inside the data directory {dir}: pass --dir with a directory that contains it"
    )]
    Outside { path: PathBuf, dir: PathBuf },
    #[error("cannot start the async runtime: {0}")]
    Tokio(std::io::Error),
}

/// The error for an I/O failure on `path`.
pub(super) fn io(path: &Path) -> impl FnOnce(std::io::Error) -> LocalError + '_ {
    move |source| LocalError::Io {
        path: path.to_path_buf(),
        source,
    }
}
