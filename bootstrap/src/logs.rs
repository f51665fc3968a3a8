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
    let secrets: std::sync::Arc<[String]> = SECRET_VARIABLES
        .iter()
        .filter_map(|name| std::env::var(name).ok())
        .filter(|value| value.len() >= MIN_SECRET_LEN)
        .collect();
    let writer = move || Redacting {
        secrets: secrets.clone(),
    };
    // A second subscriber (tests calling init twice) is not an error worth stopping for.
    let _ = tracing::subscriber::set_global_default(subscriber(filter, format, writer));
}

/// The subscriber [`init`] installs, writing through `writer`. Every line logged inside an
/// invocation's span carries the span's `request_id`: text lines as `invocation{request_id=..}:`,
/// JSON lines as `"span":{"request_id":..}`. Threads that do not inherit the span (the
/// container-output readers) log `request_id` as a field of their own.
pub(crate) fn subscriber<W>(
    filter: &str,
    format: LogFormat,
    writer: W,
) -> Box<dyn tracing::Subscriber + Send + Sync>
where
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    let filter = EnvFilter::try_new(filter).unwrap_or_else(|_| EnvFilter::new(DEFAULT_LOG_FILTER));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_ansi(false)
        .with_target(false);
    match format {
        LogFormat::Text => Box::new(builder.finish()),
        LogFormat::Json => Box::new(
            builder
                .json()
                .flatten_event(true)
                .with_current_span(true)
                .with_span_list(false)
                .finish(),
        ),
    }
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

#[cfg(test)]
pub(crate) mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    /// Log lines captured in memory.
    #[derive(Clone, Default)]
    pub(crate) struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Captured {
        /// The lines written so far.
        pub(crate) fn lines(&self) -> Vec<String> {
            let bytes = self.0.lock().unwrap().clone();
            String::from_utf8(bytes)
                .unwrap()
                .lines()
                .map(str::to_owned)
                .collect()
        }
    }

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'w> tracing_subscriber::fmt::MakeWriter<'w> for Captured {
        type Writer = Captured;

        fn make_writer(&'w self) -> Self::Writer {
            self.clone()
        }
    }

    /// What an invocation logs: a line in its span, a line from a blocking thread that entered
    /// the span (as `invoke` does around the run), and a container-output line from a thread
    /// that names the request id itself (as `run`'s readers do).
    fn log_an_invocation(format: LogFormat) -> Vec<String> {
        let captured = Captured::default();
        let dispatch = tracing::Dispatch::new(subscriber("info", format, captured.clone()));
        tracing::dispatcher::with_default(&dispatch, || {
            let span = tracing::info_span!("invocation", request_id = %"r-1");
            span.in_scope(|| tracing::info!(phase = "stage-in", "input staged"));
            let (span, dispatch) = (span.clone(), dispatch.clone());
            std::thread::spawn(move || {
                tracing::dispatcher::with_default(&dispatch, || {
                    let _entered = span.enter();
                    tracing::info!(pid = 7, "container started");
                });
                tracing::dispatcher::with_default(&dispatch, || {
                    let request_id = "r-1";
                    tracing::info!(request_id = %request_id, stream = "stdout", "hello");
                });
            })
            .join()
            .unwrap();
        });
        let lines = captured.lines();
        assert_eq!(lines.len(), 3, "{lines:#?}");
        lines
    }

    #[test]
    fn every_text_line_of_an_invocation_carries_its_request_id() {
        for line in log_an_invocation(LogFormat::Text) {
            assert!(line.contains("request_id=r-1"), "{line}");
        }
    }

    #[test]
    fn every_json_line_of_an_invocation_carries_its_request_id() {
        for line in log_an_invocation(LogFormat::Json) {
            let value: serde_json::Value = serde_json::from_str(&line).unwrap();
            let id = value["span"]["request_id"]
                .as_str()
                .or(value["request_id"].as_str());
            assert_eq!(id, Some("r-1"), "{line}");
        }
    }
}
