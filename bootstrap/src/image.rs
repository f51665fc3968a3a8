//! The image and the engine, shared by all invocations of this sandbox: prefetched during
//! init when `SCAR_PREFETCH` is on, else prepared by the first invocation.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use scar_rootfs::engine::preload::StaticPolicy;
use scar_rootfs::engine::{Engine, EngineKind};
use scar_rootfs::image::PreparedImage;
use scar_rootfs::options::{PullOptions, PullPolicy};
use scar_rootfs::pull::{PartialPull, PullError, PullEvent};
use tokio::sync::Mutex;
use tokio::task::JoinHandle;

/// When a pull of an invocation stops, in its error message.
const DEADLINE: &str = "before the invocation's deadline (less SCAR_TIMEOUT_MARGIN)";

/// A pull that ended in an error, as text (the pull error is not `Clone`).
pub type PullFailure = String;

enum State {
    /// Nothing started yet (prefetch off, or an earlier attempt failed).
    Empty,
    /// The init-phase pull, still running, and how far it got.
    Prefetching(JoinHandle<Result<PreparedImage, PullFailure>>, Arc<Tracker>),
    /// The init-phase pull failed; reported once by the next invocation, then retried.
    Failed(PullFailure),
    /// Ready.
    Ready(PreparedImage),
}

/// The image of `SCAR_IMAGE` for this sandbox.
pub struct ImageSlot {
    reference: String,
    options: PullOptions,
    state: Mutex<State>,
}

impl ImageSlot {
    /// A slot for `reference`; nothing starts until [`ImageSlot::prefetch`] or [`ImageSlot::get`].
    pub fn new(reference: String, options: PullOptions) -> Self {
        Self {
            reference,
            options,
            state: Mutex::new(State::Empty),
        }
    }

    /// Start the pull in the background. It has no deadline of its own: init waits for it at
    /// most [`ImageSlot::wait_prefetch`]'s limit, and each invocation at most until its own
    /// deadline (see [`ImageSlot::get`]).
    pub async fn prefetch(&self) {
        let reference = self.reference.clone();
        let options = self.options.clone();
        let tracker = Arc::new(Tracker::default());
        let seen = tracker.clone();
        let handle = tokio::spawn(async move { pull(&reference, &options, Some(seen)).await });
        *self.state.lock().await = State::Prefetching(handle, tracker);
    }

    /// Wait at most `limit` for the prefetch; it goes on in the background afterwards.
    pub async fn wait_prefetch(&self, limit: Duration) {
        let mut state = self.state.lock().await;
        let State::Prefetching(handle, _) = &mut *state else {
            return;
        };
        match tokio::time::timeout(limit, handle).await {
            Ok(joined) => *state = settle(joined),
            Err(_) => tracing::info!(
                limit_s = limit.as_secs(),
                "the image is still being pulled; init goes on and the first invocation waits for it"
            ),
        }
    }

    /// The prepared image: the prefetched one, the one prepared earlier, or a fresh pull, all
    /// bounded by `until` (the invocation's deadline minus its margin). A pull of this
    /// invocation stops there and reports how far it got; the next invocation starts it again.
    /// The prefetch is waited for until then too: when it made progress meanwhile it goes on
    /// (the next invocation resumes waiting for it), else it is stopped and the next invocation
    /// pulls afresh (a registry that stopped answering does not hold every invocation). With
    /// `SCAR_PULL_POLICY=always` every invocation after the first resolves again.
    pub async fn get(&self, until: Instant) -> Result<PreparedImage, PullFailure> {
        let mut state = self.state.lock().await;
        let current = std::mem::replace(&mut *state, State::Empty);
        let mut options = self.options.clone();
        options.deadline = Some(until);
        let result = match current {
            State::Prefetching(mut handle, tracker) => {
                let before = tracker.progress();
                match tokio::time::timeout_at(until.into(), &mut handle).await {
                    Ok(joined) => match settle(joined) {
                        State::Ready(image) => Ok(image),
                        State::Failed(failure) => Err(failure),
                        _ => Err("the image pull ended without a result".to_owned()),
                    },
                    Err(_) => {
                        // Waiting for another sandbox's pull that moves is progress too.
                        let now = tracker.progress();
                        let progressed = now.0 > before.0 || now.1 > before.1;
                        let partial = tracker.partial(self.options.keep_blobs);
                        let next = if progressed {
                            *state = State::Prefetching(handle, tracker);
                            "the pull started at init goes on and the next invocation waits for it again".to_owned()
                        } else {
                            // Dropping the pull's future stops its downloads and extraction.
                            handle.abort();
                            format!(
                                "the pull started at init made no progress during this invocation and was stopped; the next invocation {}",
                                if partial.next().starts_with("resumes") {
                                    "resumes it"
                                } else {
                                    "starts it again"
                                }
                            )
                        };
                        return Err(format!(
                            "{}: {} {DEADLINE}; nothing was published and {next}",
                            self.reference,
                            partial.pulled(),
                        ));
                    }
                }
            }
            State::Failed(failure) => Err(failure),
            State::Ready(image) if self.options.policy == PullPolicy::IfNotPresent => Ok(image),
            State::Ready(_) | State::Empty => pull(&self.reference, &options, None).await,
        };
        if let Ok(image) = &result {
            *state = State::Ready(image.clone());
        }
        result
    }
}

impl ImageSlot {
    /// Forget `image` when it is the one this slot holds ready: its root filesystem was evicted
    /// from the cache (by another process sharing it), so the next [`ImageSlot::get`] pulls
    /// again instead of handing out a directory that is gone.
    pub async fn forget(&self, image: &PreparedImage) {
        let mut state = self.state.lock().await;
        if matches!(&*state, State::Ready(ready) if ready.root == image.root) {
            *state = State::Empty;
        }
    }
}

/// How far a pull got, from its progress events.
#[derive(Default)]
struct Tracker {
    layers: AtomicUsize,
    done: AtomicUsize,
    /// Compressed bytes of all layers; `u64::MAX` when unknown.
    total: AtomicU64,
    downloaded: std::sync::OnceLock<Arc<AtomicU64>>,
    /// Moves seen of another sandbox's pull of the image, which this one waits for.
    others: AtomicU64,
}

impl Tracker {
    fn observe(&self, event: PullEvent) {
        match event {
            PullEvent::Resolved {
                layers,
                total_bytes,
                downloaded,
            } => {
                self.layers.store(layers, Ordering::Relaxed);
                self.total
                    .store(total_bytes.unwrap_or(u64::MAX), Ordering::Relaxed);
                let _ = self.downloaded.set(downloaded);
            }
            PullEvent::LayerDone(n) => self.done.store(n, Ordering::Relaxed),
            PullEvent::Downloaded(_) => {}
            PullEvent::OtherPullMoved => {
                self.others.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// What moves: this pull's bytes, and the other sandbox's pull it waits for.
    fn progress(&self) -> (u64, u64) {
        (self.downloaded(), self.others.load(Ordering::Relaxed))
    }

    fn downloaded(&self) -> u64 {
        self.downloaded
            .get()
            .map_or(0, |d| d.load(Ordering::Relaxed))
    }

    fn partial(&self, kept: bool) -> PartialPull {
        let total = self.total.load(Ordering::Relaxed);
        PartialPull {
            layers_done: self.done.load(Ordering::Relaxed),
            layers: self.layers.load(Ordering::Relaxed),
            downloaded: self.downloaded(),
            total: (total != u64::MAX).then_some(total),
            kept,
        }
    }
}

fn settle(joined: Result<Result<PreparedImage, PullFailure>, tokio::task::JoinError>) -> State {
    match joined {
        Ok(Ok(image)) => State::Ready(image),
        Ok(Err(failure)) => State::Failed(failure),
        Err(err) => State::Failed(format!("the image pull stopped: {err}")),
    }
}

async fn pull(
    reference: &str,
    options: &PullOptions,
    tracker: Option<Arc<Tracker>>,
) -> Result<PreparedImage, PullFailure> {
    let started = std::time::Instant::now();
    let progress =
        tracker.map(|t| -> scar_rootfs::pull::Progress { Arc::new(move |e| t.observe(e)) });
    let result = scar_rootfs::pull::prepare_with_progress(reference, options, progress)
        .await
        .map(|(image, _)| image);
    let duration_ms = started.elapsed().as_secs_f64() * 1e3;
    match &result {
        Ok(image) => {
            tracing::info!(phase = "pull", duration_ms, image = reference, chain_id = %image.chain_id, "image ready");
            notice_static_shell(image);
        }
        Err(err) => {
            tracing::error!(phase = "pull", duration_ms, image = reference, %err, "image pull failed")
        }
    }
    result.map_err(|err| match err {
        PullError::Deadline(partial) => format!(
            "{reference}: {} {DEADLINE}; nothing was published and the next invocation {} (or raise the function's timeout)",
            partial.pulled(),
            partial.next().replace("resumes", "resumes it").replace("starts again", "starts it again"),
        ),
        err => format!("{reference}: {err}"),
    })
}

/// Say once per sandbox when the image's own `/bin/sh` is statically linked: under the preload
/// engine (Lambda) every script then runs with the host's view, not the image's.
fn notice_static_shell(image: &PreparedImage) {
    use scar_rootfs::engine::preload::{elf, resolve};
    static SAID: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    let Ok(sh) = resolve::resolve(&image.root, std::path::Path::new("/bin/sh")) else {
        return;
    };
    if matches!(elf::inspect(&sh), Ok(elf::Program::Static))
        && !SAID.swap(true, std::sync::atomic::Ordering::Relaxed)
    {
        tracing::warn!(
            image = %image.reference,
            "the image's /bin/sh is statically linked: under the preload engine (Lambda) scripts run unconfined, with the host's files instead of the image's (SCAR_PRELOAD_STATIC=refuse refuses them)"
        );
    }
}

/// The engine of this sandbox, chosen once (the `auto` probe forks, so it runs off the async
/// threads).
pub struct EngineSlot {
    kind: EngineKind,
    static_policy: StaticPolicy,
    engine: tokio::sync::OnceCell<Arc<dyn Engine>>,
}

impl EngineSlot {
    /// A slot for the configured kind and `SCAR_PRELOAD_STATIC`.
    pub fn new(kind: EngineKind, static_policy: StaticPolicy) -> Self {
        Self {
            kind,
            static_policy,
            engine: tokio::sync::OnceCell::new(),
        }
    }

    /// The engine, selected on first call.
    pub async fn get(&self) -> Result<Arc<dyn Engine>, String> {
        let kind = self.kind;
        let static_policy = self.static_policy;
        self.engine
            .get_or_try_init(|| async move {
                tokio::task::spawn_blocking(move || select(kind, static_policy))
                    .await
                    .map_err(|err| format!("selecting the {kind} engine stopped: {err}"))?
            })
            .await
            .cloned()
    }
}

fn select(kind: EngineKind, static_policy: StaticPolicy) -> Result<Arc<dyn Engine>, String> {
    // The helper is this binary (`/proc/self/exe`): `main` calls
    // `enter_container_if_requested` first. `select` logs its choice and the reason.
    let options = scar_rootfs::engine::EngineOptions {
        static_policy,
        ..Default::default()
    };
    scar_rootfs::engine::select(kind, &options)
        .map(Arc::from)
        .map_err(|err| err.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waiting_on_another_sandboxs_moving_pull_counts_as_progress() {
        let tracker = Tracker::default();
        let before = tracker.progress();
        assert_eq!(before, (0, 0));
        // Waiting: this pull has no byte counter yet, the other one's heartbeat moves.
        tracker.observe(PullEvent::OtherPullMoved);
        let after = tracker.progress();
        assert!(after.1 > before.1 && after.0 == before.0, "{after:?}");
        // Its own turn: its bytes move.
        let downloaded = Arc::new(AtomicU64::new(0));
        tracker.observe(PullEvent::Resolved {
            layers: 1,
            total_bytes: Some(10),
            downloaded: downloaded.clone(),
        });
        downloaded.store(4, Ordering::Relaxed);
        assert_eq!(tracker.progress(), (4, 1));
    }
}
