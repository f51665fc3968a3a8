//! The layout of a framed image: one object (an S3 object or a file) holding an image's
//! root filesystem flattened (whiteouts applied) as one tar, cut into independent zstd frames,
//! followed by an index and a fixed trailer.
//!
//! ```text
//! frame 0 | frame 1 | ... | frame n-1 | index (JSON) | trailer (64 bytes)
//! ```
//!
//! - Each frame is a complete zstd frame (decodable alone) holding a few MiB of the tar. A frame
//!   begins at an entry boundary, except when one entry is larger than the frame target: its
//!   data then goes on in the next frames, flagged [`Frame::continues`], so that no frame (and no
//!   buffer of the reader) is larger than the target. The last frame ends with the tar's two
//!   zero blocks. Concatenated in order, the frames' contents are the whole tar.
//! - The index ([`Index`], JSON) lists each frame's offset, compressed length, content size and
//!   the BLAKE3 digest of its compressed bytes ([`FrameDigest`]; SHA-256 in the previous format,
//!   still read), and carries the image's runtime config. A reader checks a frame's bytes before
//!   it decodes them: nothing unverified reaches the decoder, and hashing the compressed bytes
//!   costs a third of hashing the tar (the CPU a cold start has least of).
//! - The trailer ([`Trailer`]) is the object's last [`TRAILER_LEN`] bytes: magic, the index's
//!   offset, length and SHA-256. A reader asks for the object's tail first (one suffix range
//!   GET), finds the index there (or asks for it), checks it against the trailer and, when the
//!   user pinned one (`s3://bucket/key@sha256:...`), against the pin: the digest of the index
//!   bytes names the image, and every frame is checked against the index.
//!
//! In the cache, a framed image is one layer whose DiffID is the index digest, so its ChainID
//! (the cache key) is the index digest too ([`Index::chain_id`]).

pub use super::frame_digest::FrameDigest;
use crate::digest::Digest;
use crate::image::ImageConfig;

/// Bytes of the trailer at the end of the object.
pub const TRAILER_LEN: usize = 64;

/// The trailer's first 8 bytes.
pub const MAGIC: &[u8; 8] = b"SCARFRM1";

/// The `format` field of every index this version writes: frames checked by BLAKE3.
pub const FORMAT: &str = "scar-frames/3";

/// The previous format, still read: the same but frames checked by SHA-256.
pub const FORMAT_SHA256: &str = "scar-frames/2";

/// Uncompressed tar bytes a writer puts in a frame before it starts the next one.
pub const FRAME_TARGET: u64 = 4 * 1024 * 1024;

/// The largest index a reader accepts (a million frames' worth is far below it).
pub const MAX_INDEX_LEN: u64 = 64 * 1024 * 1024;

/// Why bytes are not a framed image (or not the one that was pinned).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FormatError {
    /// The object is shorter than a trailer.
    #[error("it is {0} bytes, shorter than the {TRAILER_LEN}-byte trailer of a framed image")]
    TooShort(u64),
    /// The last bytes are not a trailer.
    #[error(
        "it does not end with a framed image's trailer (make one with `scar image push IMAGE s3://BUCKET/KEY`)"
    )]
    NoTrailer,
    /// The trailer points outside the object or before the frames.
    #[error("its trailer places the index at {offset}+{len} in an object of {object} bytes")]
    IndexOutside {
        /// Where the trailer says the index starts.
        offset: u64,
        /// Its length, by the trailer.
        len: u64,
        /// The object's length.
        object: u64,
    },
    /// The index bytes do not hash to what the trailer says.
    #[error(
        "its index does not match the digest in its trailer: the object is corrupt or truncated"
    )]
    IndexDigest,
    /// The index does not hash to the pinned digest.
    #[error("its index is {actual}, not the pinned {pinned}: the object was replaced")]
    Pin {
        /// The digest in the image name.
        pinned: Digest,
        /// The digest of the index found.
        actual: Digest,
    },
    /// The index is not JSON of this format.
    #[error("its index cannot be read: {0}")]
    IndexJson(String),
    /// The index's frames do not tile the object before the index.
    #[error("its index is inconsistent: {0}")]
    Inconsistent(String),
}

/// The object's last [`TRAILER_LEN`] bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Trailer {
    /// Offset of the index in the object.
    pub index_offset: u64,
    /// Length of the index.
    pub index_len: u64,
    /// SHA-256 of the index bytes.
    pub index_digest: Digest,
}

impl Trailer {
    /// The 64 bytes: magic, offset (u64 LE), length (u64 LE), SHA-256 (32 bytes), 8 zero bytes.
    pub fn encode(&self) -> [u8; TRAILER_LEN] {
        let mut out = [0u8; TRAILER_LEN];
        out[..8].copy_from_slice(MAGIC);
        out[8..16].copy_from_slice(&self.index_offset.to_le_bytes());
        out[16..24].copy_from_slice(&self.index_len.to_le_bytes());
        out[24..56].copy_from_slice(self.index_digest.as_bytes());
        out
    }

    /// Read the trailer from the tail of an object of `object_len` bytes (`tail` ends where
    /// the object ends), checking that the index it points at lies inside the object.
    pub fn decode(tail: &[u8], object_len: u64) -> Result<Self, FormatError> {
        if object_len < TRAILER_LEN as u64 || tail.len() < TRAILER_LEN {
            return Err(FormatError::TooShort(object_len));
        }
        let t = &tail[tail.len() - TRAILER_LEN..];
        if &t[..8] != MAGIC || t[56..].iter().any(|&b| b != 0) {
            return Err(FormatError::NoTrailer);
        }
        let word = |at: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&t[at..at + 8]);
            u64::from_le_bytes(b)
        };
        let mut digest = [0u8; 32];
        digest.copy_from_slice(&t[24..56]);
        let trailer = Self {
            index_offset: word(8),
            index_len: word(16),
            index_digest: Digest::from_bytes(digest),
        };
        let end = trailer.index_offset.checked_add(trailer.index_len);
        if end != Some(object_len - TRAILER_LEN as u64) || trailer.index_len > MAX_INDEX_LEN {
            return Err(FormatError::IndexOutside {
                offset: trailer.index_offset,
                len: trailer.index_len,
                object: object_len,
            });
        }
        Ok(trailer)
    }
}

/// One frame of the tar.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Frame {
    /// Offset of the compressed frame in the object.
    pub offset: u64,
    /// Compressed length.
    pub length: u64,
    /// Uncompressed length (tar bytes).
    pub size: u64,
    /// Digest of the compressed bytes (the `length` bytes at `offset`).
    pub digest: FrameDigest,
    /// Whether the frame goes on with the previous frame's last entry instead of beginning at
    /// an entry boundary.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub continues: bool,
}

/// The index of a framed image.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Index {
    /// [`FORMAT`] (or [`FORMAT_SHA256`], read but no longer written).
    pub format: String,
    /// The image it was made from, as the writer named it (for messages only).
    pub source: String,
    /// The image's runtime config.
    pub config: ImageConfig,
    /// The frames, in tar order; they tile the object from offset 0 to the index.
    pub frames: Vec<Frame>,
    /// Tar entries in all.
    pub entries: u64,
}

impl Index {
    /// Parse and check index bytes read from an object: `trailer` is the object's, `pin` the
    /// digest the user named (if any). The frames must tile `[0, trailer.index_offset)`.
    pub fn parse(
        bytes: &[u8],
        trailer: &Trailer,
        pin: Option<&Digest>,
    ) -> Result<Self, FormatError> {
        let actual = Digest::of(bytes);
        if let Some(pinned) = pin
            && *pinned != actual
        {
            return Err(FormatError::Pin {
                pinned: *pinned,
                actual,
            });
        }
        if actual != trailer.index_digest || bytes.len() as u64 != trailer.index_len {
            return Err(FormatError::IndexDigest);
        }
        let index: Self =
            serde_json::from_slice(bytes).map_err(|e| FormatError::IndexJson(e.to_string()))?;
        if index.format != FORMAT && index.format != FORMAT_SHA256 {
            return Err(FormatError::IndexJson(format!(
                "format `{}`, this scar reads `{FORMAT}` (another version of scar wrote it: push the image again with this one)",
                index.format
            )));
        }
        let mut at = 0u64;
        for (i, frame) in index.frames.iter().enumerate() {
            if frame.offset != at || frame.length == 0 || frame.size > 4 * FRAME_TARGET {
                return Err(FormatError::Inconsistent(format!(
                    "frame {i} at {}+{} (size {}) where {at} was expected",
                    frame.offset, frame.length, frame.size
                )));
            }
            if i == 0 && frame.continues {
                return Err(FormatError::Inconsistent(
                    "the first frame continues nothing".into(),
                ));
            }
            at = frame.offset + frame.length;
        }
        if at != trailer.index_offset {
            return Err(FormatError::Inconsistent(format!(
                "the frames end at {at}, the index starts at {}",
                trailer.index_offset
            )));
        }
        Ok(index)
    }

    /// The index as written: JSON, and its digest (the image's name and cache key).
    pub fn encode(&self) -> (Vec<u8>, Digest) {
        // Serializing plain structs of strings, numbers and digests cannot fail.
        let bytes = serde_json::to_vec(self).unwrap_or_default();
        let digest = Digest::of(&bytes);
        (bytes, digest)
    }

    /// Uncompressed tar bytes in all.
    pub fn tar_size(&self) -> u64 {
        self.frames.iter().map(|f| f.size).sum()
    }

    /// Compressed bytes of all frames.
    pub fn compressed_size(&self) -> u64 {
        self.frames.iter().map(|f| f.length).sum()
    }

    /// The cache key of the image whose index has digest `index_digest`: a framed image is one
    /// layer whose DiffID is its index digest, so its ChainID is that digest.
    pub fn chain_id(index_digest: &Digest) -> Digest {
        *index_digest
    }
}

#[cfg(test)]
#[path = "format_tests.rs"]
mod tests;
