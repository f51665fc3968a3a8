//! Keys longer than s3s-fs can store, stored under a shortened key.
//!
//! s3s-fs keeps an object as a file at `<bucket>/<key>` with a sidecar file named after the
//! base64 of the whole key, so a key past ~160 bytes (or a segment past 255) fails with
//! `InternalError` although S3 allows 1,024 bytes. [`LongKeys`] stores such a key as its first
//! [`KEPT_BYTES`] bytes, `~` and the SHA-256 of the whole key: every request naming the long key
//! reaches the same object, and a listing of a short prefix still finds it (under the stored
//! key). Shorter keys are untouched, so what tests see on disk does not change for them.
//!
//! The wrapper rewrites the operation's input after `s3s` has checked the request's signature
//! (which covers the key as the client sent it), then hands the request to s3s-fs.

use std::future::Future;
use std::pin::Pin;

use s3s::dto::*;
use s3s::{S3, S3Request, S3Response, S3Result};
use sha2::{Digest, Sha256};

/// The longest key stored as it is: base64 of it plus the sidecar's name fits in 255 bytes.
pub const LONGEST_STORED_KEY: usize = 150;

/// Bytes of a long key kept at the start of its stored key.
pub const KEPT_BYTES: usize = 80;

/// The key s3s-fs stores `key` under: `key` itself when it is short enough, else its start,
/// `~`, and the hex SHA-256 of the whole key.
pub fn stored_key(key: &str) -> String {
    if key.len() <= LONGEST_STORED_KEY {
        return key.to_owned();
    }
    let mut end = KEPT_BYTES;
    while !key.is_char_boundary(end) {
        end -= 1;
    }
    format!(
        "{}~{}",
        &key[..end],
        hex::encode(Sha256::digest(key.as_bytes()))
    )
}

fn map_key(key: &mut String) {
    if key.len() > LONGEST_STORED_KEY {
        *key = stored_key(key);
    }
}

fn map_copy_source(source: &mut CopySource) {
    if let CopySource::Bucket { key, .. } = source
        && key.len() > LONGEST_STORED_KEY
    {
        *key = stored_key(key).into_boxed_str();
    }
}

/// An S3 service storing long keys under [`stored_key`], every operation handed to `inner`.
pub struct LongKeys<T> {
    inner: T,
}

impl<T> LongKeys<T> {
    /// Wrap `inner` (s3s-fs).
    pub fn new(inner: T) -> Self {
        Self { inner }
    }
}

type Answer<'a, O> = Pin<Box<dyn Future<Output = S3Result<S3Response<O>>> + Send + 'a>>;

/// Implements `S3` (an `async_trait` trait: each method returns a boxed future) by handing
/// each listed operation to `inner` after `$map` rewrote its input.
macro_rules! forward {
    ($($method:ident($input:ty) -> $output:ty, $map:expr;)*) => {
        impl<T: S3> S3 for LongKeys<T> {
            $(
                fn $method<'life0, 'async_trait>(
                    &'life0 self,
                    mut req: S3Request<$input>,
                ) -> Answer<'async_trait, $output>
                where
                    'life0: 'async_trait,
                    Self: 'async_trait,
                {
                    let map: fn(&mut $input) = $map;
                    map(&mut req.input);
                    self.inner.$method(req)
                }
            )*
        }
    };
}

forward! {
    create_bucket(CreateBucketInput) -> CreateBucketOutput, |_| {};
    delete_bucket(DeleteBucketInput) -> DeleteBucketOutput, |_| {};
    head_bucket(HeadBucketInput) -> HeadBucketOutput, |_| {};
    get_bucket_location(GetBucketLocationInput) -> GetBucketLocationOutput, |_| {};
    list_buckets(ListBucketsInput) -> ListBucketsOutput, |_| {};
    list_objects(ListObjectsInput) -> ListObjectsOutput, |_| {};
    list_objects_v2(ListObjectsV2Input) -> ListObjectsV2Output, |_| {};
    get_object(GetObjectInput) -> GetObjectOutput, |i| map_key(&mut i.key);
    head_object(HeadObjectInput) -> HeadObjectOutput, |i| map_key(&mut i.key);
    put_object(PutObjectInput) -> PutObjectOutput, |i| map_key(&mut i.key);
    delete_object(DeleteObjectInput) -> DeleteObjectOutput, |i| map_key(&mut i.key);
    delete_objects(DeleteObjectsInput) -> DeleteObjectsOutput,
        |i| i.delete.objects.iter_mut().for_each(|o| map_key(&mut o.key));
    copy_object(CopyObjectInput) -> CopyObjectOutput, |i| {
        map_key(&mut i.key);
        map_copy_source(&mut i.copy_source);
    };
    create_multipart_upload(CreateMultipartUploadInput) -> CreateMultipartUploadOutput,
        |i| map_key(&mut i.key);
    upload_part(UploadPartInput) -> UploadPartOutput, |i| map_key(&mut i.key);
    upload_part_copy(UploadPartCopyInput) -> UploadPartCopyOutput, |i| {
        map_key(&mut i.key);
        map_copy_source(&mut i.copy_source);
    };
    list_parts(ListPartsInput) -> ListPartsOutput, |i| map_key(&mut i.key);
    complete_multipart_upload(CompleteMultipartUploadInput) -> CompleteMultipartUploadOutput,
        |i| map_key(&mut i.key);
    abort_multipart_upload(AbortMultipartUploadInput) -> AbortMultipartUploadOutput,
        |i| map_key(&mut i.key);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_keys_are_stored_as_they_are() {
        let key = "output/a b/é.txt";
        assert_eq!(stored_key(key), key);
        assert_eq!(
            stored_key(&"k".repeat(LONGEST_STORED_KEY)),
            "k".repeat(LONGEST_STORED_KEY)
        );
    }

    #[test]
    fn long_keys_keep_their_start_and_differ_by_their_hash() {
        let one = format!("output/{}-1.txt", "x".repeat(400));
        let two = format!("output/{}-2.txt", "x".repeat(400));
        let (a, b) = (stored_key(&one), stored_key(&two));
        assert_ne!(a, b);
        assert!(a.starts_with("output/xxx"), "{a}");
        assert_eq!(a.len(), KEPT_BYTES + 1 + 64);
        assert_eq!(stored_key(&one), a);
    }

    #[test]
    fn a_long_key_is_cut_on_a_character_boundary() {
        let key = format!("o/{}", "é".repeat(200));
        let stored = stored_key(&key);
        assert!(stored.len() <= KEPT_BYTES + 1 + 64, "{stored}");
        assert!(stored.starts_with("o/é"), "{stored}");
    }
}
