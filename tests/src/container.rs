//! One container run by an engine inside a test: the run specification the preload tests share,
//! and a run that collects what the container printed.

use std::io::Read;
use std::path::Path;
use std::time::{Duration, Instant};

use scar_rootfs::engine::{Engine, EngineError, Outcome, RunSpec, Stdio, Unconfined};

/// The `PATH` of the test containers (Docker's default).
pub const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// `argv` in the image at `root` as container root: `PATH`, `HOME=/root`, working directory `/`,
/// no mounts, standard output and error piped.
pub fn spec(root: &Path, argv: &[&str]) -> RunSpec {
    RunSpec {
        root: root.to_path_buf(),
        argv: argv.iter().map(|s| s.to_string()).collect(),
        env: vec![
            ("PATH".into(), PATH.into()),
            ("HOME".into(), "/root".into()),
        ],
        workdir: "/".into(),
        user: None,
        mounts: Vec::new(),
        scratch: std::env::temp_dir(),
        stdin: Stdio::Null,
        stdout: Stdio::Piped,
        stderr: Stdio::Piped,
    }
}

/// What a container did.
#[derive(Debug)]
pub struct Ran {
    /// How it ended.
    pub outcome: Outcome,
    /// Its standard output.
    pub stdout: String,
    /// Its standard error.
    pub stderr: String,
    /// Statically linked programs that ran with the host's view (preload engine).
    pub unconfined: Unconfined,
}

/// Start `spec` with `engine`, read both streams to their end and wait for it, stopping it after
/// `deadline` (with `grace` between SIGTERM and SIGKILL).
pub fn run(
    engine: &dyn Engine,
    spec: &RunSpec,
    deadline: Option<Duration>,
    grace: Duration,
) -> Result<Ran, EngineError> {
    let mut container = engine.spawn(spec)?;
    let read_all = |stream: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            if let Some(mut stream) = stream {
                let _ = stream.read_to_string(&mut text);
            }
            text
        })
    };
    let stdout = read_all(
        container
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
    );
    let stderr = read_all(
        container
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
    );
    let outcome = container.wait(deadline.map(|d| Instant::now() + d), grace)?;
    Ok(Ran {
        outcome,
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
        unconfined: container.unconfined(),
    })
}
