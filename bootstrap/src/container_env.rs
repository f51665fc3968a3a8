//! The container's environment: exactly the list of DESIGN.md, nothing inherited.
//!
//! The bootstrap's own environment holds the function's AWS credentials and possibly the
//! registry password; none of it reaches the container unless asked for
//! (`SCAR_PASS_AWS_CREDENTIALS`), and `SCAR_REGISTRY_PASSWORD` never does.

/// Largest `EVENT` value passed in the environment: Linux refuses a single `NAME=value` string
/// of 128 KiB or more (`MAX_ARG_STRLEN`) at `execve`.
pub const MAX_EVENT_ENV_BYTES: usize = 128 * 1024 - "EVENT=".len() - 1;

/// The facts about one run that the script sees.
#[derive(Clone, Debug, Default)]
pub struct RunFacts<'a> {
    /// Path of the input file inside the container.
    pub input_file: &'a str,
    /// The request's input directory.
    pub input_dir: &'a str,
    /// The request's output directory.
    pub output_dir: &'a str,
    /// The Lambda request id.
    pub request_id: &'a str,
    /// S3 key of the input (empty for a direct invocation).
    pub object_key: &'a str,
    /// S3 bucket of the input (empty for a direct invocation).
    pub bucket: &'a str,
    /// Time of the event.
    pub event_time: &'a str,
    /// Path of the whole event as JSON inside the container.
    pub event_file: &'a str,
    /// The whole event as JSON text.
    pub event: &'a str,
}

/// An ordered environment where setting a name again replaces its value in place.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ContainerEnv {
    vars: Vec<(String, String)>,
}

impl ContainerEnv {
    /// Set `name` to `value`, replacing an earlier value.
    pub fn set(&mut self, name: &str, value: &str) {
        match self.vars.iter_mut().find(|(n, _)| n == name) {
            Some(slot) => slot.1 = value.to_owned(),
            None => self.vars.push((name.to_owned(), value.to_owned())),
        }
    }

    /// The value of `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.vars
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The entries in order.
    pub fn into_vec(self) -> Vec<(String, String)> {
        self.vars
    }
}

/// Build the environment: the image's `Env`, then the passed AWS variables (only with
/// `SCAR_PASS_AWS_CREDENTIALS`), then every `SCAR_ENV_*`, then the run's facts.
pub fn build(
    image_env: &[String],
    passed_aws_env: &[(String, String)],
    user_env: &[(String, String)],
    facts: &RunFacts<'_>,
) -> ContainerEnv {
    let mut env = ContainerEnv::default();
    for entry in image_env {
        // An image `Env` entry without `=` has no value to give; Docker drops it too.
        if let Some((name, value)) = entry.split_once('=')
            && !name.is_empty()
        {
            env.set(name, value);
        }
    }
    for (name, value) in passed_aws_env.iter().chain(user_env) {
        env.set(name, value);
    }
    let facts_list = [
        ("SCAR_INPUT_FILE", facts.input_file),
        ("INPUT_FILE_PATH", facts.input_file),
        ("SCAR_INPUT_DIR", facts.input_dir),
        ("TMP_INPUT_DIR", facts.input_dir),
        ("SCAR_OUTPUT_DIR", facts.output_dir),
        ("TMP_OUTPUT_DIR", facts.output_dir),
        ("REQUEST_ID", facts.request_id),
        ("AWS_LAMBDA_REQUEST_ID", facts.request_id),
        ("STORAGE_OBJECT_KEY", facts.object_key),
        ("SCAR_INPUT_BUCKET", facts.bucket),
        ("EVENT_TIME", facts.event_time),
        ("SCAR_EVENT_FILE", facts.event_file),
    ];
    for (name, value) in facts_list {
        env.set(name, value);
    }
    if facts.event.len() <= MAX_EVENT_ENV_BYTES {
        env.set("EVENT", facts.event);
    }
    env
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(event: &str) -> RunFacts<'_> {
        RunFacts {
            input_file: "/tmp/r1/input/a b.txt",
            input_dir: "/tmp/r1/input",
            output_dir: "/tmp/r1/output",
            request_id: "r1",
            object_key: "dir/a b.txt",
            bucket: "in",
            event_time: "2026-11-27T15:00:00.000Z",
            event_file: "/tmp/r1/.scar/event.json",
            event,
        }
    }

    #[test]
    fn the_environment_is_exactly_the_designed_list_in_order() {
        let env = build(
            &["PATH=/usr/bin:/bin".into(), "LANG=C".into()],
            &[],
            &[],
            &facts("{}"),
        );
        let names: Vec<String> = env.clone().into_vec().into_iter().map(|(n, _)| n).collect();
        assert_eq!(
            names,
            [
                "PATH",
                "LANG",
                "SCAR_INPUT_FILE",
                "INPUT_FILE_PATH",
                "SCAR_INPUT_DIR",
                "TMP_INPUT_DIR",
                "SCAR_OUTPUT_DIR",
                "TMP_OUTPUT_DIR",
                "REQUEST_ID",
                "AWS_LAMBDA_REQUEST_ID",
                "STORAGE_OBJECT_KEY",
                "SCAR_INPUT_BUCKET",
                "EVENT_TIME",
                "SCAR_EVENT_FILE",
                "EVENT"
            ]
        );
        assert_eq!(env.get("INPUT_FILE_PATH"), Some("/tmp/r1/input/a b.txt"));
        assert_eq!(env.get("TMP_OUTPUT_DIR"), Some("/tmp/r1/output"));
        assert_eq!(env.get("EVENT"), Some("{}"));
    }

    #[test]
    fn user_variables_override_the_image_and_the_facts_override_both() {
        let user = [
            ("LANG".to_owned(), "fr_FR".to_owned()),
            ("REQUEST_ID".to_owned(), "forged".to_owned()),
        ];
        let env = build(
            &["LANG=C".into(), "BROKEN".into()],
            &[],
            &user,
            &facts("{}"),
        );
        assert_eq!(env.get("LANG"), Some("fr_FR"));
        assert_eq!(env.get("REQUEST_ID"), Some("r1"));
        assert_eq!(env.get("BROKEN"), None);
    }

    #[test]
    fn aws_credentials_appear_only_when_passed() {
        let without = build(&[], &[], &[], &facts("{}"));
        assert!(
            without
                .clone()
                .into_vec()
                .iter()
                .all(|(n, _)| !n.starts_with("AWS_") || n == "AWS_LAMBDA_REQUEST_ID")
        );
        let passed = [("AWS_SECRET_ACCESS_KEY".to_owned(), "s".to_owned())];
        let with = build(&[], &passed, &[], &facts("{}"));
        assert_eq!(with.get("AWS_SECRET_ACCESS_KEY"), Some("s"));
    }

    #[test]
    fn a_large_event_is_left_out_of_the_environment_but_not_of_the_event_file() {
        let big = "x".repeat(MAX_EVENT_ENV_BYTES + 1);
        let env = build(&[], &[], &[], &facts(&big));
        assert_eq!(env.get("EVENT"), None);
        assert_eq!(env.get("SCAR_EVENT_FILE"), Some("/tmp/r1/.scar/event.json"));
        let fits = "x".repeat(MAX_EVENT_ENV_BYTES);
        assert!(build(&[], &[], &[], &facts(&fits)).get("EVENT").is_some());
    }
}
