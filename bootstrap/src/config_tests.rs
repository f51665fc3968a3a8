use super::*;
use scar_rootfs::options::Credentials;

fn config(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
    Config::from_vars(
        pairs
            .iter()
            .map(|(k, v)| (OsString::from(k), OsString::from(v))),
    )
}

#[test]
fn defaults_follow_the_design_table() {
    let config = config(&[(SCAR_IMAGE, "alpine:3.20")]).unwrap();
    assert_eq!(config.image, "alpine:3.20");
    assert_eq!(config.script, ScriptSource::ImageCommand);
    assert_eq!(config.output, None);
    assert_eq!(config.output_for("in").to_string(), "s3://in/output/");
    assert_eq!(config.timeout_margin, Duration::from_secs(10));
    assert_eq!(config.engine, EngineKind::Auto);
    assert_eq!(config.pull.cache_dir, PathBuf::from("/tmp/scar"));
    assert_eq!(config.pull.max_cache_bytes, None);
    assert_eq!(config.pull.policy, PullPolicy::IfNotPresent);
    assert!(config.prefetch);
    assert_eq!(config.pull.credentials, None);
    assert!(config.pull.insecure_registries.is_empty());
    assert!(config.container_env.is_empty());
    assert!(config.passed_aws_env.is_empty());
    assert!(!config.allow_invoke_script);
    assert_eq!(config.log_filter, "info");
    assert_eq!(config.log_format, LogFormat::Text);
    assert_eq!(config.s3_endpoint, None);
    assert_eq!(config.max_concurrency, 1);
}

#[test]
fn a_missing_image_is_an_error_that_names_the_variable() {
    let err = config(&[]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "SCAR_IMAGE is not set: set it to an image reference such as alpine:3.20"
    );
    let err = config(&[(SCAR_IMAGE, "  ")]).unwrap_err();
    assert!(
        err.to_string().starts_with("SCAR_IMAGE is not set"),
        "{err}"
    );
}

#[test]
fn an_unknown_engine_is_an_error_listing_the_engines() {
    let err = config(&[(SCAR_IMAGE, "a"), (SCAR_ENGINE, "fast")]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "SCAR_ENGINE=fast is not an engine: use auto, namespace or preload"
    );
}

#[test]
fn the_static_policy_defaults_to_warn_and_a_wrong_one_names_the_choices() {
    let default = config(&[(SCAR_IMAGE, "a")]).unwrap();
    assert_eq!(default.static_policy, StaticPolicy::Warn);
    let refuse = config(&[(SCAR_IMAGE, "a"), (SCAR_PRELOAD_STATIC, " refuse ")]).unwrap();
    assert_eq!(refuse.static_policy, StaticPolicy::Refuse);
    let err = config(&[(SCAR_IMAGE, "a"), (SCAR_PRELOAD_STATIC, "deny")]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "SCAR_PRELOAD_STATIC=deny is not a policy for statically linked programs: use warn or refuse"
    );
}

#[test]
fn every_malformed_value_names_its_variable() {
    let cases = [
        (SCAR_TIMEOUT_MARGIN, "ten"),
        (SCAR_TIMEOUT_MARGIN, "-1"),
        (SCAR_CACHE_MAX_MB, "0"),
        (SCAR_CACHE_MAX_MB, "1.5"),
        (SCAR_CACHE_STALE_SECONDS, "0"),
        (SCAR_CACHE_STALE_SECONDS, "30s"),
        (SCAR_CACHE_DIR, "relative/dir"),
        (SCAR_PULL_POLICY, "never"),
        (SCAR_PREFETCH, "maybe"),
        (SCAR_PASS_AWS_CREDENTIALS, "2"),
        (SCAR_ALLOW_INVOKE_SCRIPT, "yes please"),
        (SCAR_OUTPUT, "bucket/prefix"),
        (SCAR_OUTPUT, "s3:///prefix"),
        (SCAR_SCRIPT_FILE, "s3://bucket/"),
        (SCAR_SCRIPT_FILE, "https://example.com/x.sh"),
        (SCAR_INSECURE_REGISTRIES, "http://127.0.0.1:5000"),
        (SCAR_LOG_FORMAT, "xml"),
        (SCAR_LOG, "info,[[["),
        (AWS_ENDPOINT_URL_S3, "localhost:9000"),
        ("SCAR_ENV_", "x"),
        (AWS_LAMBDA_MAX_CONCURRENCY, "0"),
        (AWS_LAMBDA_MAX_CONCURRENCY, "abc"),
        (AWS_LAMBDA_MAX_CONCURRENCY, "1025"),
        (AWS_LAMBDA_MAX_CONCURRENCY, "-4"),
        (AWS_LAMBDA_MAX_CONCURRENCY, "2.5"),
    ];
    for (name, value) in cases {
        let err = config(&[(SCAR_IMAGE, "a"), (name, value)])
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with(&format!("{name}=")),
            "{name}={value}: {err}"
        );
        assert!(
            err.contains(": use "),
            "{name}={value} does not say what is accepted: {err}"
        );
    }
}

#[test]
fn managed_instances_concurrency_is_read_from_lambdas_variable() {
    for (value, expected) in [("4", 4), (" 16 ", 16), ("1", 1), ("1024", 1024), ("", 1)] {
        let config = config(&[(SCAR_IMAGE, "a"), (AWS_LAMBDA_MAX_CONCURRENCY, value)]).unwrap();
        assert_eq!(config.max_concurrency, expected, "{value:?}");
    }
}

#[test]
fn script_and_script_file_together_are_refused() {
    let err = config(&[
        (SCAR_IMAGE, "a"),
        (SCAR_SCRIPT, "echo"),
        (SCAR_SCRIPT_FILE, "/x"),
    ])
    .unwrap_err();
    assert_eq!(
        err,
        ConfigError::Conflict {
            first: SCAR_SCRIPT,
            second: SCAR_SCRIPT_FILE
        }
    );
}

#[test]
fn script_file_is_a_path_or_an_s3_url() {
    let local = config(&[(SCAR_IMAGE, "a"), (SCAR_SCRIPT_FILE, "/var/task/script.sh")]).unwrap();
    assert_eq!(
        local.script,
        ScriptSource::File(PathBuf::from("/var/task/script.sh"))
    );
    let remote = config(&[(SCAR_IMAGE, "a"), (SCAR_SCRIPT_FILE, "s3://b/dir/s.sh")]).unwrap();
    assert_eq!(
        remote.script,
        ScriptSource::S3(S3Location {
            bucket: "b".into(),
            key: "dir/s.sh".into()
        })
    );
}

#[test]
fn values_are_parsed_into_their_types() {
    let config = config(&[
        (SCAR_IMAGE, "oci:/opt/layout:v1"),
        (SCAR_SCRIPT, "echo hi"),
        (SCAR_OUTPUT, "s3://out/results"),
        (SCAR_TIMEOUT_MARGIN, "2.5"),
        (SCAR_ENGINE, "preload"),
        (SCAR_CACHE_DIR, "/var/cache/scar"),
        (SCAR_CACHE_MAX_MB, "400"),
        (SCAR_PULL_POLICY, "always"),
        (SCAR_PREFETCH, "false"),
        (SCAR_REGISTRY_USERNAME, "u"),
        (SCAR_REGISTRY_PASSWORD, "p"),
        (
            SCAR_INSECURE_REGISTRIES,
            "127.0.0.1:5000, registry.local:5001",
        ),
        ("SCAR_ENV_B", "2"),
        ("SCAR_ENV_A", "1=x"),
        (SCAR_ALLOW_INVOKE_SCRIPT, "TRUE"),
        (SCAR_LOG, "debug"),
        (SCAR_LOG_FORMAT, "json"),
        (AWS_ENDPOINT_URL, "http://127.0.0.1:9000"),
    ])
    .unwrap();
    assert_eq!(config.script, ScriptSource::Inline("echo hi".into()));
    assert_eq!(config.output_for("in").to_string(), "s3://out/results");
    assert_eq!(config.output_for("in").prefix_dir(), "results/");
    assert_eq!(config.timeout_margin, Duration::from_millis(2500));
    assert_eq!(config.engine, EngineKind::Preload);
    assert_eq!(config.pull.max_cache_bytes, Some(400 * 1024 * 1024));
    assert_eq!(config.pull.policy, PullPolicy::Always);
    assert!(!config.prefetch);
    assert_eq!(
        config.pull.credentials,
        Some(Credentials {
            username: "u".into(),
            password: "p".into()
        })
    );
    assert_eq!(
        config.pull.insecure_registries,
        ["127.0.0.1:5000", "registry.local:5001"]
    );
    assert_eq!(
        config.container_env,
        [
            ("A".to_owned(), "1=x".to_owned()),
            ("B".to_owned(), "2".to_owned())
        ]
    );
    assert!(config.allow_invoke_script);
    assert_eq!(config.log_format, LogFormat::Json);
    assert_eq!(config.s3_endpoint.as_deref(), Some("http://127.0.0.1:9000"));
}

#[test]
fn the_s3_specific_endpoint_wins_over_the_general_one() {
    let config = config(&[
        (SCAR_IMAGE, "a"),
        (AWS_ENDPOINT_URL, "http://general:1"),
        (AWS_ENDPOINT_URL_S3, "http://s3:2"),
    ])
    .unwrap();
    assert_eq!(config.s3_endpoint.as_deref(), Some("http://s3:2"));
}

#[test]
fn aws_credentials_are_captured_only_when_passing_is_asked_for() {
    let base = [
        (SCAR_IMAGE, "a"),
        ("AWS_ACCESS_KEY_ID", "AKIA"),
        ("AWS_SECRET_ACCESS_KEY", "secret"),
        ("AWS_REGION", "eu-west-1"),
    ];
    assert!(config(&base).unwrap().passed_aws_env.is_empty());
    let mut with_pass = base.to_vec();
    with_pass.push((SCAR_PASS_AWS_CREDENTIALS, "true"));
    let names: Vec<_> = config(&with_pass)
        .unwrap()
        .passed_aws_env
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(
        names,
        ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION"]
    );
}

#[test]
fn a_registry_user_without_password_is_refused() {
    let err = config(&[(SCAR_IMAGE, "a"), (SCAR_REGISTRY_USERNAME, "u")]).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("SCAR_REGISTRY_PASSWORD is not set"),
        "{err}"
    );
}

#[test]
fn the_password_never_appears_in_the_debug_form() {
    let config = config(&[
        (SCAR_IMAGE, "a"),
        (SCAR_REGISTRY_USERNAME, "u"),
        (SCAR_REGISTRY_PASSWORD, "hunter2"),
    ])
    .unwrap();
    assert!(!format!("{config:?}").contains("hunter2"));
}

/// Rows of the README's configuration table: (names in the first column, default column).
fn readme_rows(readme: &str) -> Vec<(Vec<String>, String)> {
    let start = readme
        .find("<!-- config-table:start -->")
        .expect("README has no <!-- config-table:start --> marker");
    let end = readme
        .find("<!-- config-table:end -->")
        .expect("README has no <!-- config-table:end --> marker");
    let mut rows = Vec::new();
    for line in readme[start..end]
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with('|'))
    {
        let cells: Vec<&str> = line.trim_matches('|').split('|').map(str::trim).collect();
        let names: Vec<String> = cells[0]
            .split('`')
            .skip(1)
            .step_by(2)
            .map(str::to_owned)
            .collect();
        if names.is_empty() || cells.len() < 3 {
            continue; // header or separator row
        }
        rows.push((
            names,
            cells[cells.len() - 1].replace('`', "").trim().to_owned(),
        ));
    }
    rows
}

fn expected_table() -> String {
    let mut table = String::from("| variable | meaning | default |\n| --- | --- | --- |\n");
    for var in FUNCTION_VARIABLES {
        let prose = ["required", "—", "none", "anonymous"].contains(&var.default)
            || var.default.contains(' ');
        let default = if !prose {
            format!("`{}`", var.default)
        } else {
            var.default.to_owned()
        };
        table.push_str(&format!(
            "| `{}` | {} | {} |\n",
            var.name, var.meaning, default
        ));
    }
    table
}

#[test]
fn the_readme_table_lists_exactly_the_variables_of_config_rs_with_their_defaults() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md");
    let readme = std::fs::read_to_string(path).unwrap_or_else(|err| {
        panic!(
            "{path}: {err}; the README must hold this table:\n{}",
            expected_table()
        )
    });
    let mut documented = BTreeMap::new();
    for (names, default) in readme_rows(&readme) {
        for name in names {
            documented.insert(name, default.clone());
        }
    }
    let expected: BTreeMap<String, String> = FUNCTION_VARIABLES
        .iter()
        .map(|v| (v.name.to_owned(), v.default.to_owned()))
        .collect();
    assert_eq!(
        documented,
        expected,
        "README table differs from config.rs; the table should read:\n{}",
        expected_table()
    );
}

#[test]
fn a_registry_password_without_user_is_refused_naming_both_variables() {
    let err = config(&[(SCAR_IMAGE, "a"), (SCAR_REGISTRY_PASSWORD, "hunter2")])
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("SCAR_REGISTRY_USERNAME is not set")
            && err.contains(SCAR_REGISTRY_PASSWORD),
        "{err}"
    );
    assert!(!err.contains("hunter2"), "{err}");
}
