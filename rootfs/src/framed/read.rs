//! The pieces of reading a framed image ([`super::format`]) that [`super::parallel`] puts
//! together: the ranges its frames are fetched in (a few MiB, at frame boundaries), the check
//! and decoding of one frame, and what can go wrong.

use std::ops::Range;

use super::format::{Frame, Index};
use crate::extract::ExtractError;

/// Compressed bytes a range request asks for at most, unless one frame alone is larger: frames
/// are added to a range while it stays within this, so the ranges in flight bound the memory.
pub const GROUP_TARGET: u64 = 4 * 1024 * 1024;

/// Why a framed image could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The compressed bytes could not be had.
    #[error("{0}")]
    Fetch(String),
    /// A frame does not decode to the bytes the index names.
    #[error("{object}: frame {frame}/{frames} is corrupt or replaced ({detail}); nothing was kept")]
    Corrupt {
        /// `s3://bucket/key` or the path.
        object: String,
        /// 1-based frame number.
        frame: usize,
        /// Frames in all.
        frames: usize,
        /// What did not match.
        detail: String,
    },
    /// The frames ended before the tar did, or the reader stopped.
    #[error("{object}: {detail}")]
    Stream {
        /// `s3://bucket/key` or the path.
        object: String,
        /// What happened.
        detail: String,
    },
    /// The tar could not be extracted.
    #[error("{object}: {source}")]
    Extract {
        /// `s3://bucket/key` or the path.
        object: String,
        /// What failed.
        #[source]
        source: ExtractError,
    },
}

/// Consecutive frames fetched with one range request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Group {
    /// First byte in the object.
    pub start: u64,
    /// Last byte, included.
    pub end: u64,
    /// Which frames of the index.
    pub frames: Range<usize>,
}

/// The index's frames cut into ranges of at most [`GROUP_TARGET`] bytes (or one frame), at
/// frame boundaries; the first range is the first frame alone, so that decoding starts once it
/// has come (a frame is about a MiB: 26 ms at 40 MB/s, against 100 ms for a whole range) while
/// the ranges after it download side by side.
pub fn groups(index: &Index) -> Vec<Group> {
    let mut out = Vec::new();
    let mut first = 0;
    while first < index.frames.len() {
        let start = index.frames[first].offset;
        let mut last = first;
        while first > 0
            && last + 1 < index.frames.len()
            && index.frames[last + 1].offset + index.frames[last + 1].length - start <= GROUP_TARGET
        {
            last += 1;
        }
        let end = index.frames[last].offset + index.frames[last].length - 1;
        out.push(Group {
            start,
            end,
            frames: first..last + 1,
        });
        first = last + 1;
    }
    out
}

/// Frame `frame`'s tar bytes from its compressed bytes, checked against the index.
pub fn decode(frame: &Frame, compressed: &[u8]) -> Result<Vec<u8>, String> {
    let mut decompressor = zstd::bulk::Decompressor::new().map_err(|e| e.to_string())?;
    decode_into(&mut decompressor, frame, compressed, Vec::new())
}

/// [`decode`] into `out` (a buffer to reuse) with `decompressor`.
pub(super) fn decode_into(
    decompressor: &mut zstd::bulk::Decompressor<'_>,
    frame: &Frame,
    compressed: &[u8],
    mut out: Vec<u8>,
) -> Result<Vec<u8>, String> {
    // The bytes checked before they are decoded: nothing unverified reaches the decoder.
    let digest = frame.digest.of_like(compressed);
    if digest != frame.digest {
        return Err(format!(
            "its bytes are {digest}, the index says {}",
            frame.digest
        ));
    }
    out.clear();
    // No more room than the index allows: a frame that decodes to more fails here.
    out.reserve_exact(frame.size as usize);
    decompressor
        .decompress_to_buffer(compressed, &mut out)
        .map_err(|e| format!("it does not decode to {} bytes: {e}", frame.size))?;
    if out.len() as u64 != frame.size {
        return Err(format!(
            "it decodes to {} bytes, the index says {}",
            out.len(),
            frame.size
        ));
    }
    Ok(out)
}

/// What [`apply`] wrote.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Applied {
    /// Tar entries.
    pub entries: u64,
    /// Bytes of file content written.
    pub bytes_written: u64,
    /// Bytes charged against the budget.
    pub charged: u64,
}

#[cfg(test)]
#[path = "read_tests.rs"]
pub(super) mod tests;
