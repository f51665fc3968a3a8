//! The container one run starts: the image's command or the script, the environment of
//! [`container_env`](crate::container_env), the request's directories bound at their own paths.

use std::path::{Path, PathBuf};

use scar_rootfs::engine::{RunSpec, SpecError, Stdio};
use scar_rootfs::image::PreparedImage;

use crate::config::Config;
use crate::container_env::{self, RunFacts};
use crate::event::Input;
use crate::reply;
use crate::report::{Failure, FailureKind};
use crate::stage::RequestDir;

/// What every run of one request shares: its directory and what was written there first.
#[derive(Debug)]
pub struct RequestFiles {
    /// The Lambda request id.
    pub id: String,
    /// `/tmp/<request-id>`.
    pub dir: RequestDir,
    /// `.scar/event.json`: the whole event.
    pub event_file: PathBuf,
    /// The event as text (the `EVENT` variable).
    pub event: String,
    /// `.scar/script.sh`, when a script is set (else the image's command runs).
    pub script: Option<PathBuf>,
    /// When the invocation arrived (ISO 8601): `EVENT_TIME` of an input without a time.
    pub received_at: String,
    /// The invocation's tenant (`Lambda-Runtime-Aws-Tenant-Id`): `SCAR_TENANT_ID`.
    pub tenant_id: Option<String>,
}

/// The spec of the run that processes `input`, staged at `input_file`: the script with the
/// image's `/bin/sh` (else Entrypoint + Cmd), the environment of
/// [`container_env::apply`], the input and output directories bound read-write and `.scar/`
/// read-only at their own paths, no stdin, piped stdout and stderr.
pub fn container_spec(
    image: &PreparedImage,
    config: &Config,
    request: &RequestFiles,
    input: &Input,
    input_file: &Path,
) -> Result<RunSpec, Failure> {
    let dir = &request.dir;
    let mut spec = RunSpec::builder(image.root.clone(), &image.config, dir.scratch());
    if let Some(script) = &request.script {
        spec = spec.script(script);
    }
    let object = input.s3();
    let (input_dir, output_dir) = (dir.input(), dir.output());
    let facts = RunFacts {
        input_file: &input_file.to_string_lossy(),
        input_dir: &input_dir.to_string_lossy(),
        output_dir: &output_dir.to_string_lossy(),
        request_id: &request.id,
        object_key: object.map_or("", |o| o.key.as_str()),
        bucket: object.map_or("", |o| o.bucket.as_str()),
        event_time: object
            .and_then(|o| o.event_time.as_deref())
            .unwrap_or(&request.received_at),
        event_file: &request.event_file.to_string_lossy(),
        event: &request.event,
        tenant_id: request.tenant_id.as_deref(),
    };
    spec = container_env::apply(spec, &config.passed_aws_env, &config.container_env, &facts);
    // An HTTP request's method, path, query and headers (names prefixed, so a caller can
    // never set anything else).
    let http = input.http().map(reply::http_env).unwrap_or_default();
    spec.envs(http.iter().map(|(name, value)| (name.as_str(), value.as_str())))
        .bind_same(&input_dir, false)
        .bind_same(&output_dir, false)
        .bind_same(&dir.meta(), true)
        .stdio(Stdio::Null, Stdio::Piped, Stdio::Piped)
        .build()
        .map_err(|SpecError::NoCommand| {
            Failure::new(
                FailureKind::Image,
                format!(
                    "{} has no Entrypoint or Cmd and no script is set: set SCAR_SCRIPT or SCAR_SCRIPT_FILE",
                    image.reference
                ),
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::S3Input;
    use scar_rootfs::engine::Mount;
    use scar_rootfs::image::ImageConfig;
    use std::ffi::OsString;

    fn image(entrypoint: &[&str], cmd: &[&str]) -> PreparedImage {
        let strings = |items: &[&str]| items.iter().map(|s| s.to_string()).collect();
        PreparedImage {
            reference: "example:1".into(),
            root: "/cache/rootfs/x/root".into(),
            config: ImageConfig {
                env: vec!["PATH=/usr/bin:/bin".into(), "LANG=C".into()],
                entrypoint: strings(entrypoint),
                cmd: strings(cmd),
                working_dir: Some("/app".into()),
                user: Some("1000".into()),
            },
            chain_id: "sha256:00".into(),
        }
    }

    fn config(extra: &[(&str, &str)]) -> Config {
        let vars = [("SCAR_IMAGE", "example:1")].iter().chain(extra);
        Config::from_vars(vars.map(|(k, v)| (OsString::from(k), OsString::from(v))))
            .expect("a valid configuration")
    }

    fn request(base: &Path, script: bool) -> RequestFiles {
        let dir = RequestDir::create(base, "r1").expect("a request directory");
        RequestFiles {
            id: "r1".into(),
            event_file: dir.meta().join("event.json"),
            script: script.then(|| dir.meta().join("script.sh")),
            dir,
            event: "{}".into(),
            received_at: "2026-12-05T07:00:00Z".into(),
            tenant_id: None,
        }
    }

    fn object() -> Input {
        Input::S3(S3Input {
            bucket: "in".into(),
            key: "dir/a b.txt".into(),
            size: Some(3),
            etag: None,
            event_time: Some("2026-11-27T15:00:00.000Z".into()),
        })
    }

    fn env<'s>(spec: &'s RunSpec, name: &str) -> Option<&'s str> {
        spec.env
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    #[test]
    fn an_s3_input_runs_the_image_command_with_its_object_in_the_environment() {
        let base = tempfile::tempdir().unwrap();
        let request = request(base.path(), false);
        let input_file = request.dir.input().join("a b.txt");
        let spec = container_spec(
            &image(&["/entry"], &["arg"]),
            &config(&[]),
            &request,
            &object(),
            &input_file,
        )
        .unwrap();
        assert_eq!(spec.argv, ["/entry", "arg"]);
        assert_eq!(spec.root, PathBuf::from("/cache/rootfs/x/root"));
        assert_eq!(
            (spec.workdir.as_str(), spec.user.as_deref()),
            ("/app", Some("1000"))
        );
        assert_eq!(env(&spec, "STORAGE_OBJECT_KEY"), Some("dir/a b.txt"));
        assert_eq!(env(&spec, "SCAR_INPUT_KEY"), Some("dir/a b.txt"));
        assert_eq!(env(&spec, "SCAR_INPUT_BUCKET"), Some("in"));
        assert_eq!(env(&spec, "SCAR_TENANT_ID"), None);
        assert_eq!(env(&spec, "EVENT_TIME"), Some("2026-11-27T15:00:00.000Z"));
        assert_eq!(
            env(&spec, "INPUT_FILE_PATH"),
            Some(&*input_file.to_string_lossy())
        );
        assert_eq!(env(&spec, "PATH"), Some("/usr/bin:/bin"));
        assert_eq!(
            (spec.stdin, spec.stdout, spec.stderr),
            (Stdio::Null, Stdio::Piped, Stdio::Piped)
        );
        assert_eq!(spec.scratch, request.dir.scratch());
    }

    #[test]
    fn a_direct_input_has_no_object_and_the_time_of_arrival() {
        let base = tempfile::tempdir().unwrap();
        let request = request(base.path(), false);
        let input_file = request.dir.input().join("event.json");
        let spec = container_spec(
            &image(&["/entry"], &[]),
            &config(&[]),
            &request,
            &Input::Direct,
            &input_file,
        )
        .unwrap();
        assert_eq!(env(&spec, "STORAGE_OBJECT_KEY"), Some(""));
        assert_eq!(env(&spec, "SCAR_INPUT_KEY"), Some(""));
        assert_eq!(env(&spec, "SCAR_INPUT_BUCKET"), Some(""));
        assert_eq!(env(&spec, "EVENT_TIME"), Some("2026-12-05T07:00:00Z"));
        assert_eq!(env(&spec, "EVENT"), Some("{}"));
    }

    #[test]
    fn a_script_replaces_the_image_command_and_an_image_without_one_needs_it() {
        let base = tempfile::tempdir().unwrap();
        let with_script = request(base.path(), true);
        let input_file = with_script.dir.input().join("event.json");
        let bare = image(&[], &[]);
        let spec = container_spec(
            &bare,
            &config(&[]),
            &with_script,
            &Input::Direct,
            &input_file,
        )
        .unwrap();
        let script = with_script.dir.meta().join("script.sh");
        assert_eq!(
            spec.argv,
            ["/bin/sh".to_owned(), script.to_string_lossy().into_owned()]
        );
        drop(with_script);
        let without = request(base.path(), false);
        let failure =
            container_spec(&bare, &config(&[]), &without, &Input::Direct, &input_file).unwrap_err();
        assert_eq!(failure.kind, FailureKind::Image);
        assert!(
            failure
                .message
                .starts_with("example:1 has no Entrypoint or Cmd"),
            "{}",
            failure.message
        );
    }

    #[test]
    fn the_request_directories_are_bound_at_their_own_paths_and_only_the_meta_read_only() {
        let base = tempfile::tempdir().unwrap();
        let request = request(base.path(), false);
        let input_file = request.dir.input().join("event.json");
        let spec = container_spec(
            &image(&["/e"], &[]),
            &config(&[]),
            &request,
            &Input::Direct,
            &input_file,
        )
        .unwrap();
        let same = |dir: PathBuf, read_only| Mount {
            host: dir.clone(),
            container: dir,
            read_only,
        };
        assert_eq!(
            spec.mounts,
            [
                same(request.dir.input(), false),
                same(request.dir.output(), false),
                same(request.dir.meta(), true),
            ]
        );
    }

    #[test]
    fn scar_env_variables_override_the_image_but_not_the_facts() {
        let base = tempfile::tempdir().unwrap();
        let request = request(base.path(), false);
        let input_file = request.dir.input().join("event.json");
        let config = config(&[
            ("SCAR_ENV_LANG", "fr_FR"),
            ("SCAR_ENV_REQUEST_ID", "forged"),
        ]);
        let spec = container_spec(
            &image(&["/e"], &[]),
            &config,
            &request,
            &Input::Direct,
            &input_file,
        )
        .unwrap();
        assert_eq!(env(&spec, "LANG"), Some("fr_FR"));
        assert_eq!(env(&spec, "REQUEST_ID"), Some("r1"));
    }

    #[test]
    fn the_requests_tenant_reaches_the_container_as_scar_tenant_id() {
        let base = tempfile::tempdir().unwrap();
        let mut request = request(base.path(), false);
        request.tenant_id = Some("tenant-7".into());
        let input_file = request.dir.input().join("a b.txt");
        let spec = container_spec(
            &image(&["/e"], &[]),
            &config(&[]),
            &request,
            &object(),
            &input_file,
        )
        .unwrap();
        assert_eq!(env(&spec, "SCAR_TENANT_ID"), Some("tenant-7"));
    }
}
