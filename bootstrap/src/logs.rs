//! Logging: a `tracing` subscriber writing to stderr, which Lambda sends to CloudWatch Logs.
//!
//! `SCAR_LOG` is the filter (tracing syntax), `SCAR_LOG_FORMAT=json` writes one JSON object per
//! line with the invocation span's `request_id`, for CloudWatch Logs Insights queries.
//!
//! Every line goes out with the function's secrets ([`SECRET_VARIABLES`]) replaced by
//! `** redacted **`: at `debug` and `trace` the AWS SDK prints the access key id of the
//! credentials it resolved, and no level may print a secret.

use tracing_subscriber::EnvFilter;

use crate::config::{DEFAULT_LOG_FILTER, LogFormat};

/// Variables whose values never appear in a log line.
pub const SECRET_VARIABLES: [&str; 4] = [
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_ACCESS_KEY_ID",
    "SCAR_REGISTRY_PASSWORD",
];
/// Shorter values are not redacted: they would blank out ordinary words.
const MIN_SECRET_LEN: usize = 4;
/// What a secret is replaced with.
const REDACTED: &str = "** redacted **";

/// Install the global subscriber; an unusable `filter` falls back to `info` (configuration
/// parsing has already reported it).
pub fn init(filter: &str, format: LogFormat) {
    let filter = EnvFilter::try_new(filter).unwrap_or_else(|_| EnvFilter::new(DEFAULT_LOG_FILTER));
    let secrets: std::sync::Arc<[String]> = SECRET_VARIABLES
        .iter()
        .filter_map(|name| std::env::var(name).ok())
        .filter(|value| value.len() >= MIN_SECRET_LEN)
        .collect();
    let writer = move || Redacting {
        secrets: secrets.clone(),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
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

/// Stderr with the secrets replaced; the formatter writes each line in one call.
struct Redacting {
    secrets: std::sync::Arc<[String]>,
}

impl std::io::Write for Redacting {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        if self.secrets.iter().any(|s| text.contains(s.as_str())) {
            let mut clean = text.into_owned();
            for secret in self.secrets.iter() {
                clean = clean.replace(secret.as_str(), REDACTED);
            }
            std::io::stderr().write_all(clean.as_bytes())?;
        } else {
            std::io::stderr().write_all(buf)?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}
