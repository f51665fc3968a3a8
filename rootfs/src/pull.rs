//! Turn an image reference into a [`PreparedImage`]: warm cache hit, or resolve, download,
//! verify, extract and publish.
//!
//! This is the single entry point the bootstrap and `scar` use.

use std::sync::Arc;
use std::time::Instant;

use crate::cache::{Cache, CacheError, ImageRecord, RefRecord, Turn};
use crate::image::{ImageConfig, PreparedImage};
use crate::options::{PullOptions, PullPolicy};
use crate::reference::ImageRef;
use crate::source::{self, BlobRef, Layer};

mod build;
mod deadline;
mod types;

pub use deadline::PartialPull;
pub use types::{Progress, PullError, PullEvent, PullReport};

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
    let moved = || {
        if let Some(p) = &progress {
            p(PullEvent::OtherPullMoved);
        }
    };
    let turn = cache
        .wait_turn(
            &resolved.chain_id,
            &key,
            options.deadline,
            crate::cache::stale_limit(),
            &moved,
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
    // The build directory is made under the cache's lock, which the sweep takes too: the sweep
    // never sees it before its `.building` lock exists. Room counted with what the other builds
    // running now reserved (see `cache/reserve.rs`).
    let (build, build_lock, room) = {
        let _lock = exclusive().await?;
        let (build, build_lock) = cache.new_build()?;
        match cache.make_room_for_build(need, options.max_cache_bytes, &build) {
            Ok(room) => (build, build_lock, room),
            Err(err) => {
                drop(build_lock);
                let _ = crate::cache::remove_tree(&build);
                return Err(PullError::Cache(err));
            }
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
    // The build stays locked until it is published or removed (the sweep takes an unlocked build
    // for a dead one's), not only while the heartbeat runs.
    let beating = pull_lock
        .iter()
        .cloned()
        .chain([build_lock.clone()])
        .collect();
    let heartbeat = crate::cache::Heartbeat::start(beating, counter);
    let outcome =
        build::build_root(&resolved, blobs, &build, room, Some(progress), keep, stop).await;
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
    drop(build_lock);
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
