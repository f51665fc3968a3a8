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

use futures::future::BoxFuture;
use tracing::Instrument;

use scar_bootstrap::answer::Answer;
use scar_bootstrap::config::{
    self, Config, ConfigError, DEFAULT_LOG_FILTER, LogFormat, SCAR_TIMEOUT_MARGIN,
};
use scar_bootstrap::deadline::Deadline;
use scar_bootstrap::invoke::Supervisor;
use scar_bootstrap::logs;
use scar_bootstrap::nondumpable::{self, Protection};
use scar_bootstrap::report::{self, Failure, FailureKind};
use scar_bootstrap::runtime::{ErrorReport, Invocation, RuntimeApi, RuntimeEndpoint, RuntimeError};

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
        max_concurrency = config.max_concurrency,
        "bootstrap ready"
    );
    let loops = config.max_concurrency;
    serve_invocations(&api, &supervisor, loops).await
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

/// What the loops hand each invocation to: the [`Supervisor`], or a test's stand-in.
trait Handler: Send + Sync + 'static {
    /// Process one invocation (see [`Supervisor::handle`]).
    fn handle(
        self: Arc<Self>,
        invocation: Invocation,
        received: Instant,
        wall: SystemTime,
    ) -> BoxFuture<'static, Result<Answer, Failure>>;

    /// After the result was posted: remove what is left of `request_id`'s directory.
    fn clean_up(&self, request_id: &str);

    /// Remove what earlier invocations left (blocking).
    fn sweep_leftovers(&self);
}

impl Handler for Supervisor {
    fn handle(
        self: Arc<Self>,
        invocation: Invocation,
        received: Instant,
        wall: SystemTime,
    ) -> BoxFuture<'static, Result<Answer, Failure>> {
        Box::pin(async move { Supervisor::handle(&self, &invocation, received, wall).await })
    }

    fn clean_up(&self, request_id: &str) {
        // The request directory's Drop already ran, also on unwinding; this catches the case
        // where the panic happened while it was being created.
        if let Some(leftover) = self.request_dir_path(request_id)
            && leftover.exists()
            && let Err(err) = scar_rootfs::cache::remove_tree(&leftover)
        {
            tracing::warn!(path = %leftover.display(), %err, "could not remove the request directory");
        }
    }

    fn sweep_leftovers(&self) {
        let leftovers = self.leftovers();
        Supervisor::sweep(self, &leftovers);
    }
}

/// Serve invocations until the Runtime API stays unreachable. Outside Managed Instances
/// (`loops` = 1) one loop runs in this task; with `AWS_LAMBDA_MAX_CONCURRENCY=n`, `n` loops poll
/// `/next` at once (Lambda hands each a different invocation) and the process ends only when
/// every one gave up.
async fn serve_invocations<H: Handler>(
    api: &RuntimeApi,
    handler: &Arc<H>,
    loops: usize,
) -> ExitCode {
    let sweeping = Arc::new(AtomicBool::new(false));
    if loops <= 1 {
        return poll(api.clone(), handler.clone(), sweeping).await;
    }
    tracing::info!(
        loops,
        "serving invocations concurrently (Lambda Managed Instances)"
    );
    let mut pollers = tokio::task::JoinSet::new();
    for _ in 0..loops {
        pollers.spawn(poll(api.clone(), handler.clone(), sweeping.clone()));
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
async fn poll<H: Handler>(api: RuntimeApi, handler: Arc<H>, sweeping: Arc<AtomicBool>) -> ExitCode {
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
        // The handler runs as its own task so that a panic in it is caught here (as a
        // JoinError) and the loop goes on serving. It is also bounded at the deadline: on
        // Managed Instances the platform stops nothing, and a handler still running then (an
        // upload that hangs) must not hold this loop. Its future is dropped there, which
        // removes the request directory; the container was stopped at deadline - margin.
        let handle = handler.clone().handle(invocation, received, wall);
        let handled = tokio::spawn(
            async move {
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
        finish(&api, ids, result).instrument(span.clone()).await;
        span.in_scope(|| handler.clean_up(&request_id));
        sweep(&handler, &sweeping).instrument(span).await;
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

/// Post the invocation's result; a `410 Gone` (the invocation already timed out) is logged
/// and the loop goes on.
async fn finish(api: &RuntimeApi, ids: Ids<'_>, result: Result<Answer, Failure>) {
    let Ids {
        request_id,
        invocation_id,
    } = ids;
    let posted = match result {
        Ok(Answer::Json(response)) => {
            tracing::info!(exit_code = ?response.exit_code, duration_ms = response.duration_ms, outputs = response.outputs.len(), "invocation succeeded");
            let body = report::encode_response(&response, report::MAX_PAYLOAD);
            api.respond(request_id, invocation_id, body.into()).await
        }
        Ok(Answer::Buffered { status, payload }) => {
            tracing::info!(status, bytes = payload.len(), "HTTP answer");
            api.respond(request_id, invocation_id, payload).await
        }
        Ok(Answer::Streamed {
            status,
            prelude,
            body,
            script_ended,
        }) => {
            let sent = api
                .respond_streaming(request_id, invocation_id, Some(prelude), body)
                .await;
            sent.map(|sent| {
                // How long the caller waited after the script ended for the answer to start.
                let since_script_end_ms = script_ended.map(|ended| {
                    sent.first_byte
                        .saturating_duration_since(ended)
                        .as_secs_f64()
                        * 1e3
                });
                tracing::info!(
                    status,
                    bytes = sent.bytes,
                    since_script_end_ms,
                    "HTTP answer streamed"
                );
            })
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
}

/// After an invocation, before asking for the next: remove what it (or a pull it stopped)
/// left, so that `/tmp` does not fill up over the sandbox's life. Safe beside live invocations:
/// a request directory in use is locked and skipped, as is a cache that a pull holds. One sweep
/// at a time: a loop that finds another sweeping leaves it the work.
async fn sweep<H: Handler>(handler: &Arc<H>, sweeping: &Arc<AtomicBool>) {
    if sweeping.swap(true, Ordering::AcqRel) {
        return;
    }
    let sweeper = handler.clone();
    let span = tracing::Span::current();
    let _ = tokio::task::spawn_blocking(move || {
        let _entered = span.enter();
        sweeper.sweep_leftovers();
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

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::sync::Mutex;
    use std::sync::atomic::AtomicUsize;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// One invocation the fake Runtime API hands out: request id, deadline header, payload.
    struct Queued {
        id: &'static str,
        deadline_ms: &'static str,
        payload: &'static str,
    }

    /// A result posted back: path, echoed invocation id, error type, body.
    #[derive(Debug)]
    struct Posted {
        path: String,
        invocation_id: Option<String>,
        error_type: Option<String>,
        body: String,
    }

    /// The Runtime API on a real socket: `/next` hands out the queue (each with the invocation
    /// id `inv-<request id>`), then answers 500 so that the loops give up; results are recorded
    /// and answered 202, or 410 for the request ids in `gone`.
    struct FakeApi {
        queue: Mutex<VecDeque<Queued>>,
        posted: Mutex<Vec<Posted>>,
        gone: Vec<&'static str>,
    }

    impl FakeApi {
        async fn start(queue: Vec<Queued>, gone: Vec<&'static str>) -> (Arc<Self>, RuntimeApi) {
            let fake = Arc::new(Self {
                queue: Mutex::new(queue.into()),
                posted: Mutex::new(Vec::new()),
                gone,
            });
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let address = listener.local_addr().unwrap().to_string();
            let server = fake.clone();
            tokio::spawn(async move {
                loop {
                    let (socket, _) = listener.accept().await.unwrap();
                    tokio::spawn(server.clone().answer(socket));
                }
            });
            let api = RuntimeApi::new(RuntimeEndpoint::parse(&address).unwrap());
            (fake, api)
        }

        async fn answer(self: Arc<Self>, mut socket: tokio::net::TcpStream) {
            let (head, body) = read_request(&mut socket).await;
            let path = head
                .split_whitespace()
                .nth(1)
                .unwrap_or_default()
                .to_owned();
            let header = |name: &str| {
                head.lines().find_map(|line| {
                    let (n, v) = line.split_once(':')?;
                    n.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
                })
            };
            let (status, headers, reply) = if path.ends_with("/invocation/next") {
                match self.queue.lock().unwrap().pop_front() {
                    Some(q) => (
                        "200 OK",
                        format!(
                            "lambda-runtime-aws-request-id: {}\r\nlambda-runtime-deadline-ms: {}\r\nlambda-runtime-invocation-id: inv-{}\r\n",
                            q.id, q.deadline_ms, q.id
                        ),
                        q.payload.to_owned(),
                    ),
                    None => ("500 Internal Server Error", String::new(), String::new()),
                }
            } else {
                let gone = self.gone.iter().any(|id| path.contains(&format!("/{id}/")));
                self.posted.lock().unwrap().push(Posted {
                    path: path.clone(),
                    invocation_id: header("lambda-runtime-invocation-id"),
                    error_type: header("lambda-runtime-function-error-type"),
                    body,
                });
                let status = if gone { "410 Gone" } else { "202 Accepted" };
                (status, String::new(), String::new())
            };
            let response = format!(
                "HTTP/1.1 {status}\r\n{headers}content-length: {}\r\nconnection: close\r\n\r\n{reply}",
                reply.len()
            );
            let _ = socket.write_all(response.as_bytes()).await;
            let _ = socket.shutdown().await;
        }

        fn posted(&self) -> Vec<Posted> {
            std::mem::take(&mut *self.posted.lock().unwrap())
        }
    }

    /// Read one HTTP/1.1 request: its head and its body (by Content-Length).
    async fn read_request(socket: &mut tokio::net::TcpStream) -> (String, String) {
        let mut request = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            let n = socket.read(&mut buf).await.unwrap_or(0);
            if n == 0 {
                break;
            }
            request.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&request).into_owned();
            if let Some(end) = text.find("\r\n\r\n") {
                let length = text[..end]
                    .lines()
                    .find_map(|l| {
                        let (n, v) = l.split_once(':')?;
                        n.eq_ignore_ascii_case("content-length")
                            .then(|| v.trim().parse::<usize>().unwrap_or(0))
                    })
                    .unwrap_or(0);
                if request.len() >= end + 4 + length {
                    return (text[..end].to_owned(), text[end + 4..].to_owned());
                }
            }
        }
        (
            String::from_utf8_lossy(&request).into_owned(),
            String::new(),
        )
    }

    /// A handler that acts out its payload: `sleep <ms>` then succeeds, `hang` never ends;
    /// it counts how many invocations ran at once.
    #[derive(Default)]
    struct Acting {
        running: AtomicUsize,
        most: AtomicUsize,
        cleaned: Mutex<Vec<String>>,
    }

    impl Handler for Acting {
        fn handle(
            self: Arc<Self>,
            invocation: Invocation,
            _received: Instant,
            _wall: SystemTime,
        ) -> BoxFuture<'static, Result<Answer, Failure>> {
            Box::pin(async move {
                let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
                self.most.fetch_max(now, Ordering::SeqCst);
                let payload = String::from_utf8_lossy(&invocation.payload).into_owned();
                if let Some(ms) = payload.strip_prefix("sleep ") {
                    tokio::time::sleep(Duration::from_millis(ms.parse().unwrap())).await;
                } else {
                    std::future::pending::<()>().await;
                }
                self.running.fetch_sub(1, Ordering::SeqCst);
                Ok(Answer::Json(Box::new(report::Response::new(
                    &invocation.request_id,
                    "img",
                ))))
            })
        }

        fn clean_up(&self, request_id: &str) {
            self.cleaned.lock().unwrap().push(request_id.to_owned());
        }

        fn sweep_leftovers(&self) {}
    }

    fn queued(id: &'static str, deadline_ms: &'static str, payload: &'static str) -> Queued {
        Queued {
            id,
            deadline_ms,
            payload,
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn four_loops_run_four_invocations_at_once_and_echo_each_invocation_id() {
        let queue = ["a", "b", "c", "d"].map(|id| queued(id, "60000", "sleep 400"));
        let (fake, api) = FakeApi::start(queue.into(), Vec::new()).await;
        let handler = Arc::new(Acting::default());
        let started = Instant::now();
        let code = serve_invocations(&api, &handler, 4).await;
        assert_eq!(code, ExitCode::FAILURE);
        assert_eq!(handler.most.load(Ordering::SeqCst), 4);
        let mut posted = fake.posted();
        posted.sort_by(|x, y| x.path.cmp(&y.path));
        assert_eq!(posted.len(), 4, "{posted:#?}");
        for (post, id) in posted.iter().zip(["a", "b", "c", "d"]) {
            assert!(
                post.path.ends_with(&format!("/invocation/{id}/response")),
                "{post:?}"
            );
            assert_eq!(post.invocation_id.as_deref(), Some(&*format!("inv-{id}")));
            assert!(
                post.body.contains(&format!("\"requestId\":\"{id}\"")),
                "{post:?}"
            );
        }
        let mut cleaned = handler.cleaned.lock().unwrap().clone();
        cleaned.sort();
        assert_eq!(cleaned, ["a", "b", "c", "d"]);
        // One at a time, four would take 1.6 s before the loops even start giving up (2 s).
        assert!(
            started.elapsed() < Duration::from_millis(1600 + 2000),
            "{:?}",
            started.elapsed()
        );
    }

    #[tokio::test]
    async fn a_handler_past_its_deadline_is_cut_and_a_gone_answer_does_not_stop_the_loop() {
        let queue = vec![
            queued("late", "300", "hang"),
            queued("dropped", "60000", "sleep 1"),
            queued("next", "60000", "sleep 1"),
        ];
        let (fake, api) = FakeApi::start(queue, vec!["dropped"]).await;
        let handler = Arc::new(Acting::default());
        let started = Instant::now();
        // Without the bound the hanging handler would hold the loop for ever.
        let served = tokio::time::timeout(
            Duration::from_secs(20),
            serve_invocations(&api, &handler, 1),
        );
        assert_eq!(served.await.expect("the loop hung"), ExitCode::FAILURE);
        let posted = fake.posted();
        assert_eq!(posted.len(), 3, "{posted:#?}");
        let late = &posted[0];
        assert!(late.path.ends_with("/invocation/late/error"), "{late:?}");
        assert_eq!(late.error_type.as_deref(), Some("Scar.Timeout"));
        assert_eq!(late.invocation_id.as_deref(), Some("inv-late"));
        assert!(late.body.contains("passed its deadline"), "{late:?}");
        assert!(posted[1].path.ends_with("/invocation/dropped/response"));
        assert!(posted[2].path.ends_with("/invocation/next/response"));
        assert_eq!(handler.cleaned.lock().unwrap().len(), 3);
        assert!(started.elapsed() >= Duration::from_millis(300));
    }
}
