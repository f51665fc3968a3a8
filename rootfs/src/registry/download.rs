//! Streaming a blob out of the registry into a bounded channel, resuming with `Range` requests
//! when the connection drops mid-blob, and checking it against its digest on the way. Large
//! blobs come as concurrent ranges ([`super::ranged`]) fed into the same channel in order.
//!
//! The sha256 runs here, on the async worker, not in the decompression thread that reads the
//! channel: inflating is the longest chain of a pull, and on two cores the hash is better done
//! by the otherwise idle network side (a quarter of a second less for the large bench image).

use std::io;
use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use reqwest::{Response, StatusCode};
use tokio::sync::mpsc;

use super::ranged::{self, First, PartError};
use super::window::Ticket;
use super::{RegistryClient, guard, retry};
use crate::blob::BlobError;
use crate::digest::{Digest, Hasher};

/// Chunks in flight per layer: hyper hands out reads of up to ~400 KiB, so this bounds a
/// layer's buffered download to ~6 MiB.
pub const CHANNEL_CHUNKS: usize = 16;

/// Why a blob stream stopped early.
#[derive(Debug, thiserror::Error)]
pub enum DownloadError {
    /// The registry refused or failed.
    #[error(transparent)]
    Registry(#[from] super::RegistryError),
    /// The connection kept dropping.
    #[error(
        "blob {digest} from {host}: the connection dropped {attempts} times (last: {detail}); the network or the registry is unstable, try again"
    )]
    Dropped {
        /// Blob.
        digest: Digest,
        /// Host.
        host: String,
        /// Attempts made.
        attempts: u32,
        /// Last failure.
        detail: String,
    },
}

/// Send the bytes of blob `digest` (expected `size`, if known) into `tx`; errors are sent as the
/// last item, and so is a digest mismatch or a blob longer than `size` (a [`BlobError`] inside
/// the `io::Error`), in place of the end of stream. The future returns when done, when the
/// receiver is gone, or after the error.
///
/// Call it in the order the blobs are read: a blob fetched in ranges takes its place in the
/// client's window of parts ([`super::window`]) here, not when the future first runs.
pub fn stream_blob(
    client: Arc<RegistryClient>,
    digest: Digest,
    size: Option<u64>,
    tx: mpsc::Sender<io::Result<Bytes>>,
) -> impl std::future::Future<Output = ()> + Send + 'static {
    let plan = client.plan();
    let ticket = size
        .filter(|&s| plan.applies(s))
        .map(|_| client.window().ticket());
    async move {
        if let Err(err) = stream(&client, digest, size, &tx, ticket).await {
            let _ = tx.send(Err(io::Error::other(err))).await;
        }
    }
}

async fn stream(
    client: &Arc<RegistryClient>,
    digest: Digest,
    size: Option<u64>,
    tx: &mpsc::Sender<io::Result<Bytes>>,
    ticket: Option<Ticket>,
) -> Result<(), DownloadError> {
    let mut hasher = Hasher::new();
    let plan = client.plan();
    let (Some(total), Some(ticket)) = (size, ticket) else {
        return single(client, digest, size, tx, hasher, 0, None).await;
    };
    let started = std::time::Instant::now();
    let mut parts = match ranged::start(client.clone(), digest, total, plan, ticket).await? {
        First::Parts(parts) => parts,
        First::Whole(response) => {
            tracing::info!(%digest, "the registry ignores ranges: one stream");
            return single(client, digest, size, tx, hasher, 0, Some(response)).await;
        }
    };
    let mut sent = 0u64;
    while let Some(part) = parts.next().await {
        match part {
            // The slot goes back once the part's bytes are in the channel: the window bounds
            // the parts held here as well as those under way.
            Ok((chunks, _slot)) => {
                for bytes in chunks {
                    sent += bytes.len() as u64;
                    hasher.update(&bytes);
                    if tx.send(Ok(bytes)).await.is_err() {
                        return Ok(()); // the consumer stopped (it failed or is done)
                    }
                }
            }
            Err(PartError::NoRange) => {
                // What was sent stays sent: the single stream goes on from there.
                tracing::info!(%digest, sent, "a range was answered whole: one stream from here");
                drop(parts);
                return single(client, digest, size, tx, hasher, sent, None).await;
            }
            Err(PartError::Registry(err)) => return Err(err.into()),
            Err(PartError::Dropped { attempts, detail }) => {
                return Err(DownloadError::Dropped {
                    digest,
                    host: client.host().to_owned(),
                    attempts,
                    detail,
                });
            }
        }
    }
    tracing::debug!(
        %digest, parts = parts.count(), in_flight = plan.in_flight,
        ms = started.elapsed().as_millis() as u64, "blob fetched in ranges"
    );
    finish(hasher, digest, tx).await
}

/// One stream from byte `received` (`hasher` has seen the bytes before it), resuming after
/// drops; `first` is a response already under way for the whole blob.
async fn single(
    client: &RegistryClient,
    digest: Digest,
    size: Option<u64>,
    tx: &mpsc::Sender<io::Result<Bytes>>,
    mut hasher: Hasher,
    mut received: u64,
    mut first: Option<Response>,
) -> Result<(), DownloadError> {
    let mut drops = 0u32;
    loop {
        if size.is_some_and(|s| received >= s) && received > 0 {
            return finish(hasher, digest, tx).await;
        }
        let response = match first.take() {
            Some(response) => response,
            None => client.blob(&digest, received).await?,
        };
        // A registry may ignore Range and resend everything: skip what we already have.
        let mut skip = if response.status() == StatusCode::PARTIAL_CONTENT {
            0
        } else {
            received
        };
        let mut body = response.bytes_stream();
        let mut failure = None;
        while let Some(chunk) = body.next().await {
            match chunk {
                Ok(mut bytes) => {
                    if skip > 0 {
                        let n = skip.min(bytes.len() as u64) as usize;
                        bytes = bytes.slice(n..);
                        skip -= n as u64;
                    }
                    if bytes.is_empty() {
                        continue;
                    }
                    received += bytes.len() as u64;
                    if let Some(size) = size.filter(|&s| s > 0 && received > s) {
                        let err = BlobError::TooLong { digest, size };
                        let _ = tx.send(Err(err.into_io())).await;
                        return Ok(());
                    }
                    hasher.update(&bytes);
                    if tx.send(Ok(bytes)).await.is_err() {
                        return Ok(()); // the consumer stopped (it failed or is done)
                    }
                }
                Err(err) => {
                    // The error names the URL, which may be presigned storage: cut its query.
                    failure = Some(guard::describe_reqwest(err));
                    break;
                }
            }
        }
        let Some(detail) = failure else {
            return finish(hasher, digest, tx).await;
        };
        drops += 1;
        if drops >= retry::ATTEMPTS {
            return Err(DownloadError::Dropped {
                digest,
                host: client.host().to_owned(),
                attempts: drops,
                detail,
            });
        }
        tracing::info!(%digest, received, %detail, "blob download interrupted, resuming");
        tokio::time::sleep(retry::backoff(drops - 1)).await;
    }
}

/// The digest verdict once every byte is through: a mismatch is sent as the stream's last item.
async fn finish(
    hasher: Hasher,
    expected: Digest,
    tx: &mpsc::Sender<io::Result<Bytes>>,
) -> Result<(), DownloadError> {
    let actual = hasher.finish();
    if actual != expected {
        let err = BlobError::Digest { expected, actual };
        let _ = tx.send(Err(err.into_io())).await;
    }
    Ok(())
}
