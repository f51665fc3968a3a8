//! `scar local`: the whole Lambda + S3 flow on one machine, with no AWS account.
//!
//! It serves an embedded Runtime API ([`runtime_api`]) and an embedded S3-compatible endpoint
//! over a local directory ([`s3`]), and runs the real `bootstrap` with Lambda's environment
//! ([`sandbox`]), so the same code paths (Runtime API, `aws-sdk-s3`, engines) run as on Lambda.
//! The function's configuration comes from its SAM template ([`function`]).
//!
//! - `scar local --function DIR --watch DATA`: an S3 event for each file that appears under
//!   `DATA/input/`; outputs land in `DATA/output/`.
//! - `scar local invoke --function DIR --event EVENT.json` (or `--input FILE`): one event, the
//!   response printed.

pub(crate) mod event;
mod function;
pub(crate) mod runtime_api;
pub(crate) mod s3;
mod sandbox;
mod session;
mod watch;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use bytes::Bytes;

use self::event::CreatedObject;
use self::function::Function;
use self::runtime_api::RuntimeApi;
use self::s3::S3Endpoint;
use self::sandbox::{LambdaSim, Launch};
use self::session::{Outcome, Session};

/// The prefix the watch turns into events, and the one outputs go to (outside the first, so
/// outputs never trigger the function again).
const INPUT_PREFIX: &str = "input/";
const OUTPUT_PREFIX: &str = "output/";
/// How often `--watch` looks for new files.
const POLL: Duration = Duration::from_millis(250);

/// Arguments of `scar local`.
#[derive(clap::Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct LocalArgs {
    #[command(subcommand)]
    command: Option<LocalCommand>,
    #[command(flatten)]
    function: FunctionArgs,
    /// Data directory: each file that appears under DIR/input/ is sent as an S3 event; outputs
    /// land in DIR/output/.
    #[arg(long, value_name = "DIR", required = true)]
    watch: Option<PathBuf>,
    /// Also process the files already under DIR/input/ when the watch starts.
    #[arg(long)]
    existing: bool,
}

/// Subcommands of `scar local`.
#[derive(clap::Subcommand)]
enum LocalCommand {
    /// Send one event to the function and print its response.
    Invoke(InvokeArgs),
}

/// Arguments of `scar local invoke`.
#[derive(clap::Args)]
struct InvokeArgs {
    #[command(flatten)]
    function: FunctionArgs,
    /// The event document to send (e.g. an S3 notification naming objects under --dir).
    #[arg(
        long,
        value_name = "EVENT.json",
        required_unless_present = "input",
        conflicts_with = "input"
    )]
    event: Option<PathBuf>,
    /// A file to process: copied to DIR/input/<name> and sent as an S3 ObjectCreated event.
    #[arg(long, value_name = "FILE")]
    input: Option<PathBuf>,
    /// Data directory backing the local S3 bucket(s): object KEY is the file DIR/KEY.
    #[arg(long, value_name = "DIR", default_value = ".")]
    dir: PathBuf,
}

/// What every `scar local` command needs to know about the function and its sandbox.
#[derive(clap::Args, Clone)]
struct FunctionArgs {
    /// The function directory (template.yaml + script.sh), e.g. examples/demo.
    #[arg(long, value_name = "DIR", required = true)]
    function: Option<PathBuf>,
    /// Logical id of the function in the template, when it declares several.
    #[arg(long, value_name = "ID")]
    function_id: Option<String>,
    /// The bootstrap to run (default: `bootstrap` next to this scar).
    #[arg(long, value_name = "PATH")]
    bootstrap: Option<PathBuf>,
    /// Run the bootstrap under `scar lambda-sim`: uid 993, seccomp, no new user namespaces, a bare
    /// read-only root, /tmp of the function's EphemeralStorage size (needs root and a static
    /// bootstrap, e.g. dist/scar-<arch>/bootstrap from ./build.sh).
    #[arg(long)]
    lambda_sim: bool,
    /// The preload engine's libraries, mounted at /opt/preload under --lambda-sim (default:
    /// $SCAR_PRELOAD_DIR, else preload/ next to the bootstrap, else the build tree's).
    #[arg(long, value_name = "DIR")]
    preload_dir: Option<PathBuf>,
    /// Size of /tmp under --lambda-sim, in MB (default: the template's EphemeralStorage, or 512).
    #[arg(long, value_name = "MB")]
    tmp_size: Option<u64>,
    /// Set or override a variable of the function's environment (repeatable).
    #[arg(long = "env", value_name = "NAME=VALUE")]
    env: Vec<String>,
    /// The region the function believes it runs in.
    #[arg(long, default_value = "us-east-1")]
    region: String,
    /// Name of the local bucket (it is the data directory).
    #[arg(long, default_value = "scar-local")]
    bucket: String,
    /// Image cache of the bootstrap (default: $SCAR_CACHE_DIR, else ~/.cache/scar; /tmp/scar
    /// under --lambda-sim, like a cold Lambda sandbox).
    #[arg(long, value_name = "DIR")]
    cache_dir: Option<PathBuf>,
    /// Override the template's Timeout, in seconds.
    #[arg(long, value_name = "SECONDS")]
    timeout: Option<u64>,
}

/// Why `scar local` could not run (the function's own failures are outcomes, not these).
#[derive(Debug, thiserror::Error)]
enum LocalError {
    #[error("--function is required: give the function directory, e.g. --function examples/demo")]
    NoFunction,
    #[error("--env `{0}` is not NAME=VALUE")]
    Env(String),
    #[error("give the event to send: --event EVENT.json or --input FILE")]
    NoEvent,
    #[error(transparent)]
    Function(#[from] function::FunctionError),
    #[error(transparent)]
    Sandbox(#[from] sandbox::SandboxError),
    #[error(transparent)]
    S3(#[from] s3::S3Error),
    #[error(transparent)]
    Session(#[from] session::SessionError),
    #[error("cannot start the Runtime API: {0}")]
    RuntimeApi(std::io::Error),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not a JSON event document: {source}")]
    Event {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error(
        "{path} is not inside the data directory {dir}: pass --dir with a directory that contains it"
    )]
    Outside { path: PathBuf, dir: PathBuf },
    #[error("cannot start the async runtime: {0}")]
    Tokio(std::io::Error),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> LocalError + '_ {
    move |source| LocalError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Run `scar local`.
pub fn run(args: LocalArgs) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => return super::fail(&LocalError::Tokio(err)),
    };
    let result = runtime.block_on(async {
        match args.command {
            Some(LocalCommand::Invoke(invoke)) => run_invoke(invoke).await,
            None => run_watch(args.function, args.watch.unwrap_or_default(), args.existing).await,
        }
    });
    match result {
        Ok(code) => code,
        Err(err) => super::fail(&err),
    }
}

/// Set `name` in an ordered environment, replacing an earlier value.
fn set(env: &mut Vec<(String, String)>, name: &str, value: impl Into<String>) {
    env.retain(|(existing, _)| existing != name);
    env.push((name.to_owned(), value.into()));
}

/// The inputs of [`lambda_environment`] that come from the running session.
struct Endpoints<'a> {
    runtime_api: String,
    s3: &'a S3Endpoint,
    task_root: &'a Path,
    runtime_dir: &'a Path,
    cache_dir: &'a Path,
    output: String,
}

/// The bootstrap's complete environment: Lambda's variables, the template's, then overrides.
fn lambda_environment(
    function: &Function,
    args: &FunctionArgs,
    endpoints: &Endpoints<'_>,
    overrides: &[(String, String)],
) -> Vec<(String, String)> {
    let mut env = Vec::new();
    let memory = function.memory_mb.to_string();
    let lambda = [
        ("AWS_LAMBDA_RUNTIME_API", endpoints.runtime_api.clone()),
        ("AWS_LAMBDA_FUNCTION_NAME", function.name.clone()),
        ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", memory),
        ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST".to_owned()),
        ("AWS_LAMBDA_INITIALIZATION_TYPE", "on-demand".to_owned()),
        (
            "AWS_LAMBDA_LOG_GROUP_NAME",
            format!("/aws/lambda/{}", function.name),
        ),
        ("AWS_LAMBDA_LOG_STREAM_NAME", "scar-local".to_owned()),
        ("AWS_REGION", args.region.clone()),
        ("AWS_DEFAULT_REGION", args.region.clone()),
        ("AWS_ACCESS_KEY_ID", endpoints.s3.access_key.clone()),
        ("AWS_SECRET_ACCESS_KEY", endpoints.s3.secret_key.clone()),
        ("AWS_ENDPOINT_URL_S3", endpoints.s3.url()),
        // The credentials above are all there is: never wait for an instance metadata service.
        ("AWS_EC2_METADATA_DISABLED", "true".to_owned()),
        (
            "LAMBDA_TASK_ROOT",
            endpoints.task_root.display().to_string(),
        ),
        (
            "LAMBDA_RUNTIME_DIR",
            endpoints.runtime_dir.display().to_string(),
        ),
        ("_HANDLER", function.handler.clone()),
        ("PATH", "/usr/local/bin:/usr/bin/:/bin:/opt/bin".to_owned()),
        ("LANG", "en_US.UTF-8".to_owned()),
        ("TZ", ":UTC".to_owned()),
    ];
    for (name, value) in lambda {
        set(&mut env, name, value);
    }
    set(
        &mut env,
        "SCAR_CACHE_DIR",
        endpoints.cache_dir.display().to_string(),
    );
    // Logging choices of the person running scar local reach the bootstrap.
    for name in ["SCAR_LOG", "SCAR_LOG_FORMAT"] {
        if let Some(value) = std::env::var_os(name).and_then(|v| v.into_string().ok()) {
            set(&mut env, name, value);
        }
    }
    for (name, value) in &function.env {
        set(&mut env, name, value.clone());
    }
    set(&mut env, "SCAR_OUTPUT", endpoints.output.clone());
    for (name, value) in overrides {
        set(&mut env, name, value.clone());
    }
    env
}

/// Everything about a started session that the commands print.
struct Context {
    function: Function,
    data_dir: PathBuf,
    buckets: Vec<String>,
}

fn parse_overrides(args: &FunctionArgs) -> Result<Vec<(String, String)>, LocalError> {
    args.env
        .iter()
        .map(|entry| match entry.split_once('=') {
            Some((name, value)) if !name.is_empty() => Ok((name.to_owned(), value.to_owned())),
            _ => Err(LocalError::Env(entry.clone())),
        })
        .collect()
}

async fn start(
    args: &FunctionArgs,
    data_dir: &Path,
    extra_buckets: Vec<String>,
) -> Result<(Session, Context), LocalError> {
    let dir = args.function.as_deref().ok_or(LocalError::NoFunction)?;
    let overrides = parse_overrides(args)?;
    let mut function = function::load(dir, args.function_id.as_deref(), &args.region)?;
    if let Some(timeout) = args.timeout {
        function.timeout_s = timeout;
    }
    let bootstrap = sandbox::find_bootstrap(args.bootstrap.as_deref())?;
    let bootstrap = bootstrap.canonicalize().map_err(io(&bootstrap))?;

    let mut buckets = vec![args.bucket.clone()];
    buckets.extend(extra_buckets);
    buckets.sort();
    buckets.dedup();
    let s3 = S3Endpoint::start(data_dir, &buckets).await?;
    let data_dir = data_dir.canonicalize().map_err(io(data_dir))?;

    let (notices, notice_receiver) = tokio::sync::mpsc::unbounded_channel();
    let arn = format!(
        "arn:aws:lambda:{}:000000000000:function:{}",
        args.region, function.name
    );
    let timeout = Duration::from_secs(function.timeout_s);
    let api = RuntimeApi::start(arn, timeout, notices)
        .await
        .map_err(LocalError::RuntimeApi)?;

    let sim = args.lambda_sim.then(|| LambdaSim {
        tmp_mb: args.tmp_size.unwrap_or(function.ephemeral_mb),
        cache_dir: None,
    });
    let preload_dir = sandbox::find_preload_dir(args.preload_dir.as_deref(), &bootstrap);
    let mut launch = Launch {
        bootstrap,
        function_dir: function.dir.clone(),
        env: Vec::new(),
        sim,
        preload_dir,
    };
    let (task_root, visible_bootstrap) = sandbox::visible_paths(&launch);
    let runtime_dir = visible_bootstrap
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let cache_dir = match (&launch.sim, &args.cache_dir) {
        (_, Some(dir)) => std::path::absolute(dir).map_err(io(dir))?,
        (Some(_), None) => PathBuf::from("/tmp/scar"),
        (None, None) => super::default_cache_dir(),
    };
    if let (Some(sim), Some(_)) = (&mut launch.sim, &args.cache_dir) {
        // Shown at its own path inside the simulator, where nothing of this host is otherwise;
        // made here for the function's uid when it does not exist.
        if !cache_dir.exists() {
            std::fs::create_dir_all(&cache_dir).map_err(io(&cache_dir))?;
            let uid = crate::sim::SANDBOX_UID;
            std::os::unix::fs::chown(&cache_dir, Some(uid), Some(uid)).map_err(io(&cache_dir))?;
        }
        sim.cache_dir = Some(cache_dir.canonicalize().map_err(io(&cache_dir))?);
    }
    let endpoints = Endpoints {
        runtime_api: api.address().to_string(),
        s3: &s3,
        task_root: &task_root,
        runtime_dir: &runtime_dir,
        cache_dir: &cache_dir,
        output: format!("s3://{}/{OUTPUT_PREFIX}", args.bucket),
    };
    launch.env = lambda_environment(&function, args, &endpoints, &overrides);

    describe_function(&function, &launch, &data_dir, &args.bucket);
    let session = Session::new(api, s3, notice_receiver, launch, timeout);
    Ok((
        session,
        Context {
            function,
            data_dir,
            buckets,
        },
    ))
}

fn env_value<'a>(env: &'a [(String, String)], name: &str) -> &'a str {
    env.iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
        .unwrap_or("(unset)")
}

fn describe_function(function: &Function, launch: &Launch, data_dir: &Path, bucket: &str) {
    eprintln!(
        "scar local: function {} ({}): image {}, timeout {} s, memory {} MB",
        function.logical_id,
        function.dir.display(),
        env_value(&launch.env, "SCAR_IMAGE"),
        function.timeout_s,
        function.memory_mb
    );
    if let Some(runtime) = function
        .runtime
        .as_deref()
        .filter(|r| !r.starts_with("provided"))
    {
        eprintln!(
            "scar local: note: Runtime is {runtime}; the SCAR layer needs provided.al2023 or provided.al2"
        );
    }
    for (name, written) in &function.unresolved {
        if name != "SCAR_OUTPUT" {
            eprintln!(
                "scar local: note: {name} is computed by CloudFormation ({written}) and left unset here"
            );
        }
    }
    eprintln!(
        "scar local: S3 bucket {bucket} is {} (key K is the file {}/K); outputs go to s3://{bucket}/{OUTPUT_PREFIX} = {}",
        data_dir.display(),
        data_dir.display(),
        data_dir.join(OUTPUT_PREFIX).display()
    );
    match &launch.sim {
        Some(sim) => eprintln!(
            "scar local: --lambda-sim (scar lambda-sim): bootstrap {}, uid 993, seccomp, bare read-only root, no new user namespaces, /tmp of {} MB; preload libraries {}",
            launch.bootstrap.display(),
            sim.tmp_mb,
            launch
                .preload_dir
                .as_ref()
                .map_or("not found (pass --preload-dir)".into(), |d| d
                    .display()
                    .to_string())
        ),
        None => eprintln!("scar local: bootstrap {}", launch.bootstrap.display()),
    }
}

/// The key of a file of the data directory (`/`-separated, relative).
fn key_of(data_dir: &Path, path: &Path) -> Result<String, LocalError> {
    let relative = path
        .strip_prefix(data_dir)
        .map_err(|_| LocalError::Outside {
            path: path.to_path_buf(),
            dir: data_dir.to_path_buf(),
        })?;
    let parts: Vec<String> = relative
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    Ok(parts.join("/"))
}

/// The ObjectCreated event for one file of the data directory.
fn event_for(
    context: &Context,
    bucket: &str,
    region: &str,
    path: &Path,
) -> Result<(String, Bytes), LocalError> {
    let key = key_of(&context.data_dir, path)?;
    let size = std::fs::metadata(path).map_err(io(path))?.len();
    let etag = event::etag_of(path).map_err(io(path))?;
    let object = CreatedObject {
        bucket: bucket.to_owned(),
        key: key.clone(),
        size,
        etag,
    };
    Ok((
        key,
        Bytes::from(event::object_created(&[object], region, SystemTime::now())),
    ))
}

/// Print one outcome for a person; `true` on success.
fn report(context: &Context, label: &str, outcome: &Outcome, elapsed: Duration) -> bool {
    let secs = elapsed.as_secs_f64();
    match outcome {
        Outcome::Response(document) => {
            let exit = document
                .get("exitCode")
                .map(|c| c.to_string())
                .unwrap_or_else(|| "?".into());
            let engine = document
                .get("engine")
                .and_then(|e| e.as_str())
                .unwrap_or("?");
            println!("{label}: done in {secs:.2} s (exit {exit}, engine {engine})");
            let outputs = document
                .get("outputs")
                .and_then(|o| o.as_array())
                .cloned()
                .unwrap_or_default();
            if outputs.is_empty() {
                println!("  no output files");
            }
            for url in outputs.iter().filter_map(|o| o.as_str()) {
                match Session::local_path(&context.data_dir, &context.buckets, url) {
                    Some(path) => println!("  output: {}", path.display()),
                    None => println!("  output: {url}"),
                }
            }
            true
        }
        Outcome::Error {
            error_type,
            message,
        } => {
            println!("{label}: FAILED after {secs:.2} s: {error_type}: {message}");
            false
        }
        Outcome::InitError {
            error_type,
            message,
        } => {
            println!(
                "{label}: FAILED: the bootstrap could not start ({error_type}): {message}\n  fix the Environment of {} in {}/template.yaml (or pass --env NAME=VALUE)",
                context.function.logical_id,
                context.function.dir.display()
            );
            false
        }
        Outcome::Exited(why) => {
            println!("{label}: FAILED: {why}");
            false
        }
        Outcome::TimedOut(after) => {
            println!(
                "{label}: FAILED: no answer after {:.0} s (Timeout is {} s): the sandbox was stopped",
                after.as_secs_f64(),
                context.function.timeout_s
            );
            false
        }
    }
}

async fn run_invoke(args: InvokeArgs) -> Result<ExitCode, LocalError> {
    let data_dir = args.dir.clone();
    std::fs::create_dir_all(&data_dir).map_err(io(&data_dir))?;
    let (payload, event_buckets, input) = match (&args.event, &args.input) {
        (Some(path), _) => {
            let bytes = std::fs::read(path).map_err(io(path))?;
            let document: serde_json::Value =
                serde_json::from_slice(&bytes).map_err(|source| LocalError::Event {
                    path: path.clone(),
                    source,
                })?;
            (Some(Bytes::from(bytes)), event::buckets_of(&document), None)
        }
        (None, Some(file)) => (None, Vec::new(), Some(file.clone())),
        (None, None) => return Err(LocalError::NoEvent),
    };
    let (mut session, context) = start(&args.function, &data_dir, event_buckets).await?;
    let (label, payload) = match (payload, input) {
        (Some(payload), _) => (
            args.event
                .as_deref()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
            payload,
        ),
        (None, Some(file)) => {
            let name = file
                .file_name()
                .ok_or_else(|| io(&file)(std::io::ErrorKind::InvalidInput.into()))?;
            let target = context.data_dir.join(INPUT_PREFIX).join(name);
            let source = file.canonicalize().map_err(io(&file))?;
            if source != target {
                std::fs::create_dir_all(context.data_dir.join(INPUT_PREFIX))
                    .map_err(io(&context.data_dir))?;
                std::fs::copy(&source, &target).map_err(io(&target))?;
            }
            let (key, payload) = event_for(
                &context,
                &args.function.bucket,
                &args.function.region,
                &target,
            )?;
            (key, payload)
        }
        (None, None) => return Err(LocalError::NoEvent),
    };
    let started = std::time::Instant::now();
    let outcome = session
        .invoke(payload, |request_id| {
            eprintln!("{label}: started (request {request_id})")
        })
        .await?;
    session.stop().await;
    let ok = report(&context, &label, &outcome, started.elapsed());
    let document = match &outcome {
        Outcome::Response(document) => document.clone(),
        Outcome::Error {
            error_type,
            message,
        }
        | Outcome::InitError {
            error_type,
            message,
        } => {
            serde_json::json!({ "errorType": error_type, "errorMessage": message })
        }
        Outcome::Exited(why) => {
            serde_json::json!({ "errorType": "Runtime.ExitError", "errorMessage": why })
        }
        Outcome::TimedOut(_) => {
            serde_json::json!({ "errorType": "Sandbox.Timedout", "errorMessage": "timed out" })
        }
    };
    println!(
        "{}",
        serde_json::to_string_pretty(&document).unwrap_or_default()
    );
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

async fn run_watch(
    args: FunctionArgs,
    data_dir: PathBuf,
    existing: bool,
) -> Result<ExitCode, LocalError> {
    let input_dir = data_dir.join(INPUT_PREFIX);
    std::fs::create_dir_all(&input_dir).map_err(io(&input_dir))?;
    let (mut session, context) = start(&args, &data_dir, Vec::new()).await?;
    let input_dir = context.data_dir.join(INPUT_PREFIX);
    let mut watcher = watch::Watcher::new(&input_dir, existing);
    let left_alone = if existing {
        String::new()
    } else {
        format!(" ({} files already there are left alone)", watcher.known())
    };
    eprintln!(
        "scar local: watching {}{left_alone}; Ctrl-C to stop",
        input_dir.display()
    );
    let (mut done, mut failed) = (0u64, 0u64);
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    'watch: loop {
        tokio::select! {
            _ = &mut ctrl_c => break 'watch,
            () = tokio::time::sleep(POLL) => {}
        }
        for path in watcher.scan() {
            let (key, payload) = match event_for(&context, &args.bucket, &args.region, &path) {
                Ok(found) => found,
                // The file went away between the scan and now: nothing to process.
                Err(err) => {
                    eprintln!("scar local: skipping {}: {err}", path.display());
                    continue;
                }
            };
            let started = std::time::Instant::now();
            // Ctrl-C during an invocation stops the sandbox at once, as closing Lambda would.
            let outcome = tokio::select! {
                _ = &mut ctrl_c => {
                    println!("{key}: interrupted");
                    break 'watch;
                }
                outcome = session.invoke(payload, |request_id| {
                    println!("{key}: started (request {request_id})")
                }) => outcome?,
            };
            if report(&context, &key, &outcome, started.elapsed()) {
                done += 1;
            } else {
                failed += 1;
            }
        }
    }
    session.stop().await;
    eprintln!("scar local: stopped after {done} successful and {failed} failed invocations");
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_slash_separated_and_relative_to_the_data_directory() {
        assert_eq!(
            key_of(Path::new("/d"), Path::new("/d/input/a b/c.png")).unwrap(),
            "input/a b/c.png"
        );
        assert!(key_of(Path::new("/d"), Path::new("/elsewhere/c.png")).is_err());
    }

    #[tokio::test]
    async fn the_bootstrap_gets_lambdas_variables_then_the_templates_then_the_overrides() {
        let dir = tempfile::tempdir().unwrap();
        let s3 = S3Endpoint::start(dir.path(), &["scar-local".into()])
            .await
            .unwrap();
        let function = Function {
            dir: PathBuf::from("/fn"),
            logical_id: "Demo".into(),
            name: "demo-fn".into(),
            env: vec![
                ("SCAR_IMAGE".into(), "oci:image:demo".into()),
                ("SCAR_OUTPUT".into(), "s3://elsewhere/".into()),
                ("SCAR_LOG".into(), "debug".into()),
            ],
            unresolved: Vec::new(),
            timeout_s: 60,
            memory_mb: 1024,
            ephemeral_mb: 512,
            handler: "script.sh".into(),
            runtime: Some("provided.al2023".into()),
        };
        let args = FunctionArgs {
            function: Some(PathBuf::from("/fn")),
            function_id: None,
            bootstrap: None,
            lambda_sim: false,
            preload_dir: None,
            tmp_size: None,
            env: Vec::new(),
            region: "eu-south-2".into(),
            bucket: "scar-local".into(),
            cache_dir: None,
            timeout: None,
        };
        let endpoints = Endpoints {
            runtime_api: "127.0.0.1:9001".into(),
            s3: &s3,
            task_root: Path::new("/fn"),
            runtime_dir: Path::new("/opt"),
            cache_dir: Path::new("/cache"),
            output: "s3://scar-local/output/".into(),
        };
        let overrides = vec![("SCAR_LOG".to_owned(), "trace".to_owned())];
        let env = lambda_environment(&function, &args, &endpoints, &overrides);
        let get = |name: &str| env.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str());
        assert_eq!(get("AWS_LAMBDA_RUNTIME_API"), Some("127.0.0.1:9001"));
        assert_eq!(get("AWS_LAMBDA_FUNCTION_NAME"), Some("demo-fn"));
        assert_eq!(get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE"), Some("1024"));
        assert_eq!(get("AWS_REGION"), Some("eu-south-2"));
        assert_eq!(get("AWS_ENDPOINT_URL_S3"), Some(s3.url().as_str()));
        assert_eq!(get("AWS_ACCESS_KEY_ID"), Some(s3.access_key.as_str()));
        assert_eq!(get("LAMBDA_TASK_ROOT"), Some("/fn"));
        assert_eq!(get("SCAR_CACHE_DIR"), Some("/cache"));
        assert_eq!(get("SCAR_IMAGE"), Some("oci:image:demo"));
        // Outputs always land in the local bucket; --env wins over the template.
        assert_eq!(get("SCAR_OUTPUT"), Some("s3://scar-local/output/"));
        assert_eq!(get("SCAR_LOG"), Some("trace"));
        assert_eq!(env.iter().filter(|(n, _)| n == "SCAR_LOG").count(), 1);
        // Nothing of this process's own environment leaks in besides the logging choices.
        assert!(get("HOME").is_none());
    }

    #[test]
    fn set_replaces_an_earlier_value_and_keeps_one_entry() {
        let mut env = vec![("A".to_owned(), "1".to_owned())];
        set(&mut env, "A", "2");
        set(&mut env, "B", "3");
        assert_eq!(
            env,
            [
                ("A".to_owned(), "2".to_owned()),
                ("B".to_owned(), "3".to_owned())
            ]
        );
    }
}
