//! A resolved framed image and how its frames' bytes are fetched: parallel ranges from S3,
//! reads of a file. Below [`super::framed`] (which resolves it) and [`super::blobs`].

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;

use super::recycle::Recycler;
use super::s3_ranges::Object;
use crate::digest::Digest;
use crate::framed::format::Index;
use crate::framed::read::Group;

/// The compressed bytes of a framed image's groups of frames, in order, or why not.
pub type Compressed = Box<dyn Iterator<Item = Result<Bytes, String>> + Send>;

/// Where a framed image's bytes are.
#[derive(Debug)]
pub enum Store {
    /// An S3 object, read by ranges.
    S3(Arc<Object>),
    /// A local file.
    File(PathBuf),
}

/// A resolved framed image: where it is, its index and the index's digest.
#[derive(Debug)]
pub struct FramedImage {
    /// `s3://bucket/key` or the path.
    pub name: String,
    /// Where its bytes are.
    pub store: Store,
    /// Its index, checked against the trailer and the pin.
    pub index: Index,
    /// The index's digest (the image's name and cache key).
    pub digest: Digest,
    /// Ranges in flight when reading from S3.
    pub in_flight: usize,
}

impl FramedImage {
    /// The compressed bytes of `groups`, in order, for a blocking thread: from S3 `in_flight`
    /// ranges at once as tasks of the current runtime (stopped when the iterator is dropped,
    /// an error past `deadline`), from a file read by the consumer's thread.
    pub fn fetch(&self, groups: Vec<Group>, deadline: Option<std::time::Instant>) -> Compressed {
        match &self.store {
            Store::S3(object) => {
                let spans = groups.iter().map(|g| (g.start, g.end)).collect();
                let ranges = object.clone().ranges(spans, self.in_flight, deadline);
                Box::new(ranges)
            }
            Store::File(path) => {
                let (path, name) = (path.clone(), self.name.clone());
                let mut file: Option<File> = None;
                let recycler = Recycler::new();
                let reads = groups.into_iter().map(move |g| {
                    let f = match &file {
                        Some(f) => f,
                        None => {
                            file.insert(File::open(&path).map_err(|e| format!("open {name}: {e}"))?)
                        }
                    };
                    pread(f, g.start, g.end + 1 - g.start, &recycler)
                        .map_err(|e| format!("read {name} at {}: {e}", g.start))
                });
                Box::new(reads)
            }
        }
    }
}

/// `len` bytes of `file` from `offset`, read into a buffer of `recycler`.
pub(super) fn pread(
    file: &File,
    offset: u64,
    len: u64,
    recycler: &Arc<Recycler>,
) -> std::io::Result<Bytes> {
    let mut buf = recycler.buffer(len as usize);
    buf.resize(len as usize, 0);
    file.read_exact_at(&mut buf, offset)?;
    Ok(recycler.freeze(buf))
}
