//! What `scar local` prints: the function it runs, and each invocation's outcome.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::function::Function;
use super::s3::OUTPUT_PREFIX;
use super::sandbox::Launch;
use super::session::{Outcome, Session};

/// Everything about a started session that the commands print.
pub(super) struct Context {
    pub(super) function: Function,
    pub(super) data_dir: PathBuf,
    pub(super) buckets: Vec<String>,
}

fn env_value<'a>(env: &'a [(String, String)], name: &str) -> &'a str {
    env.iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
        .unwrap_or("(unset)")
}

/// Say which function runs, how, and where its data lives.
pub(super) fn describe_function(
    function: &Function,
    launch: &Launch,
    data_dir: &Path,
    bucket: &str,
) {
    eprintln!(
        "scar local: function {} ({}): image {}, timeout {} s, memory {} MB",
        function.logical_id,
        function.dir.display(),
        env_value(&launch.env, "SCAR_IMAGE"),
        function.timeout_s,
        function.memory_mb
    );
    if let Some(runtime) = function
        .runtime
        .as_deref()
        .filter(|r| !r.starts_with("provided"))
    {
        eprintln!(
            "scar local: note: Runtime is {runtime}; the SCAR layer needs provided.al2023 or provided.al2"
        );
    }
    for (name, written) in &function.unresolved {
        if name != "SCAR_OUTPUT" {
            eprintln!(
                "scar local: note: {name} is computed by CloudFormation ({written}) and left unset here"
            );
        }
    }
    let outputs = if launch.env.iter().any(|(n, _)| n == "SCAR_OUTPUT") {
        format!(
            "outputs go to s3://{bucket}/{OUTPUT_PREFIX} = {}",
            data_dir.join(OUTPUT_PREFIX).display()
        )
    } else {
        "SCAR_OUTPUT is not set: outputs are not uploaded".to_owned()
    };
    eprintln!(
        "scar local: S3 bucket {bucket} is {} (key K is the file {}/K); {outputs}",
        data_dir.display(),
        data_dir.display(),
    );
    match &launch.sim {
        Some(sim) => eprintln!(
            "scar local: --lambda-sim (scar lambda-sim): bootstrap {}, uid 993, seccomp, bare read-only root, no new user namespaces, /tmp of {} MB; preload libraries {}",
            launch.bootstrap.display(),
            sim.tmp_mb,
            launch
                .preload_dir
                .as_ref()
                .map_or("not found (pass --preload-dir)".into(), |d| d
                    .display()
                    .to_string())
        ),
        None => eprintln!("scar local: bootstrap {}", launch.bootstrap.display()),
    }
}

/// Print one outcome for a person; `true` on success.
pub(super) fn report(context: &Context, label: &str, outcome: &Outcome, elapsed: Duration) -> bool {
    let secs = elapsed.as_secs_f64();
    match outcome {
        Outcome::Response(document) => {
            let exit = document
                .get("exitCode")
                .map(|c| c.to_string())
                .unwrap_or_else(|| "?".into());
            let engine = document
                .get("engine")
                .and_then(|e| e.as_str())
                .unwrap_or("?");
            println!("{label}: done in {secs:.2} s (exit {exit}, engine {engine})");
            let outputs = document
                .get("outputs")
                .and_then(|o| o.as_array())
                .cloned()
                .unwrap_or_default();
            if outputs.is_empty() {
                println!("  no output files");
            }
            for url in outputs.iter().filter_map(|o| o.as_str()) {
                match Session::local_path(&context.data_dir, &context.buckets, url) {
                    Some(path) => println!("  output: {}", path.display()),
                    None => println!("  output: {url}"),
                }
            }
            true
        }
        Outcome::Error {
            error_type,
            message,
        } => {
            println!("{label}: FAILED after {secs:.2} s: {error_type}: {message}");
            false
        }
        Outcome::InitError {
            error_type,
            message,
        } => {
            println!(
                "{label}: FAILED: the bootstrap could not start ({error_type}): {message}\n  fix the Environment of {} in {}/template.yaml (or pass --env NAME=VALUE)",
                context.function.logical_id,
                context.function.dir.display()
            );
            false
        }
        Outcome::Exited(why) => {
            println!("{label}: FAILED: {why}");
            false
        }
        Outcome::TimedOut(after) => {
            println!(
                "{label}: FAILED: no answer after {:.0} s (Timeout is {} s): the sandbox was stopped",
                after.as_secs_f64(),
                context.function.timeout_s
            );
            false
        }
    }
}

/// The document `scar local invoke` prints: the response, or Lambda's error shape.
pub(super) fn document(outcome: &Outcome) -> serde_json::Value {
    match outcome {
        Outcome::Response(document) => document.clone(),
        Outcome::Error {
            error_type,
            message,
        }
        | Outcome::InitError {
            error_type,
            message,
        } => {
            serde_json::json!({ "errorType": error_type, "errorMessage": message })
        }
        Outcome::Exited(why) => {
            serde_json::json!({ "errorType": "Runtime.ExitError", "errorMessage": why })
        }
        Outcome::TimedOut(_) => {
            serde_json::json!({ "errorType": "Sandbox.Timedout", "errorMessage": "timed out" })
        }
    }
}
