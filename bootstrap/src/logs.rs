//! Logging: a `tracing` subscriber writing to stderr, which Lambda sends to CloudWatch Logs.
//!
//! `SCAR_LOG` is the filter (tracing syntax), `SCAR_LOG_FORMAT=json` writes one JSON object per
//! line with the invocation span's `request_id`, for CloudWatch Logs Insights queries.

use tracing_subscriber::EnvFilter;

use crate::config::{DEFAULT_LOG_FILTER, LogFormat};

/// Install the global subscriber; an unusable `filter` falls back to `info` (configuration
/// parsing has already reported it).
pub fn init(filter: &str, format: LogFormat) {
    let filter = EnvFilter::try_new(filter).unwrap_or_else(|_| EnvFilter::new(DEFAULT_LOG_FILTER));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_target(false);
    // A second subscriber (tests calling init twice) is not an error worth stopping for.
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
    };
}
