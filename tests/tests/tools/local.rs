//! `scar local` end to end: the real `scar` and `bootstrap` binaries, the embedded Runtime API
//! and S3 endpoint, the offline demo's image built by `examples/demo/build-image.sh`.
//!
//! Outputs are checked by decoding the PNG pictures: each output pixel must be the BT.601 luma
//! of the input pixel, so a copy or a wrong conversion fails.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::demo_support::{assert_grayscale_of, demo_binaries, demo_image, repo, response, sample};
use scar_e2e::lambda_sim;

/// A function directory: the demo's files (or `template` instead of its template.yaml), and
/// its image copied in as `image/`.
fn function_dir(root: &Path, template: Option<&str>) -> PathBuf {
    let dir = root.join("function");
    std::fs::create_dir_all(&dir).unwrap();
    let demo = repo().join("examples/demo");
    std::fs::copy(demo.join("script.sh"), dir.join("script.sh")).unwrap();
    match template {
        Some(text) => std::fs::write(dir.join("template.yaml"), text).unwrap(),
        None => {
            std::fs::copy(demo.join("template.yaml"), dir.join("template.yaml")).unwrap();
        }
    }
    let status = Command::new("cp")
        .arg("-R")
        .arg(demo_image())
        .arg(dir.join("image"))
        .status()
        .unwrap();
    assert!(status.success());
    dir
}

fn scar_local(args: &[&str], function: &Path, cache: &Path) -> Command {
    let [scar, bootstrap, _] = demo_binaries();
    let mut command = Command::new(scar);
    command.arg("local");
    command.args(args);
    command
        .arg("--function")
        .arg(function)
        .arg("--bootstrap")
        .arg(bootstrap)
        .arg("--cache-dir")
        .arg(cache);
    command
}

fn run(mut command: Command) -> Output {
    let output = command.output().expect("run scar local");
    eprintln!(
        "--- scar local stdout\n{}\n--- stderr\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// `scar local invoke` with `args` on the demo's sample picture, the data directory
/// `<root>/data` and the cache `<root>/cache`.
fn invoke_sample(root: &Path, function: &Path, args: &[&str]) -> Command {
    let mut command = scar_local(&[&["invoke"], args].concat(), function, &root.join("cache"));
    command
        .arg("--input")
        .arg(sample())
        .arg("--dir")
        .arg(root.join("data"));
    command
}

#[test]
fn the_demo_picture_becomes_grayscale_through_scar_local_invoke() {
    let tmp = tempfile::tempdir().unwrap();
    let function = function_dir(tmp.path(), None);
    let data = tmp.path().join("data");
    let output = run(invoke_sample(tmp.path(), &function, &[]));
    assert!(output.status.success(), "scar local invoke failed");

    let document = response(&output);
    assert_eq!(document["exitCode"], 0);
    assert_eq!(document["outputs"][0], "s3://scar-local/output/sample.png");
    assert_eq!(document["inputs"][0], "s3://scar-local/input/sample.png");
    assert!(
        data.join("input/sample.png").is_file(),
        "the input was not placed in the bucket"
    );
    assert_grayscale_of(&sample(), &data.join("output/sample.png"));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains(
        &format!("output: {}", data.canonicalize().unwrap().join("output/sample.png").display())
    ));
}

#[test]
fn an_s3_event_file_with_an_encoded_key_is_served_from_the_data_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let function = function_dir(tmp.path(), None);
    let data = tmp.path().join("data");
    std::fs::create_dir_all(data.join("input/holiday pics")).unwrap();
    std::fs::copy(sample(), data.join("input/holiday pics/été 1.png")).unwrap();
    // The shape S3 sends, with the key form-encoded; the bucket name is the event's own.
    let event = serde_json::json!({"Records": [{
        "eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "us-east-1",
        "eventTime": "2026-11-27T12:00:00.000Z", "eventName": "ObjectCreated:Put",
        "userIdentity": {"principalId": "AWS:AIDAEXAMPLE"},
        "requestParameters": {"sourceIPAddress": "203.0.113.9"},
        "responseElements": {"x-amz-request-id": "C3D13FE58DE4C810", "x-amz-id-2": "example"},
        "s3": {
            "s3SchemaVersion": "1.0", "configurationId": "upload",
            "bucket": {"name": "my-photos", "ownerIdentity": {"principalId": "A3EXAMPLE"},
                       "arn": "arn:aws:s3:::my-photos"},
            "object": {"key": "input/holiday+pics/%C3%A9t%C3%A9+1.png", "size": 3507,
                       "eTag": "d41d8cd98f00b204e9800998ecf8427e", "sequencer": "0A1B2C3D4E5F678901"}
        }
    }]});
    let event_path = tmp.path().join("event.json");
    std::fs::write(&event_path, event.to_string()).unwrap();
    let mut command = scar_local(&["invoke"], &function, &tmp.path().join("cache"));
    command
        .arg("--event")
        .arg(&event_path)
        .arg("--dir")
        .arg(&data);
    let output = run(command);
    assert!(output.status.success(), "scar local invoke failed");
    assert_eq!(
        response(&output)["inputs"][0],
        "s3://my-photos/input/holiday pics/été 1.png"
    );
    assert_grayscale_of(&sample(), &data.join("output/été 1.png"));
}

#[test]
fn files_dropped_under_input_are_processed_by_watch() {
    let tmp = tempfile::tempdir().unwrap();
    let function = function_dir(tmp.path(), None);
    let data = tmp.path().join("data");
    std::fs::create_dir_all(data.join("input")).unwrap();
    // A file already there is left alone (S3 does not re-send events for old objects).
    std::fs::copy(sample(), data.join("input/old.png")).unwrap();
    let mut command = scar_local(&[], &function, &tmp.path().join("cache"));
    command
        .arg("--watch")
        .arg(&data)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().expect("start scar local --watch");
    // The watch says `watching` once it has taken its first look at the input directory.
    let stderr = child.stderr.take().unwrap();
    let (watching_tx, watching) = std::sync::mpsc::channel();
    let echo = std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            eprintln!("watch (stderr) | {line}");
            if line.starts_with("scar local: watching") {
                let _ = watching_tx.send(());
            }
        }
    });
    let stdout = child.stdout.take().unwrap();
    let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let collected = lines.clone();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            eprintln!("watch | {line}");
            collected.lock().unwrap().push(line);
        }
    });

    // Once the watch has taken its first look, drop two pictures in.
    watching.recv_timeout(Duration::from_secs(180)).expect(
        "scar local --watch did not say it was watching within 180 s (its stderr is above)",
    );
    std::fs::copy(sample(), data.join("input/first.png")).unwrap();
    std::fs::create_dir_all(data.join("input/nested dir")).unwrap();
    std::fs::copy(sample(), data.join("input/nested dir/second pic.png")).unwrap();
    let wanted = [
        data.join("output/first.png"),
        data.join("output/second pic.png"),
    ];
    // Wait for both results to be reported (the files exist a little earlier: the bootstrap
    // uploads before it answers).
    let reported = |lines: &[String]| {
        lines
            .iter()
            .filter(|l| l.contains(": done in") || l.contains(": FAILED"))
            .count()
    };
    let deadline = Instant::now() + Duration::from_secs(180);
    while reported(&lines.lock().unwrap()) < 2 && Instant::now() < deadline {
        assert!(
            child.try_wait().unwrap().is_none(),
            "scar local --watch exited early"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // SIGINT, as Ctrl-C: the watch stops its bootstrap and exits.
    // SAFETY: kill has no memory-safety preconditions; the pid is our own child's.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let status = child.wait().unwrap();
    reader.join().unwrap();
    echo.join().unwrap();
    for path in &wanted {
        assert_grayscale_of(&sample(), path);
    }
    assert!(status.success(), "scar local --watch ended with {status}");
    let lines = lines.lock().unwrap().join("\n");
    assert!(lines.contains("input/first.png: done in"), "{lines}");
    assert!(
        lines.contains("input/nested dir/second pic.png: done in"),
        "{lines}"
    );
    assert!(
        !lines.contains("old.png"),
        "a file present at the start was processed: {lines}"
    );
    assert!(!data.join("output/old.png").exists());
}

/// A template for the demo's image with `script` inline and extra environment lines.
fn inline_template(script: &str, extra_env: &str) -> String {
    format!(
        r#"AWSTemplateFormatVersion: "2010-09-09"
Transform: AWS::Serverless-2016-10-31
Parameters:
  Greeting:
    Type: String
    Default: hello
Resources:
  Probe:
    Type: AWS::Serverless::Function
    Properties:
      Runtime: provided.al2023
      Handler: script.sh
      Timeout: 60
      Environment:
        Variables:
          SCAR_IMAGE: oci:image:demo
          SCAR_SCRIPT: {script:?}
{extra_env}"#
    )
}

#[test]
fn a_failing_script_is_reported_with_its_error_type_and_stderr() {
    let tmp = tempfile::tempdir().unwrap();
    let template = inline_template("echo 'no luck with this file' >&2; exit 3", "");
    let function = function_dir(tmp.path(), Some(&template));
    let output = run(invoke_sample(tmp.path(), &function, &[]));
    assert!(
        !output.status.success(),
        "a failing script was reported as a success"
    );
    let document = response(&output);
    assert_eq!(document["errorType"], "Scar.ScriptFailed");
    let message = document["errorMessage"].as_str().unwrap();
    assert!(message.contains('3'), "{message}");
    assert!(message.contains("no luck with this file"), "{message}");
    assert!(String::from_utf8_lossy(&output.stdout).contains("FAILED"));
}

#[test]
fn a_function_without_an_image_fails_at_init_naming_the_variable() {
    let tmp = tempfile::tempdir().unwrap();
    let template =
        inline_template("true", "").replace("          SCAR_IMAGE: oci:image:demo\n", "");
    let function = function_dir(tmp.path(), Some(&template));
    let output = run(invoke_sample(tmp.path(), &function, &[]));
    assert!(!output.status.success());
    let document = response(&output);
    assert_eq!(document["errorType"], "Scar.ConfigError");
    assert!(
        document["errorMessage"]
            .as_str()
            .unwrap()
            .contains("SCAR_IMAGE"),
        "{document}"
    );
    assert!(String::from_utf8_lossy(&output.stdout).contains("could not start"));
}

#[test]
fn the_templates_environment_reaches_the_script_with_parameters_resolved() {
    let tmp = tempfile::tempdir().unwrap();
    let template = inline_template(
        "echo \"$GREETING $PLACE $OVERRIDDEN\" > $SCAR_OUTPUT_DIR/env.txt",
        "          SCAR_ENV_GREETING: !Ref Greeting\n          SCAR_ENV_PLACE: !Sub \"from-${AWS::Region}\"\n          SCAR_ENV_OVERRIDDEN: template\n          SCAR_ENV_ARN: !GetAtt Somewhere.Arn\n",
    );
    let function = function_dir(tmp.path(), Some(&template));
    let data = tmp.path().join("data");
    let output = run(invoke_sample(
        tmp.path(),
        &function,
        &[
            "--region",
            "eu-west-3",
            "--env",
            "SCAR_ENV_OVERRIDDEN=command-line",
        ],
    ));
    assert!(output.status.success(), "scar local invoke failed");
    let written = std::fs::read_to_string(data.join("output/env.txt")).unwrap();
    assert_eq!(written.trim(), "hello from-eu-west-3 command-line");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("SCAR_ENV_ARN is computed by CloudFormation"),
        "{stderr}"
    );
}

#[test]
fn a_function_directory_without_a_template_is_refused_clearly() {
    let tmp = tempfile::tempdir().unwrap();
    let output = run(invoke_sample(tmp.path(), tmp.path(), &[]));
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("template.yaml") && stderr.contains("No such file"),
        "{stderr}"
    );
}

/// Under `--lambda-sim` (`scar lambda-sim`) the bootstrap runs as uid 993 with user namespaces
/// refused, so the preload engine runs the script; the image is the harness's dynamically
/// linked one (a static shell cannot be path-mapped by `LD_PRELOAD`). The bootstrap is the
/// static one of `./build.sh` (the simulator's root holds no C library); `--cache-dir` is shown
/// at its own path.
#[test]
fn lambda_sim_runs_the_script_as_a_non_root_user_through_the_preload_engine() {
    let [scar, _, _] = demo_binaries();
    let tmp = tempfile::tempdir().unwrap();
    let image = tmp.path().join("function/image");
    let packed = Command::new(scar)
        .args(["image", "from-dir"])
        .arg(lambda_sim::dynamic_image())
        .arg("--output")
        .arg(&image)
        .args(["--tag", "demo", "--env", "PATH=/usr/bin:/bin"])
        .output()
        .unwrap();
    assert!(
        packed.status.success(),
        "{}",
        String::from_utf8_lossy(&packed.stderr)
    );
    let template = inline_template(
        "cp \"$SCAR_INPUT_FILE\" \"$SCAR_OUTPUT_DIR/\"; id -u > \"$SCAR_OUTPUT_DIR/uid.txt\"",
        "",
    );
    let function = tmp.path().join("function");
    std::fs::write(function.join("template.yaml"), template).unwrap();
    let data = tmp.path().join("data");
    let mut command = Command::new(scar);
    command
        .args(["local", "invoke", "--lambda-sim", "--tmp-size", "256"])
        .arg("--function")
        .arg(&function)
        .arg("--bootstrap")
        .arg(lambda_sim::static_binaries().join("bootstrap"))
        .arg("--cache-dir")
        .arg(tmp.path().join("cache"))
        .arg("--preload-dir")
        .arg(lambda_sim::preload_libs())
        .arg("--input")
        .arg(sample())
        .arg("--dir")
        .arg(&data);
    let output = run(command);
    assert!(
        output.status.success(),
        "scar local invoke --lambda-sim failed"
    );
    assert_eq!(response(&output)["engine"], "preload");
    assert_eq!(
        std::fs::read_to_string(data.join("output/uid.txt"))
            .unwrap()
            .trim(),
        "993"
    );
    assert_eq!(
        std::fs::read(data.join("output/sample.png")).unwrap(),
        std::fs::read(sample()).unwrap()
    );
}

/// A dynamically linked bootstrap cannot run on the simulator's bare root: refused at once,
/// saying how to get a static one.
#[test]
fn lambda_sim_refuses_a_dynamic_bootstrap_and_says_how_to_build_a_static_one() {
    let tmp = tempfile::tempdir().unwrap();
    let function = function_dir(tmp.path(), None);
    let output = run(invoke_sample(tmp.path(), &function, &["--lambda-sim"]));
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("./build.sh") && stderr.contains("static"),
        "{stderr}"
    );
}
