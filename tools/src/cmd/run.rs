//! `scar run`.

use std::process::ExitCode;

/// Arguments of `scar run`.
#[derive(clap::Args)]
pub struct RunArgs {
    /// Image reference, e.g. alpine:3.20 or oci:./layout:tag.
    pub image: String,
}

/// Run `scar run`.
pub fn run(args: RunArgs) -> ExitCode {
    eprintln!("scar run {}: not built yet", args.image);
    ExitCode::FAILURE
}
