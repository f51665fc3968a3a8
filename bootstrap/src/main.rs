//! `bootstrap`: the AWS Lambda custom runtime of SCAR.
//!
//! Init: read the configuration, start the image pull in the background (`SCAR_PREFETCH`),
//! wait for it at most 9 s (Lambda gives init 10 s), then serve invocations until Lambda freezes
//! or ends the sandbox: one at a time, or `AWS_LAMBDA_MAX_CONCURRENCY` at once on Lambda Managed
//! Instances.

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use tracing::Instrument;

use scar_bootstrap::config::{
    self, Config, ConfigError, DEFAULT_LOG_FILTER, LogFormat, SCAR_TIMEOUT_MARGIN,
};
use scar_bootstrap::deadline::Deadline;
use scar_bootstrap::invoke::Supervisor;
use scar_bootstrap::logs;
use scar_bootstrap::nondumpable::{self, Protection};
use scar_bootstrap::report::{self, Failure, FailureKind};
use scar_bootstrap::runtime::{ErrorReport, RuntimeApi, RuntimeEndpoint, RuntimeError};

/// Longest wait for the prefetch during init: Lambda ends an init phase that takes 10 s.
const PREFETCH_INIT_WAIT: Duration = Duration::from_secs(9);
/// Consecutive failures of `/invocation/next` before giving up (Lambda then restarts us).
const MAX_NEXT_FAILURES: u32 = 5;
/// `errorType` of a configuration error at init.
const CONFIG_ERROR: &str = "Scar.ConfigError";

fn main() -> ExitCode {
    scar_rootfs::engine::enter_container_if_requested();
    if std::env::args_os()
        .nth(1)
        .is_some_and(|arg| arg == "--version")
    {
        println!("bootstrap {}", env!("CARGO_PKG_VERSION"));
        return ExitCode::SUCCESS;
    }
    let protection = make_non_dumpable();
    let started = Instant::now();
    let config = Config::from_env();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("bootstrap: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(serve(config, started, &protection))
}

/// Keep the supervisor's memory and `/proc/<pid>/environ` (AWS credentials, the registry
/// password) away from container processes running under the same uid. `prctl` is refused on
/// Lambda, so the bootstrap re-executes an execute-only copy of itself (see
/// [`nondumpable`](scar_bootstrap::nondumpable)); what happened is logged once logging is set up.
fn make_non_dumpable() -> Protection {
    nondumpable::protect()
}

/// Log the outcome of [`make_non_dumpable`]: an exposed bootstrap is an error in the log.
fn log_protection(protection: &Protection) {
    match protection {
        Protection::Root => {
            tracing::debug!("running as root: the container could read any process anyway")
        }
        Protection::AlreadyNonDumpable => tracing::debug!("started non-dumpable"),
        Protection::ReExecuted {
            original,
            copy,
            cost,
        } => tracing::debug!(
            original = %original.display(),
            copy = copy.as_str(),
            cost_ms = cost.as_secs_f64() * 1e3,
            "non-dumpable: re-executed from an execute-only copy"
        ),
        Protection::Exposed(why) => tracing::error!(
            "the bootstrap's environment and memory (AWS credentials, registry password) are readable by the container's processes: {why}"
        ),
    }
}

async fn serve(
    config: Result<Config, ConfigError>,
    started: Instant,
    protection: &Protection,
) -> ExitCode {
    let config = match config {
        Ok(config) => config,
        Err(err) => {
            logs::init(DEFAULT_LOG_FILTER, LogFormat::Text);
            log_protection(protection);
            return init_failure(config::runtime_api_from_env(), &err).await;
        }
    };
    logs::init(&config.log_filter, config.log_format);
    log_protection(protection);
    let Some(endpoint_text) = config.runtime_api.clone() else {
        tracing::error!(
            "AWS_LAMBDA_RUNTIME_API is not set: the bootstrap runs inside AWS Lambda or a Runtime API emulator"
        );
        return ExitCode::FAILURE;
    };
    let endpoint = match RuntimeEndpoint::parse(&endpoint_text) {
        Ok(endpoint) => endpoint,
        Err(err) => {
            tracing::error!(%err, "cannot reach the Runtime API");
            return ExitCode::FAILURE;
        }
    };
    let api = RuntimeApi::new(endpoint);
    let supervisor = match Supervisor::new(config) {
        Ok(supervisor) => Arc::new(supervisor),
        Err(err) => return init_failure(Some(endpoint_text), &err).await,
    };
    // Leftovers of the sandbox's earlier process: listed now (before any invocation can make a
    // directory), removed in the background (init has 10 s).
    let leftovers = supervisor.leftovers();
    let sweeper = supervisor.clone();
    tokio::task::spawn_blocking(move || sweeper.sweep(&leftovers));
    supervisor.start_background_init().await;
    supervisor.wait_prefetch(PREFETCH_INIT_WAIT).await;
    let config = supervisor.config();
    tracing::info!(
        init_ms = started.elapsed().as_secs_f64() * 1e3,
        image = %config.image,
        engine = %config.engine,
        prefetch = config.prefetch,
        "bootstrap ready"
    );
    serve_invocations(&api, &supervisor).await
}

/// Report a configuration error to `/runtime/init/error` and give the exit status.
async fn init_failure(endpoint: Option<String>, err: &ConfigError) -> ExitCode {
    tracing::error!(error_type = CONFIG_ERROR, "{err}");
    let report = ErrorReport {
        error_type: CONFIG_ERROR.to_owned(),
        error_message: err.to_string(),
    };
    match endpoint.as_deref().map(RuntimeEndpoint::parse) {
        Some(Ok(endpoint)) => {
            if let Err(post) = RuntimeApi::new(endpoint).init_error(&report).await {
                tracing::error!(%post, "could not report the configuration error to the Runtime API");
            }
        }
        Some(Err(bad)) => tracing::error!(%bad, "cannot report the configuration error"),
        None => tracing::error!(
            "AWS_LAMBDA_RUNTIME_API is not set: the configuration error is only logged"
        ),
    }
    ExitCode::FAILURE
}

/// Serve invocations until the Runtime API stays unreachable. Outside Managed Instances one
/// loop runs in this task; with `AWS_LAMBDA_MAX_CONCURRENCY=n`, `n` loops poll `/next` at once
/// (Lambda hands each a different invocation) and the process ends only when all gave up.
async fn serve_invocations(api: &RuntimeApi, supervisor: &Arc<Supervisor>) -> ExitCode {
    let loops = supervisor.config().max_concurrency;
    let sweeping = Arc::new(AtomicBool::new(false));
    if loops <= 1 {
        return poll(api.clone(), supervisor.clone(), sweeping).await;
    }
    tracing::info!(
        loops,
        "serving invocations concurrently (Lambda Managed Instances)"
    );
    let mut pollers = tokio::task::JoinSet::new();
    for _ in 0..loops {
        pollers.spawn(poll(api.clone(), supervisor.clone(), sweeping.clone()));
    }
    while let Some(ended) = pollers.join_next().await {
        if let Err(join) = ended {
            tracing::error!(
                "a loop serving invocations stopped: {}; this is a bug, please report it",
                panic_text(join)
            );
        }
        tracing::error!(left = pollers.len(), "a loop serving invocations gave up");
    }
    ExitCode::FAILURE
}

/// One loop: `next`, handle, post the result, sweep; returns only after
/// [`MAX_NEXT_FAILURES`] consecutive failures of `next`.
async fn poll(api: RuntimeApi, supervisor: Arc<Supervisor>, sweeping: Arc<AtomicBool>) -> ExitCode {
    let mut failures = 0;
    loop {
        let invocation = match api.next().await {
            Ok(invocation) => {
                failures = 0;
                invocation
            }
            Err(err) => {
                failures += 1;
                tracing::error!(%err, failures, "waiting for the next invocation failed");
                if failures >= MAX_NEXT_FAILURES {
                    return ExitCode::FAILURE;
                }
                tokio::time::sleep(Duration::from_millis(200 * u64::from(failures))).await;
                continue;
            }
        };
        let received = Instant::now();
        let wall = SystemTime::now();
        let request_id = invocation.request_id.clone();
        let invocation_id = invocation.invocation_id.clone();
        let span = tracing::info_span!("invocation", request_id = %request_id);
        // The handler logs how it read the header; here only the instant matters.
        let (deadline, _) =
            Deadline::from_header(invocation.deadline_ms.as_deref(), received, wall);
        let worker = supervisor.clone();
        // The handler runs as its own task so that a panic in it is caught here (as a
        // JoinError) and the process goes on serving. It is also bounded at the deadline: on
        // Managed Instances the platform stops nothing, and a handler still running then (an
        // upload that hangs) must not hold this loop. Its future is dropped there, which
        // removes the request directory; the container was stopped at deadline - margin.
        let handled = tokio::spawn(
            async move {
                let handle = worker.handle(&invocation, received, wall);
                match tokio::time::timeout_at(deadline.at().into(), handle).await {
                    Ok(result) => result,
                    Err(_) => Err(Failure::new(
                        FailureKind::Timeout,
                        format!(
                            "the invocation passed its deadline before it finished (after {} ms): \
                             its outputs may be incomplete; raise the function's timeout, or \
                             {SCAR_TIMEOUT_MARGIN} to leave more time for the uploads",
                            received.elapsed().as_millis()
                        ),
                    )),
                }
            }
            .instrument(span.clone()),
        )
        .await;
        let result = handled.unwrap_or_else(|join| {
            let reason = panic_text(join);
            Err(Failure::new(
                FailureKind::Internal,
                format!("the supervisor failed: {reason}; this is a bug, please report it"),
            ))
        });
        let ids = Ids {
            request_id: &request_id,
            invocation_id: invocation_id.as_deref(),
        };
        finish(&api, &supervisor, ids, result)
            .instrument(span.clone())
            .await;
        sweep(&supervisor, &sweeping).instrument(span).await;
    }
}

/// Which invocation a result belongs to.
#[derive(Clone, Copy)]
struct Ids<'a> {
    /// `Lambda-Runtime-Aws-Request-Id`.
    request_id: &'a str,
    /// `Lambda-Runtime-Invocation-Id`, echoed when given.
    invocation_id: Option<&'a str>,
}

async fn finish(
    api: &RuntimeApi,
    supervisor: &Supervisor,
    ids: Ids<'_>,
    result: Result<report::Response, Failure>,
) {
    let Ids {
        request_id,
        invocation_id,
    } = ids;
    let posted = match result {
        Ok(response) => {
            tracing::info!(exit_code = ?response.exit_code, duration_ms = response.duration_ms, outputs = response.outputs.len(), "invocation succeeded");
            let body = report::encode_response(&response, report::MAX_PAYLOAD);
            api.respond(request_id, invocation_id, body.into()).await
        }
        Err(failure) => {
            tracing::error!(
                error_type = failure.kind.error_type(),
                "{}",
                failure.message
            );
            let error = report::cap_error(failure.report(), report::MAX_PAYLOAD);
            api.invocation_error(request_id, invocation_id, &error)
                .await
        }
    };
    match posted {
        Ok(()) => {}
        Err(RuntimeError::Gone { .. }) => {
            tracing::warn!("the invocation had already timed out; its result is dropped")
        }
        Err(err) => tracing::error!(%err, "could not report the invocation's result"),
    }
    // The request directory's Drop already ran, also on unwinding; this catches the case where
    // the panic happened while it was being created.
    if let Some(leftover) = supervisor.request_dir_path(request_id)
        && leftover.exists()
        && let Err(err) = scar_rootfs::cache::remove_tree(&leftover)
    {
        tracing::warn!(path = %leftover.display(), %err, "could not remove the request directory");
    }
}

/// After an invocation, before asking for the next: remove what it (or a pull it stopped)
/// left, so that `/tmp` does not fill up over the sandbox's life. Safe beside live invocations:
/// a request directory in use is locked and skipped, as is a cache that a pull holds. One sweep
/// at a time: a loop that finds another sweeping leaves it the work.
async fn sweep(supervisor: &Arc<Supervisor>, sweeping: &Arc<AtomicBool>) {
    if sweeping.swap(true, Ordering::AcqRel) {
        return;
    }
    let sweeper = supervisor.clone();
    let span = tracing::Span::current();
    let _ = tokio::task::spawn_blocking(move || {
        let _entered = span.enter();
        let leftovers = sweeper.leftovers();
        sweeper.sweep(&leftovers);
    })
    .await;
    sweeping.store(false, Ordering::Release);
}

fn panic_text(join: tokio::task::JoinError) -> String {
    if !join.is_panic() {
        return join.to_string();
    }
    let payload = join.into_panic();
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .map_or_else(|| "a panic".to_owned(), |text| format!("panic: {text}"))
}
