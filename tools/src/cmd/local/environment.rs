//! The bootstrap's environment: what Lambda sets, then the template's, then `--env`.

use std::path::Path;

use super::args::FunctionArgs;
use super::function::Function;
use super::s3::S3Endpoint;

/// Set `name` in an ordered environment, replacing an earlier value.
pub(super) fn set(env: &mut Vec<(String, String)>, name: &str, value: impl Into<String>) {
    env.retain(|(existing, _)| existing != name);
    env.push((name.to_owned(), value.into()));
}

/// The inputs of [`lambda_environment`] that come from the running session.
pub(super) struct Endpoints<'a> {
    pub(super) runtime_api: String,
    pub(super) s3: &'a S3Endpoint,
    pub(super) task_root: &'a Path,
    pub(super) runtime_dir: &'a Path,
    pub(super) cache_dir: &'a Path,
    /// `SCAR_OUTPUT`, in place of the template's; `None` keeps what the template says.
    pub(super) output: Option<String>,
}

/// The bootstrap's complete environment: Lambda's variables, the template's, then overrides.
pub(super) fn lambda_environment(
    function: &Function,
    args: &FunctionArgs,
    endpoints: &Endpoints<'_>,
    overrides: &[(String, String)],
) -> Vec<(String, String)> {
    let mut env = Vec::new();
    let memory = function.memory_mb.to_string();
    let lambda = [
        ("AWS_LAMBDA_RUNTIME_API", endpoints.runtime_api.clone()),
        ("AWS_LAMBDA_FUNCTION_NAME", function.name.clone()),
        ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", memory),
        ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST".to_owned()),
        ("AWS_LAMBDA_INITIALIZATION_TYPE", "on-demand".to_owned()),
        (
            "AWS_LAMBDA_LOG_GROUP_NAME",
            format!("/aws/lambda/{}", function.name),
        ),
        ("AWS_LAMBDA_LOG_STREAM_NAME", "scar-local".to_owned()),
        ("AWS_REGION", args.region.clone()),
        ("AWS_DEFAULT_REGION", args.region.clone()),
        ("AWS_ACCESS_KEY_ID", endpoints.s3.access_key.clone()),
        ("AWS_SECRET_ACCESS_KEY", endpoints.s3.secret_key.clone()),
        ("AWS_ENDPOINT_URL_S3", endpoints.s3.url()),
        // The credentials above are all there is: never wait for an instance metadata service.
        ("AWS_EC2_METADATA_DISABLED", "true".to_owned()),
        (
            "LAMBDA_TASK_ROOT",
            endpoints.task_root.display().to_string(),
        ),
        (
            "LAMBDA_RUNTIME_DIR",
            endpoints.runtime_dir.display().to_string(),
        ),
        ("_HANDLER", function.handler.clone()),
        ("PATH", "/usr/local/bin:/usr/bin/:/bin:/opt/bin".to_owned()),
        ("LANG", "en_US.UTF-8".to_owned()),
        ("TZ", ":UTC".to_owned()),
    ];
    for (name, value) in lambda {
        set(&mut env, name, value);
    }
    set(
        &mut env,
        "SCAR_CACHE_DIR",
        endpoints.cache_dir.display().to_string(),
    );
    // Logging choices of the person running scar local reach the bootstrap.
    for name in ["SCAR_LOG", "SCAR_LOG_FORMAT"] {
        if let Some(value) = std::env::var_os(name).and_then(|v| v.into_string().ok()) {
            set(&mut env, name, value);
        }
    }
    for (name, value) in &function.env {
        set(&mut env, name, value.clone());
    }
    if let Some(output) = &endpoints.output {
        set(&mut env, "SCAR_OUTPUT", output.clone());
    }
    for (name, value) in overrides {
        set(&mut env, name, value.clone());
    }
    env
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    #[tokio::test]
    async fn the_bootstrap_gets_lambdas_variables_then_the_templates_then_the_overrides() {
        let dir = tempfile::tempdir().unwrap();
        let s3 = S3Endpoint::start(dir.path(), &["scar-local".into()])
            .await
            .unwrap();
        let function = Function {
            dir: PathBuf::from("/fn"),
            logical_id: "Demo".into(),
            name: "demo-fn".into(),
            env: vec![
                ("SCAR_IMAGE".into(), "oci:image:demo".into()),
                ("SCAR_OUTPUT".into(), "s3://elsewhere/".into()),
                ("SCAR_LOG".into(), "debug".into()),
            ],
            unresolved: Vec::new(),
            timeout_s: 60,
            memory_mb: 1024,
            ephemeral_mb: 512,
            handler: "script.sh".into(),
            runtime: Some("provided.al2023".into()),
        };
        let args = FunctionArgs {
            function: Some(PathBuf::from("/fn")),
            function_id: None,
            bootstrap: None,
            lambda_sim: false,
            preload_dir: None,
            tmp_size: None,
            env: Vec::new(),
            region: "eu-south-2".into(),
            bucket: "scar-local".into(),
            cache_dir: None,
            timeout: None,
        };
        let endpoints = Endpoints {
            runtime_api: "127.0.0.1:9001".into(),
            s3: &s3,
            task_root: Path::new("/fn"),
            runtime_dir: Path::new("/opt"),
            cache_dir: Path::new("/cache"),
            output: Some("s3://scar-local/output/".into()),
        };
        let overrides = vec![("SCAR_LOG".to_owned(), "trace".to_owned())];
        let env = lambda_environment(&function, &args, &endpoints, &overrides);
        let get = |name: &str| env.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str());
        assert_eq!(get("AWS_LAMBDA_RUNTIME_API"), Some("127.0.0.1:9001"));
        assert_eq!(get("AWS_LAMBDA_FUNCTION_NAME"), Some("demo-fn"));
        assert_eq!(get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE"), Some("1024"));
        assert_eq!(get("AWS_REGION"), Some("eu-south-2"));
        assert_eq!(get("AWS_ENDPOINT_URL_S3"), Some(s3.url().as_str()));
        assert_eq!(get("AWS_ACCESS_KEY_ID"), Some(s3.access_key.as_str()));
        assert_eq!(get("LAMBDA_TASK_ROOT"), Some("/fn"));
        assert_eq!(get("SCAR_CACHE_DIR"), Some("/cache"));
        assert_eq!(get("SCAR_IMAGE"), Some("oci:image:demo"));
        // Outputs always land in the local bucket; --env wins over the template.
        assert_eq!(get("SCAR_OUTPUT"), Some("s3://scar-local/output/"));
        assert_eq!(get("SCAR_LOG"), Some("trace"));
        assert_eq!(env.iter().filter(|(n, _)| n == "SCAR_LOG").count(), 1);
        // Nothing of this process's own environment leaks in besides the logging choices.
        assert!(get("HOME").is_none());
    }

    #[test]
    fn set_replaces_an_earlier_value_and_keeps_one_entry() {
        let mut env = vec![("A".to_owned(), "1".to_owned())];
        set(&mut env, "A", "2");
        set(&mut env, "B", "3");
        assert_eq!(
            env,
            [
                ("A".to_owned(), "2".to_owned()),
                ("B".to_owned(), "3".to_owned())
            ]
        );
    }
}
