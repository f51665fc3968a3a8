//! The examples and the layer as a user deploys them: every SAM template passes `cfn-lint`
//! (offline: it carries its own resource specifications and the SAM translator), each example
//! has what its README promises, no template can trigger itself, the paper's ffmpeg script is
//! unchanged, and `scar layer publish --dry-run` shows the requests it would send.
//!
//! The offline demo runs under both engines: its image (built by `examples/demo/build-image.sh`
//! from the host's loader, libc, dash and the converter) works with the namespace engine, with
//! the preload engine asked for, and under `scar local --lambda-sim` (`scar lambda-sim`: uid
//! 993, seccomp, user namespaces refused, a bare read-only root, the static bootstrap), where
//! the preload engine is the only one, as on Lambda. Outputs are
//! checked pixel by pixel: each must be the BT.601 luma of the input pixel.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use crate::demo_support::{assert_grayscale_of, demo_binaries, demo_image, repo, response, sample};
use scar_e2e::{lambda_sim, workspace};
use serde_norway::Value;

/// The examples README command 1 and the paper name, and the deployments of issue 19.
const EXAMPLES: [&str; 6] = [
    "demo",
    "grayify",
    "imagemagick",
    "darknet",
    "sqs-fanout",
    "managed-instances",
];

/// The paper's ffmpeg script (issue 5), which must run unchanged.
const PAPER_SCRIPT: &str = r#"OUTPUT_DIR="/tmp/$REQUEST_ID/output"
FILENAME=`basename $SCAR_INPUT_FILE`
OUTPUT_FILE=$OUTPUT_DIR/$FILENAME
ffmpeg -loglevel panic -nostats -i $SCAR_INPUT_FILE -vf format=gray $OUTPUT_FILE < /dev/null
"#;

fn templates() -> Vec<PathBuf> {
    let mut all: Vec<PathBuf> = EXAMPLES
        .iter()
        .map(|e| repo().join("examples").join(e).join("template.yaml"))
        .collect();
    all.push(repo().join("layer/template.yaml"));
    // HTTP triggers (issue 20): a Function URL, and the same function behind an HTTP API.
    for template in ["template.yaml", "template-httpapi.yaml"] {
        all.push(repo().join("examples/http-grayify").join(template));
    }
    all
}

fn cfn_lint(template: &Path) -> Output {
    Command::new("cfn-lint")
        .arg(template)
        .output()
        .unwrap_or_else(|err| panic!("cannot run cfn-lint ({err}): pip install cfn-lint"))
}

#[test]
fn every_sam_template_passes_cfn_lint() {
    let mut failures = Vec::new();
    for template in templates() {
        assert!(template.is_file(), "{} is missing", template.display());
        let output = cfn_lint(&template);
        if !output.status.success() {
            failures.push(format!(
                "{}:\n{}{}",
                template.display(),
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "cfn-lint found problems:\n{}",
        failures.join("\n")
    );
}

/// The check above can fail: a template with a property Lambda refuses is reported.
#[test]
fn cfn_lint_rejects_a_template_with_an_invalid_memory_size() {
    let tmp = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(repo().join("examples/demo/template.yaml")).unwrap();
    let broken = text.replace("MemorySize: 512", "MemorySize: 99999");
    assert_ne!(
        text, broken,
        "the demo template no longer sets MemorySize: 512"
    );
    let path = tmp.path().join("template.yaml");
    std::fs::write(&path, broken).unwrap();
    let output = cfn_lint(&path);
    assert!(
        !output.status.success(),
        "cfn-lint accepted MemorySize 99999"
    );
    assert!(String::from_utf8_lossy(&output.stdout).contains("99999"));
}

#[test]
fn every_example_has_a_script_a_template_a_makefile_and_a_readme_with_both_ways_to_run_it() {
    for example in EXAMPLES {
        let dir = repo().join("examples").join(example);
        for file in ["script.sh", "template.yaml", "Makefile", "README.md"] {
            assert!(
                dir.join(file).is_file(),
                "examples/{example}/{file} is missing"
            );
        }
        let readme = std::fs::read_to_string(dir.join("README.md")).unwrap();
        for command in ["sam build", "sam deploy --guided", "scar local"] {
            assert!(
                readme.contains(command),
                "examples/{example}/README.md does not show `{command}`"
            );
        }
    }
}

#[test]
fn the_grayify_script_is_the_papers_unchanged() {
    let script = std::fs::read_to_string(repo().join("examples/grayify/script.sh")).unwrap();
    assert_eq!(script, PAPER_SCRIPT);
}

fn get<'a>(value: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter()
        .try_fold(value, |v, key| v.as_mapping()?.get(*key))
}

/// The function resource of an example's template.
fn function_of(template: &Value) -> (&str, &Value) {
    let resources = get(template, &["Resources"])
        .and_then(Value::as_mapping)
        .expect("Resources");
    let mut functions = resources.iter().filter(|(_, r)| {
        get(r, &["Type"]).and_then(Value::as_str) == Some("AWS::Serverless::Function")
    });
    let (id, resource) = functions.next().expect("one AWS::Serverless::Function");
    assert!(functions.next().is_none(), "one function per example");
    (id.as_str().unwrap_or_default(), resource)
}

/// The text of a plain or `!Sub` value.
fn text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Tagged(tagged) => text(&tagged.value),
        other => panic!("unexpected value {other:?}"),
    }
}

#[test]
fn each_function_runs_on_provided_al2023_with_the_layer_and_its_script() {
    for example in EXAMPLES {
        let path = repo().join("examples").join(example).join("template.yaml");
        let template: Value =
            serde_norway::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let (id, function) = function_of(&template);
        let props = get(function, &["Properties"]).expect("Properties");
        assert_eq!(
            get(props, &["Runtime"]).and_then(Value::as_str),
            Some("provided.al2023"),
            "{example}"
        );
        let layers = serde_norway::to_string(get(props, &["Layers"]).expect("Layers")).unwrap();
        assert!(
            layers.contains("ScarLayerArn"),
            "{example}: the layer is not the ScarLayerArn parameter"
        );
        let env = get(props, &["Environment", "Variables"]).expect("Environment.Variables");
        assert!(
            get(env, &["SCAR_IMAGE"]).is_some(),
            "{example}: no SCAR_IMAGE"
        );
        assert_eq!(
            get(env, &["SCAR_SCRIPT_FILE"]).map(text).as_deref(),
            Some("script.sh"),
            "{example}"
        );
        assert!(
            get(props, &["EphemeralStorage", "Size"])
                .and_then(Value::as_u64)
                .is_some_and(|s| s >= 512)
        );
        // sam build needs a build method for custom runtimes: the Makefile target must exist.
        assert_eq!(
            get(function, &["Metadata", "BuildMethod"]).and_then(Value::as_str),
            Some("makefile")
        );
        let makefile = std::fs::read_to_string(path.with_file_name("Makefile")).unwrap();
        assert!(
            makefile.contains(&format!("build-{id}:")),
            "{example}: Makefile has no build-{id} target"
        );
    }
}

/// The bucket resource whose uploads trigger `event`, and the key filter of that trigger: the S3
/// event's bucket, or for an SQS event the bucket whose notification goes to that queue.
fn trigger_of<'a>(example: &str, template: &'a Value, event: &'a Value) -> (String, &'a Value) {
    let properties = get(event, &["Properties"]).expect("event Properties");
    match get(event, &["Type"]).and_then(Value::as_str) {
        Some("S3") => (
            text(get(properties, &["Bucket"]).expect("Bucket")),
            get(properties, &["Filter"]).expect("a key filter"),
        ),
        Some("SQS") => {
            let queue = serde_norway::to_string(get(properties, &["Queue"]).unwrap()).unwrap();
            let resources = get(template, &["Resources"]).and_then(Value::as_mapping);
            resources
                .into_iter()
                .flatten()
                .find_map(|(id, resource)| {
                    let configs = get(
                        resource,
                        &[
                            "Properties",
                            "NotificationConfiguration",
                            "QueueConfigurations",
                        ],
                    )?;
                    configs.as_sequence()?.iter().find_map(|config| {
                        let to = serde_norway::to_string(get(config, &["Queue"])?).ok()?;
                        (to == queue).then(|| (text(id), get(config, &["Filter"])))
                    })
                })
                .and_then(|(id, filter)| Some((id, filter?)))
                .unwrap_or_else(|| panic!("{example}: no bucket notifies the queue with a filter"))
        }
        other => panic!("{example}: an S3 or SQS event, not {other:?}"),
    }
}

#[test]
fn no_example_can_trigger_itself_with_its_own_outputs() {
    for example in EXAMPLES {
        let path = repo().join("examples").join(example).join("template.yaml");
        let template: Value =
            serde_norway::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let (_, function) = function_of(&template);
        let props = get(function, &["Properties"]).unwrap();
        let output =
            text(get(props, &["Environment", "Variables", "SCAR_OUTPUT"]).expect("SCAR_OUTPUT"));
        let events = get(props, &["Events"])
            .and_then(Value::as_mapping)
            .expect("Events");
        assert_eq!(events.len(), 1, "{example}: one trigger");
        let (_, event) = events.iter().next().expect("an event");
        let (trigger_bucket, filter) = trigger_of(example, &template, event);
        let rules = get(filter, &["S3Key", "Rules"])
            .and_then(Value::as_sequence)
            .expect("a key filter");
        let prefix = rules
            .iter()
            .find(|r| get(r, &["Name"]).and_then(Value::as_str) == Some("prefix"))
            .and_then(|r| get(r, &["Value"]).and_then(Value::as_str))
            .expect("a prefix rule");
        assert!(
            !prefix.is_empty(),
            "{example}: an empty prefix matches the outputs too"
        );
        // The trigger bucket's name parameter (`BucketName: !Ref <parameter>`).
        let trigger_param = get(
            &template,
            &["Resources", trigger_bucket.as_str(), "Properties"],
        )
        .and_then(|p| get(p, &["BucketName"]))
        .map(text)
        .unwrap_or_else(|| panic!("{example}: {trigger_bucket} has no BucketName"));
        // s3://${Bucket}/key-prefix: either another bucket or a prefix outside the filter.
        let rest = output
            .strip_prefix("s3://")
            .expect("SCAR_OUTPUT is an s3:// URL");
        let (bucket, key_prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let bucket_param = bucket.trim_start_matches("${").trim_end_matches('}');
        let same_bucket = trigger_param == bucket_param;
        assert!(
            !same_bucket || !key_prefix.starts_with(prefix),
            "{example}: outputs under {output} match the trigger prefix {prefix}"
        );
    }
}

/// A template's property as an integer (`Timeout: 300`).
fn integer(value: &Value, path: &[&str]) -> u64 {
    get(value, path)
        .and_then(Value::as_u64)
        .unwrap_or_else(|| panic!("{} is not an integer", path.join(".")))
}

/// The fan-out retries failed messages alone, never while their batch still runs, and parks
/// the ones that keep failing.
#[test]
fn the_sqs_fanout_reports_batch_item_failures_and_outlives_its_function() {
    let path = repo().join("examples/sqs-fanout/template.yaml");
    let template: Value = serde_norway::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let (_, function) = function_of(&template);
    let props = get(function, &["Properties"]).unwrap();
    let event = get(props, &["Events", "Uploads", "Properties"]).expect("the SQS event");
    let types = serde_norway::to_string(get(event, &["FunctionResponseTypes"]).unwrap()).unwrap();
    assert!(types.contains("ReportBatchItemFailures"), "{types}");
    assert!(integer(event, &["BatchSize"]) >= 1);
    let queue = get(&template, &["Resources", "Queue", "Properties"]).expect("Queue");
    // AWS's advice: the queue's visibility timeout is at least 6 times the function's timeout.
    assert!(integer(queue, &["VisibilityTimeout"]) >= 6 * integer(props, &["Timeout"]));
    assert_eq!(integer(queue, &["RedrivePolicy", "maxReceiveCount"]), 3);
    let dead_letters = text(get(queue, &["RedrivePolicy", "deadLetterTargetArn"]).unwrap());
    assert_eq!(dead_letters, "DeadLetterQueue.Arn");
    // The bucket waits for the policy that lets S3 send to the queue, and the policy names the
    // bucket by its parameter (a reference to the bucket would be a circular dependency).
    let bucket = get(&template, &["Resources", "InputBucket"]).unwrap();
    assert_eq!(
        get(bucket, &["DependsOn"]).and_then(Value::as_str),
        Some("QueuePolicy")
    );
}

/// The same trap made on purpose: cfn-lint sees the cycle the template avoids.
#[test]
fn cfn_lint_rejects_a_queue_policy_that_refers_to_its_bucket() {
    let tmp = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(repo().join("examples/sqs-fanout/template.yaml")).unwrap();
    let by_name = r#"aws:SourceArn: !Sub "arn:${AWS::Partition}:s3:::${InputBucketName}""#;
    let broken = text.replace(by_name, "aws:SourceArn: !GetAtt InputBucket.Arn");
    assert_ne!(
        text, broken,
        "the queue policy no longer names the bucket by parameter"
    );
    let path = tmp.path().join("template.yaml");
    std::fs::write(&path, broken).unwrap();
    let output = cfn_lint(&path);
    assert!(!output.status.success(), "cfn-lint accepted the cycle");
    assert!(String::from_utf8_lossy(&output.stdout).contains("Circular"));
}

/// Managed Instances: the function names its capacity provider and runs several invocations
/// per execution environment (Lambda sets `AWS_LAMBDA_MAX_CONCURRENCY` from it).
#[test]
fn the_managed_instances_function_runs_several_invocations_per_environment() {
    let path = repo().join("examples/managed-instances/template.yaml");
    let template: Value = serde_norway::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let (_, function) = function_of(&template);
    let props = get(function, &["Properties"]).unwrap();
    let config = get(props, &["CapacityProviderConfig"]).expect("CapacityProviderConfig");
    let provider = text(get(config, &["Arn"]).unwrap());
    let provider = provider.trim_end_matches(".Arn");
    assert_eq!(
        get(&template, &["Resources", provider, "Type"]).and_then(Value::as_str),
        Some("AWS::Serverless::CapacityProvider")
    );
    let concurrency = integer(config, &["PerExecutionEnvironmentMaxConcurrency"]);
    // Above 1 to be worth it; at most what the bootstrap accepts.
    assert!((2..=1024).contains(&concurrency), "{concurrency}");
    // Managed Instances need 2 GB at least, and run published versions only.
    assert!(integer(props, &["MemorySize"]) >= 2048);
    assert!(get(props, &["AutoPublishAlias"]).is_some());
}

/// `scar` of this workspace, built once per test process.
fn scar() -> &'static Path {
    static SCAR: OnceLock<PathBuf> = OnceLock::new();
    SCAR.get_or_init(|| workspace::binary("scar-tools", "scar"))
}

#[test]
fn layer_publish_dry_run_prints_one_request_per_architecture() {
    let dist = tempfile::tempdir().unwrap();
    std::fs::write(dist.path().join("scar-layer-x86_64.zip"), vec![0u8; 1234]).unwrap();
    std::fs::write(dist.path().join("scar-layer-arm64.zip"), vec![0u8; 99]).unwrap();
    let output = Command::new(scar())
        .args([
            "layer",
            "publish",
            "--region",
            "eu-west-1",
            "--dry-run",
            "--public",
            "--dist",
        ])
        .arg(dist.path())
        // No credentials anywhere: a dry run must not need or look for them.
        .env_remove("AWS_ACCESS_KEY_ID")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let requests: Vec<serde_json::Value> = serde_json::Deserializer::from_str(&stdout)
        .into_iter::<serde_json::Value>()
        .collect::<Result<_, _>>()
        .expect("the dry run prints JSON documents");
    let publishes: Vec<_> = requests
        .iter()
        .filter(|r| r["Action"] == "lambda:PublishLayerVersion")
        .collect();
    assert_eq!(publishes.len(), 2);
    assert_eq!(publishes[0]["LayerName"], "scar-arm64");
    assert_eq!(publishes[0]["CompatibleArchitectures"][0], "arm64");
    assert_eq!(publishes[1]["LayerName"], "scar-x86_64");
    assert_eq!(publishes[1]["Region"], "eu-west-1");
    assert_eq!(
        publishes[1]["CompatibleRuntimes"],
        serde_json::json!(["provided.al2023", "provided.al2"])
    );
    assert!(
        publishes[1]["Content"]["ZipFile"]
            .as_str()
            .unwrap()
            .contains("1234 bytes")
    );
    let grants = requests
        .iter()
        .filter(|r| r["Action"] == "lambda:AddLayerVersionPermission")
        .count();
    assert_eq!(grants, 2, "--public grants each layer version to everyone");
}

#[test]
fn layer_publish_without_zips_says_to_build_first() {
    let dist = tempfile::tempdir().unwrap();
    let output = Command::new(scar())
        .args([
            "layer",
            "publish",
            "--region",
            "eu-west-1",
            "--dry-run",
            "--dist",
        ])
        .arg(dist.path())
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("scar layer build"));
}

/// The demo's function directory, unchanged, with its image, under `root`.
fn demo_function(root: &Path) -> PathBuf {
    let dir = root.join("function");
    std::fs::create_dir_all(&dir).unwrap();
    for file in ["script.sh", "template.yaml"] {
        std::fs::copy(repo().join("examples/demo").join(file), dir.join(file)).unwrap();
    }
    let status = Command::new("cp")
        .arg("-R")
        .arg(demo_image())
        .arg(dir.join("image"))
        .status()
        .unwrap();
    assert!(status.success(), "cp -R the demo image failed");
    // Readable by the simulated Lambda's uid 993, which reads /var/task.
    let status = Command::new("chmod")
        .args(["-R", "a+rX"])
        .arg(root)
        .status()
        .unwrap();
    assert!(status.success());
    dir
}

/// `scar local invoke` of the demo with `args`, the sample as the upload, `data` as the bucket.
fn invoke_demo(function: &Path, data: &Path, bootstrap: &Path, args: &[&str]) -> Output {
    let [scar, _, _] = demo_binaries();
    let output = Command::new(scar)
        .args(["local", "invoke", "--function"])
        .arg(function)
        .arg("--bootstrap")
        .arg(bootstrap)
        .args(args)
        .arg("--input")
        .arg(sample())
        .arg("--dir")
        .arg(data)
        .output()
        .expect("run scar local invoke");
    eprintln!(
        "--- scar local stdout\n{}\n--- stderr\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// Assert that the demo succeeded with `engine` and left the grayscale sample under `data`.
fn assert_demo_succeeded(output: &Output, engine: &str, data: &Path) {
    assert!(output.status.success(), "scar local invoke failed");
    let document = response(output);
    assert_eq!(document["exitCode"], 0, "{document}");
    assert_eq!(document["engine"], engine, "{document}");
    assert_eq!(document["outputs"][0], "s3://scar-local/output/sample.png");
    assert_grayscale_of(&sample(), &data.join("output/sample.png"));
}

/// On Lambda user namespaces are refused, so the preload engine runs the demo: every program
/// of its image must start through the image's own loader (a static shell would look for the
/// converter on the host and fail).
#[test]
fn the_demo_turns_the_sample_grey_under_the_simulated_lambda_with_the_preload_engine() {
    let tmp = tempfile::tempdir().unwrap();
    let function = demo_function(tmp.path());
    let data = tmp.path().join("data");
    // The static bootstrap of ./build.sh: the simulator's root holds no C library.
    let bootstrap = lambda_sim::static_binaries().join("bootstrap");
    let preload = lambda_sim::preload_libs();
    let output = invoke_demo(
        &function,
        &data,
        &bootstrap,
        &["--lambda-sim", "--preload-dir", preload.to_str().unwrap()],
    );
    assert_demo_succeeded(&output, "preload", &data);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("user namespaces"),
        "auto did not say why it took the preload engine:\n{stderr}"
    );
}

/// `SCAR_ENGINE=preload` outside the simulation: the bootstrap finds the libraries in
/// `preload/` beside itself, as the layer ships them.
#[test]
fn the_demo_turns_the_sample_grey_with_the_preload_engine_asked_for() {
    let layer = lambda_sim::layer_dir();
    let [_, bootstrap, _] = demo_binaries();
    let beside = layer.path().join("bootstrap");
    // A hard link keeps the 300 MB debug binary from being copied; /proc/self/exe (how the
    // bootstrap finds preload/) names the link's directory either way.
    if std::fs::hard_link(bootstrap, &beside).is_err() {
        std::fs::copy(bootstrap, &beside).unwrap();
    }
    let tmp = tempfile::tempdir().unwrap();
    let function = demo_function(tmp.path());
    let data = tmp.path().join("data");
    let cache = tmp.path().join("cache");
    let output = invoke_demo(
        &function,
        &data,
        &beside,
        &[
            "--env",
            "SCAR_ENGINE=preload",
            "--cache-dir",
            cache.to_str().unwrap(),
        ],
    );
    assert_demo_succeeded(&output, "preload", &data);
}

#[test]
fn the_demo_turns_the_sample_grey_with_the_namespace_engine_asked_for() {
    let tmp = tempfile::tempdir().unwrap();
    let function = demo_function(tmp.path());
    let data = tmp.path().join("data");
    let cache = tmp.path().join("cache");
    let [_, bootstrap, _] = demo_binaries();
    let output = invoke_demo(
        &function,
        &data,
        bootstrap,
        &[
            "--env",
            "SCAR_ENGINE=namespace",
            "--cache-dir",
            cache.to_str().unwrap(),
        ],
    );
    assert_demo_succeeded(&output, "namespace", &data);
}

/// README command 1 as a user runs it (with this test's cargo profile, so nothing is built
/// twice): it says where the grayscale picture is, and the picture is right. The script's own
/// `cargo build` is part of the command under test; with the binaries checked fresh first it
/// builds nothing.
#[test]
fn demo_sh_turns_the_sample_grey_and_says_where_the_result_is() {
    // Checked fresh first, so that demo.sh's own cargo build is a no-op.
    let [scar, _, _] = demo_binaries();
    let profile = match scar
        .parent()
        .and_then(Path::file_name)
        .and_then(|n| n.to_str())
    {
        Some("debug") | None => "dev".to_owned(),
        Some(other) => other.to_owned(),
    };
    let output = Command::new(repo().join("demo.sh"))
        .env("DEMO_PROFILE", &profile)
        .output()
        .expect("run ./demo.sh");
    let stdout = String::from_utf8_lossy(&output.stdout);
    eprintln!(
        "--- demo.sh stdout\n{stdout}\n--- stderr\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "./demo.sh failed");
    let done = stdout
        .lines()
        .find(|line| line.starts_with("Done in "))
        .expect("demo.sh reports how long the demo took");
    assert!(
        done.ends_with("the grayscale picture is examples/demo/run/output/sample.png"),
        "{done}"
    );
    // The bound is 10 s for the demo itself: printed, not asserted (shared machine).
    println!("README command 1, the demo itself: {done}");
    assert_grayscale_of(
        &sample(),
        &repo().join("examples/demo/run/output/sample.png"),
    );
}

/// The HTTP example answers through a Function URL that streams (IAM-signed), and through an
/// HTTP API that does not; both run the same script in the same image.
#[test]
fn the_http_grayify_templates_stream_through_an_iam_function_url_and_buffer_behind_an_http_api() {
    let dir = repo().join("examples/http-grayify");
    for file in ["script.sh", "Makefile", "README.md"] {
        assert!(
            dir.join(file).is_file(),
            "examples/http-grayify/{file} is missing"
        );
    }
    let read = |name: &str| -> Value {
        serde_norway::from_str(&std::fs::read_to_string(dir.join(name)).unwrap()).unwrap()
    };
    let url = read("template.yaml");
    let (id, function) = function_of(&url);
    let props = get(function, &["Properties"]).unwrap();
    let config = get(props, &["FunctionUrlConfig"]).expect("FunctionUrlConfig");
    assert_eq!(
        get(config, &["AuthType"]).map(text).as_deref(),
        Some("AWS_IAM")
    );
    assert_eq!(
        get(config, &["InvokeMode"]).map(text).as_deref(),
        Some("RESPONSE_STREAM")
    );
    let env = get(props, &["Environment", "Variables"]).unwrap();
    assert_eq!(
        get(env, &["SCAR_HTTP_STREAMING"]).map(text).as_deref(),
        Some("true")
    );
    let makefile = std::fs::read_to_string(dir.join("Makefile")).unwrap();
    assert!(makefile.contains(&format!("build-{id}:")));

    let api = read("template-httpapi.yaml");
    let (_, function) = function_of(&api);
    let props = get(function, &["Properties"]).unwrap();
    let events = get(props, &["Events"]).and_then(Value::as_mapping).unwrap();
    let (_, event) = events.iter().next().unwrap();
    assert_eq!(get(event, &["Type"]).map(text).as_deref(), Some("HttpApi"));
    let env = get(props, &["Environment", "Variables"]).unwrap();
    assert!(
        get(env, &["SCAR_HTTP_STREAMING"]).is_none(),
        "an HTTP API cannot stream: its answers must be buffered"
    );
    let readme = std::fs::read_to_string(dir.join("README.md")).unwrap();
    for shown in [
        "sam build",
        "sam deploy --guided",
        "scar local --function examples/http-grayify --http",
    ] {
        assert!(readme.contains(shown), "the README does not show `{shown}`");
    }
}
