//! Starting a session: the function from its template, the S3 endpoint over the data
//! directory, the Runtime API, and the bootstrap's launch with Lambda's environment.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::args::{FunctionArgs, parse_overrides};
use super::environment::{Endpoints, lambda_environment};
use super::error::{LocalError, io};
use super::function;
use super::output::{Context, describe_function};
use super::runtime_api::RuntimeApi;
use super::s3::OUTPUT_PREFIX;
use super::s3::S3Endpoint;
use super::sandbox::{self, LambdaSim, Launch};
use super::session::Session;

/// Where the function's outputs are uploaded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Outputs {
    /// Always to the local bucket's `output/`: S3 events, whose outputs are the point.
    LocalBucket,
    /// To the local bucket only when the template sets `SCAR_OUTPUT`: an HTTP request's
    /// outputs are its answer, and uploading them too changes what the bootstrap answers.
    AsTemplate,
}

/// Start the session of `args`'s function over `data_dir`, serving `extra_buckets` too.
pub(super) async fn start(
    args: &FunctionArgs,
    data_dir: &Path,
    extra_buckets: Vec<String>,
    outputs: Outputs,
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
        (None, None) => crate::cmd::default_cache_dir(),
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
        output: match outputs {
            Outputs::AsTemplate
                if !function.env.iter().any(|(n, _)| n == "SCAR_OUTPUT")
                    && !function.unresolved.iter().any(|(n, _)| n == "SCAR_OUTPUT") =>
            {
                None
            }
            _ => Some(format!("s3://{}/{OUTPUT_PREFIX}", args.bucket)),
        },
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
