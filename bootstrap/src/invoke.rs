//! One invocation, in order: map the event, get the image (pull), stage each input in, run the
//! container, stage the outputs out, answer. Each phase logs one line with its duration.

use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use scar_rootfs::aws::S3;
use scar_rootfs::cache::{CacheError, Hold};
use scar_rootfs::engine::{EngineError, RunSpec};
use scar_rootfs::image::PreparedImage;

use crate::answer::{Answer, HttpMode};
use crate::config::{Config, ConfigError, S3Location, SCAR_OUTPUT, SCAR_SCRIPT_FILE, ScriptSource};
use crate::container::{RequestFiles, container_spec};
use crate::deadline::Deadline;
use crate::event::{self, DIRECT_INPUT_NAME, EventRules, Input, MappedEvent, Work};
use crate::image::{EngineSlot, ImageSlot};
use crate::reply;
use crate::report::{Failure, FailureKind, RecordResult, Response, SkippedEntry};
use crate::run::{self, Ran, Tails};
use crate::runtime::Invocation;
use crate::space::Space;
use crate::stage::{self, REQUEST_ROOT, RequestDir};
use crate::upload::{self, UploadFailure, UploadReport};
use crate::verdict::verdict;

mod results;

use results::{Processed, conclude, in_event_order, output_files, unreadable_record};

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
    /// `/tmp` space reserved by the downloads of concurrent invocations.
    space: Space,
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
            space: Space::default(),
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
    /// the event to its records, get the image and the engine, write the request's files, then
    /// one run per record ([`Supervisor::process`]), each judged on its own, then the answer
    /// ([`conclude`]). An HTTP request is answered as HTTP ([`Supervisor::handle_http`]).
    pub async fn handle(
        &self,
        invocation: &Invocation,
        received: Instant,
        wall: SystemTime,
    ) -> Result<Answer, Failure> {
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
        if let Some(format) = mapped.http {
            let mode = HttpMode {
                format,
                streaming: self.config.http_streaming,
            };
            return Ok(self
                .handle_http(invocation, &mapped, mode, received, stop_at, wall)
                .await);
        }
        self.handle_event(invocation, mapped, received, stop_at, wall)
            .await
            .map(|response| Answer::Json(Box::new(response)))
    }

    /// An HTTP request: one run, answered with what it made (see [`crate::reply`]); every
    /// failure is an HTTP answer too.
    async fn handle_http(
        &self,
        invocation: &Invocation,
        mapped: &MappedEvent,
        mode: HttpMode,
        received: Instant,
        stop_at: Instant,
        wall: SystemTime,
    ) -> Answer {
        let request_id = invocation.request_id.as_str();
        let failed = |failure: Failure| {
            tracing::error!(
                error_type = failure.kind.error_type(),
                "HTTP request failed: {}",
                failure.message
            );
            mode.failure(&failure, request_id)
        };
        let Some(work) = mapped.work.first() else {
            let reason = mapped.unreadable.first().map_or_else(
                || "the HTTP request cannot be read".to_owned(),
                |u| format!("{} cannot be read: {}", u.what, u.reason),
            );
            return failed(Failure::new(FailureKind::Input, reason));
        };
        let Some(request) = work.input.http() else {
            return failed(Failure::new(
                FailureKind::Internal,
                "an HTTP event mapped to a run that is not an HTTP request",
            ));
        };
        tracing::info!(
            source = request.source.as_str(),
            method = %request.method,
            path = %request.path,
            bytes = request.body.len(),
            input = %request.file_name,
            "HTTP request"
        );
        let mut response = Response::new(request_id, &self.config.image);
        let runs = match self
            .prepare(invocation, None, stop_at, wall, &mut response)
            .await
        {
            Ok(runs) => runs,
            Err(failure) => return failed(failure),
        };
        let processed = self.process(&runs, &work.input, &mut response).await;
        if let Err(failure) = processed.verdict {
            return failed(failure);
        }
        let output_dir = runs.request.dir.output();
        let outputs = output_files(&output_dir, self.config.output.as_ref(), &processed.outputs);
        let stdout = runs.tails.stdout_text();
        // The archive of outputs that cannot fit is not written: it would only take /tmp.
        let total: u64 = outputs.iter().map(|o| o.size).sum();
        let skip_archive = request.archive && mode.cannot_carry(total);
        let scratch = runs.request.dir.meta();
        let answer = if skip_archive {
            mode.too_large(total, &outputs, request_id)
        } else {
            match reply::for_outputs(request, &outputs, &stdout, &scratch) {
                Ok(reply) => mode.answer(reply, &outputs, request_id, processed.ended),
                Err(err) => failed(Failure::new(FailureKind::Output, err)),
            }
        };
        // The phases an event's result document carries, here in the log: the answer is the
        // output itself. A streamed body is still to be sent; a buffered one is encoded.
        let phases = &response.phases_ms;
        tracing::info!(
            total_ms = ms(received),
            pull_ms = phases.pull,
            stage_in_ms = phases.stage_in,
            run_ms = phases.run,
            stage_out_ms = phases.stage_out,
            outputs = outputs.len(),
            "HTTP request processed"
        );
        answer
    }

    /// An event's records, each run and judged on its own, and the result document.
    async fn handle_event(
        &self,
        invocation: &Invocation,
        mapped: MappedEvent,
        received: Instant,
        stop_at: Instant,
        wall: SystemTime,
    ) -> Result<Response, Failure> {
        let mut response = Response::new(&invocation.request_id, &self.config.image);
        response.skipped = (mapped.skipped.iter())
            .map(|skipped| SkippedEntry {
                input: skipped.input.clone(),
                reason: skipped.reason.clone(),
            })
            .collect();
        response.inputs = mapped.work.iter().filter_map(|w| w.input.url()).collect();
        let unreadable: Vec<RecordResult> =
            mapped.unreadable.iter().map(unreadable_record).collect();
        let mut ran = Vec::new();
        if mapped.work.is_empty() {
            if unreadable.is_empty() {
                tracing::info!(
                    skipped = response.skipped.len(),
                    "every record was skipped; nothing to run"
                );
            }
        } else {
            let runs = self
                .prepare(invocation, mapped.script, stop_at, wall, &mut response)
                .await?;
            ran = self.run_records(&runs, &mapped.work, &mut response).await?;
            response.stdout = runs.tails.stdout_text();
            response.stderr = runs.tails.stderr_text();
        }
        let positions = mapped.unreadable.iter().map(|u| u.position);
        let records = in_event_order(ran, unreadable.into_iter().zip(positions));
        response.records = records;
        response.duration_ms = received.elapsed().as_millis() as u64;
        response.phases_ms.total = ms(received);
        conclude(response, &mapped.unreadable, mapped.sqs_messages.as_deref())
    }

    /// What every record's run needs: the image, the engine, the script and the request's files.
    async fn prepare<'p>(
        &self,
        invocation: &'p Invocation,
        carried_script: Option<String>,
        stop_at: Instant,
        wall: SystemTime,
        response: &mut Response,
    ) -> Result<Runs<'p>, Failure> {
        let started = Instant::now();
        let (image, hold) = self.held_image(stop_at).await?;
        response.phases_ms.pull = ms(started);
        let engine = self
            .engine
            .get()
            .await
            .map_err(|m| Failure::new(FailureKind::Image, m))?;
        response.engine = engine.kind().to_string();
        let script = match carried_script {
            Some(script) => Some(script),
            None => self.script().await?,
        };
        let request = self.write_request(invocation, script.as_deref(), wall)?;
        Ok(Runs {
            payload: &invocation.payload,
            request,
            image,
            _hold: hold,
            engine,
            stop_at,
            tails: Tails::default(),
        })
    }

    /// The image, held against eviction until every record has run (a concurrent pull on
    /// Managed Instances, or another process sharing the cache, never evicts the root filesystem
    /// under the invocation). An image evicted since this sandbox prepared it is pulled again.
    async fn held_image(&self, stop_at: Instant) -> Result<(PreparedImage, Hold), Failure> {
        let image_failure = |m: String| Failure::new(FailureKind::Image, m);
        // Boxed: the pull's future is deep, and inlined twice into the invocation's future its
        // layout passes the compiler's query depth limit.
        let get = || Box::pin(self.image.get(stop_at));
        let image = get().await.map_err(image_failure)?;
        match Hold::take(&image.root, &image.reference) {
            Ok(hold) => Ok((image, hold)),
            Err(CacheError::Evicted { .. }) => {
                tracing::info!(image = %image.reference, "the image was evicted from the cache since it was prepared; pulling it again");
                self.image.forget(&image).await;
                let image = get().await.map_err(image_failure)?;
                let hold = Hold::take(&image.root, &image.reference)
                    .map_err(|err| image_failure(err.to_string()))?;
                Ok((image, hold))
            }
            Err(err) => Err(image_failure(err.to_string())),
        }
    }

    /// One container run per record, in order, each in a fresh `input/` and `output/`: a failing
    /// record does not stop the others. A record reached after the stop time is not started.
    async fn run_records(
        &self,
        runs: &Runs<'_>,
        work: &[Work],
        response: &mut Response,
    ) -> Result<Vec<RecordResult>, Failure> {
        let mut records = Vec::with_capacity(work.len());
        for (index, item) in work.iter().enumerate() {
            if index > 0 {
                runs.request
                    .dir
                    .reset()
                    .map_err(|e| Failure::new(FailureKind::Internal, e))?;
            }
            let label = item.input.url();
            if Instant::now() >= runs.stop_at {
                records.push(RecordResult::failed(
                    label,
                    item.message_id.clone(),
                    None,
                    Vec::new(),
                    Failure::new(
                        FailureKind::Timeout,
                        "not started: the invocation reached its stop time (deadline less SCAR_TIMEOUT_MARGIN) on an earlier record",
                    ),
                ));
                continue;
            }
            let processed = self.process(runs, &item.input, response).await;
            response.outputs.extend(processed.outputs.iter().cloned());
            let record = match processed.verdict {
                Ok(code) => {
                    response.exit_code = Some(code);
                    RecordResult::succeeded(
                        label,
                        item.message_id.clone(),
                        Some(code),
                        processed.outputs,
                    )
                }
                Err(failure) => {
                    if processed.exit_code.is_some() {
                        response.exit_code = processed.exit_code;
                    }
                    tracing::error!(
                        error_type = failure.kind.error_type(),
                        input = label.as_deref().unwrap_or("event.json"),
                        "record failed: {}",
                        failure.message
                    );
                    RecordResult::failed(
                        label,
                        item.message_id.clone(),
                        processed.exit_code,
                        processed.outputs,
                        failure,
                    )
                }
            };
            records.push(record);
        }
        Ok(records)
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
            tenant_id: invocation.tenant_id.clone(),
        })
    }

    /// One run: stage `input` in, run the container, stage the outputs out, and judge. Outputs
    /// written before a failure are still uploaded.
    async fn process(&self, runs: &Runs<'_>, input: &Input, response: &mut Response) -> Processed {
        let dir = &runs.request.dir;
        let started = Instant::now();
        let staged = self.stage_in(dir, input, runs.payload, runs.stop_at).await;
        response.phases_ms.stage_in += ms(started);
        let input_file = match staged {
            Ok(staged) => staged,
            Err(failure) => return Processed::failed(failure),
        };
        tracing::info!(phase = "stage-in", duration_ms = ms(started), input = %input_file.display(), "input staged");

        let spec =
            match container_spec(&runs.image, &self.config, &runs.request, input, &input_file) {
                Ok(spec) => spec,
                Err(failure) => return Processed::failed(failure),
            };
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
        let ended = Some(Instant::now());
        let exit_code = ran.as_ref().ok().map(|ran| ran.outcome.exit_code());
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
            Input::Direct | Input::Http(_) => self.config.output.clone(),
        };
        // An HTTP request's outputs are its answer: they are uploaded only when SCAR_OUTPUT asks.
        let report = match (input, &output) {
            (Input::Http(_), None) => UploadReport::default(),
            _ => self.stage_out(dir, output.as_ref()).await,
        };
        response.phases_ms.stage_out += ms(started);
        tracing::info!(
            phase = "stage-out",
            duration_ms = ms(started),
            uploaded = report.uploaded.len(),
            failed = report.failed.len(),
            "outputs staged out"
        );
        let verdict = verdict(
            ran,
            &report,
            &report.uploaded,
            &runs.tails,
            self.config.timeout_margin,
            &response.unconfined,
        );
        Processed {
            verdict,
            exit_code,
            outputs: report.uploaded,
            ended,
        }
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

    /// Put `input` in the input directory: the S3 object downloaded (its size reserved in
    /// `/tmp` for the download's time, see [`Space`]: then the file itself fills the space), or
    /// the payload written.
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
                let reservation = self
                    .space
                    .reserve(&self.request_root, object.size.unwrap_or(0))
                    .map_err(|e| Failure::new(FailureKind::Input, e.describe(&object.url())))?;
                let client = self.s3.client().await;
                let bytes = stage::download(client, object, &path, stop_at)
                    .await
                    .map_err(input_failure)?;
                drop(reservation);
                tracing::debug!(bytes, input = %object.url(), "downloaded");
                Ok(path)
            }
            Input::Direct => {
                let path = dir.input().join(DIRECT_INPUT_NAME);
                write(&path, payload)?;
                Ok(path)
            }
            Input::Http(request) => {
                let path = dir.input().join(&request.file_name);
                let reservation = self
                    .space
                    .reserve(&self.request_root, request.body.len() as u64)
                    .map_err(|e| Failure::new(FailureKind::Input, e.describe(&request.label())))?;
                write(&path, &request.body)?;
                drop(reservation);
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
    /// The image's cache entry, held against eviction while the records run.
    _hold: Hold,
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
