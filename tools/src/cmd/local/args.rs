//! The command line of `scar local`: the watch (the default), the HTTP server, `invoke`, and
//! what they all need to know about the function and its sandbox.

use std::path::PathBuf;

use super::error::LocalError;

/// Arguments of `scar local`.
#[derive(clap::Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct LocalArgs {
    #[command(subcommand)]
    pub(super) command: Option<LocalCommand>,
    #[command(flatten)]
    pub(super) function: FunctionArgs,
    /// Data directory: each file that appears under DIR/input/ is sent as an S3 event; outputs
    /// land in DIR/output/.
    #[arg(
        long,
        value_name = "DIR",
        required_unless_present = "http",
        conflicts_with = "http"
    )]
    pub(super) watch: Option<PathBuf>,
    /// Also process the files already under DIR/input/ when the watch starts.
    #[arg(long, requires = "watch")]
    pub(super) existing: bool,
    /// Serve the function as a Lambda Function URL on ADDR (e.g. 127.0.0.1:8080).
    ///
    /// Each request becomes a Function URL event (payload format 2.0; a binary body in
    /// base64), one at a time, and the function's answer becomes the HTTP response: buffered
    /// (statusCode, headers, cookies, body) or streamed as it arrives (the Runtime API's
    /// streaming mode, for SCAR_HTTP_STREAMING=true); a function error is a 502. Requests whose
    /// event passes Lambda's 6 MB are refused with 413, as a Function URL does. For example:
    ///
    ///   scar local --function examples/http-grayify --http 127.0.0.1:8080
    ///
    ///   curl --data-binary @examples/demo/sample.png \
    ///       http://127.0.0.1:8080/sample.png -o grey.png
    #[arg(long, value_name = "ADDR", verbatim_doc_comment)]
    pub(super) http: Option<String>,
    /// With --http: the directory behind the local bucket, for a function whose template sets
    /// SCAR_OUTPUT (its outputs land in DIR/output/); default a temporary directory.
    #[arg(long, value_name = "DIR", requires = "http")]
    pub(super) dir: Option<PathBuf>,
}

/// Subcommands of `scar local`.
#[derive(clap::Subcommand)]
pub(super) enum LocalCommand {
    /// Send one event to the function and print its response.
    Invoke(InvokeArgs),
}

/// Arguments of `scar local invoke`.
#[derive(clap::Args)]
pub(super) struct InvokeArgs {
    #[command(flatten)]
    pub(super) function: FunctionArgs,
    /// The event document to send (e.g. an S3 notification naming objects under --dir).
    #[arg(
        long,
        value_name = "EVENT.json",
        required_unless_present = "input",
        conflicts_with = "input"
    )]
    pub(super) event: Option<PathBuf>,
    /// A file to process: copied to DIR/input/<name> and sent as an S3 ObjectCreated event.
    #[arg(long, value_name = "FILE")]
    pub(super) input: Option<PathBuf>,
    /// Data directory backing the local S3 bucket(s): object KEY is the file DIR/KEY.
    #[arg(long, value_name = "DIR", default_value = ".")]
    pub(super) dir: PathBuf,
}

/// What every `scar local` command needs to know about the function and its sandbox.
#[derive(clap::Args, Clone)]
pub(super) struct FunctionArgs {
    /// The function directory (template.yaml + script.sh), e.g. examples/demo.
    #[arg(long, value_name = "DIR", required = true)]
    pub(super) function: Option<PathBuf>,
    /// Logical id of the function in the template, when it declares several.
    #[arg(long, value_name = "ID")]
    pub(super) function_id: Option<String>,
    /// The bootstrap to run (default: `bootstrap` next to this scar).
    #[arg(long, value_name = "PATH")]
    pub(super) bootstrap: Option<PathBuf>,
    /// Run the bootstrap under `scar lambda-sim`: uid 993, seccomp, no new user namespaces, a bare
    /// read-only root, /tmp of the function's EphemeralStorage size (needs root and a static
    /// bootstrap, e.g. dist/scar-<arch>/bootstrap from ./build.sh).
    #[arg(long)]
    pub(super) lambda_sim: bool,
    /// The preload engine's libraries, mounted at /opt/preload under --lambda-sim (default:
    /// $SCAR_PRELOAD_DIR, else preload/ next to the bootstrap, else the build tree's).
    #[arg(long, value_name = "DIR")]
    pub(super) preload_dir: Option<PathBuf>,
    /// Size of /tmp under --lambda-sim, in MB (default: the template's EphemeralStorage, or 512).
    #[arg(long, value_name = "MB")]
    pub(super) tmp_size: Option<u64>,
    /// Set or override a variable of the function's environment (repeatable).
    #[arg(long = "env", value_name = "NAME=VALUE")]
    pub(super) env: Vec<String>,
    /// The region the function believes it runs in.
    #[arg(long, default_value = "us-east-1")]
    pub(super) region: String,
    /// Name of the local bucket (it is the data directory).
    #[arg(long, default_value = "scar-local")]
    pub(super) bucket: String,
    /// Image cache of the bootstrap (default: $SCAR_CACHE_DIR, else ~/.cache/scar; /tmp/scar
    /// under --lambda-sim, like a cold Lambda sandbox).
    #[arg(long, value_name = "DIR")]
    pub(super) cache_dir: Option<PathBuf>,
    /// Override the template's Timeout, in seconds.
    #[arg(long, value_name = "SECONDS")]
    pub(super) timeout: Option<u64>,
}

/// `--env NAME=VALUE` entries, in order.
pub(super) fn parse_overrides(args: &FunctionArgs) -> Result<Vec<(String, String)>, LocalError> {
    args.env
        .iter()
        .map(|entry| match entry.split_once('=') {
            Some((name, value)) if !name.is_empty() => Ok((name.to_owned(), value.to_owned())),
            _ => Err(LocalError::Env(entry.clone())),
        })
        .collect()
}
