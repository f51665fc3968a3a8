//! `scar layer`: build the layer zips (`./build.sh`) and publish them as Lambda layer versions.
//!
//! One layer per architecture (`<name>-x86_64`, `<name>-arm64`): a layer version holds one zip,
//! and a function of either architecture attaches the matching one.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use aws_sdk_lambda::primitives::Blob;
use aws_sdk_lambda::types::{Architecture, LayerVersionContentInput, Runtime};

/// Lambda refuses a direct upload (`ZipFile`) above this; bigger zips go through S3.
const DIRECT_UPLOAD_MAX: u64 = 50 * 1024 * 1024;
/// The runtimes the bootstrap serves.
const RUNTIMES: [&str; 2] = ["provided.al2023", "provided.al2"];

/// Subcommands of `scar layer`.
#[derive(clap::Subcommand)]
pub enum LayerCommand {
    /// Build the static bootstraps and the layer zips into dist/ (runs ./build.sh).
    Build(BuildArgs),
    /// Publish dist/scar-layer-*.zip as Lambda layer versions and print their ARNs.
    Publish(PublishArgs),
}

/// Arguments of `scar layer build`.
#[derive(clap::Args)]
pub struct BuildArgs {
    /// The repository (default: the nearest parent of the current directory with build.sh).
    #[arg(long, value_name = "DIR")]
    pub repo: Option<PathBuf>,
    /// Arguments passed to build.sh.
    #[arg(last = true)]
    pub args: Vec<String>,
}

/// Arguments of `scar layer publish`.
#[derive(clap::Args)]
pub struct PublishArgs {
    /// The AWS region to publish in.
    #[arg(long)]
    pub region: String,
    /// Print the requests instead of sending them (no credentials needed).
    #[arg(long)]
    pub dry_run: bool,
    /// Layer name prefix; the architecture is appended (scar-x86_64, scar-arm64).
    #[arg(long, default_value = "scar")]
    pub name: String,
    /// Where the zips are.
    #[arg(long, value_name = "DIR", default_value = "dist")]
    pub dist: PathBuf,
    /// Upload zips through this S3 bucket (needed above 50 MB).
    #[arg(long, value_name = "BUCKET")]
    pub s3_bucket: Option<String>,
    /// Let every AWS account use the layer versions (lambda:GetLayerVersion for `*`).
    #[arg(long)]
    pub public: bool,
}

/// Why a layer command failed.
#[derive(Debug, thiserror::Error)]
pub enum LayerError {
    /// No build.sh up the tree.
    #[error(
        "no build.sh in {0} or its parents: run scar layer build in the repository, or pass --repo"
    )]
    NoRepo(PathBuf),
    /// build.sh failed.
    #[error("{script} failed ({status}): see its output above")]
    Build {
        /// The script.
        script: PathBuf,
        /// Its exit status.
        status: std::process::ExitStatus,
    },
    /// A file could not be read or run.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// No zips to publish.
    #[error("no scar-layer-*.zip in {0}: build them first with `scar layer build`")]
    NoZips(PathBuf),
    /// A zip whose architecture cannot be told from its name.
    #[error("{0}: the name says neither x86_64 nor arm64 (expected scar-layer-<arch>.zip)")]
    UnknownArch(PathBuf),
    /// A zip too big for a direct upload.
    #[error(
        "{path} is {size} bytes, over Lambda's 50 MB direct upload limit: pass --s3-bucket BUCKET"
    )]
    TooBig {
        /// The zip.
        path: PathBuf,
        /// Its size.
        size: u64,
    },
    /// An AWS call failed.
    #[error("{call} for {layer}: {message}")]
    Aws {
        /// The API call.
        call: &'static str,
        /// The layer name.
        layer: String,
        /// The service's code and message with a hint, or the SDK's error with its causes.
        message: String,
    },
    /// The async runtime could not start.
    #[error("cannot start the async runtime: {0}")]
    Tokio(std::io::Error),
}

/// Run `scar layer`.
pub fn run(command: LayerCommand) -> ExitCode {
    let result = match command {
        LayerCommand::Build(args) => build(args),
        LayerCommand::Publish(args) => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .map_err(LayerError::Tokio)
            .and_then(|runtime| runtime.block_on(publish(args))),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => super::fail(&err),
    }
}

fn find_repo(start: &Path) -> Option<PathBuf> {
    start
        .ancestors()
        .find(|dir| dir.join("build.sh").is_file() && dir.join("Cargo.toml").is_file())
        .map(Path::to_path_buf)
}

fn build(args: BuildArgs) -> Result<(), LayerError> {
    let cwd = std::env::current_dir().map_err(|source| LayerError::Io {
        path: ".".into(),
        source,
    })?;
    let repo = match args.repo {
        Some(repo) => repo,
        None => find_repo(&cwd).ok_or_else(|| LayerError::NoRepo(cwd.clone()))?,
    };
    let script = repo.join("build.sh");
    if !script.is_file() {
        return Err(LayerError::NoRepo(repo));
    }
    eprintln!("scar layer build: running {}", script.display());
    let status = std::process::Command::new("bash")
        .arg(&script)
        .args(&args.args)
        .current_dir(&repo)
        .status()
        .map_err(|source| LayerError::Io {
            path: script.clone(),
            source,
        })?;
    if !status.success() {
        return Err(LayerError::Build { script, status });
    }
    for (zip, arch) in layer_zips(&repo.join("dist"))? {
        let size = std::fs::metadata(&zip).map(|m| m.len()).unwrap_or_default();
        println!("{} ({arch}, {size} bytes)", zip.display());
    }
    Ok(())
}

/// The layer zips of `dist` and their architectures, sorted by name.
fn layer_zips(dist: &Path) -> Result<Vec<(PathBuf, Architecture)>, LayerError> {
    let entries = std::fs::read_dir(dist).map_err(|source| LayerError::Io {
        path: dist.to_path_buf(),
        source,
    })?;
    let mut zips = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !(name.starts_with("scar-layer-") && name.ends_with(".zip")) {
            continue;
        }
        let path = entry.path();
        let arch = if name.contains("x86_64") || name.contains("amd64") {
            Architecture::X8664
        } else if name.contains("arm64") || name.contains("aarch64") {
            Architecture::Arm64
        } else {
            return Err(LayerError::UnknownArch(path));
        };
        zips.push((path, arch));
    }
    zips.sort_by(|a, b| a.0.cmp(&b.0));
    if zips.is_empty() {
        return Err(LayerError::NoZips(dist.to_path_buf()));
    }
    Ok(zips)
}

/// One layer version to publish.
struct Plan {
    zip: PathBuf,
    size: u64,
    layer: String,
    arch: Architecture,
    description: String,
}

fn plans(args: &PublishArgs) -> Result<Vec<Plan>, LayerError> {
    layer_zips(&args.dist)?
        .into_iter()
        .map(|(zip, arch)| {
            let size = std::fs::metadata(&zip)
                .map_err(|source| LayerError::Io {
                    path: zip.clone(),
                    source,
                })?
                .len();
            if size > DIRECT_UPLOAD_MAX && args.s3_bucket.is_none() {
                return Err(LayerError::TooBig { path: zip, size });
            }
            Ok(Plan {
                layer: format!("{}-{}", args.name, arch.as_str()),
                description: format!(
                    "SCAR {}: run any OCI image's tools on S3 events",
                    env!("CARGO_PKG_VERSION")
                ),
                zip,
                size,
                arch,
            })
        })
        .collect()
}

/// The requests of a plan as a person reads them (the zip is named, not dumped).
fn describe(plan: &Plan, args: &PublishArgs) -> Vec<serde_json::Value> {
    let key = format!(
        "scar-layers/{}",
        plan.zip.file_name().unwrap_or_default().to_string_lossy()
    );
    let content = match &args.s3_bucket {
        Some(bucket) => serde_json::json!({ "S3Bucket": bucket, "S3Key": key }),
        None => {
            serde_json::json!({ "ZipFile": format!("<{} bytes of {}>", plan.size, plan.zip.display()) })
        }
    };
    let mut requests = Vec::new();
    if let Some(bucket) = &args.s3_bucket {
        requests.push(serde_json::json!({
            "Action": "s3:PutObject", "Region": args.region, "Bucket": bucket, "Key": key,
            "Body": format!("<{} bytes of {}>", plan.size, plan.zip.display()),
        }));
    }
    requests.push(serde_json::json!({
        "Action": "lambda:PublishLayerVersion",
        "Region": args.region,
        "LayerName": plan.layer,
        "Description": plan.description,
        "CompatibleRuntimes": RUNTIMES,
        "CompatibleArchitectures": [plan.arch.as_str()],
        "LicenseInfo": "Apache-2.0",
        "Content": content,
    }));
    if args.public {
        requests.push(serde_json::json!({
            "Action": "lambda:AddLayerVersionPermission",
            "Region": args.region,
            "LayerName": plan.layer,
            "VersionNumber": "<the version just published>",
            "StatementId": "public",
            "Principal": "*",
            "PermissionAction": "lambda:GetLayerVersion",
        }));
    }
    requests
}

fn aws_error<E, R>(
    call: &'static str,
    layer: &str,
    err: &aws_sdk_lambda::error::SdkError<E, R>,
) -> LayerError
where
    E: aws_sdk_lambda::error::ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    let (service, _) = call.split_once(':').unwrap_or(("AWS", call));
    let needs = format!("the AWS credentials need {call}");
    let message = scar_rootfs::aws::describe(
        err,
        service,
        &[
            ("AccessDenied", &needs),
            ("AccessDeniedException", &needs),
            (
                "UnrecognizedClientException",
                "the AWS credentials are wrong or expired",
            ),
            (
                "InvalidSignatureException",
                "the AWS credentials are wrong or expired",
            ),
        ],
    );
    LayerError::Aws {
        call,
        layer: layer.to_owned(),
        message,
    }
}

async fn publish(args: PublishArgs) -> Result<(), LayerError> {
    let plans = plans(&args)?;
    if args.dry_run {
        for plan in &plans {
            for request in describe(plan, &args) {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&request).unwrap_or_default()
                );
            }
        }
        eprintln!(
            "scar layer publish: dry run, nothing sent ({} layer versions planned)",
            plans.len()
        );
        return Ok(());
    }
    let config = scar_rootfs::aws::load(&scar_rootfs::aws::AwsSettings {
        region: Some(args.region.clone()),
        ..Default::default()
    })
    .await;
    let lambda = aws_sdk_lambda::Client::new(&config);
    for plan in &plans {
        let bytes = std::fs::read(&plan.zip).map_err(|source| LayerError::Io {
            path: plan.zip.clone(),
            source,
        })?;
        let content = match &args.s3_bucket {
            Some(bucket) => {
                let key = format!(
                    "scar-layers/{}",
                    plan.zip.file_name().unwrap_or_default().to_string_lossy()
                );
                let s3 = scar_rootfs::aws::s3_client(&config, None);
                s3.put_object()
                    .bucket(bucket)
                    .key(&key)
                    .body(bytes.into())
                    .send()
                    .await
                    .map_err(|err| aws_error("s3:PutObject", &plan.layer, &err))?;
                LayerVersionContentInput::builder()
                    .s3_bucket(bucket)
                    .s3_key(key)
                    .build()
            }
            None => LayerVersionContentInput::builder()
                .zip_file(Blob::new(bytes))
                .build(),
        };
        let published = lambda
            .publish_layer_version()
            .layer_name(&plan.layer)
            .description(&plan.description)
            .content(content)
            .set_compatible_runtimes(Some(RUNTIMES.iter().map(|r| Runtime::from(*r)).collect()))
            .compatible_architectures(plan.arch.clone())
            .license_info("Apache-2.0")
            .send()
            .await
            .map_err(|err| aws_error("lambda:PublishLayerVersion", &plan.layer, &err))?;
        if args.public {
            lambda
                .add_layer_version_permission()
                .layer_name(&plan.layer)
                .version_number(published.version())
                .statement_id("public")
                .principal("*")
                .action("lambda:GetLayerVersion")
                .send()
                .await
                .map_err(|err| aws_error("lambda:AddLayerVersionPermission", &plan.layer, &err))?;
        }
        println!("{}", published.layer_version_arn().unwrap_or_default());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(dist: &Path) -> PublishArgs {
        PublishArgs {
            region: "eu-west-1".into(),
            dry_run: true,
            name: "scar".into(),
            dist: dist.to_path_buf(),
            s3_bucket: None,
            public: true,
        }
    }

    #[test]
    fn each_zip_becomes_a_layer_named_after_its_architecture() {
        let dist = tempfile::tempdir().unwrap();
        std::fs::write(dist.path().join("scar-layer-x86_64.zip"), b"zip").unwrap();
        std::fs::write(dist.path().join("scar-layer-arm64.zip"), b"zip2").unwrap();
        std::fs::write(dist.path().join("notes.txt"), b"").unwrap();
        let plans = plans(&args(dist.path())).unwrap();
        let names: Vec<_> = plans.iter().map(|p| p.layer.as_str()).collect();
        assert_eq!(names, ["scar-arm64", "scar-x86_64"]);
        let requests = describe(&plans[1], &args(dist.path()));
        assert_eq!(requests[0]["CompatibleArchitectures"][0], "x86_64");
        assert_eq!(requests[0]["CompatibleRuntimes"][0], "provided.al2023");
        assert_eq!(requests[1]["Action"], "lambda:AddLayerVersionPermission");
    }

    #[test]
    fn an_empty_dist_says_to_build_first() {
        let dist = tempfile::tempdir().unwrap();
        let err = plans(&args(dist.path())).err().unwrap();
        assert!(err.to_string().contains("scar layer build"), "{err}");
    }
}
