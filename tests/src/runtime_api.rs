//! The Lambda Runtime API of a third-party emulator: `cargo lambda watch --only-lambda-apis`
//! (PyPI package `cargo-lambda`).
//!
//! What the emulator does, learnt from its source and checked by `tests/tests/tools/harness.rs`:
//! - one port serves both sides: invokes at `POST /2015-03-31/functions/<name>/invocations`, the
//!   Runtime API under `/.rt` (`/.rt/2018-06-01/runtime/...` for the default function `_`,
//!   `/.rt/<name>/2018-06-01/runtime/...` for a named one), so `AWS_LAMBDA_RUNTIME_API` carries a
//!   scheme and a path: `http://127.0.0.1:PORT/.rt[/<name>]`;
//! - a function name must be a binary of the Cargo manifest it is started in (else 404 "Missing
//!   function"), so the harness writes a throwaway manifest declaring the functions of the test;
//! - `GET .../invocation/next` long-polls until an invoke arrives, and always sends
//!   `Lambda-Runtime-Deadline-Ms: 600000` (a constant, not a wall-clock deadline);
//! - a function error (`POST .../error`) makes the invoke answer 500 with the error document;
//! - concurrent `/next` long polls (Lambda Managed Instances) are each answered with a different
//!   invocation, and each invoke gets the result posted for its own request id (checked in
//!   `runtime_proxy`'s tests); it sends neither `Lambda-Runtime-Invocation-Id` nor
//!   `Lambda-Runtime-Aws-Tenant-Id` and never answers 410: `runtime_proxy::RuntimeProxy` adds those.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::service::{self, ServiceChild};

/// The function name `RuntimeApi::start` declares.
pub const DEFAULT_FUNCTION: &str = "scar";

/// The emulator's name for the function of the package itself, always routable.
pub const UNNAMED_FUNCTION: &str = "_";

/// The deadline header value the emulator sends on every invocation.
pub const EMULATOR_DEADLINE_MS: u64 = 600_000;

/// A running `cargo-lambda lambda watch --only-lambda-apis`; stopped on drop.
#[derive(Debug)]
pub struct RuntimeApi {
    child: ServiceChild,
    addr: SocketAddr,
    functions: Vec<String>,
    _dir: tempfile::TempDir,
}

/// The outcome of one invoke as the caller of the function sees it.
#[derive(Debug, Clone)]
pub struct Invocation {
    /// HTTP status of the invoke: 200 on success, 500 when the function reported an error.
    pub status: u16,
    /// The response document; a JSON string holding the raw text when the body is not JSON.
    pub body: serde_json::Value,
    /// `errorType` of an error response.
    pub error_type: Option<String>,
}

impl Invocation {
    /// `errorMessage` of an error response.
    pub fn error_message(&self) -> Option<&str> {
        self.body.get("errorMessage").and_then(|v| v.as_str())
    }
}

impl RuntimeApi {
    /// Starts the emulator with the single function [`DEFAULT_FUNCTION`] (and `_`).
    pub fn start() -> RuntimeApi {
        Self::start_with_functions(&[DEFAULT_FUNCTION])
    }

    /// Starts the emulator with these function names (letters, digits, `-`, `_`).
    pub fn start_with_functions(functions: &[&str]) -> RuntimeApi {
        let program = service::require_program(
            "cargo-lambda",
            "the PyPI package cargo-lambda (pip install cargo-lambda)",
        );
        service::require_program("cargo", "Rust's cargo (the emulator runs `cargo metadata`)");
        let dir = service::temp_dir("runtime-api");
        write_manifest(dir.path(), functions);
        let mut last_error = String::new();
        for _attempt in 0..3 {
            let addr = SocketAddr::from(([127, 0, 0, 1], service::free_port()));
            let mut command = Command::new(&program);
            command
                .args(["lambda", "watch", "--only-lambda-apis", "--ignore-changes"])
                .arg("--invoke-address")
                .arg("127.0.0.1")
                .arg("--invoke-port")
                .arg(addr.port().to_string())
                .arg("--manifest-path")
                .arg(dir.path().join("Cargo.toml"))
                .current_dir(dir.path())
                .env("NO_COLOR", "1")
                // Variables of the `cargo test` run would leak into the emulator's cargo calls.
                .env_remove("CARGO_TARGET_DIR")
                .env_remove("CARGO_MANIFEST_DIR");
            let mut child = ServiceChild::spawn(
                "cargo-lambda",
                command,
                &dir.path().join("cargo-lambda.log"),
            );
            match child.wait_for_own_port(addr) {
                Ok(()) => {
                    return RuntimeApi {
                        child,
                        addr,
                        functions: functions.iter().map(|f| (*f).to_owned()).collect(),
                        _dir: dir,
                    };
                }
                Err(line) if service::is_port_race(&line) => last_error = line,
                Err(line) => panic!("cargo-lambda exited before listening on {addr}: {line}"),
            }
        }
        panic!("cargo-lambda could not bind a free port in 3 attempts: {last_error}");
    }

    /// `http://127.0.0.1:PORT/.rt`: `AWS_LAMBDA_RUNTIME_API` for the unnamed function `_`.
    pub fn runtime_api(&self) -> String {
        format!("http://{}/.rt", self.addr)
    }

    /// `AWS_LAMBDA_RUNTIME_API` for `function`: `http://127.0.0.1:PORT/.rt/<function>`.
    pub fn runtime_api_for(&self, function: &str) -> String {
        if function == UNNAMED_FUNCTION {
            self.runtime_api()
        } else {
            format!("http://{}/.rt/{function}", self.addr)
        }
    }

    /// `http://127.0.0.1:PORT`, where invokes go.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Everything a bootstrap process needs to serve `function` from this emulator.
    pub fn function_env(&self, function: &str) -> Vec<(String, String)> {
        self.check_declared(function);
        [
            ("AWS_LAMBDA_RUNTIME_API", self.runtime_api_for(function)),
            ("AWS_LAMBDA_FUNCTION_NAME", function.to_owned()),
            ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST".to_owned()),
            // What the emulator announces for functions it does not start itself.
            ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "4096".to_owned()),
            (
                "AWS_LAMBDA_LOG_GROUP_NAME",
                format!("/aws/lambda/{function}"),
            ),
            ("AWS_LAMBDA_LOG_STREAM_NAME", "scar-e2e".to_owned()),
            ("_HANDLER", "scar".to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    }

    /// What the emulator has logged so far.
    pub fn log(&self) -> String {
        self.child.log()
    }

    /// Invokes `function` with `payload` and waits for its response; panics after `timeout`.
    pub fn invoke(
        &self,
        function: &str,
        payload: &serde_json::Value,
        timeout: Duration,
    ) -> Invocation {
        self.try_invoke(function, payload, timeout)
            .unwrap_or_else(|err| panic!("{err}"))
    }

    /// Like [`RuntimeApi::invoke`], with the failure to get any response as an error line.
    pub fn try_invoke(
        &self,
        function: &str,
        payload: &serde_json::Value,
        timeout: Duration,
    ) -> Result<Invocation, String> {
        self.check_declared(function);
        let url = format!("{}/2015-03-31/functions/{function}/invocations", self.url());
        let client = reqwest::blocking::Client::builder()
            .timeout(timeout)
            .build()
            .map_err(|err| format!("cannot build an HTTP client: {err}"))?;
        let response = client
            .post(&url)
            .header("content-type", "application/json")
            .body(payload.to_string())
            .send()
            .map_err(|err| {
                format!(
                    "invoke of {function} got no response within {}s ({err}); is a bootstrap serving {}?",
                    timeout.as_secs(),
                    self.runtime_api_for(function)
                )
            })?;
        let status = response.status().as_u16();
        let text = response
            .text()
            .map_err(|err| format!("invoke of {function}: cannot read the response: {err}"))?;
        let body = serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text));
        let error_type = if status == 200 {
            None
        } else {
            Some(
                body.get("errorType")
                    .and_then(|v| v.as_str())
                    .unwrap_or("Unknown")
                    .to_owned(),
            )
        };
        Ok(Invocation {
            status,
            body,
            error_type,
        })
    }

    fn check_declared(&self, function: &str) {
        if function != UNNAMED_FUNCTION && !self.functions.iter().any(|f| f == function) {
            panic!(
                "function {function} was not declared: start the emulator with RuntimeApi::start_with_functions(&[{function:?}, ...])"
            );
        }
    }
}

/// A manifest whose binaries are the function names: the emulator routes only to those.
fn write_manifest(dir: &Path, functions: &[&str]) {
    let mut manifest = String::from(
        "[package]\nname = \"scar-e2e-functions\"\nversion = \"0.0.0\"\nedition = \"2021\"\n\n[workspace]\n",
    );
    for function in functions {
        assert!(
            !function.is_empty()
                && function
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'),
            "function name {function:?} must be letters, digits, '-' or '_'"
        );
        manifest.push_str(&format!(
            "\n[[bin]]\nname = \"{function}\"\npath = \"main.rs\"\n"
        ));
    }
    std::fs::write(dir.join("Cargo.toml"), manifest)
        .and_then(|()| std::fs::write(dir.join("main.rs"), "fn main() {}\n"))
        .unwrap_or_else(|err| {
            panic!(
                "cannot write the emulator's manifest in {}: {err}",
                dir.display()
            )
        });
}
