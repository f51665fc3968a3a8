//! The image and the engine, shared by all invocations of this sandbox: prefetched during
//! init when `SCAR_PREFETCH` is on, else prepared by the first invocation.

use std::sync::Arc;
use std::time::Duration;

use scar_rootfs::engine::preload::StaticPolicy;
use scar_rootfs::engine::{Engine, EngineKind};
use scar_rootfs::image::PreparedImage;
use scar_rootfs::pull::{PullOptions, PullPolicy};
use tokio::sync::Mutex;
use tokio::task::JoinHandle;

/// A pull that ended in an error, as text (the pull error is not `Clone`).
pub type PullFailure = String;

enum State {
    /// Nothing started yet (prefetch off, or an earlier attempt failed).
    Empty,
    /// The init-phase pull, still running.
    Prefetching(JoinHandle<Result<PreparedImage, PullFailure>>),
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

    /// Start the pull in the background.
    pub async fn prefetch(&self) {
        let reference = self.reference.clone();
        let options = self.options.clone();
        let handle = tokio::spawn(async move { pull(&reference, &options).await });
        *self.state.lock().await = State::Prefetching(handle);
    }

    /// Wait at most `limit` for the prefetch; it goes on in the background afterwards.
    pub async fn wait_prefetch(&self, limit: Duration) {
        let mut state = self.state.lock().await;
        let State::Prefetching(handle) = &mut *state else {
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

    /// The prepared image: the prefetched one, the one prepared earlier, or a fresh pull.
    /// With `SCAR_PULL_POLICY=always` every invocation after the first resolves again.
    pub async fn get(&self) -> Result<PreparedImage, PullFailure> {
        let mut state = self.state.lock().await;
        let current = std::mem::replace(&mut *state, State::Empty);
        let result = match current {
            State::Prefetching(handle) => match settle(handle.await) {
                State::Ready(image) => {
                    *state = State::Ready(image.clone());
                    return Ok(image);
                }
                State::Failed(failure) => Err(failure),
                _ => Err("the image pull ended without a result".to_owned()),
            },
            State::Failed(failure) => Err(failure),
            State::Ready(image) if self.options.policy == PullPolicy::IfNotPresent => Ok(image),
            State::Ready(_) | State::Empty => pull(&self.reference, &self.options).await,
        };
        if let Ok(image) = &result {
            *state = State::Ready(image.clone());
        }
        result
    }
}

fn settle(joined: Result<Result<PreparedImage, PullFailure>, tokio::task::JoinError>) -> State {
    match joined {
        Ok(Ok(image)) => State::Ready(image),
        Ok(Err(failure)) => State::Failed(failure),
        Err(err) => State::Failed(format!("the image pull stopped: {err}")),
    }
}

async fn pull(reference: &str, options: &PullOptions) -> Result<PreparedImage, PullFailure> {
    let started = std::time::Instant::now();
    let result = scar_rootfs::pull::prepare(reference, options).await;
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
    result.map_err(|err| format!("{reference}: {err}"))
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
