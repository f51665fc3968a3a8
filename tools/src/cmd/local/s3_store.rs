//! The endpoint's store: `s3s-fs`, but with the bodies of GetObject read in blocks of 1 MiB.
//!
//! `s3s-fs` streams an object in blocks of 4 KiB, each one a trip through tokio's blocking pool:
//! serving a 272 MB image took 1.1 s of CPU, which on a 2-core machine the endpoint took from the
//! pull it served (real S3 spends none of the function's CPU). Every other call, and GetObject's
//! answer itself (checks, range, headers, ETag), stays `s3s-fs`'s: only the body is read again,
//! from the same file and range, in larger blocks.
//!
//! The blocks are read into buffers used again once the connection has sent them (a
//! [`Recycler`], as a pull's ranges of a file are): a fresh MiB for each block is memory the
//! kernel maps and zeroes page by page and unmaps after (on the bench's 2 cores, about half of
//! the endpoint's CPU while it served the large image).

use std::io::{Read, Seek, SeekFrom};
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use s3s::dto::*;
use s3s::{S3, S3Request, S3Response, S3Result, s3_error};
use scar_rootfs::source::Recycler;

/// Bytes a GetObject body reads at a time.
const BLOCK: usize = 1 << 20;

/// `s3s-fs` over `root`, with faster GetObject bodies.
pub struct Store {
    inner: s3s_fs::FileSystem,
    root: PathBuf,
    /// Block buffers, shared by every GetObject of the endpoint.
    recycler: Arc<Recycler>,
}

impl Store {
    /// The store of `root` (what `s3s_fs::FileSystem::new` was given, canonical).
    pub fn new(inner: s3s_fs::FileSystem, root: PathBuf) -> Self {
        Self {
            inner,
            root,
            recycler: Recycler::new(),
        }
    }

    /// The file of `bucket/key`, when the key is plain relative path components (`s3s-fs`
    /// resolves the others itself; they keep its body).
    fn plain_path(&self, bucket: &str, key: &str) -> Option<PathBuf> {
        let plain = |p: &str| {
            !p.is_empty()
                && Path::new(p)
                    .components()
                    .all(|c| matches!(c, Component::Normal(_)))
        };
        (plain(bucket) && plain(key) && !key.ends_with('/'))
            .then(|| self.root.join(bucket).join(key))
    }
}

/// The first byte of a `Content-Range: bytes FIRST-LAST/LENGTH`.
fn range_start(content_range: &str) -> Option<u64> {
    let (first, _) = content_range.strip_prefix("bytes ")?.split_once('-')?;
    first.parse().ok()
}

/// The `S3` impl: every call `s3s-fs` answers goes to it as it is, but GetObject. (The
/// `async_trait` attribute is part of the expansion, so that it sees the methods.)
macro_rules! delegating_impl {
    ($($name:ident: $input:ty => $output:ty;)*) => {
        #[async_trait::async_trait]
        impl S3 for Store {
            $(
                async fn $name(&self, req: S3Request<$input>) -> S3Result<S3Response<$output>> {
                    self.inner.$name(req).await
                }
            )*

            async fn get_object(
                &self,
                req: S3Request<GetObjectInput>,
            ) -> S3Result<S3Response<GetObjectOutput>> {
                self.get_object_in_blocks(req).await
            }
        }
    };
}

delegating_impl! {
    create_bucket: CreateBucketInput => CreateBucketOutput;
    copy_object: CopyObjectInput => CopyObjectOutput;
    delete_bucket: DeleteBucketInput => DeleteBucketOutput;
    delete_object: DeleteObjectInput => DeleteObjectOutput;
    delete_objects: DeleteObjectsInput => DeleteObjectsOutput;
    get_bucket_location: GetBucketLocationInput => GetBucketLocationOutput;
    head_bucket: HeadBucketInput => HeadBucketOutput;
    head_object: HeadObjectInput => HeadObjectOutput;
    list_buckets: ListBucketsInput => ListBucketsOutput;
    list_objects: ListObjectsInput => ListObjectsOutput;
    list_objects_v2: ListObjectsV2Input => ListObjectsV2Output;
    put_object: PutObjectInput => PutObjectOutput;
    create_multipart_upload: CreateMultipartUploadInput => CreateMultipartUploadOutput;
    upload_part: UploadPartInput => UploadPartOutput;
    upload_part_copy: UploadPartCopyInput => UploadPartCopyOutput;
    list_parts: ListPartsInput => ListPartsOutput;
    complete_multipart_upload: CompleteMultipartUploadInput => CompleteMultipartUploadOutput;
    abort_multipart_upload: AbortMultipartUploadInput => AbortMultipartUploadOutput;
}

impl Store {
    /// `s3s-fs`'s answer, with its body read again in [`BLOCK`]s.
    async fn get_object_in_blocks(
        &self,
        req: S3Request<GetObjectInput>,
    ) -> S3Result<S3Response<GetObjectOutput>> {
        let path = self.plain_path(&req.input.bucket, &req.input.key);
        let mut answer = self.inner.get_object(req).await?;
        let Some(path) = path else {
            return Ok(answer);
        };
        let output = &mut answer.output;
        let length = output
            .content_length
            .and_then(|l| u64::try_from(l).ok())
            .unwrap_or(0);
        let start = match output.content_range.as_deref() {
            Some(range) => range_start(range).ok_or_else(|| s3_error!(InternalError))?,
            None => 0,
        };
        let mut file = std::fs::File::open(&path).map_err(|_| s3_error!(NoSuchKey))?;
        file.seek(SeekFrom::Start(start))
            .map_err(|_| s3_error!(InternalError))?;
        let blocks = Blocks {
            file: Arc::new(file),
            left: length,
            recycler: self.recycler.clone(),
        };
        output.body = Some(StreamingBlob::wrap(futures::stream::try_unfold(
            blocks,
            Blocks::next,
        )));
        Ok(answer)
    }
}

/// What is left of a GetObject body: the next `left` bytes of `file`.
struct Blocks {
    file: Arc<std::fs::File>,
    left: u64,
    recycler: Arc<Recycler>,
}

impl Blocks {
    /// The next block (read on tokio's blocking pool) and the rest, or `None` at the end.
    async fn next(mut self) -> std::io::Result<Option<(Bytes, Blocks)>> {
        let want = self.left.min(BLOCK as u64);
        if want == 0 {
            return Ok(None);
        }
        let (file, mut buf) = (self.file.clone(), self.recycler.buffer(want as usize));
        let (buf, read) = tokio::task::spawn_blocking(move || {
            let read = (&*file).take(want).read_to_end(&mut buf);
            (buf, read)
        })
        .await
        .map_err(std::io::Error::other)?;
        if read? == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the object's file is shorter than its length",
            ));
        }
        self.left -= buf.len() as u64;
        Ok(Some((self.recycler.freeze(buf), self)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_range_start_is_read_from_content_range() {
        assert_eq!(range_start("bytes 0-9/100"), Some(0));
        assert_eq!(
            range_start("bytes 4194304-8388607/272000000"),
            Some(4_194_304)
        );
        assert_eq!(range_start("bytes */100"), None);
        assert_eq!(range_start("items 1-2/3"), None);
    }

    #[test]
    fn only_plain_keys_are_read_again() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::new(
            s3s_fs::FileSystem::new(tmp.path()).unwrap(),
            PathBuf::from("/r"),
        );
        assert_eq!(
            store.plain_path("b", "input/cat.png"),
            Some(PathBuf::from("/r/b/input/cat.png"))
        );
        for key in ["../x", "a/../b", "./a", "/abs", "a/", ""] {
            assert_eq!(store.plain_path("b", key), None, "{key}");
        }
    }
}
