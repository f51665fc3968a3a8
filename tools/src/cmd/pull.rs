//! `scar pull`.

use std::process::ExitCode;

/// Arguments of `scar pull`.
#[derive(clap::Args)]
pub struct PullArgs {
    /// Image reference, e.g. alpine:3.20 or oci:./layout:tag.
    pub image: String,
}

/// Run `scar pull`.
pub fn run(args: PullArgs) -> ExitCode {
    eprintln!("scar pull {}: not built yet", args.image);
    ExitCode::FAILURE
}
