//! A blob's bytes checked as they stream: against the digest and size its descriptor
//! announces ([`Verified`]), or only counted when something else checks them ([`Counted`]),
//! and what goes wrong with a layer's bytes ([`BlobError`]).
//!
//! The registry's downloader and the extraction pipeline both report through [`BlobError`];
//! it lives here, below both, so that the network layer does not depend on extraction.

use std::io::{self, Read};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::digest::{Digest, Hasher};

/// What went wrong with a layer's bytes (carried inside `io::Error`s through the readers).
#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    /// The compressed bytes do not match the manifest's digest.
    #[error(
        "blob {expected} does not match its digest (got {actual}): the image is corrupt or was tampered with; nothing from it was kept"
    )]
    Digest {
        /// From the manifest.
        expected: Digest,
        /// Computed.
        actual: Digest,
    },
    /// The uncompressed tar does not match the config's DiffID.
    #[error(
        "the image's config says this layer's DiffID is {expected} but it uncompresses to {actual}: the image is corrupt or was tampered with (its config may claim another image's layers); nothing from it was kept"
    )]
    DiffId {
        /// From the config.
        expected: Digest,
        /// Computed.
        actual: Digest,
    },
    /// More bytes than the manifest announced.
    #[error("blob {digest} is longer than the {size} bytes its manifest announces: refusing it")]
    TooLong {
        /// Blob.
        digest: Digest,
        /// Announced size.
        size: u64,
    },
    /// Corrupt or truncated compressed data.
    #[error("the layer's {format} data is corrupt or truncated ({detail}): push the image again")]
    Decompress {
        /// gzip or zstd.
        format: &'static str,
        /// The decoder's complaint.
        detail: String,
    },
}

impl BlobError {
    /// Wrap as the `io::Error` the readers of a layer carry.
    pub fn into_io(self) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidData, self)
    }
}

/// Checks a blob against its digest (and announced size) as it is read; the verdict comes at
/// end of stream, as an error in place of EOF.
pub struct Verified<R> {
    inner: R,
    hasher: Option<Hasher>,
    expected: Digest,
    size: Option<u64>,
    counter: Arc<AtomicU64>,
}

impl<R: Read> Verified<R> {
    /// Verify `inner` against `expected`; bytes read are added to `counter`.
    pub fn new(inner: R, expected: Digest, size: Option<u64>, counter: Arc<AtomicU64>) -> Self {
        Self {
            inner,
            hasher: Some(Hasher::new()),
            expected,
            size,
            counter,
        }
    }
}

impl<R: Read> Read for Verified<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        let Some(hasher) = self.hasher.as_mut() else {
            return Ok(n);
        };
        if n == 0 {
            let actual = self.hasher.take().map(Hasher::finish);
            if let Some(actual) = actual
                && actual != self.expected
            {
                return Err(BlobError::Digest {
                    expected: self.expected,
                    actual,
                }
                .into_io());
            }
            return Ok(0);
        }
        hasher.update(&buf[..n]);
        self.counter.fetch_add(n as u64, Ordering::Relaxed);
        if let Some(size) = self.size
            && size > 0
            && hasher.len() > size
        {
            return Err(BlobError::TooLong {
                digest: self.expected,
                size,
            }
            .into_io());
        }
        Ok(n)
    }
}

/// Counts bytes read (sources verified after decompression instead).
pub struct Counted<R> {
    inner: R,
    counter: Arc<AtomicU64>,
}

impl<R> Counted<R> {
    /// Count `inner`'s bytes into `counter`.
    pub fn new(inner: R, counter: Arc<AtomicU64>) -> Self {
        Self { inner, counter }
    }
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.counter.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(mut r: impl Read) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        r.read_to_end(&mut out).map(|_| out)
    }

    #[test]
    fn a_blob_matching_its_digest_reads_through_and_is_counted() {
        let counter = Arc::new(AtomicU64::new(0));
        let blob = b"layer bytes".to_vec();
        let v = Verified::new(&blob[..], Digest::of(&blob), Some(11), counter.clone());
        assert_eq!(read_all(v).unwrap(), blob);
        assert_eq!(counter.load(Ordering::Relaxed), 11);
    }

    #[test]
    fn a_digest_mismatch_ends_the_stream_with_a_blob_error() {
        let counter = Arc::new(AtomicU64::new(0));
        let v = Verified::new(&b"tampered"[..], Digest::of(b"original"), None, counter);
        let err = read_all(v).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        let inner = err.get_ref().and_then(|e| e.downcast_ref::<BlobError>());
        assert!(matches!(inner, Some(BlobError::Digest { .. })), "{err}");
    }

    #[test]
    fn a_blob_longer_than_announced_is_refused_before_its_end() {
        let counter = Arc::new(AtomicU64::new(0));
        let blob = vec![1u8; 64];
        let v = Verified::new(&blob[..], Digest::of(&blob), Some(10), counter);
        let err = read_all(v).unwrap_err();
        assert!(
            err.to_string().contains("longer than the 10 bytes"),
            "{err}"
        );
    }

    #[test]
    fn counted_only_counts() {
        let counter = Arc::new(AtomicU64::new(0));
        let out = read_all(Counted::new(&b"abcdef"[..], counter.clone())).unwrap();
        assert_eq!(out, b"abcdef");
        assert_eq!(counter.load(Ordering::Relaxed), 6);
    }
}
