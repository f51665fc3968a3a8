//! Why a layer could not be applied: the error every file of `extract/` returns, at the bottom
//! of the directory so that none of them imports its head.

use std::io;
use std::path::{Path, PathBuf};

/// Why a layer could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum ExtractError {
    /// A file-system call failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// The call.
        op: &'static str,
        /// Its path.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The layer stream could not be read (corrupt, truncated, digest mismatch).
    #[error("reading the layer failed: {source}")]
    Read {
        /// The underlying error; its inner error may be a digest mismatch.
        #[source]
        source: io::Error,
    },
    /// An absolute entry name.
    #[error("layer entry `{entry}` has an absolute name: refused, images must use relative names")]
    AbsoluteName {
        /// The entry name.
        entry: String,
    },
    /// A `..` component.
    #[error("layer entry `{entry}` contains `..`: refused, it could write outside the image")]
    DotDot {
        /// The entry name.
        entry: String,
    },
    /// A parent symlink that climbs out of the root.
    #[error(
        "layer entry `{entry}` goes through a symlink that points outside the image root: refused"
    )]
    SymlinkEscape {
        /// The entry name.
        entry: String,
    },
    /// Symlink loop in a parent.
    #[error("layer entry `{entry}` goes through too many symlinks (a loop?)")]
    SymlinkLoop {
        /// The entry name.
        entry: String,
    },
    /// A parent component is a file.
    #[error("layer entry `{entry}`: parent {parent} is not a directory")]
    NotADirectory {
        /// The entry name.
        entry: String,
        /// The offending parent.
        parent: PathBuf,
    },
    /// A hardlink whose target is outside or absent.
    #[error(
        "layer entry `{entry}` is a hardlink to `{target}`, which is not a file inside the image: refused"
    )]
    BadHardlink {
        /// The entry name.
        entry: String,
        /// The link target as written in the tar.
        target: String,
    },
    /// More bytes than the space allowed.
    #[error(
        "the image expands past {limit_mib} MiB, all the cache may use: raise SCAR_CACHE_MAX_MB or free space (a decompression bomb?)"
    )]
    Budget {
        /// The limit in MiB.
        limit_mib: u64,
    },
    /// An entry of a flattened image (a framed one, extracted in parallel) that no flattened
    /// tree has: a name twice, a name under a symlink, a whiteout.
    #[error(
        "entry `{entry}` of the flattened image {what}: `scar image push` never writes that, so the object was not made by it or was altered; push the image again"
    )]
    NotFlat {
        /// The entry name.
        entry: String,
        /// What is wrong with it.
        what: &'static str,
    },
    /// ENOSPC.
    #[error(
        "no space left while writing {path}: free space in the cache directory or raise its size"
    )]
    NoSpace {
        /// File being written.
        path: PathBuf,
    },
}

impl ExtractError {
    pub(super) fn io(op: &'static str, path: &Path, source: io::Error) -> Self {
        if source.raw_os_error() == Some(libc::ENOSPC) {
            return Self::NoSpace {
                path: path.to_owned(),
            };
        }
        Self::Io {
            op,
            path: path.to_owned(),
            source,
        }
    }
}
