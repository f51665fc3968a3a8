//! Building a root filesystem in a private directory: the layers of a registry or an archive
//! streamed, verified and applied in order, or a framed image's frames fetched as ranges and
//! decoded on every core.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use super::deadline;
use super::types::{Progress, PullError, PullEvent};
use crate::blob::{Counted, Verified};
use crate::cache::{Cache, CacheError};
use crate::extract::pipeline::{self, ChannelReader};
use crate::extract::{ExtractError, Extractor};
use crate::registry::download;
use crate::source::{self, BlobRef, Blobs, Layer, ResolvedImage};

/// Download and apply every layer into `build/root`, in order; returns (compressed bytes
/// read, content bytes written, bytes charged).
pub(super) async fn build_root(
    resolved: &ResolvedImage,
    blobs: Blobs,
    build: &std::path::Path,
    budget: u64,
    progress: Option<Progress>,
    keep: Option<Cache>,
    stop: deadline::Stop,
) -> Result<(u64, u64, u64), PullError> {
    let root = build.join("root");
    std::fs::create_dir(&root).map_err(|source| CacheError::Io {
        op: "mkdir",
        path: root.clone(),
        source,
    })?;
    if let Blobs::Framed(image) = &blobs {
        return build_framed(resolved, image.clone(), &root, budget, progress, stop).await;
    }
    // Registry layers stream through bounded channels; two downloads run at once so the next
    // layer's request and first bytes overlap the current layer's extraction. Blobs fetched in
    // ranges share the client's window of parts, handed out in this order (`registry::window`),
    // so two of them at once hold no more than one.
    let mut receivers = Vec::new();
    let mut driver = None;
    if let Blobs::Registry(client) = &blobs {
        let mut jobs = Vec::new();
        for layer in &resolved.layers {
            let (tx, rx) = tokio::sync::mpsc::channel(download::CHANNEL_CHUNKS);
            if let BlobRef::Digest(d) = layer.blob {
                // A blob kept by an earlier pull is read from disk instead.
                if keep.as_ref().is_some_and(|c| c.blob_path(&d).exists()) {
                    receivers.push(None);
                    continue;
                }
                jobs.push(download::stream_blob(client.clone(), d, layer.size, tx));
            }
            receivers.push(Some(rx));
        }
        use futures::StreamExt;
        driver = Some(tokio::spawn(
            futures::stream::iter(jobs).buffered(2).collect::<Vec<()>>(),
        ));
    }
    let downloaded = Arc::new(AtomicU64::new(0));
    if let Some(p) = &progress {
        p(PullEvent::Resolved {
            layers: resolved.layers.len(),
            total_bytes: resolved.layers.iter().map(|l| l.size).sum(),
            downloaded: downloaded.clone(),
        });
    }
    let layers = resolved.layers.clone();
    let image = resolved.reference.clone();
    let counter = downloaded.clone();
    // Dropping this future (or the deadline) stops the downloads and the thread below.
    let guard = stop.guard(driver.as_ref().map(|d| d.abort_handle()));
    let until = stop.deadline();
    let work = tokio::task::spawn_blocking(move || {
        let sources = Sources {
            blobs: &blobs,
            receivers,
            keep,
            stop,
        };
        let result = apply_all(&root, &layers, sources, budget, &counter, progress, &image);
        // Removed here, not only by the caller: when the pull's future was dropped, this
        // thread is the last one to know the build failed.
        if result.is_err()
            && let Some(build) = root.parent()
        {
            let _ = crate::cache::remove_tree(build);
        }
        result
    });
    let result = deadline::finish(work, &guard, until)
        .await
        .map_err(|e| PullError::Worker(e.to_string()));
    drop(guard);
    if let Some(d) = driver {
        d.abort();
    }
    let (written, charged) = result??;
    Ok((downloaded.load(Ordering::Relaxed), written, charged))
}

/// [`build_root`] for a framed image: its frames fetched as ranges, decoded on every core,
/// checked and extracted as one layer.
async fn build_framed(
    resolved: &ResolvedImage,
    image: Arc<source::FramedImage>,
    root: &std::path::Path,
    budget: u64,
    progress: Option<Progress>,
    stop: deadline::Stop,
) -> Result<(u64, u64, u64), PullError> {
    use crate::framed::{parallel, read};
    let groups = read::groups(&image.index);
    let compressed = image.fetch(groups, stop.deadline());
    let downloaded = Arc::new(AtomicU64::new(0));
    if let Some(p) = &progress {
        p(PullEvent::Resolved {
            layers: 1,
            total_bytes: Some(image.index.compressed_size()),
            downloaded: downloaded.clone(),
        });
    }
    let counter = downloaded.clone();
    let compressed = compressed.inspect(move |part| {
        if let Ok(bytes) = part {
            counter.fetch_add(bytes.len() as u64, Ordering::Relaxed);
        }
    });
    let guard = stop.guard(None);
    let until = stop.deadline();
    let (layers, counter, root) = (resolved.layers.clone(), downloaded.clone(), root.to_owned());
    let work = tokio::task::spawn_blocking(move || {
        // Each thread holds a decoded frame.
        let threads = crate::extract::threads();
        let wrap = |input| stop.reader(input);
        let (index, into) = (&image.index, (root.as_path(), budget));
        let result = parallel::apply(&image.name, index, compressed, threads, into, &wrap);
        let result = result.map_err(|err| {
            stop.explain(0, &layers, &counter, false)
                .map_or_else(|| PullError::Framed(Box::new(err)), PullError::Deadline)
        });
        if result.is_err()
            && let Some(build) = root.parent()
        {
            let _ = crate::cache::remove_tree(build);
        }
        if let (Ok(_), Some(p)) = (&result, &progress) {
            p(PullEvent::Downloaded(counter.load(Ordering::Relaxed)));
            p(PullEvent::LayerDone(1));
        }
        result
    });
    let result = deadline::finish(work, &guard, until)
        .await
        .map_err(|e| PullError::Worker(e.to_string()));
    drop(guard);
    let applied = result??;
    Ok((
        downloaded.load(Ordering::Relaxed),
        applied.bytes_written,
        applied.charged,
    ))
}

/// Where each layer's bytes come from.
struct Sources<'a> {
    blobs: &'a Blobs,
    receivers: Vec<Option<tokio::sync::mpsc::Receiver<std::io::Result<bytes::Bytes>>>>,
    /// The cache, when compressed blobs are kept.
    keep: Option<Cache>,
    /// When to stop reading (the pull's deadline).
    stop: deadline::Stop,
}

impl Sources<'_> {
    /// A reader over layer `i`, and where a copy of it is being written (to publish once
    /// verified).
    fn open(&mut self, i: usize, layer: &Layer) -> Result<Opened, PullError> {
        if let Some(r) = self.blobs.open_local(&layer.blob)? {
            return Ok(Opened::unchecked(r));
        }
        let BlobRef::Digest(digest) = layer.blob else {
            return Err(PullError::Worker(format!("layer {} has no digest", i + 1)));
        };
        let io = |op, path: &std::path::Path, source| {
            PullError::Cache(CacheError::Io {
                op,
                path: path.to_owned(),
                source,
            })
        };
        if let Some(cache) = &self.keep {
            let kept = cache.blob_path(&digest);
            if kept.exists() {
                let file = std::fs::File::open(&kept).map_err(|e| io("open", &kept, e))?;
                return Ok(Opened::unchecked(Box::new(file)));
            }
        }
        let rx = self
            .receivers
            .get_mut(i)
            .and_then(Option::take)
            .ok_or_else(|| PullError::Worker(format!("no stream for layer {}", i + 1)))?;
        let reader = ChannelReader::new(rx);
        let (input, copy): (Box<dyn std::io::Read + Send>, _) = match &self.keep {
            Some(cache) => {
                let tmp = cache.ingest_path(&digest.hex());
                let file = std::fs::File::create(&tmp).map_err(|e| io("create", &tmp, e))?;
                (Box::new(pipeline::Tee::new(reader, file)), Some(tmp))
            }
            None => (Box::new(reader), None),
        };
        // The download task checks the digest as the bytes arrive (`download::stream_blob`).
        Ok(Opened {
            input,
            copy,
            verified: true,
        })
    }
}

/// A layer's compressed bytes, opened.
struct Opened {
    input: Box<dyn std::io::Read + Send>,
    /// Where a copy is being written, to publish once verified.
    copy: Option<PathBuf>,
    /// Whether the reader itself checks the digest (it ends in an error on a mismatch).
    verified: bool,
}

impl Opened {
    /// A local blob, read as it is (no copy to keep) and checked by the caller.
    fn unchecked(input: Box<dyn std::io::Read + Send>) -> Self {
        Self {
            input,
            copy: None,
            verified: false,
        }
    }
}

fn apply_all(
    root: &std::path::Path,
    layers: &[Layer],
    mut sources: Sources<'_>,
    budget: u64,
    counter: &Arc<AtomicU64>,
    progress: Option<Progress>,
    image: &str,
) -> Result<(u64, u64), PullError> {
    let mut extractor = Extractor::new(root, budget);
    let mut written = 0;
    let total = layers.len();
    for (i, layer) in layers.iter().enumerate() {
        let blob = match &layer.blob {
            BlobRef::Digest(d) => d.to_string(),
            BlobRef::ArchivePath(p) => p.clone(),
        };
        let fail = |source: ExtractError| PullError::Layer {
            index: i + 1,
            total,
            blob: blob.clone(),
            image: image.to_owned(),
            source,
        };
        let Opened {
            input,
            copy,
            verified,
        } = sources.open(i, layer)?;
        let input = sources.stop.reader(input);
        let input: Box<dyn std::io::Read + Send> = match layer.blob {
            BlobRef::Digest(_) if verified => Box::new(Counted::new(input, counter.clone())),
            BlobRef::Digest(d) => Box::new(Verified::new(input, d, layer.size, counter.clone())),
            BlobRef::ArchivePath(_) => Box::new(Counted::new(input, counter.clone())),
        };
        let layer_started = Instant::now();
        // Every layer's uncompressed stream is hashed against the DiffID the config claims,
        // beside inflate on the decompression thread: the cache key (ChainID) is made of those
        // claims, so an image whose config copies another's DiffIDs over other layers must
        // fail here rather than be published under the other image's key.
        let (mut tar, worker) = pipeline::decompress(input, Some(layer.diff_id));
        let applied = extractor.apply_layer(&mut tar).and_then(|stats| {
            tar.drain()
                .map(|()| stats)
                .map_err(|source| ExtractError::Read { source })
        });
        drop(tar);
        let _ = worker.join();
        let stats = match applied {
            Ok(stats) => stats,
            Err(err) => {
                if let Some(tmp) = &copy {
                    let _ = std::fs::remove_file(tmp);
                }
                let kept = sources.keep.is_some();
                return Err(sources
                    .stop
                    .explain(i, layers, counter, kept)
                    .map_or_else(|| fail(err), PullError::Deadline));
            }
        };
        // The copy was verified along the way (the digest verdict came before EOF).
        if let (Some(tmp), Some(cache), BlobRef::Digest(d)) = (&copy, &sources.keep, &layer.blob) {
            cache.keep_blob(tmp, d)?;
        }
        written += stats.bytes_written;
        tracing::debug!(
            layer = i + 1,
            entries = stats.entries,
            bytes = stats.bytes_written,
            secs = layer_started.elapsed().as_secs_f64(),
            "layer applied"
        );
        if let Some(p) = &progress {
            p(PullEvent::Downloaded(counter.load(Ordering::Relaxed)));
            p(PullEvent::LayerDone(i + 1));
        }
    }
    let charged = extractor.charged();
    extractor.finish().map_err(|source| PullError::Layer {
        index: total,
        total,
        blob: "directory metadata".into(),
        image: image.to_owned(),
        source,
    })?;
    Ok((written, charged))
}
