//! What a pull is asked to do: the options and credentials every layer of a pull reads
//! (the orchestrator in [`crate::pull`], the sources, the registry client).
//!
//! They sit at the bottom of the crate and import nothing from it, so the layers below the
//! orchestrator never import the orchestrator to learn what they were asked.

use std::path::PathBuf;
use std::str::FromStr;
use std::time::Instant;

/// When to contact the registry (`SCAR_PULL_POLICY`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PullPolicy {
    /// Use the cached resolution of the reference when there is one: no network.
    #[default]
    IfNotPresent,
    /// Resolve the reference again; layers already cached are not downloaded again.
    Always,
}

impl FromStr for PullPolicy {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "if-not-present" | "IfNotPresent" => Ok(Self::IfNotPresent),
            "always" | "Always" => Ok(Self::Always),
            other => Err(format!(
                "`{other}` is not a pull policy: use if-not-present or always"
            )),
        }
    }
}

/// Registry credentials for basic auth or as the identity of a token request.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Credentials {
    /// User name.
    pub username: String,
    /// Password or token; never logged.
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// Everything a pull needs besides the reference.
#[derive(Clone, Debug)]
pub struct PullOptions {
    /// Cache root (`SCAR_CACHE_DIR`).
    pub cache_dir: PathBuf,
    /// Cap for the cache in bytes (`SCAR_CACHE_MAX_MB`); `None` means what the filesystem holds.
    pub max_cache_bytes: Option<u64>,
    /// `SCAR_PULL_POLICY`.
    pub policy: PullPolicy,
    /// `os/arch[/variant]` to select from an index; `None` means the running machine.
    pub platform: Option<String>,
    /// `SCAR_REGISTRY_USERNAME` / `SCAR_REGISTRY_PASSWORD`.
    pub credentials: Option<Credentials>,
    /// `SCAR_INSECURE_REGISTRIES`: `host:port` entries reached over plain HTTP.
    pub insecure_registries: Vec<String>,
    /// Keep compressed blobs after extraction (off by default: `/tmp` is small on Lambda).
    pub keep_blobs: bool,
    /// When the pull must be over (the bootstrap's invocation deadline minus its margin):
    /// past it the downloads and the extraction stop, nothing is published and the pull fails
    /// with `PullError::Deadline`. `None`: no bound.
    pub deadline: Option<Instant>,
    /// Range requests in flight per large blob (`SCAR_PULL_RANGES`, or as the function's
    /// memory allows); `None`: the default of [`crate::registry::plan`], 1: one stream.
    pub ranges: Option<usize>,
    /// S3 client for `s3://` archives (the caller's, with its endpoint and retries); `None`
    /// builds one from the environment through [`crate::aws`].
    pub s3: Option<crate::aws::S3>,
}

impl PullOptions {
    /// Options with the defaults of DESIGN.md for a given cache root.
    pub fn new(cache_dir: impl Into<PathBuf>) -> Self {
        Self {
            cache_dir: cache_dir.into(),
            max_cache_bytes: None,
            policy: PullPolicy::IfNotPresent,
            platform: None,
            credentials: None,
            insecure_registries: Vec::new(),
            keep_blobs: false,
            deadline: None,
            ranges: None,
            s3: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_spellings_of_each_pull_policy_parse_and_others_are_refused_by_name() {
        for (text, policy) in [
            ("if-not-present", PullPolicy::IfNotPresent),
            ("IfNotPresent", PullPolicy::IfNotPresent),
            ("always", PullPolicy::Always),
            ("Always", PullPolicy::Always),
        ] {
            assert_eq!(text.parse::<PullPolicy>(), Ok(policy));
        }
        let err = "never".parse::<PullPolicy>().unwrap_err();
        assert!(err.contains("`never` is not a pull policy"), "{err}");
    }

    #[test]
    fn credentials_never_show_their_password_in_debug_output() {
        let c = Credentials {
            username: "user".into(),
            password: "s3cret".into(),
        };
        let text = format!("{c:?}");
        assert!(text.contains("user") && !text.contains("s3cret"), "{text}");
    }
}
