//! One file the script left in `output/`, as the answer names and opens it.

use std::fs::File;
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// A file the script made, found under the request's `output/`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutputFile {
    /// Its path relative to `output/`, `/`-separated (`frames/0001.png`).
    pub name: String,
    /// Where it is on this machine.
    pub path: PathBuf,
    /// Its size in bytes when it was listed.
    pub size: u64,
    /// Its `s3://` URL, when it was uploaded.
    pub url: Option<String>,
}

/// `path` opened for reading when it is a regular file, with its length as the open file has
/// it. The last component is never followed (`O_NOFOLLOW`) and the type is checked on the
/// open file itself: the script chose what `output/` holds, and a symlink swapped in after the
/// listing must not make the bootstrap answer one of its own files (`/proc/self/environ`),
/// and a FIFO must not hang it (`O_NONBLOCK`, which changes nothing for a regular file).
pub(super) fn open_regular(path: &Path) -> io::Result<(File, u64)> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a regular file",
        ));
    }
    Ok((file, meta.len()))
}
