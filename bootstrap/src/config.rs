//! Function configuration: every environment variable the bootstrap reads, parsed once at init
//! into a typed [`Config`].
//!
//! Nothing else in the bootstrap reads `std::env`. Each variable is a named constant documented
//! once in [`FUNCTION_VARIABLES`] (with its default as the README shows it); a unit test keeps
//! the README's table and this list identical. An invalid value is an init error that names the
//! variable and says what it accepts: silently falling back to a default hides mistakes until
//! the first invoice.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use scar_rootfs::engine::EngineKind;
use scar_rootfs::engine::preload::StaticPolicy;
use scar_rootfs::options::{PullOptions, PullPolicy};
use scar_rootfs::registry::settings::{RegistrySettings, RegistrySettingsError};

mod variables;

pub use variables::*;

/// An `s3://bucket/key` location; `key` may be empty or a prefix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct S3Location {
    /// Bucket name.
    pub bucket: String,
    /// Key or key prefix, without a leading `/`.
    pub key: String,
}

impl S3Location {
    /// Parse `s3://bucket[/key]`; `None` when `text` is not such a URL.
    pub fn parse(text: &str) -> Option<Self> {
        let rest = text.strip_prefix("s3://")?;
        let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return None;
        }
        Some(Self {
            bucket: bucket.to_owned(),
            key: key.to_owned(),
        })
    }

    /// The key prefix as a directory: empty, or ending in `/`.
    pub fn prefix_dir(&self) -> String {
        if self.key.is_empty() || self.key.ends_with('/') {
            self.key.clone()
        } else {
            format!("{}/", self.key)
        }
    }
}

impl std::fmt::Display for S3Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "s3://{}/{}", self.bucket, self.key)
    }
}

/// Where the user's script comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ScriptSource {
    /// No script: the image's Entrypoint and Cmd run.
    ImageCommand,
    /// `SCAR_SCRIPT` text.
    Inline(String),
    /// `SCAR_SCRIPT_FILE` path on the function's filesystem.
    File(PathBuf),
    /// `SCAR_SCRIPT_FILE` `s3://` URL, fetched on the first invocation.
    S3(S3Location),
}

/// How log lines are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// One human-readable line per event.
    #[default]
    Text,
    /// One JSON object per event (CloudWatch Logs Insights).
    Json,
}

/// The whole function configuration, read once at init.
#[derive(Clone, Debug)]
pub struct Config {
    /// `SCAR_IMAGE` as written.
    pub image: String,
    /// `SCAR_SCRIPT` / `SCAR_SCRIPT_FILE`.
    pub script: ScriptSource,
    /// `SCAR_OUTPUT`; `None` means `s3://<input bucket>/output/`.
    pub output: Option<S3Location>,
    /// `SCAR_TIMEOUT_MARGIN`.
    pub timeout_margin: Duration,
    /// `SCAR_ENGINE`.
    pub engine: EngineKind,
    /// `SCAR_PRELOAD_STATIC`.
    pub static_policy: StaticPolicy,
    /// Cache, policy, credentials and insecure registries for the pull.
    pub pull: PullOptions,
    /// `SCAR_PREFETCH`.
    pub prefetch: bool,
    /// `SCAR_ENV_<NAME>` entries as (`NAME`, value), sorted by name.
    pub container_env: Vec<(String, String)>,
    /// The function's AWS credentials and region, captured only with
    /// `SCAR_PASS_AWS_CREDENTIALS=true` (empty otherwise).
    pub passed_aws_env: Vec<(String, String)>,
    /// `SCAR_ALLOW_INVOKE_SCRIPT`.
    pub allow_invoke_script: bool,
    /// `SCAR_HTTP_STREAMING`.
    pub http_streaming: bool,
    /// `SCAR_LOG`.
    pub log_filter: String,
    /// `SCAR_LOG_FORMAT`.
    pub log_format: LogFormat,
    /// `AWS_ENDPOINT_URL_S3`, else `AWS_ENDPOINT_URL`: an S3-compatible server.
    pub s3_endpoint: Option<String>,
    /// `AWS_LAMBDA_RUNTIME_API` as Lambda (or the emulator) wrote it.
    pub runtime_api: Option<String>,
    /// `AWS_LAMBDA_MAX_CONCURRENCY`: invocations served at once (1 outside Managed Instances).
    pub max_concurrency: usize,
}

/// A missing or malformed variable.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A required variable is unset or empty.
    #[error("{name} is not set: {hint}")]
    Missing {
        /// The variable.
        name: &'static str,
        /// What to set it to.
        hint: &'static str,
    },
    /// A variable holds a value it cannot take.
    #[error("{name}={value} {problem}")]
    Invalid {
        /// The variable.
        name: String,
        /// The value as given (never a secret's value).
        value: String,
        /// What is wrong and what is accepted.
        problem: String,
    },
    /// Two variables that exclude each other are both set.
    #[error("{first} and {second} are both set: set only one of them")]
    Conflict {
        /// One variable.
        first: &'static str,
        /// The other.
        second: &'static str,
    },
    /// The registry variables do not go together or hold something else than host:port.
    #[error(transparent)]
    Registry(#[from] RegistrySettingsError),
    /// A variable's value is not valid UTF-8.
    #[error("{name} is not valid UTF-8: write it as UTF-8 text")]
    NotUnicode {
        /// The variable.
        name: String,
    },
}

fn invalid(name: &str, value: &str, problem: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        name: name.to_owned(),
        value: value.to_owned(),
        problem: problem.into(),
    }
}

/// The process environment as a map, read once; values that are not UTF-8 are kept as errors
/// and only reported if the variable is one we read.
struct Vars {
    map: BTreeMap<String, Result<String, OsString>>,
}

impl Vars {
    /// The value of `name`; an empty value counts as unset (the Lambda console makes it easy to
    /// leave an empty row behind).
    fn get(&self, name: &str) -> Result<Option<&str>, ConfigError> {
        match self.map.get(name) {
            None => Ok(None),
            Some(Ok(value)) if value.trim().is_empty() => Ok(None),
            Some(Ok(value)) => Ok(Some(value.as_str())),
            Some(Err(_)) => Err(ConfigError::NotUnicode {
                name: name.to_owned(),
            }),
        }
    }

    fn bool(&self, name: &str, default: bool) -> Result<bool, ConfigError> {
        match self.get(name)? {
            None => Ok(default),
            Some(value) => match value.trim().to_ascii_lowercase().as_str() {
                "true" | "1" | "yes" | "on" => Ok(true),
                "false" | "0" | "no" | "off" => Ok(false),
                _ => Err(invalid(name, value, "is not a boolean: use true or false")),
            },
        }
    }
}

impl Config {
    /// Read the configuration from the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_vars(std::env::vars_os())
    }

    /// Read the configuration from `(name, value)` pairs (the environment, or a test's list).
    pub fn from_vars(
        vars: impl IntoIterator<Item = (OsString, OsString)>,
    ) -> Result<Self, ConfigError> {
        let mut map = BTreeMap::new();
        for (name, value) in vars {
            // A variable whose name is not UTF-8 cannot be one of ours.
            if let Ok(name) = name.into_string() {
                map.insert(name, value.into_string());
            }
        }
        let vars = Vars { map };

        let image = vars
            .get(SCAR_IMAGE)?
            .ok_or(ConfigError::Missing {
                name: SCAR_IMAGE,
                hint: "set it to an image reference such as alpine:3.20",
            })?
            .trim()
            .to_owned();

        let script = match (vars.get(SCAR_SCRIPT)?, vars.get(SCAR_SCRIPT_FILE)?) {
            (Some(_), Some(_)) => {
                return Err(ConfigError::Conflict {
                    first: SCAR_SCRIPT,
                    second: SCAR_SCRIPT_FILE,
                });
            }
            (Some(text), None) => ScriptSource::Inline(text.to_owned()),
            (None, Some(file)) => parse_script_file(file.trim())?,
            (None, None) => ScriptSource::ImageCommand,
        };

        let output = match vars.get(SCAR_OUTPUT)? {
            None => None,
            Some(text) => Some(S3Location::parse(text.trim()).ok_or_else(|| {
                invalid(
                    SCAR_OUTPUT,
                    text,
                    "is not an S3 URL: use s3://bucket or s3://bucket/prefix",
                )
            })?),
        };

        let timeout_margin = match vars.get(SCAR_TIMEOUT_MARGIN)? {
            None => Duration::from_secs_f64(DEFAULT_TIMEOUT_MARGIN_SECS),
            Some(text) => parse_seconds(text).ok_or_else(|| {
                invalid(
                    SCAR_TIMEOUT_MARGIN,
                    text,
                    "is not a number of seconds: use a non-negative number such as 10",
                )
            })?,
        };

        let engine = match vars.get(SCAR_ENGINE)? {
            None => EngineKind::Auto,
            Some(text) => text.trim().parse().map_err(|_| {
                invalid(
                    SCAR_ENGINE,
                    text,
                    "is not an engine: use auto, namespace or preload",
                )
            })?,
        };

        let static_policy = match vars.get(SCAR_PRELOAD_STATIC)? {
            None => StaticPolicy::default(),
            Some(text) => text.trim().parse().map_err(|_| {
                invalid(
                    SCAR_PRELOAD_STATIC,
                    text,
                    "is not a policy for statically linked programs: use warn or refuse",
                )
            })?,
        };

        let mut pull = PullOptions::new(
            vars.get(SCAR_CACHE_DIR)?
                .map_or(DEFAULT_CACHE_DIR, str::trim),
        );
        if !pull.cache_dir.is_absolute() {
            return Err(invalid(
                SCAR_CACHE_DIR,
                &pull.cache_dir.display().to_string(),
                "is not an absolute path: use e.g. /tmp/scar",
            ));
        }
        if let Some(text) = vars.get(SCAR_CACHE_MAX_MB)? {
            let mib: u64 = text
                .trim()
                .parse()
                .ok()
                .filter(|mib| *mib > 0)
                .ok_or_else(|| {
                    invalid(
                        SCAR_CACHE_MAX_MB,
                        text,
                        "is not a size in MiB: use a positive whole number such as 400",
                    )
                })?;
            pull.max_cache_bytes = Some(mib.saturating_mul(1024 * 1024));
        }
        // Read by the cache itself (a wait for another sandbox's pull); refused here so that a
        // typo fails the init with its name rather than silently meaning 30 s.
        if let Some(text) = vars.get(SCAR_CACHE_STALE_SECONDS)?
            && !text.trim().parse::<u64>().is_ok_and(|secs| secs >= 1)
        {
            return Err(invalid(
                SCAR_CACHE_STALE_SECONDS,
                text,
                "is not a number of seconds: use a whole number from 1, such as 30",
            ));
        }
        if let Some(text) = vars.get(SCAR_PULL_POLICY)? {
            pull.policy = match text.trim() {
                "if-not-present" => PullPolicy::IfNotPresent,
                "always" => PullPolicy::Always,
                _ => {
                    return Err(invalid(
                        SCAR_PULL_POLICY,
                        text,
                        "is not a pull policy: use if-not-present or always",
                    ));
                }
            };
        }
        // A value that is not UTF-8 is reported as such, not as an unset variable.
        for name in [
            SCAR_REGISTRY_USERNAME,
            SCAR_REGISTRY_PASSWORD,
            SCAR_INSECURE_REGISTRIES,
            SCAR_PULL_RANGES,
        ] {
            vars.get(name)?;
        }
        RegistrySettings::from_env(|name| vars.get(name).ok().flatten().map(str::to_owned))?
            .apply(&mut pull);

        let prefetch = vars.bool(SCAR_PREFETCH, true)?;
        let pass_aws = vars.bool(SCAR_PASS_AWS_CREDENTIALS, false)?;
        let allow_invoke_script = vars.bool(SCAR_ALLOW_INVOKE_SCRIPT, false)?;
        let http_streaming = vars.bool(SCAR_HTTP_STREAMING, false)?;

        let mut container_env = Vec::new();
        for (name, value) in &vars.map {
            let Some(inner) = name.strip_prefix(SCAR_ENV_PREFIX) else {
                continue;
            };
            let value = value
                .as_ref()
                .map_err(|_| ConfigError::NotUnicode { name: name.clone() })?;
            if inner.is_empty() || inner.contains('=') {
                return Err(invalid(
                    name,
                    value,
                    "does not name a variable: use SCAR_ENV_<NAME>=value",
                ));
            }
            container_env.push((inner.to_owned(), value.clone()));
        }

        let mut passed_aws_env = Vec::new();
        if pass_aws {
            for name in AWS_CREDENTIAL_VARIABLES {
                if let Some(value) = vars.get(name)? {
                    passed_aws_env.push(((*name).to_owned(), value.to_owned()));
                }
            }
        }

        let log_filter = vars
            .get(SCAR_LOG)?
            .unwrap_or(DEFAULT_LOG_FILTER)
            .trim()
            .to_owned();
        if let Err(err) = tracing_subscriber::EnvFilter::try_new(&log_filter) {
            return Err(invalid(
                SCAR_LOG,
                &log_filter,
                format!("is not a log filter ({err}): use e.g. info or scar_bootstrap=debug,info"),
            ));
        }
        let log_format = match vars.get(SCAR_LOG_FORMAT)?.map(str::trim) {
            None | Some("text") => LogFormat::Text,
            Some("json") => LogFormat::Json,
            Some(other) => {
                return Err(invalid(
                    SCAR_LOG_FORMAT,
                    other,
                    "is not a log format: use text or json",
                ));
            }
        };

        let s3_endpoint = match vars
            .get(AWS_ENDPOINT_URL_S3)?
            .map(|v| (AWS_ENDPOINT_URL_S3, v))
        {
            Some(found) => Some(found),
            None => vars.get(AWS_ENDPOINT_URL)?.map(|v| (AWS_ENDPOINT_URL, v)),
        };
        let s3_endpoint = match s3_endpoint {
            None => None,
            Some((name, text)) => {
                let text = text.trim();
                if !(text.starts_with("http://") || text.starts_with("https://")) {
                    return Err(invalid(
                        name,
                        text,
                        "is not an endpoint URL: use e.g. http://127.0.0.1:9000",
                    ));
                }
                Some(text.to_owned())
            }
        };

        let runtime_api = vars
            .get(AWS_LAMBDA_RUNTIME_API)?
            .map(|v| v.trim().to_owned());

        let max_concurrency = match vars.get(AWS_LAMBDA_MAX_CONCURRENCY)? {
            None => 1,
            Some(text) => text
                .trim()
                .parse::<usize>()
                .ok()
                .filter(|n| (1..=MAX_CONCURRENCY_LIMIT).contains(n))
                .ok_or_else(|| {
                    invalid(
                        AWS_LAMBDA_MAX_CONCURRENCY,
                        text,
                        format!(
                            "is not a number of concurrent invocations: use a whole number from 1 to {MAX_CONCURRENCY_LIMIT} (Lambda sets it from the function's per-environment maximum concurrency)"
                        ),
                    )
                })?,
        };

        Ok(Self {
            image,
            script,
            output,
            timeout_margin,
            engine,
            static_policy,
            pull,
            prefetch,
            container_env,
            passed_aws_env,
            allow_invoke_script,
            http_streaming,
            log_filter,
            log_format,
            s3_endpoint,
            runtime_api,
            max_concurrency,
        })
    }

    /// The output location for an input from `input_bucket`.
    pub fn output_for(&self, input_bucket: &str) -> S3Location {
        self.output.clone().unwrap_or_else(|| S3Location {
            bucket: input_bucket.to_owned(),
            key: DEFAULT_OUTPUT_PREFIX.to_owned(),
        })
    }
}

/// `AWS_LAMBDA_RUNTIME_API` alone: where to report a configuration that did not parse.
pub fn runtime_api_from_env() -> Option<String> {
    std::env::var(AWS_LAMBDA_RUNTIME_API)
        .ok()
        .filter(|value| !value.trim().is_empty())
}

fn parse_script_file(text: &str) -> Result<ScriptSource, ConfigError> {
    if text.starts_with("s3://") {
        return S3Location::parse(text)
            .filter(|loc| !loc.key.is_empty() && !loc.key.ends_with('/'))
            .map(ScriptSource::S3)
            .ok_or_else(|| {
                invalid(
                    SCAR_SCRIPT_FILE,
                    text,
                    "is not an S3 object URL: use s3://bucket/key",
                )
            });
    }
    if text.contains("://") {
        return Err(invalid(
            SCAR_SCRIPT_FILE,
            text,
            "is neither a path nor an s3:// URL: use e.g. /var/task/script.sh or s3://bucket/script.sh",
        ));
    }
    Ok(ScriptSource::File(PathBuf::from(text)))
}

fn parse_seconds(text: &str) -> Option<Duration> {
    let secs: f64 = text.trim().parse().ok()?;
    if !secs.is_finite() || !(0.0..=86_400.0).contains(&secs) {
        return None;
    }
    Some(Duration::from_secs_f64(secs))
}

#[cfg(test)]
#[path = "config_tests.rs"]
mod tests;
