//! Turn an image reference into a [`PreparedImage`]: warm cache hit, or resolve, download,
//! verify, extract and publish.
//!
//! This is the single entry point the bootstrap and `scar` use.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use crate::blob::{Counted, Verified};
use crate::cache::{Cache, CacheError, ImageRecord, RefRecord, Turn};
use crate::extract::pipeline::{self, ChannelReader};
use crate::extract::{ExtractError, Extractor};
use crate::image::{ImageConfig, PreparedImage};
use crate::options::{PullOptions, PullPolicy};
use crate::reference::{ImageRef, ReferenceError};
use crate::registry::download;
use crate::source::{self, BlobRef, Blobs, Layer, ResolvedImage, SourceError};

mod deadline;
pub use deadline::PartialPull;

/// Why an image could not be made available.
#[derive(Debug, thiserror::Error)]
pub enum PullError {
    /// `SCAR_IMAGE` does not parse.
    #[error(transparent)]
    Reference(#[from] ReferenceError),
    /// The cache refused (no room, I/O).
    #[error(transparent)]
    Cache(#[from] CacheError),
    /// The image's metadata could not be read.
    #[error(transparent)]
    Source(Box<SourceError>),
    /// A layer could not be downloaded, verified or applied; nothing of the image was kept.
    #[error("layer {index}/{total} ({blob}) of {image}: {source}")]
    Layer {
        /// 1-based layer number.
        index: usize,
        /// Layer count.
        total: usize,
        /// Its digest or archive path.
        blob: String,
        /// The image.
        image: String,
        /// What failed.
        #[source]
        source: ExtractError,
    },
    /// A framed image could not be fetched, verified or applied; nothing of it was kept.
    #[error(transparent)]
    Framed(Box<crate::framed::read::ReadError>),
    /// A worker thread died.
    #[error("the extraction worker stopped unexpectedly: {0}")]
    Worker(String),
    /// The pull did not finish before [`PullOptions::deadline`]; nothing was published.
    #[error("{0}")]
    Deadline(PartialPull),
}

impl From<PartialPull> for PullError {
    fn from(partial: PartialPull) -> Self {
        Self::Deadline(partial)
    }
}

impl From<SourceError> for PullError {
    fn from(err: SourceError) -> Self {
        Self::Source(Box::new(err))
    }
}

/// What a pull did, for the one summary line of `scar pull`.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct PullReport {
    /// Layers applied (0 on a cache hit).
    pub layers: usize,
    /// Compressed bytes read from the registry or archive.
    pub bytes_downloaded: u64,
    /// Bytes of file content written.
    pub bytes_written: u64,
    /// Whether the image came from the cache as is.
    pub cached: bool,
    /// Wall time.
    pub seconds: f64,
}

/// Progress of a pull, for a progress bar.
#[derive(Clone, Debug)]
pub enum PullEvent {
    /// The image was resolved: this many layers, this many compressed bytes (when known).
    Resolved {
        /// Layer count.
        layers: usize,
        /// Sum of the layers' compressed sizes.
        total_bytes: Option<u64>,
        /// Compressed bytes read so far, updated as they stream (poll it for a smooth bar).
        downloaded: Arc<AtomicU64>,
    },
    /// So many compressed bytes have been read so far.
    Downloaded(u64),
    /// Layer number `index` (1-based) is applied.
    LayerDone(usize),
}

/// A progress callback.
pub type Progress = Arc<dyn Fn(PullEvent) + Send + Sync>;

/// How much larger than its compressed size a layer is assumed to be before it is
/// extracted (typical gzip ratio of binaries and libraries); extraction enforces the real need.
const EXPANSION: u64 = 2;

/// Make `image` (any `SCAR_IMAGE` form) available as a root filesystem in the cache.
pub async fn prepare(image: &str, options: &PullOptions) -> Result<PreparedImage, PullError> {
    prepare_with_progress(image, options, None)
        .await
        .map(|(prepared, _)| prepared)
}

/// The image when the cache already holds it, found with no network, no thread and no async
/// runtime: a remembered registry or S3 reference, or an OCI layout directory. `None` when
/// [`prepare`] has work to do. `scar run` asks this first, so that a warm start stays a
/// single-threaded process (see `engine::namespace::direct`).
pub fn prepare_cached(
    image: &str,
    options: &PullOptions,
) -> Result<Option<PreparedImage>, PullError> {
    let image_ref: ImageRef = image.parse()?;
    let cache = Cache::open(&options.cache_dir)?;
    Ok(
        cached_record(&image_ref, options, &cache)?.map(|(record, config)| PreparedImage {
            reference: image.to_owned(),
            root: cache.image_dir(&record.chain_id).join("root"),
            config,
            chain_id: record.chain_id.to_string(),
        }),
    )
}

/// The cache's record for `image` and the image's own config, when both can be found without
/// a pull.
fn cached_record(
    image: &ImageRef,
    options: &PullOptions,
    cache: &Cache,
) -> Result<Option<(ImageRecord, ImageConfig)>, PullError> {
    let remembered = source::remembered(image);
    if remembered && options.policy != PullPolicy::IfNotPresent {
        return Ok(None);
    }
    let _shared = cache.lock(false)?;
    let (chain_id, config) = if remembered {
        let Some(r) = cache.read_ref(&image.to_string())? else {
            return Ok(None);
        };
        // A reference remembered by an older version names no config: resolve it again.
        let Some(digest) = r.config else {
            return Ok(None);
        };
        match cache.read_config(&digest)? {
            Some(config) => (r.chain_id, config),
            None => return Ok(None),
        }
    } else {
        match source::resolve_local(image, options)? {
            Some(resolved) => (resolved.chain_id, resolved.config),
            None => return Ok(None),
        }
    };
    Ok(cache.lookup(&chain_id)?.map(|record| (record, config)))
}

/// [`prepare`], reporting progress and returning what was done.
pub async fn prepare_with_progress(
    image: &str,
    options: &PullOptions,
    progress: Option<Progress>,
) -> Result<(PreparedImage, PullReport), PullError> {
    let started = Instant::now();
    let image_ref: ImageRef = image.parse()?;
    let cache = Cache::open(&options.cache_dir)?;
    let key = image_ref.to_string();
    let remembered = source::remembered(&image_ref);
    let hit = |record: ImageRecord, config: ImageConfig| {
        let prepared = PreparedImage {
            reference: image.to_owned(),
            root: cache.image_dir(&record.chain_id).join("root"),
            config,
            chain_id: record.chain_id.to_string(),
        };
        let report = PullReport {
            cached: true,
            seconds: started.elapsed().as_secs_f64(),
            ..PullReport::default()
        };
        (prepared, report)
    };
    if let Some((record, config)) = cached_record(&image_ref, options, &cache)? {
        return Ok(hit(record, config));
    }
    let (resolved, blobs) = deadline::before(
        options.deadline,
        source::resolve(&image_ref, options, &cache),
    )
    .await??;
    // The cache's exclusive lock, for the short steps that need it only (never across the
    // download: other sandboxes sharing the cache keep starting meanwhile).
    let exclusive = || async {
        let lock_cache = cache.clone();
        deadline::before(
            options.deadline,
            tokio::task::spawn_blocking(move || lock_cache.lock(true)),
        )
        .await?
        .map_err(|e| PullError::Worker(e.to_string()))?
        .map_err(PullError::Cache)
    };
    // The config first, so that a reference never names a config that is not there.
    let remember = |chain_id| -> Result<(), CacheError> {
        if remembered {
            cache.write_config(&resolved.config_digest, &resolved.config)?;
            cache.write_ref(&RefRecord {
                reference: key.clone(),
                manifest: resolved.manifest,
                chain_id,
                config: Some(resolved.config_digest),
            })?;
        }
        Ok(())
    };
    // One pull per image across every process sharing the cache (see `cache/pulling.rs`).
    let turn = cache
        .wait_turn(
            &resolved.chain_id,
            &key,
            options.deadline,
            crate::cache::stale_limit(),
        )
        .await?
        .ok_or_else(PartialPull::default)?;
    let pull_lock = match turn {
        Turn::Ready(record) => {
            let _lock = exclusive().await?;
            remember(record.chain_id)?;
            return Ok(hit(record, resolved.config.clone()));
        }
        Turn::Build(lock) => lock.map(Arc::new),
    };
    let mut need = estimate(&resolved.layers);
    let keep = options.keep_blobs.then(|| cache.clone());
    if keep.is_some() {
        // Blobs an earlier pull kept are already in the cache (and its usage).
        need += resolved
            .layers
            .iter()
            .filter(|l| !matches!(l.blob, BlobRef::Digest(d) if cache.blob_path(&d).exists()))
            .filter_map(|l| l.size)
            .sum::<u64>();
    }
    let (build, build_lock) = cache.new_build()?;
    // Room counted with what the other builds running now reserved (see `cache/reserve.rs`).
    let room = async {
        let _lock = exclusive().await?;
        cache
            .make_room_for_build(need, options.max_cache_bytes, &build)
            .map_err(PullError::Cache)
    }
    .await;
    let room = match room {
        Ok(room) => room,
        Err(err) => {
            drop(build_lock);
            let _ = crate::cache::remove_tree(&build);
            return Err(err);
        }
    };
    // Shared with the extraction thread, which may outlive this future (see `deadline::Stop`):
    // the sweep leaves the build alone while the thread writes.
    let build_lock = Arc::new(build_lock);
    let stop = deadline::Stop::new(options.deadline).holding(build_lock.clone());
    // The heartbeat tells waiting sandboxes (and the sweep) that this pull is alive and
    // moving; it follows the byte counter the pull reports once resolved.
    let counter = crate::cache::Counter::default();
    let seen = counter.clone();
    let inner = progress;
    let progress: Progress = Arc::new(move |event| {
        if let PullEvent::Resolved { downloaded, .. } = &event {
            let _ = seen.set(downloaded.clone());
        }
        if let Some(p) = &inner {
            p(event);
        }
    });
    let beating = pull_lock.iter().cloned().chain([build_lock]).collect();
    let heartbeat = crate::cache::Heartbeat::start(beating, counter);
    let outcome = build_root(&resolved, blobs, &build, room, Some(progress), keep, stop).await;
    drop(heartbeat);
    let (bytes_downloaded, bytes_written, size) = match outcome {
        Ok(v) => v,
        Err(err) => {
            // Nothing half-built may survive: the build directory is private and goes whole.
            if let Err(e) = crate::cache::remove_tree(&build) {
                tracing::warn!(dir = %build.display(), err = %e, "cannot remove failed build");
            }
            return Err(err);
        }
    };
    // `build_root` succeeded, so every layer's uncompressed stream hashed to its DiffID.
    let record = ImageRecord {
        reference: key.clone(),
        chain_id: resolved.chain_id,
        verified_diff_ids: Some(resolved.layers.iter().map(|l| l.diff_id).collect()),
        size,
        layers: resolved.layers.len(),
    };
    let published = async {
        let _lock = exclusive().await?;
        // A pull that went on without waiting may have published the image first: then
        // `publish` keeps that one and drops this build.
        cache.publish(&build, &record)?;
        remember(record.chain_id).map_err(PullError::Cache)
    }
    .await;
    drop(pull_lock);
    if let Err(err) = published {
        // Unless it was published: nothing of a build stays behind a failed pull.
        if build.exists() {
            let _ = crate::cache::remove_tree(&build);
        }
        return Err(err);
    }
    let layers = record.layers;
    let (prepared, _) = hit(record, resolved.config.clone());
    tracing::info!(image = %key, root = %prepared.root.display(), layers, bytes_downloaded, bytes_written, "image ready");
    Ok((
        prepared,
        PullReport {
            layers,
            bytes_downloaded,
            bytes_written,
            cached: false,
            seconds: started.elapsed().as_secs_f64(),
        },
    ))
}

/// Bytes an image is expected to occupy once extracted.
fn estimate(layers: &[Layer]) -> u64 {
    layers
        .iter()
        .map(|l| {
            let size = l.size.unwrap_or(0);
            let plain = l.media_type.ends_with(".tar") || matches!(l.blob, BlobRef::ArchivePath(_));
            if plain {
                size
            } else {
                size.saturating_mul(EXPANSION)
            }
        })
        .sum()
}

/// Download and apply every layer into `build/root`, in order; returns (compressed bytes
/// read, content bytes written, bytes charged).
async fn build_root(
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
    // layer's request and first bytes overlap the current layer's extraction.
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
    use crate::framed::read;
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
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        let reader = read::FrameReader::new(&image.name, &image.index, compressed, threads);
        let failure = reader.failure();
        let input = stop.reader(Box::new(reader));
        let result = read::apply(&image.name, &root, budget, input, &failure).map_err(|err| {
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
