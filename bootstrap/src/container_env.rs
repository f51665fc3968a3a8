//! The container's environment: exactly the list of DESIGN.md, nothing inherited.
//!
//! The bootstrap's own environment holds the function's AWS credentials and possibly the
//! registry password; none of it reaches the container unless asked for
//! (`SCAR_PASS_AWS_CREDENTIALS`), and `SCAR_REGISTRY_PASSWORD` never does.

use scar_rootfs::engine::RunSpecBuilder;

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
    /// S3 key of the input, whole (empty for a direct invocation): `STORAGE_OBJECT_KEY` and
    /// `SCAR_INPUT_KEY`. The input file's name is its last segment, shortened when too long
    /// for a file name, so a script that needs the key reads it here.
    pub object_key: &'a str,
    /// S3 bucket of the input (empty for a direct invocation).
    pub bucket: &'a str,
    /// Time of the event.
    pub event_time: &'a str,
    /// Path of the whole event as JSON inside the container.
    pub event_file: &'a str,
    /// The whole event as JSON text.
    pub event: &'a str,
    /// The tenant of the invocation (`Lambda-Runtime-Aws-Tenant-Id`), when the function has
    /// tenant isolation: `SCAR_TENANT_ID`, set only then.
    pub tenant_id: Option<&'a str>,
}

/// Set the container's environment on `spec`, which holds the image's `Env` already: then the
/// passed AWS variables (only with `SCAR_PASS_AWS_CREDENTIALS`), then every `SCAR_ENV_*`, then
/// the run's facts; a later value replaces an earlier one in place.
pub fn apply<'i>(
    mut spec: RunSpecBuilder<'i>,
    passed_aws_env: &[(String, String)],
    user_env: &[(String, String)],
    facts: &RunFacts<'_>,
) -> RunSpecBuilder<'i> {
    spec = spec.envs(
        passed_aws_env
            .iter()
            .chain(user_env)
            .map(|(name, value)| (name.as_str(), value.as_str())),
    );
    spec = spec.envs([
        ("SCAR_INPUT_FILE", facts.input_file),
        ("INPUT_FILE_PATH", facts.input_file),
        ("SCAR_INPUT_DIR", facts.input_dir),
        ("TMP_INPUT_DIR", facts.input_dir),
        ("SCAR_OUTPUT_DIR", facts.output_dir),
        ("TMP_OUTPUT_DIR", facts.output_dir),
        ("REQUEST_ID", facts.request_id),
        ("AWS_LAMBDA_REQUEST_ID", facts.request_id),
        ("STORAGE_OBJECT_KEY", facts.object_key),
        ("SCAR_INPUT_KEY", facts.object_key),
        ("SCAR_INPUT_BUCKET", facts.bucket),
        ("EVENT_TIME", facts.event_time),
        ("SCAR_EVENT_FILE", facts.event_file),
    ]);
    if let Some(tenant_id) = facts.tenant_id {
        spec = spec.env("SCAR_TENANT_ID", tenant_id);
    }
    if facts.event.len() <= MAX_EVENT_ENV_BYTES {
        spec = spec.env("EVENT", facts.event);
    }
    spec
}

#[cfg(test)]
mod tests {
    use super::*;
    use scar_rootfs::engine::RunSpec;
    use scar_rootfs::image::ImageConfig;

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
            tenant_id: None,
        }
    }

    /// The environment of a run of an image whose `Env` is `image_env`.
    fn build(
        image_env: &[String],
        passed_aws_env: &[(String, String)],
        user_env: &[(String, String)],
        facts: &RunFacts<'_>,
    ) -> Env {
        let image = ImageConfig {
            env: image_env.to_vec(),
            entrypoint: vec!["/e".into()],
            ..ImageConfig::default()
        };
        let spec = RunSpec::builder("/r".into(), &image, "/s".into());
        let spec = apply(spec, passed_aws_env, user_env, facts).build();
        Env(spec.expect("the image has an entrypoint").env)
    }

    #[derive(Clone)]
    struct Env(Vec<(String, String)>);

    impl Env {
        fn get(&self, name: &str) -> Option<&str> {
            self.0
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
        }

        fn into_vec(self) -> Vec<(String, String)> {
            self.0
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
                "SCAR_INPUT_KEY",
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

    #[test]
    fn the_full_key_is_scar_input_key_too() {
        let env = build(&[], &[], &[], &facts("{}"));
        assert_eq!(env.get("SCAR_INPUT_KEY"), Some("dir/a b.txt"));
        assert_eq!(env.get("STORAGE_OBJECT_KEY"), Some("dir/a b.txt"));
        let direct = RunFacts {
            object_key: "",
            bucket: "",
            ..facts("{}")
        };
        assert_eq!(
            build(&[], &[], &[], &direct).get("SCAR_INPUT_KEY"),
            Some("")
        );
    }

    #[test]
    fn scar_tenant_id_is_set_only_for_an_invocation_with_a_tenant() {
        let without = build(&[], &[], &[], &facts("{}"));
        assert_eq!(without.get("SCAR_TENANT_ID"), None);
        let with = RunFacts {
            tenant_id: Some("tenant-42"),
            ..facts("{}")
        };
        let env = build(&[], &[], &[], &with);
        assert_eq!(env.get("SCAR_TENANT_ID"), Some("tenant-42"));
        let names: Vec<String> = env.into_vec().into_iter().map(|(n, _)| n).collect();
        let at = |name: &str| names.iter().position(|n| n == name);
        assert!(at("SCAR_TENANT_ID") > at("SCAR_EVENT_FILE") && at("SCAR_TENANT_ID") < at("EVENT"));
    }

    #[test]
    fn a_tenant_id_from_scar_env_is_replaced_by_the_invocations() {
        let user = [("SCAR_TENANT_ID".to_owned(), "forged".to_owned())];
        let with = RunFacts {
            tenant_id: Some("tenant-42"),
            ..facts("{}")
        };
        let env = build(&[], &[], &user, &with);
        assert_eq!(env.get("SCAR_TENANT_ID"), Some("tenant-42"));
    }
}
