//! `scar cache`.

use std::process::ExitCode;

/// Subcommands of `scar cache`.
#[derive(clap::Subcommand)]
pub enum CacheCommand {
    /// List cached images.
    Ls,
}

/// Run `scar cache`.
pub fn run(command: CacheCommand) -> ExitCode {
    match command {
        CacheCommand::Ls => {
            eprintln!("scar cache ls: not built yet");
            ExitCode::FAILURE
        }
    }
}
