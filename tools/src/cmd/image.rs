//! `scar image`: make images without a registry or Docker.

use std::path::PathBuf;
use std::process::ExitCode;

use scar_tools::oci::{self, LayoutOptions};

/// Subcommands of `scar image`.
#[derive(clap::Subcommand)]
pub enum ImageCommand {
    /// Pack a directory as a one-layer OCI image layout (use it as SCAR_IMAGE=oci:LAYOUT:TAG).
    FromDir(FromDirArgs),
    /// Pull IMAGE and write it to S3 (or a file) as a framed image, made for cold starts.
    ///
    /// A framed image is the image's root filesystem flattened into one tar, cut into
    /// independent zstd frames of a few MiB, with an index of the frames and the image config at
    /// the end of the object. A cold start fetches the frames with parallel range requests and
    /// decompresses them on every core, where a registry pull reads each layer over one
    /// connection and inflates gzip on one core.
    ///
    /// Prints the name to use, pinned to the digest of the index:
    /// SCAR_IMAGE=s3://BUCKET/KEY@sha256:... (or framed:FILE@sha256:... with --output).
    Push(super::image_push::PushArgs),
}

/// Arguments of `scar image from-dir`.
#[derive(clap::Args)]
pub struct FromDirArgs {
    /// The directory that becomes the image's root filesystem.
    pub dir: PathBuf,
    /// The OCI layout directory to write (created, or updated when it is already a layout).
    #[arg(long, short)]
    pub output: PathBuf,
    /// Tag of the image in the layout.
    #[arg(long, default_value = "latest")]
    pub tag: String,
    /// `NAME=value` for the image's Env (repeatable).
    #[arg(long = "env", value_name = "NAME=VALUE")]
    pub env: Vec<String>,
    /// The image's WorkingDir.
    #[arg(long)]
    pub workdir: Option<String>,
    /// The image's Entrypoint, as one argument per flag (repeatable).
    #[arg(long = "entrypoint", value_name = "ARG")]
    pub entrypoint: Vec<String>,
    /// GOARCH of the image's programs (amd64, arm64); default: this machine's.
    #[arg(long)]
    pub arch: Option<String>,
    /// The image's Cmd: everything after `--cmd` (e.g. `--cmd /bin/sh -c 'echo hi'`).
    #[arg(long, num_args = 1.., allow_hyphen_values = true, value_name = "ARG")]
    pub cmd: Vec<String>,
}

/// Why the arguments of `scar image from-dir` are wrong.
#[derive(Debug, thiserror::Error)]
pub enum ImageArgsError {
    /// An `--env` value without `=`.
    #[error("--env `{0}` is not NAME=VALUE")]
    Env(String),
}

/// Run `scar image`.
pub fn run(command: ImageCommand) -> ExitCode {
    match command {
        ImageCommand::FromDir(args) => from_dir(args),
        ImageCommand::Push(args) => super::image_push::run(args),
    }
}

fn from_dir(args: FromDirArgs) -> ExitCode {
    if let Some(bad) = args
        .env
        .iter()
        .find(|entry| !entry.contains('=') || entry.starts_with('='))
    {
        return super::fail(&ImageArgsError::Env(bad.clone()));
    }
    let options = LayoutOptions {
        tag: args.tag,
        env: args.env,
        entrypoint: args.entrypoint,
        cmd: args.cmd,
        working_dir: args.workdir,
        architecture: args.arch,
    };
    match oci::write_from_dir(&args.dir, &args.output, &options) {
        Ok(written) => {
            println!("{}", written.reference);
            eprintln!(
                "packed {} entries of {} into {} ({} bytes compressed, manifest {})",
                written.entries,
                args.dir.display(),
                written.layer_digest,
                written.layer_size,
                written.manifest_digest
            );
            ExitCode::SUCCESS
        }
        Err(err) => super::fail(&err),
    }
}
