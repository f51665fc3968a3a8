//! How to reach registries, from the environment: credentials, the plain-HTTP list and the
//! range requests per large blob, parsed with one rule for the bootstrap, `scar run` and
//! `scar pull`.

use super::plan;
use crate::options::{Credentials, PullOptions};

/// Registry user name.
pub const SCAR_REGISTRY_USERNAME: &str = "SCAR_REGISTRY_USERNAME";
/// Registry password or token; never reaches a container or a log.
pub const SCAR_REGISTRY_PASSWORD: &str = "SCAR_REGISTRY_PASSWORD";
/// Comma list of `host:port` registries reached over plain HTTP.
pub const SCAR_INSECURE_REGISTRIES: &str = "SCAR_INSECURE_REGISTRIES";
/// Range requests in flight per large blob (1: one stream per blob).
pub const SCAR_PULL_RANGES: &str = "SCAR_PULL_RANGES";
/// The function's memory in MB, set by Lambda: sizes the default of `SCAR_PULL_RANGES`.
pub const AWS_LAMBDA_FUNCTION_MEMORY_SIZE: &str = "AWS_LAMBDA_FUNCTION_MEMORY_SIZE";

/// The registry variables as parsed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RegistrySettings {
    /// `SCAR_REGISTRY_USERNAME` with `SCAR_REGISTRY_PASSWORD`.
    pub credentials: Option<Credentials>,
    /// `SCAR_INSECURE_REGISTRIES`.
    pub insecure_registries: Vec<String>,
    /// `SCAR_PULL_RANGES`, else what `AWS_LAMBDA_FUNCTION_MEMORY_SIZE` allows; `None` off
    /// Lambda without the variable.
    pub ranges: Option<usize>,
}

/// A registry variable that cannot be used.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum RegistrySettingsError {
    /// A user name without a password.
    #[error(
        "{SCAR_REGISTRY_PASSWORD} is not set: {SCAR_REGISTRY_USERNAME} is set, so set the password (or token) too"
    )]
    MissingPassword,
    /// A password without a user name.
    #[error(
        "{SCAR_REGISTRY_USERNAME} is not set: {SCAR_REGISTRY_PASSWORD} is set, so set the user name too"
    )]
    MissingUsername,
    /// An entry of the plain-HTTP list that is not `host:port`.
    #[error(
        "{SCAR_INSECURE_REGISTRIES}={value} has `{entry}`, which is not host:port: use a comma list such as 127.0.0.1:5000,registry.local:5000"
    )]
    NotHostPort {
        /// The list as given.
        value: String,
        /// The entry at fault.
        entry: String,
    },
    /// A range count that is not a whole number from 1 to the maximum.
    #[error(
        "{SCAR_PULL_RANGES}={value} is not a number of range requests: use a whole number from 1 (one stream per blob) to {}",
        plan::MAX_IN_FLIGHT
    )]
    BadRanges {
        /// The value as given.
        value: String,
    },
}

impl RegistrySettings {
    /// Parse the registry variables that `lookup` finds; an empty (or blank) value counts as
    /// unset, since the Lambda console makes it easy to leave an empty row behind.
    pub fn from_env(
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, RegistrySettingsError> {
        let get = |name: &str| lookup(name).filter(|value| !value.trim().is_empty());
        let credentials = match (get(SCAR_REGISTRY_USERNAME), get(SCAR_REGISTRY_PASSWORD)) {
            (None, None) => None,
            (Some(username), Some(password)) => Some(Credentials { username, password }),
            (Some(_), None) => return Err(RegistrySettingsError::MissingPassword),
            (None, Some(_)) => return Err(RegistrySettingsError::MissingUsername),
        };
        let insecure_registries = match get(SCAR_INSECURE_REGISTRIES) {
            None => Vec::new(),
            Some(value) => parse_insecure(&value)?,
        };
        let ranges = match get(SCAR_PULL_RANGES) {
            Some(value) => Some(
                value
                    .trim()
                    .parse::<usize>()
                    .ok()
                    .filter(|n| (1..=plan::MAX_IN_FLIGHT).contains(n))
                    .ok_or(RegistrySettingsError::BadRanges { value })?,
            ),
            // Lambda sets it; a value it would not set is ignored, not an error of the user's.
            None => get(AWS_LAMBDA_FUNCTION_MEMORY_SIZE)
                .and_then(|mb| mb.trim().parse::<u64>().ok())
                .map(|mb| plan::in_flight_for_memory(Some(mb))),
        };
        Ok(Self {
            credentials,
            insecure_registries,
            ranges,
        })
    }

    /// The settings of the process environment.
    pub fn from_process_env() -> Result<Self, RegistrySettingsError> {
        Self::from_env(|name| std::env::var(name).ok())
    }

    /// Put the settings into `options`.
    pub fn apply(self, options: &mut PullOptions) {
        options.credentials = self.credentials;
        options.insecure_registries = self.insecure_registries;
        options.ranges = self.ranges;
    }
}

fn parse_insecure(value: &str) -> Result<Vec<String>, RegistrySettingsError> {
    let mut registries = Vec::new();
    for entry in value
        .split(',')
        .map(str::trim)
        .filter(|entry| !entry.is_empty())
    {
        let host_port = !entry.contains("://")
            && !entry.contains('/')
            && !entry.contains(char::is_whitespace)
            && !entry.starts_with(':');
        if !host_port {
            return Err(RegistrySettingsError::NotHostPort {
                value: value.to_owned(),
                entry: entry.to_owned(),
            });
        }
        registries.push(entry.to_owned());
    }
    Ok(registries)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(pairs: &[(&str, &str)]) -> Result<RegistrySettings, RegistrySettingsError> {
        RegistrySettings::from_env(|name| {
            pairs
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| (*v).to_owned())
        })
    }

    #[test]
    fn no_variables_mean_no_credentials_and_no_plain_http() {
        assert_eq!(parse(&[]), Ok(RegistrySettings::default()));
    }

    #[test]
    fn a_user_and_a_password_are_credentials() {
        let settings = parse(&[
            (SCAR_REGISTRY_USERNAME, "me"),
            (SCAR_REGISTRY_PASSWORD, "s3cret"),
        ])
        .unwrap();
        assert_eq!(
            settings.credentials,
            Some(Credentials {
                username: "me".into(),
                password: "s3cret".into()
            })
        );
    }

    #[test]
    fn a_user_without_a_password_is_an_error_naming_both_variables() {
        for pairs in [
            &[(SCAR_REGISTRY_USERNAME, "me")][..],
            &[
                (SCAR_REGISTRY_USERNAME, "me"),
                (SCAR_REGISTRY_PASSWORD, " "),
            ][..],
        ] {
            let err = parse(pairs).unwrap_err();
            assert_eq!(err, RegistrySettingsError::MissingPassword);
            let text = err.to_string();
            assert!(
                text.starts_with("SCAR_REGISTRY_PASSWORD is not set")
                    && text.contains(SCAR_REGISTRY_USERNAME),
                "{text}"
            );
        }
    }

    #[test]
    fn a_password_without_a_user_is_an_error_naming_both_variables() {
        let err = parse(&[(SCAR_REGISTRY_PASSWORD, "s3cret")]).unwrap_err();
        assert_eq!(err, RegistrySettingsError::MissingUsername);
        let text = err.to_string();
        assert!(
            text.contains(SCAR_REGISTRY_USERNAME) && text.contains(SCAR_REGISTRY_PASSWORD),
            "{text}"
        );
        assert!(!text.contains("s3cret"), "{text}");
    }

    #[test]
    fn the_plain_http_list_is_trimmed_and_skips_empty_entries() {
        let settings =
            parse(&[(SCAR_INSECURE_REGISTRIES, " 127.0.0.1:5000, ,reg.local:80")]).unwrap();
        assert_eq!(
            settings.insecure_registries,
            ["127.0.0.1:5000", "reg.local:80"]
        );
    }

    #[test]
    fn a_url_in_the_plain_http_list_is_refused_with_the_accepted_form() {
        for bad in ["http://127.0.0.1:5000", "reg.local/path", ":5000", "a b:1"] {
            let err = parse(&[(SCAR_INSECURE_REGISTRIES, bad)]).unwrap_err();
            let text = err.to_string();
            assert!(
                text.starts_with("SCAR_INSECURE_REGISTRIES=") && text.contains(": use "),
                "{text}"
            );
        }
    }

    #[test]
    fn the_range_count_is_the_knob_else_the_memory_size_else_unset() {
        assert_eq!(parse(&[]).unwrap().ranges, None);
        let memory = |mb| {
            parse(&[(AWS_LAMBDA_FUNCTION_MEMORY_SIZE, mb)])
                .unwrap()
                .ranges
        };
        assert_eq!(memory("128"), Some(2));
        assert_eq!(memory("1024"), Some(4));
        assert_eq!(memory("2048"), Some(4));
        assert_eq!(memory("10240"), Some(8));
        assert_eq!(memory("lots"), None);
        let both = parse(&[
            (AWS_LAMBDA_FUNCTION_MEMORY_SIZE, "10240"),
            (SCAR_PULL_RANGES, " 1 "),
        ]);
        assert_eq!(both.unwrap().ranges, Some(1));
        for bad in ["0", "-1", "two", "33"] {
            let err = parse(&[(SCAR_PULL_RANGES, bad)]).unwrap_err();
            let text = err.to_string();
            assert!(
                text.starts_with(&format!("SCAR_PULL_RANGES={bad} ")) && text.contains("from 1"),
                "{text}"
            );
        }
    }

    #[test]
    fn apply_replaces_what_the_options_had() {
        let mut options = PullOptions::new("/c");
        options.insecure_registries = vec!["old:1".into()];
        parse(&[(SCAR_INSECURE_REGISTRIES, "new:2")])
            .unwrap()
            .apply(&mut options);
        assert_eq!(options.insecure_registries, ["new:2"]);
        assert!(options.credentials.is_none());
    }
}
