//! Streaming a blob out of the registry into a bounded channel, resuming with `Range` requests
//! when the connection drops mid-blob.

use std::io;
use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use reqwest::StatusCode;
use tokio::sync::mpsc;

use super::{RegistryClient, error_chain, retry};
use crate::digest::Digest;

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
/// last item. Returns when done, when the receiver is gone, or after the error.
pub async fn stream_blob(
    client: Arc<RegistryClient>,
    digest: Digest,
    size: Option<u64>,
    tx: mpsc::Sender<io::Result<Bytes>>,
) {
    if let Err(err) = stream(&client, digest, size, &tx).await {
        let _ = tx.send(Err(io::Error::other(err))).await;
    }
}

async fn stream(
    client: &RegistryClient,
    digest: Digest,
    size: Option<u64>,
    tx: &mpsc::Sender<io::Result<Bytes>>,
) -> Result<(), DownloadError> {
    let mut received = 0u64;
    let mut drops = 0u32;
    loop {
        if size.is_some_and(|s| received >= s) && received > 0 {
            return Ok(());
        }
        let response = client.blob(&digest, received).await?;
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
                    if tx.send(Ok(bytes)).await.is_err() {
                        return Ok(()); // the consumer stopped (it failed or is done)
                    }
                }
                Err(err) => {
                    failure = Some(error_chain(&err));
                    break;
                }
            }
        }
        let Some(detail) = failure else {
            return Ok(());
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
