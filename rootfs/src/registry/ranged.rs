//! Large blobs as several concurrent `Range` requests of fixed parts, handed back in order.
//!
//! One connection to a registry's storage (S3, a CDN) carries a few tens of MB/s on Lambda,
//! and the storage serves every range at that speed at once: parts fetched side by side fill
//! the link. The parts come back in blob order, so the channel, the hash and the digest check
//! of [`super::download`] see the same bytes as with one stream. At most `in_flight` parts are
//! held at once (the one being handed on included), whatever the consumer's speed.
//!
//! Registries redirect blob requests to storage: the first part follows the redirect and the
//! others go straight to the final URL when it is elsewhere (a presigned URL allows ranges),
//! back to the registry for a part the storage refuses (an expired signature). A part that
//! drops or comes back short is asked again for what is missing, alone. A server that answers
//! 200 instead of 206 has no range support: the caller then falls back to one stream.

use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use reqwest::header::CONTENT_RANGE;
use reqwest::{Response, StatusCode};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::plan::{Plan, Span};
use super::window::{Slot, Ticket};
use super::{RegistryClient, RegistryError, guard, retry};
use crate::digest::Digest;

/// Why a part could not be had.
#[derive(Debug)]
pub enum PartError {
    /// The server answered 200: it ignores ranges. Fall back to one stream.
    NoRange,
    /// The registry refused or failed (after its own retries).
    Registry(RegistryError),
    /// The part kept dropping or coming back short.
    Dropped {
        /// Attempts made.
        attempts: u32,
        /// Last failure.
        detail: String,
    },
}

/// How the first range request went.
pub enum First {
    /// The server sends ranges: the parts, in order.
    Parts(Parts),
    /// The server ignored the range and is sending the whole blob (200).
    Whole(Response),
}

/// What every part task shares.
struct Shared {
    client: Arc<RegistryClient>,
    digest: Digest,
    /// Where the registry redirected the first range, when elsewhere than the registry.
    storage: Option<String>,
}

/// A part under way and the slot of the pull's window it holds.
type Started = (JoinHandle<Result<Vec<Bytes>, PartError>>, Slot);

/// The parts of one blob, fetched as the pull's window ([`super::window`]) gives slots;
/// aborted when dropped.
pub struct Parts {
    plan: Plan,
    size: u64,
    /// The first part, asked for by [`start`].
    first: Option<Started>,
    /// The other parts, in order, as the spawner started them.
    started: mpsc::UnboundedReceiver<Started>,
    /// The task that starts the other parts as slots come free.
    spawner: JoinHandle<()>,
    /// Parts handed out so far.
    handed: u64,
}

/// Ask for the first part of blob `digest` (`size` bytes) once `ticket` (its place among the
/// pull's ranged blobs) gets a slot; when the server sends ranges, the other parts start as
/// slots come free.
pub async fn start(
    client: Arc<RegistryClient>,
    digest: Digest,
    size: u64,
    plan: Plan,
    ticket: Ticket,
) -> Result<First, RegistryError> {
    let slot = ticket.slot().await;
    let first = plan.span(size, 0);
    let response = client.blob_span(&digest, first).await?;
    if response.status() != StatusCode::PARTIAL_CONTENT {
        return Ok(First::Whole(response));
    }
    let storage = client
        .is_elsewhere(response.url())
        .then(|| response.url().to_string());
    let shared = Arc::new(Shared {
        client,
        digest,
        storage,
    });
    let (tx, started) = mpsc::unbounded_channel();
    let spawner = tokio::spawn(spawn_parts(shared.clone(), plan, size, ticket, tx));
    Ok(First::Parts(Parts {
        plan,
        size,
        first: Some((tokio::spawn(fetch(shared, first, Some(response))), slot)),
        started,
        spawner,
        handed: 0,
    }))
}

/// Start parts 1.. of a blob in order, each once the pull's window gives it a slot; the
/// ticket, dropped at the end, hands the turn to the next blob.
async fn spawn_parts(
    shared: Arc<Shared>,
    plan: Plan,
    size: u64,
    ticket: Ticket,
    tx: mpsc::UnboundedSender<Started>,
) {
    for index in 1..plan.parts(size) {
        let slot = ticket.slot().await;
        let task = tokio::spawn(fetch(shared.clone(), plan.span(size, index), None));
        if let Err(mpsc::error::SendError((task, _slot))) = tx.send((task, slot)) {
            // The blob was given up.
            task.abort();
            return;
        }
    }
}

impl Parts {
    /// How many parts the blob makes.
    pub fn count(&self) -> u64 {
        self.plan.parts(self.size)
    }

    /// The next part's bytes, in blob order, with the slot they hold: drop it once the bytes
    /// are passed on. `None` once every part was handed out.
    pub async fn next(&mut self) -> Option<Result<(Vec<Bytes>, Slot), PartError>> {
        if self.handed >= self.count() {
            return None;
        }
        let started = match self.first.take() {
            Some(first) => Some(first),
            None => self.started.recv().await,
        };
        let Some((task, slot)) = started else {
            return Some(Err(PartError::Dropped {
                attempts: 1,
                detail: "the task starting the parts stopped".into(),
            }));
        };
        self.handed += 1;
        Some(match task.await {
            Ok(result) => result.map(|chunks| (chunks, slot)),
            Err(err) => Err(PartError::Dropped {
                attempts: 1,
                detail: format!("the part's task failed: {err}"),
            }),
        })
    }
}

impl Drop for Parts {
    fn drop(&mut self) {
        // A pull stopped (deadline, failure): its parts stop downloading too, and their slots
        // go back to the window.
        self.spawner.abort();
        if let Some((task, _)) = &self.first {
            task.abort();
        }
        while let Ok((task, _slot)) = self.started.try_recv() {
            task.abort();
        }
    }
}

/// The bytes of `span`, asking again for what is missing after a drop or a short answer.
async fn fetch(
    shared: Arc<Shared>,
    span: Span,
    mut response: Option<Response>,
) -> Result<Vec<Bytes>, PartError> {
    let end = span.end.unwrap_or(span.start);
    let want = end + 1 - span.start;
    let mut chunks = Vec::new();
    let mut have = 0u64;
    let mut failures = 0u32;
    loop {
        let rest = Span {
            start: span.start + have,
            end: Some(end),
        };
        let answer = match response.take() {
            Some(r) => r,
            None => request(&shared, rest).await?,
        };
        let detail = match read(answer, rest, want - have, &mut chunks).await {
            Ok(n) if have + n == want => return Ok(chunks),
            Ok(n) => {
                have += n;
                format!("the server sent {n} bytes of {}", want - have + n)
            }
            Err((n, detail)) => {
                have += n;
                detail
            }
        };
        failures += 1;
        if failures >= retry::ATTEMPTS {
            return Err(PartError::Dropped {
                attempts: failures,
                detail,
            });
        }
        tracing::info!(
            digest = %shared.digest, start = rest.start, %detail, "blob part interrupted, asking again"
        );
        tokio::time::sleep(retry::backoff(failures - 1)).await;
    }
}

/// A 206 for `span`: from the storage the registry redirected to when there is one, else (or
/// when the storage refuses) from the registry.
async fn request(shared: &Shared, span: Span) -> Result<Response, PartError> {
    if let Some(url) = &shared.storage {
        match shared.client.storage_span(url, &shared.digest, span).await {
            Ok(r) if r.status() == StatusCode::PARTIAL_CONTENT => return Ok(r),
            Ok(r) => tracing::info!(
                digest = %shared.digest, status = r.status().as_u16(),
                "blob storage refused a range, asking the registry"
            ),
            Err(err) => tracing::info!(
                digest = %shared.digest, %err, "blob storage failed, asking the registry"
            ),
        }
    }
    let response = shared
        .client
        .blob_span(&shared.digest, span)
        .await
        .map_err(PartError::Registry)?;
    if response.status() == StatusCode::PARTIAL_CONTENT {
        Ok(response)
    } else {
        Err(PartError::NoRange)
    }
}

/// Read a 206 for `span` into `chunks`: the bytes read, and why it stopped short if it did.
/// An answer for another range than asked is not used at all.
async fn read(
    response: Response,
    span: Span,
    want: u64,
    chunks: &mut Vec<Bytes>,
) -> Result<u64, (u64, String)> {
    let start = response
        .headers()
        .get(CONTENT_RANGE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("bytes "))
        .and_then(|v| v.split('-').next())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if start != Some(span.start) {
        return Err((
            0,
            format!("asked for bytes from {}, got {start:?}", span.start),
        ));
    }
    let mut got = 0u64;
    let mut body = response.bytes_stream();
    while let Some(chunk) = body.next().await {
        match chunk {
            Ok(bytes) => {
                let take = (want - got).min(bytes.len() as u64);
                if take < bytes.len() as u64 {
                    // More than the range asked for: keep what was asked, ask for nothing more.
                    chunks.push(bytes.slice(..take as usize));
                    return Ok(got + take);
                }
                got += take;
                if !bytes.is_empty() {
                    chunks.push(bytes);
                }
            }
            // The error names the URL, which may be presigned storage: cut its query.
            Err(err) => return Err((got, guard::describe_reqwest(err))),
        }
    }
    Ok(got)
}

#[cfg(test)]
#[path = "ranged_tests.rs"]
mod tests;
