//! Logging set-up and error printing, shared by `scar` and `scar-full`.

/// Logs go to stderr, filtered by `SCAR_LOG` (tracing syntax, default `info`).
pub fn init_logging() {
    let setting = std::env::var("SCAR_LOG").unwrap_or_default();
    match bare_level(&setting) {
        Some(level) => fmt_builder().with_max_level(level).init(),
        None => fmt_builder().with_env_filter(env_filter(&setting)).init(),
    }
}

/// `scar run`'s logging: what [`init_logging`] installs, but for a bare level (the usual case)
/// built only at the first event that passes it. A warm start logs nothing at the default
/// level, so it never builds the subscriber (some 60 µs and the page faults of its code).
pub fn init_run_logging() {
    match run_log_level() {
        Some(max) => init_lazy_logging(max),
        None => init_logging(),
    }
}

/// `SCAR_LOG` as a bare level (unset or empty: info); `None` when it holds directives.
pub fn run_log_level() -> Option<tracing_subscriber::filter::LevelFilter> {
    bare_level(&std::env::var("SCAR_LOG").unwrap_or_default())
}

/// The fmt subscriber of [`init_logging`] at `max`, built at the first event that passes.
pub fn init_lazy_logging(max: tracing_subscriber::filter::LevelFilter) {
    let _ = tracing::subscriber::set_global_default(LazyFmt {
        max,
        inner: std::sync::OnceLock::new(),
    });
}

/// `SCAR_LOG` as a bare level (empty: info), `None` for directives. A bare level needs no
/// directive parser: building an `EnvFilter` costs about 50 µs, a twentieth of a warm
/// `scar run`.
fn bare_level(setting: &str) -> Option<tracing_subscriber::filter::LevelFilter> {
    match setting.trim() {
        "" => Some(tracing_subscriber::filter::LevelFilter::INFO),
        bare => bare.parse().ok(),
    }
}

/// `SCAR_LOG`'s directives (`info` when they do not parse).
fn env_filter(setting: &str) -> tracing_subscriber::EnvFilter {
    tracing_subscriber::EnvFilter::try_new(setting)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"))
}

/// The output every command logs with: stderr, no target.
fn fmt_builder() -> tracing_subscriber::fmt::SubscriberBuilder<
    tracing_subscriber::fmt::format::DefaultFields,
    tracing_subscriber::fmt::format::Format,
    tracing_subscriber::filter::LevelFilter,
    fn() -> std::io::Stderr,
> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr as fn() -> std::io::Stderr)
        .with_target(false)
}

/// The fmt subscriber of [`init_logging`] at a fixed level, built on first use. (The project
/// opens no spans; those of a dependency reach the inner subscriber all the same.)
struct LazyFmt {
    max: tracing_subscriber::filter::LevelFilter,
    inner: std::sync::OnceLock<Box<dyn tracing::Subscriber + Send + Sync>>,
}

impl LazyFmt {
    fn inner(&self) -> &(dyn tracing::Subscriber + Send + Sync) {
        self.inner
            .get_or_init(|| Box::new(fmt_builder().with_max_level(self.max).finish()))
            .as_ref()
    }
}

impl tracing::Subscriber for LazyFmt {
    fn register_callsite(
        &self,
        metadata: &'static tracing::Metadata<'static>,
    ) -> tracing::subscriber::Interest {
        if self.enabled(metadata) {
            tracing::subscriber::Interest::always()
        } else {
            tracing::subscriber::Interest::never()
        }
    }

    fn enabled(&self, metadata: &tracing::Metadata<'_>) -> bool {
        *metadata.level() <= self.max
    }

    fn max_level_hint(&self) -> Option<tracing_subscriber::filter::LevelFilter> {
        Some(self.max)
    }

    fn new_span(&self, span: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        self.inner().new_span(span)
    }

    fn record(&self, span: &tracing::span::Id, values: &tracing::span::Record<'_>) {
        self.inner().record(span, values)
    }

    fn record_follows_from(&self, span: &tracing::span::Id, follows: &tracing::span::Id) {
        self.inner().record_follows_from(span, follows)
    }

    fn event(&self, event: &tracing::Event<'_>) {
        self.inner().event(event)
    }

    fn enter(&self, span: &tracing::span::Id) {
        self.inner().enter(span)
    }

    fn exit(&self, span: &tracing::span::Id) {
        self.inner().exit(span)
    }

    fn clone_span(&self, id: &tracing::span::Id) -> tracing::span::Id {
        self.inner().clone_span(id)
    }

    fn try_close(&self, id: tracing::span::Id) -> bool {
        self.inner().try_close(id)
    }
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
