//! One invocation, in order: map the event, get the image (pull), stage each input in, run the
//! container, stage the outputs out, answer. Each phase logs one line with its duration.

use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use scar_rootfs::aws::S3;
use scar_rootfs::engine::{EngineError, RunSpec};
use scar_rootfs::image::PreparedImage;

use crate::config::{Config, ConfigError, S3Location, SCAR_OUTPUT, SCAR_SCRIPT_FILE, ScriptSource};
use crate::container::{RequestFiles, container_spec};
use crate::deadline::Deadline;
use crate::event::{self, DIRECT_INPUT_NAME, EventRules, Input};
use crate::image::{EngineSlot, ImageSlot};
use crate::report::{Failure, FailureKind, Response};
use crate::run::{self, Ran, Tails};
use crate::runtime::Invocation;
use crate::stage::{self, REQUEST_ROOT, RequestDir};
use crate::upload::{self, UploadFailure, UploadReport};
use crate::verdict::verdict;

/// Longest pause between SIGTERM and SIGKILL when the stop time comes.
const MAX_GRACE: Duration = Duration::from_secs(2);

/// Everything that lives across invocations of one sandbox.
pub struct Supervisor {
    config: Config,
    s3: S3,
    image: ImageSlot,
    engine: EngineSlot,
    script: tokio::sync::OnceCell<Option<String>>,
    request_root: std::path::PathBuf,
}

impl Supervisor {
    /// Set up from the configuration; a local `SCAR_SCRIPT_FILE` is read now so that a wrong
    /// path is an init error.
    pub fn new(mut config: Config) -> Result<Self, ConfigError> {
        if let ScriptSource::File(path) = &config.script {
            let text = std::fs::read_to_string(path).map_err(|err| ConfigError::Invalid {
                name: SCAR_SCRIPT_FILE.to_owned(),
                value: path.display().to_string(),
                problem: format!("cannot be read ({err}): use the path of a readable script, e.g. /var/task/script.sh"),
            })?;
            config.script = ScriptSource::Inline(text);
        }
        // One S3 client, with its endpoint and retries, for the invocations and `s3://` images.
        let s3 = S3::new(config.s3_endpoint.clone());
        let mut pull = config.pull.clone();
        pull.s3 = Some(s3.clone());
        Ok(Self {
            s3,
            image: ImageSlot::new(config.image.clone(), pull),
            engine: EngineSlot::new(config.engine, config.static_policy),
            script: tokio::sync::OnceCell::new(),
            request_root: Path::new(REQUEST_ROOT).to_owned(),
            config,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// With `SCAR_PREFETCH`, start the init-phase work in the background: the pull, the engine
    /// probe and the S3 client. Without it init stays lean (the first poll of the Runtime API
    /// comes first) and the first invocation does this work.
    pub async fn start_background_init(self: &std::sync::Arc<Self>) {
        if !self.config.prefetch {
            return;
        }
        self.image.prefetch().await;
        let me = self.clone();
        tokio::spawn(async move {
            if let Err(err) = me.engine.get().await {
                tracing::warn!(%err, "no engine available; invocations will fail until this is fixed");
            }
        });
        let me = self.clone();
        tokio::spawn(async move {
            me.s3.client().await;
        });
    }

    /// Wait at most `limit` for the prefetch (Lambda gives init 10 s in all).
    pub async fn wait_prefetch(&self, limit: Duration) {
        self.image.wait_prefetch(limit).await;
    }

    /// The request directories earlier invocations left under `/tmp` (see
    /// [`stage::leftover_request_dirs`]); listed apart from [`Supervisor::sweep`] so that init
    /// can list them at once and remove them in the background.
    pub fn leftovers(&self) -> Vec<std::path::PathBuf> {
        stage::leftover_request_dirs(&self.request_root, &self.config.pull.cache_dir)
    }

    /// Remove `leftovers` and the cache's abandoned work areas (`tmp/`, `ingest/`: see
    /// `Cache::sweep`, which skips a cache that a pull, here or in another sandbox sharing it,
    /// holds). Blocking: run it off the async threads. A cache not made yet is not made here.
    pub fn sweep(&self, leftovers: &[std::path::PathBuf]) {
        let started = Instant::now();
        let requests = stage::remove_request_dirs(leftovers);
        let cache_dir = &self.config.pull.cache_dir;
        let cache = if cache_dir.join("ingest").is_dir() {
            scar_rootfs::cache::Cache::open(cache_dir)
                .and_then(|cache| cache.sweep())
                .unwrap_or_else(|err| {
                    tracing::warn!(%err, "could not sweep the image cache's leftovers");
                    None
                })
        } else {
            None
        };
        let (tmp, ingest) = cache.map_or((0, 0), |s| (s.tmp, s.ingest));
        if requests + tmp + ingest > 0 {
            tracing::info!(
                requests,
                cache_tmp = tmp,
                cache_ingest = ingest,
                duration_ms = ms(started),
                "removed what earlier invocations left"
            );
        } else {
            tracing::debug!(
                duration_ms = ms(started),
                busy = cache.is_none(),
                "nothing left to sweep"
            );
        }
    }

    /// Where `request_id`'s directory lives (for the cleanup after a panic); `None` for an id
    /// that is not a safe directory name (no directory was made for it).
    pub fn request_dir_path(&self, request_id: &str) -> Option<std::path::PathBuf> {
        stage::is_safe_request_id(request_id).then(|| self.request_root.join(request_id))
    }

    /// Process one invocation; `received` is when `/invocation/next` answered. The steps: map
    /// the event to its inputs, get the image and the engine, write the request's files, then
    /// one run per input ([`Supervisor::process`]), then the response.
    pub async fn handle(
        &self,
        invocation: &Invocation,
        received: Instant,
        wall: SystemTime,
    ) -> Result<Response, Failure> {
        let stop_at = self.stop_at(invocation, received, wall);
        let rules = EventRules {
            output: self.config.output.as_ref(),
            allow_invoke_script: self.config.allow_invoke_script,
        };
        let mapped = event::map_event(&invocation.payload, rules).map_err(|e| {
            let kind = if e.is_config() {
                FailureKind::Config
            } else {
                FailureKind::Input
            };
            Failure::new(kind, e)
        })?;
        let mut response = Response::new(&invocation.request_id, &self.config.image);
        response.skipped = (mapped.skipped.into_iter())
            .map(|skipped| crate::report::SkippedEntry {
                input: skipped.input,
                reason: skipped.reason,
            })
            .collect();
        if mapped.work.is_empty() {
            tracing::info!("every record was skipped; nothing to run");
            response.duration_ms = received.elapsed().as_millis() as u64;
            return Ok(response);
        }
        response.inputs = mapped.work.iter().filter_map(|w| w.input.url()).collect();

        let started = Instant::now();
        let image = self
            .image
            .get(stop_at)
            .await
            .map_err(|m| Failure::new(FailureKind::Image, m))?;
        response.phases_ms.pull = ms(started);
        let engine = self
            .engine
            .get()
            .await
            .map_err(|m| Failure::new(FailureKind::Image, m))?;
        response.engine = engine.kind().to_string();
        let script = match mapped.script {
            Some(script) => Some(script),
            None => self.script().await?,
        };
        let request = self.write_request(invocation, script.as_deref(), wall)?;

        let runs = Runs {
            payload: &invocation.payload,
            request,
            image,
            engine,
            stop_at,
            tails: Tails::default(),
        };
        for (index, input) in mapped.work.iter().map(|w| &w.input).enumerate() {
            if index > 0 {
                runs.request
                    .dir
                    .reset()
                    .map_err(|e| Failure::new(FailureKind::Input, e))?;
            }
            let code = self.process(&runs, input, &mut response).await?;
            response.exit_code = Some(code);
        }
        response.stdout = runs.tails.stdout_text();
        response.stderr = runs.tails.stderr_text();
        response.duration_ms = received.elapsed().as_millis() as u64;
        response.phases_ms.total = ms(received);
        Ok(response)
    }

    /// When the container must stop: the invocation's deadline less `SCAR_TIMEOUT_MARGIN`.
    fn stop_at(&self, invocation: &Invocation, received: Instant, wall: SystemTime) -> Instant {
        let (deadline, warning) =
            Deadline::from_header(invocation.deadline_ms.as_deref(), received, wall);
        if let Some(warning) = warning {
            tracing::warn!("{warning}");
        }
        deadline.stop_at(self.config.timeout_margin, received)
    }

    /// Make the request directory and write the event (and the script) into its `.scar/`.
    fn write_request(
        &self,
        invocation: &Invocation,
        script: Option<&str>,
        wall: SystemTime,
    ) -> Result<RequestFiles, Failure> {
        let dir = RequestDir::create(&self.request_root, &invocation.request_id)
            .map_err(|e| Failure::new(FailureKind::Input, e))?;
        let event = String::from_utf8_lossy(&invocation.payload).into_owned();
        let event_file = dir.meta().join("event.json");
        write(&event_file, event.as_bytes())?;
        let script = match script {
            Some(text) => {
                let path = dir.meta().join("script.sh");
                write(&path, text.as_bytes())?;
                Some(path)
            }
            None => None,
        };
        let received_at = aws_smithy_types::DateTime::from(wall)
            .fmt(aws_smithy_types::date_time::Format::DateTime)
            .unwrap_or_default();
        Ok(RequestFiles {
            id: invocation.request_id.clone(),
            dir,
            event_file,
            event,
            script,
            received_at,
            tenant_id: None,
        })
    }

    /// One run: stage `input` in, run the container, stage the outputs out, and judge.
    async fn process(
        &self,
        runs: &Runs<'_>,
        input: &Input,
        response: &mut Response,
    ) -> Result<i32, Failure> {
        let dir = &runs.request.dir;
        let started = Instant::now();
        let input_file = self
            .stage_in(dir, input, runs.payload, runs.stop_at)
            .await?;
        response.phases_ms.stage_in += ms(started);
        tracing::info!(phase = "stage-in", duration_ms = ms(started), input = %input_file.display(), "input staged");

        let spec = container_spec(&runs.image, &self.config, &runs.request, input, &input_file)?;
        let started = Instant::now();
        let ran = self
            .run(
                runs.engine.clone(),
                spec,
                runs.stop_at,
                &runs.request.id,
                &runs.tails,
            )
            .await;
        response.phases_ms.run += ms(started);
        if let Ok(ran) = &ran {
            tracing::info!(
                phase = "run",
                duration_ms = ms(started),
                exit_code = ran.outcome.exit_code(),
                timed_out = ran.outcome.timed_out,
                unconfined = ?ran.unconfined.ran,
                "container ended"
            );
            for program in &ran.unconfined.ran {
                if !response.unconfined.contains(program) {
                    response.unconfined.push(program.clone());
                }
            }
        }

        let started = Instant::now();
        let output = match input {
            Input::S3(object) => Some(self.config.output_for(&object.bucket)),
            Input::Direct => self.config.output.clone(),
        };
        let report = self.stage_out(dir, output.as_ref()).await;
        response.phases_ms.stage_out += ms(started);
        tracing::info!(
            phase = "stage-out",
            duration_ms = ms(started),
            uploaded = report.uploaded.len(),
            failed = report.failed.len(),
            "outputs staged out"
        );
        response.outputs.extend(report.uploaded.iter().cloned());
        verdict(
            ran,
            &report,
            &response.outputs,
            &runs.tails,
            self.config.timeout_margin,
            &response.unconfined,
        )
    }

    async fn script(&self) -> Result<Option<String>, Failure> {
        self.script
            .get_or_try_init(|| async {
                match &self.config.script {
                    ScriptSource::ImageCommand => Ok(None),
                    ScriptSource::Inline(text) => Ok(Some(text.clone())),
                    ScriptSource::File(path) => Err(Failure::new(
                        FailureKind::Input,
                        format!("{SCAR_SCRIPT_FILE}={} was not read at init", path.display()),
                    )),
                    ScriptSource::S3(location) => self.fetch_script(location).await.map(Some),
                }
            })
            .await
            .cloned()
    }

    async fn fetch_script(&self, location: &S3Location) -> Result<String, Failure> {
        let failed = |why: String| {
            Failure::new(
                FailureKind::Input,
                format!("{SCAR_SCRIPT_FILE}={location}: {why}"),
            )
        };
        let object = self
            .s3
            .client()
            .await
            .get_object()
            .bucket(&location.bucket)
            .key(&location.key)
            .send()
            .await
            .map_err(|e| {
                failed(scar_rootfs::aws::describe(
                    &e,
                    "S3",
                    &[
                        ("NoSuchKey", "the script object does not exist"),
                        (
                            "AccessDenied",
                            "the function's role needs s3:GetObject on it",
                        ),
                    ],
                ))
            })?;
        let bytes = object
            .body
            .collect()
            .await
            .map_err(|e| failed(e.to_string()))?
            .into_bytes();
        String::from_utf8(bytes.to_vec())
            .map_err(|_| failed("the script is not UTF-8 text".to_owned()))
    }

    async fn stage_in(
        &self,
        dir: &RequestDir,
        input: &Input,
        payload: &[u8],
        stop_at: Instant,
    ) -> Result<std::path::PathBuf, Failure> {
        let input_failure = |e: stage::StageError| Failure::new(FailureKind::Input, e);
        match input {
            Input::S3(object) => {
                let path = dir
                    .input()
                    .join(stage::input_file_name(object).map_err(input_failure)?);
                let client = self.s3.client().await;
                let bytes = stage::download(client, object, &path, stop_at)
                    .await
                    .map_err(input_failure)?;
                tracing::debug!(bytes, input = %object.url(), "downloaded");
                Ok(path)
            }
            Input::Direct => {
                let path = dir.input().join(DIRECT_INPUT_NAME);
                write(&path, payload)?;
                Ok(path)
            }
        }
    }

    async fn run(
        &self,
        engine: std::sync::Arc<dyn scar_rootfs::engine::Engine>,
        spec: RunSpec,
        stop_at: Instant,
        request_id: &str,
        tails: &Tails,
    ) -> Result<Ran, Failure> {
        let grace = MAX_GRACE.min(self.config.timeout_margin / 3);
        let request_id = request_id.to_owned();
        let tails = tails.clone();
        // The blocking thread does not inherit the invocation's span: enter it there, so that
        // the run's own lines carry the request id.
        let span = tracing::Span::current();
        let joined = tokio::task::spawn_blocking(move || {
            let _entered = span.enter();
            run::run_container(engine.as_ref(), &spec, stop_at, grace, &request_id, &tails)
        })
        .await;
        match joined {
            Ok(Ok(ran)) => Ok(ran),
            Ok(Err(err @ EngineError::StaticRefused { .. })) => {
                tracing::error!(%err, "the first program was refused");
                Err(Failure::new(FailureKind::ScriptFailed, err))
            }
            Ok(Err(err)) => Err(Failure::new(
                FailureKind::Image,
                format!("cannot run the container: {err}"),
            )),
            Err(err) => Err(Failure::new(
                FailureKind::Internal,
                format!("the run stopped unexpectedly: {err}"),
            )),
        }
    }

    async fn stage_out(&self, dir: &RequestDir, output: Option<&S3Location>) -> UploadReport {
        let Some(output) = output else {
            let (planned, mut failed) = upload::plan(&dir.output(), "");
            for plan in planned {
                failed.push(UploadFailure {
                    what: plan.key,
                    reason: format!("{SCAR_OUTPUT} is not set and a direct invocation has no input bucket: set {SCAR_OUTPUT}"),
                });
            }
            return UploadReport {
                uploaded: Vec::new(),
                failed,
            };
        };
        let (planned, mut failed) = upload::plan(&dir.output(), &output.prefix_dir());
        let mut report = if planned.is_empty() {
            UploadReport::default()
        } else {
            upload::upload_all(self.s3.client().await, &output.bucket, planned).await
        };
        report.failed.append(&mut failed);
        report
    }
}

/// What every run of one invocation shares.
struct Runs<'a> {
    /// The invocation's payload (a direct invocation's input file).
    payload: &'a [u8],
    /// The request directory and its files.
    request: RequestFiles,
    /// The image.
    image: PreparedImage,
    /// The engine.
    engine: std::sync::Arc<dyn scar_rootfs::engine::Engine>,
    /// When the container must stop.
    stop_at: Instant,
    /// stdout and stderr of every run.
    tails: Tails,
}

fn write(path: &Path, bytes: &[u8]) -> Result<(), Failure> {
    std::fs::write(path, bytes).map_err(|err| {
        Failure::new(
            FailureKind::Input,
            format!("writing {}: {err}", path.display()),
        )
    })
}

fn ms(since: Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1e3
}
