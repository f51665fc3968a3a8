//! One tar archive of every output, for a request that asked for one (`?archive=tar`).
//!
//! POSIX ustar entries of regular files only, named by their path relative to `output/`
//! (a name past ustar's 255 bytes gets a GNU long-name entry, which GNU tar, bsdtar and
//! Python's tarfile read); owner 0, mode 0644 or 0755, the file's modification time. The
//! archive is written to a file, not memory: outputs may be far larger than the bootstrap's
//! memory.

use std::fs::File;
use std::io::{self, BufWriter, Read, Seek, SeekFrom};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;

use super::output_file::{OutputFile, open_regular};

/// Why the archive could not be made: the output (or the archive itself) and the error.
#[derive(Debug, thiserror::Error)]
#[error("{what}: {source}")]
pub struct ArchiveError {
    /// The output's name, or the archive's path.
    pub what: String,
    /// What went wrong.
    pub source: io::Error,
}

/// Write the archive of `outputs` to `dest` (replacing it) and return it open at its start,
/// with its length.
pub fn write_tar(outputs: &[OutputFile], dest: &Path) -> Result<(File, u64), ArchiveError> {
    let at_dest = |source| ArchiveError {
        what: dest.display().to_string(),
        source,
    };
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(dest)
        .map_err(at_dest)?;
    let mut builder = tar::Builder::new(BufWriter::with_capacity(64 * 1024, file));
    for output in outputs {
        append(&mut builder, output).map_err(|source| ArchiveError {
            what: output.name.clone(),
            source,
        })?;
    }
    let mut file = builder
        .into_inner()
        .and_then(|writer| writer.into_inner().map_err(io::IntoInnerError::into_error))
        .map_err(at_dest)?;
    let len = file.seek(SeekFrom::End(0)).map_err(at_dest)?;
    file.seek(SeekFrom::Start(0)).map_err(at_dest)?;
    Ok((file, len))
}

/// One output's entry: its header, then exactly the length the header states.
fn append(builder: &mut tar::Builder<BufWriter<File>>, output: &OutputFile) -> io::Result<()> {
    let (file, len) = open_regular(&output.path)?;
    let meta = file.metadata()?;
    let mut header = tar::Header::new_ustar();
    header.set_entry_type(tar::EntryType::Regular);
    header.set_size(len);
    header.set_mode(if meta.mode() & 0o111 != 0 {
        0o755
    } else {
        0o644
    });
    header.set_mtime(meta.mtime().max(0) as u64);
    let mut data = file.take(len);
    builder.append_data(&mut header, &output.name, &mut data)?;
    // A file that shrank after its header was written leaves the entry short, and every
    // entry after it misread: the archive is refused rather than sent corrupt.
    if data.limit() != 0 {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!(
                "the file shrank while it was archived ({} bytes missing)",
                data.limit()
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
#[path = "archive_tests.rs"]
mod tests;
