//! S3 objects read as byte ranges: one GetObject per range through the project's S3 client
//! ([`crate::aws`]), several at once, each checked for length and asked again alone when its
//! answer breaks off or comes back short.
//!
//! One connection to S3 carries a few tens of MB/s; AWS's guidance for large objects is
//! parallel range GETs, and S3 serves each at full speed. The ranges come back in the order
//! asked, at most `in_flight` held at once (see [`Object::ranges`]), so a reader sees the
//! object's bytes as from one stream while its memory stays `in_flight` parts.

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;

use futures::StreamExt;
use tokio::task::JoinHandle;

use super::error::SourceError;
use super::recycle::Recycler;
use crate::options::PullOptions;
use crate::registry::plan;

/// Attempts per range: a range whose answer breaks off, cannot be read or comes back short is
/// asked again alone this many times in all (the SDK retries failed requests by itself).
pub const ATTEMPTS: u32 = 3;

/// An S3 object read by ranges.
#[derive(Clone, Debug)]
pub struct Object {
    s3: crate::aws::S3,
    bucket: String,
    key: String,
}

impl Object {
    /// `s3://bucket/key` through the caller's S3 client, or one from the environment.
    pub fn new(bucket: &str, key: &str, options: &PullOptions) -> Self {
        Self {
            s3: options.s3.clone().unwrap_or_else(crate::aws::S3::from_env),
            bucket: bucket.to_owned(),
            key: key.to_owned(),
        }
    }

    /// `s3://bucket/key`, the name every error gives.
    pub fn name(&self) -> String {
        format!("s3://{}/{}", self.bucket, self.key)
    }

    fn error(&self, detail: String) -> SourceError {
        SourceError::S3 {
            location: self.name(),
            detail,
        }
    }

    /// One GET with `range` (a `Range` header value): the body and the object's whole length
    /// (from `Content-Range`, else the body's length when the whole object came), read into a
    /// buffer of `recycler`.
    async fn get(
        &self,
        range: &str,
        recycler: &Arc<Recycler>,
    ) -> Result<(Bytes, u64), SourceError> {
        self.get_once(range, recycler).await.map_err(|(e, _)| e)
    }

    /// [`Object::get`], its error told apart: `true` when asking again may help (the body broke
    /// off, the answer could not be read), `false` otherwise: S3 answered with an error (no
    /// such key, access denied), or the SDK has retried the request already (connections that
    /// failed, 5xx answers, throttling).
    async fn get_once(
        &self,
        range: &str,
        recycler: &Arc<Recycler>,
    ) -> Result<(Bytes, u64), (SourceError, bool)> {
        let answer = self
            .s3
            .client()
            .await
            .get_object()
            .bucket(&self.bucket)
            .key(&self.key)
            .range(range)
            .send()
            .await
            .map_err(|e| {
                // A connection that failed or timed out was retried by the SDK already; an
                // answer it could not read was not.
                let again = matches!(e, aws_sdk_s3::error::SdkError::ResponseError(_));
                (self.error(describe(&e)), again)
            })?;
        let total = answer
            .content_range()
            .and_then(|r| r.rsplit_once('/'))
            .and_then(|(_, total)| total.trim().parse::<u64>().ok());
        // Read into one buffer of the announced size: collecting the chunks and joining them
        // would hold the part twice.
        let announced = answer.content_length().unwrap_or(0).max(0) as u64;
        let mut buf = recycler.buffer(announced.min(2 * plan::PART) as usize);
        let mut body = answer.body;
        while let Some(chunk) = body
            .try_next()
            .await
            .map_err(|e| (self.error(crate::aws::error_chain(&e)), true))?
        {
            buf.extend_from_slice(&chunk);
        }
        let body = recycler.freeze(buf);
        let total = total.unwrap_or(body.len() as u64);
        Ok((body, total))
    }

    /// The object's last `n` bytes (all of it when it is smaller) and its length: one suffix
    /// range GET, asked again like [`Object::range`] when it fails or comes back short.
    pub async fn tail(&self, n: u64) -> Result<(Bytes, u64), SourceError> {
        let whole = |len: u64, total: u64| len == n.min(total) || len == total;
        let (body, total) = self
            .get_retrying(&format!("bytes=-{n}"), &Recycler::new(), whole)
            .await?;
        // A server that ignores the range sends the whole object: keep its tail.
        let keep = (body.len() as u64).min(n) as usize;
        Ok((body.slice(body.len() - keep..), total))
    }

    /// Bytes `start..=end`, exactly, asked again alone when the answer fails or is short, read
    /// into a buffer of `recycler`.
    pub async fn range(
        &self,
        start: u64,
        end: u64,
        recycler: &Arc<Recycler>,
    ) -> Result<Bytes, SourceError> {
        let want = end.saturating_sub(start) + 1;
        let exact = |len: u64, _total: u64| len == want;
        let range = format!("bytes={start}-{end}");
        let (body, _) = self.get_retrying(&range, recycler, exact).await?;
        Ok(body)
    }

    /// [`Object::get`] of `range`, asked again (up to [`ATTEMPTS`] in all) when it fails or
    /// when `whole(length, object's length)` says the body is not all that was asked: the SDK
    /// retries a request that fails before its answer, not a body that breaks off midway.
    async fn get_retrying(
        &self,
        range: &str,
        recycler: &Arc<Recycler>,
        whole: impl Fn(u64, u64) -> bool,
    ) -> Result<(Bytes, u64), SourceError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let detail = match self.get_once(range, recycler).await {
                Ok((body, total)) if whole(body.len() as u64, total) => return Ok((body, total)),
                Ok((body, total)) => format!(
                    "{} bytes came back for range {range} (of an object of {total} bytes)",
                    body.len()
                ),
                Err((SourceError::S3 { detail, .. }, true)) => detail,
                Err((other, _)) => return Err(other),
            };
            if attempt >= ATTEMPTS {
                return Err(self.error(format!("{detail} ({attempt} attempts)")));
            }
            tracing::info!(object = %self.name(), %range, %detail, "S3 range failed, asking again");
            tokio::time::sleep(std::time::Duration::from_millis(200 << attempt)).await;
        }
    }

    /// The ranges `spans` (`(start, end)`, ends included), `in_flight` downloading at once as
    /// tasks of the current runtime, handed back in the order given to a blocking thread. A
    /// range is started when one before it has arrived, not when it is taken: the link keeps
    /// working while the reader is busy, with up to [`read_ahead`] arrived ranges waiting for
    /// it (so at most `in_flight` + `read_ahead` + 1 ranges are held). Past `deadline` the next
    /// range is an error.
    pub fn ranges(
        self: Arc<Self>,
        spans: Vec<(u64, u64)>,
        in_flight: usize,
        deadline: Option<std::time::Instant>,
    ) -> Ranges {
        let runtime = tokio::runtime::Handle::current();
        let (arrived, receiver) = tokio::sync::mpsc::channel(read_ahead(in_flight));
        let object = self.clone();
        let driver = runtime.spawn(async move {
            let mut downloads = futures::stream::iter(spans)
                .map(|(start, end)| {
                    let object = object.clone();
                    // A fresh buffer per range, not a recycled one: a recycled buffer is wholly
                    // resident while it downloads, which put a 300 MiB pull's peak RSS 9 MiB
                    // above a small one's, half the time (the pull test's bound is 8).
                    Aborting(tokio::spawn(async move {
                        object.range(start, end, &Recycler::new()).await
                    }))
                })
                .buffered(in_flight.max(1));
            while let Some(joined) = downloads.next().await {
                let item = match joined {
                    Ok(Ok(bytes)) => Ok(bytes),
                    Ok(Err(err)) => Err(err.to_string()),
                    Err(err) => Err(format!("{}: a range task failed: {err}", object.name())),
                };
                let failed = item.is_err();
                if arrived.send(item).await.is_err() || failed {
                    return;
                }
            }
        });
        Ranges {
            name: self.name(),
            receiver,
            driver,
            runtime,
            deadline,
        }
    }

    /// Download the whole object to `dest`: its first part, then, when it is at least
    /// [`plan::THRESHOLD`] bytes and `in_flight` allows, the other parts side by side, each
    /// written at its offset; else the rest as one range.
    pub async fn download(&self, dest: &Path, in_flight: usize) -> Result<(), SourceError> {
        let io = |op, source| SourceError::Io {
            op,
            path: dest.to_owned(),
            source,
        };
        let recycler = Recycler::new();
        let (first, total) = self
            .get(&format!("bytes=0-{}", plan::PART - 1), &recycler)
            .await?;
        let file = std::fs::File::create(dest).map_err(|e| io("create", e))?;
        let file = Arc::new(file);
        // A server that ignores the range sends the whole object: it is all there then.
        let have = first.len() as u64;
        write_at(&file, first, 0)
            .await
            .map_err(|e| io("write", e))?;
        if have >= total {
            return Ok(());
        }
        let spans: Vec<(u64, u64)> = if in_flight > 1 && total >= plan::THRESHOLD {
            (have..total)
                .step_by(plan::PART as usize)
                .map(|start| (start, (start + plan::PART).min(total) - 1))
                .collect()
        } else {
            vec![(have, total - 1)]
        };
        let mut parts = futures::stream::iter(spans)
            .map(|(start, end)| {
                let recycler = &recycler;
                async move { self.range(start, end, recycler).await.map(|b| (start, b)) }
            })
            .buffer_unordered(in_flight.max(1));
        while let Some(part) = parts.next().await {
            let (offset, bytes) = part?;
            write_at(&file, bytes, offset)
                .await
                .map_err(|e| io("write", e))?;
        }
        Ok(())
    }
}

/// Write `bytes` at `offset` of `file` on a blocking thread.
async fn write_at(file: &Arc<std::fs::File>, bytes: Bytes, offset: u64) -> std::io::Result<()> {
    use std::os::unix::fs::FileExt;
    let file = file.clone();
    tokio::task::spawn_blocking(move || file.write_all_at(&bytes, offset))
        .await
        .map_err(std::io::Error::other)?
}

/// Range requests in flight for `options` (`SCAR_PULL_RANGES` or the memory default), the
/// same setting as registry blobs.
pub fn in_flight(options: &PullOptions) -> usize {
    plan::Plan::new(options.ranges).in_flight
}

/// What went wrong with a GetObject, in one line with the way out.
fn describe(
    e: &aws_sdk_s3::error::SdkError<aws_sdk_s3::operation::get_object::GetObjectError>,
) -> String {
    crate::aws::describe(
        e,
        "S3",
        &[
            (
                "NoSuchKey",
                "the object does not exist: check the bucket and key in the image name and that the image was uploaded",
            ),
            (
                "NoSuchBucket",
                "the bucket does not exist: check the bucket in the image name",
            ),
            (
                "AccessDenied",
                "the function's role (or the AWS credentials) needs s3:GetObject on it",
            ),
            (
                "InvalidRange",
                "the object is empty or shorter than asked: upload the whole image again",
            ),
        ],
    )
}

/// Arrived ranges that may wait for the reader besides the `in_flight` downloading: one. Its
/// reader (the framed pull) keeps a window of fetched frames of its own, so a longer queue here
/// would only hold more buffers (each a whole range, resident since buffers are recycled) while
/// the cores, not the link, are what the pull waits for.
pub fn read_ahead(_in_flight: usize) -> usize {
    1
}

/// A task aborted when its handle is dropped (a pull that stops stops its downloads).
struct Aborting<T>(JoinHandle<T>);

impl<T> std::future::Future for Aborting<T> {
    type Output = Result<T, tokio::task::JoinError>;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        std::pin::Pin::new(&mut self.0).poll(cx)
    }
}

impl<T> Drop for Aborting<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// See [`Object::ranges`]; its downloads stop when it is dropped.
pub struct Ranges {
    name: String,
    receiver: tokio::sync::mpsc::Receiver<Result<Bytes, String>>,
    driver: JoinHandle<()>,
    runtime: tokio::runtime::Handle,
    deadline: Option<std::time::Instant>,
}

impl Iterator for Ranges {
    type Item = Result<Bytes, String>;

    /// The next range, waiting for it: call from a blocking thread, not from the runtime.
    /// `None` once every range was handed back (or the driver stopped after an error).
    fn next(&mut self) -> Option<Self::Item> {
        let deadline = self.deadline;
        let receiver = &mut self.receiver;
        let next = self.runtime.block_on(async move {
            match deadline {
                Some(at) => tokio::time::timeout_at(at.into(), receiver.recv())
                    .await
                    .ok(),
                None => Some(receiver.recv().await),
            }
        });
        match next {
            Some(item) => item,
            None => Some(Err(format!(
                "{}: the pull's deadline passed while its frames were downloading",
                self.name
            ))),
        }
    }
}

impl Drop for Ranges {
    fn drop(&mut self) {
        // The driver's downloads are `Aborting`: they go with it.
        self.driver.abort();
    }
}
