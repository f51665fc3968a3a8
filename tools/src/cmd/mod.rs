//! One module per subcommand.

pub mod bench;
pub mod cache;
pub mod image;
pub mod layer;
pub mod local;
pub mod pull;
pub mod run;

/// Logs go to stderr, filtered by `SCAR_LOG` (tracing syntax, default `info`).
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("SCAR_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
}

/// Print an error for a person and give the exit status for it.
pub fn fail(err: &dyn std::error::Error) -> std::process::ExitCode {
    let mut message = format!("scar: {err}");
    let mut source = err.source();
    while let Some(cause) = source {
        message.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    eprintln!("{message}");
    std::process::ExitCode::FAILURE
}
