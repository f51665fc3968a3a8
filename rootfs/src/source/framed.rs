//! Framed images (`s3://bucket/key`, `framed:PATH`): the index read from the object's tail,
//! the frames' bytes fetched as ranges (parallel GETs from S3, reads of a file).

use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;

use super::blobs::{BlobRef, Blobs};
use super::error::SourceError;
use super::framed_image::{FramedImage, Store, pread};
use super::recycle::Recycler;
use super::resolved::{Layer, ResolvedImage, finish};
use super::s3_ranges::{self, Object};
use crate::digest::Digest;
use crate::framed::format::{FormatError, Index, Trailer};
use crate::options::PullOptions;
use crate::reference::Location;

/// Bytes of the object's tail asked for first: the trailer, and the index when it fits.
pub const TAIL: u64 = 1024 * 1024;

/// The media type of a framed image's one layer.
pub const MEDIA_TYPE: &str = "application/vnd.scar.framed.v1.tar+zstd";

/// Read the index of the framed image at `location` and resolve it to one layer.
pub(super) async fn resolve(
    location: &Location,
    pin: Option<&Digest>,
    what: &str,
    options: &PullOptions,
) -> Result<(ResolvedImage, Blobs), SourceError> {
    let name = location.to_string();
    let not_framed = |e: FormatError| SourceError::NotAnImage {
        path: name.clone(),
        kind: "a framed image",
        detail: e.to_string(),
    };
    let (store, tail, total) = match location {
        Location::S3 { bucket, key } => {
            let object = Arc::new(Object::new(bucket, key, options));
            let (tail, total) = object.tail(TAIL).await?;
            (Store::S3(object), tail, total)
        }
        Location::Path(path) => {
            let (tail, total) = read_tail(path)?;
            (Store::File(path.clone()), tail, total)
        }
    };
    let trailer = Trailer::decode(&tail, total).map_err(not_framed)?;
    let tail_start = total - tail.len() as u64;
    let index_bytes = if trailer.index_offset >= tail_start {
        let from = (trailer.index_offset - tail_start) as usize;
        tail.slice(from..from + trailer.index_len as usize)
    } else {
        let end = trailer.index_offset + trailer.index_len - 1;
        match &store {
            Store::S3(object) => {
                let recycler = Recycler::new();
                object.range(trailer.index_offset, end, &recycler).await?
            }
            Store::File(path) => read_at(path, trailer.index_offset, trailer.index_len)?,
        }
    };
    let index = Index::parse(&index_bytes, &trailer, pin).map_err(not_framed)?;
    let digest = trailer.index_digest;
    let config_digest =
        Digest::of(
            &serde_json::to_vec(&index.config).map_err(|e| SourceError::NotAnImage {
                path: name.clone(),
                kind: "a framed image",
                detail: format!("its config cannot be written again: {e}"),
            })?,
        );
    let layers = vec![Layer {
        blob: BlobRef::Digest(digest),
        size: Some(index.compressed_size()),
        media_type: MEDIA_TYPE.to_owned(),
        diff_id: digest,
    }];
    let mut resolved = finish(
        what,
        Some(digest),
        index.config.clone(),
        config_digest,
        layers,
        &[digest],
    )?;
    resolved.chain_id = Index::chain_id(&digest);
    let image = FramedImage {
        name,
        store,
        index,
        digest,
        in_flight: s3_ranges::in_flight(options),
    };
    Ok((resolved, Blobs::Framed(Arc::new(image))))
}

/// The last [`TAIL`] bytes of a file and its length.
fn read_tail(path: &Path) -> Result<(Bytes, u64), SourceError> {
    let io = |op, source| SourceError::Io {
        op,
        path: path.to_owned(),
        source,
    };
    let file = File::open(path).map_err(|e| io("open", e))?;
    let total = file.metadata().map_err(|e| io("stat", e))?.len();
    let len = total.min(TAIL);
    let tail = pread(&file, total - len, len, &Recycler::new()).map_err(|e| io("read", e))?;
    Ok((tail, total))
}

/// `len` bytes of the file at `path` from `offset`.
fn read_at(path: &Path, offset: u64, len: u64) -> Result<Bytes, SourceError> {
    let io = |op, source| SourceError::Io {
        op,
        path: path.to_owned(),
        source,
    };
    let file = File::open(path).map_err(|e| io("open", e))?;
    pread(&file, offset, len, &Recycler::new()).map_err(|e| io("read", e))
}
