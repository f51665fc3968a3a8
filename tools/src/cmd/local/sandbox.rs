//! Starting the real `bootstrap` the way Lambda does: a clean environment with Lambda's
//! variables, the function directory as working directory, and optionally Lambda's
//! restrictions (`--lambda-sim`).
//!
//! `--lambda-sim` runs the bootstrap under `scar lambda-sim` (`crate::sim`, the simulator the
//! tests and `./demo.sh --lambda-sim` use too), started as this same executable: uid 993
//! without capabilities, seccomp refusing `prctl`, `ptrace`, `seccomp` and `chroot`, user
//! namespaces refused, a bare read-only root with the bootstrap at `/opt/bootstrap`, the
//! preload libraries at `/opt/preload`, the function read-only at `/var/task` and a `/tmp`
//! tmpfs of the function's `EphemeralStorage` size. The root holds no C library, so the
//! bootstrap must be statically linked (`./build.sh` makes one), as on Lambda. The variables
//! reach it through the simulator's environment (`--env NAME`), not its command line.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use tokio::process::Command;

use crate::sim;

/// Where Lambda puts a layer's bootstrap, and the function's code.
const SIM_BOOTSTRAP: &str = "/opt/bootstrap";
const SIM_TASK_ROOT: &str = sim::TASK_DIR;
/// Where the layer puts the preload engine's libraries (next to the bootstrap).
const SIM_PRELOAD: &str = "/opt/preload";

/// Lambda's restrictions to apply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LambdaSim {
    /// Size of `/tmp` in MB.
    pub tmp_mb: u64,
    /// A host directory bound writable at its own path: the image cache a person asked for
    /// with `--cache-dir` (Lambda's is `/tmp/scar`, gone with the sandbox).
    pub cache_dir: Option<PathBuf>,
}

/// Why the bootstrap could not be found or started.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// No bootstrap binary at the expected place.
    #[error(
        "no bootstrap at {0}: build it with `cargo build -p scar-bootstrap` (it is looked for next to scar), or pass --bootstrap PATH"
    )]
    NoBootstrap(PathBuf),
    /// The bootstrap is dynamically linked: the simulator's root holds no C library.
    #[error(
        "--lambda-sim runs {0} on a bare root without a C library, as Lambda's is not your distribution: give a static bootstrap (./build.sh makes dist/scar-<arch>/bootstrap; pass it with --bootstrap)"
    )]
    NotStatic(PathBuf),
    /// This executable's path is unknown (it starts the simulator).
    #[error("--lambda-sim: cannot find this executable to start `scar lambda-sim`: {0}")]
    NoSimulator(std::io::Error),
}

/// Everything needed to start one bootstrap process.
#[derive(Clone, Debug)]
pub struct Launch {
    /// The bootstrap binary on the host.
    pub bootstrap: PathBuf,
    /// The function directory on the host.
    pub function_dir: PathBuf,
    /// The environment, complete (the process gets nothing else).
    pub env: Vec<(String, String)>,
    /// Apply Lambda's restrictions.
    pub sim: Option<LambdaSim>,
    /// The preload engine's libraries, mounted at `/opt/preload` under `--lambda-sim` as the
    /// layer ships them (Lambda refuses user namespaces, so the preload engine is what runs).
    pub preload_dir: Option<PathBuf>,
}

/// The bootstrap to use: `explicit`, else `bootstrap` next to the running `scar`.
pub fn find_bootstrap(explicit: Option<&Path>) -> Result<PathBuf, SandboxError> {
    let candidate = match explicit {
        Some(path) => path.to_path_buf(),
        None => std::env::current_exe()
            .map(|exe| exe.with_file_name("bootstrap"))
            .unwrap_or_else(|_| PathBuf::from("bootstrap")),
    };
    if candidate.is_file() {
        Ok(candidate)
    } else {
        Err(SandboxError::NoBootstrap(candidate))
    }
}

/// The preload libraries for `bootstrap`: `explicit`, else `$SCAR_PRELOAD_DIR`, else
/// `preload/` next to it (the layer's layout), else `../preload/lib` (a build tree, where
/// `rootfs/preload/build.sh` puts them).
pub fn find_preload_dir(explicit: Option<&Path>, bootstrap: &Path) -> Option<PathBuf> {
    if let Some(dir) = explicit {
        return std::path::absolute(dir).ok();
    }
    if let Some(dir) = std::env::var_os("SCAR_PRELOAD_DIR").filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(dir));
    }
    let beside = bootstrap.parent()?;
    [beside.join("preload"), beside.join("../preload/lib")]
        .into_iter()
        .find(|dir| dir.join("libscar_preload-gnu.so").is_file())
        .and_then(|dir| dir.canonicalize().ok())
}

/// Paths as the bootstrap sees them: (task root, bootstrap).
pub fn visible_paths(launch: &Launch) -> (PathBuf, PathBuf) {
    match launch.sim {
        Some(_) => (PathBuf::from(SIM_TASK_ROOT), PathBuf::from(SIM_BOOTSTRAP)),
        None => (launch.function_dir.clone(), launch.bootstrap.clone()),
    }
}

/// The command that starts the bootstrap, stdout and stderr piped.
pub fn command(launch: &Launch) -> Result<Command, SandboxError> {
    let mut command = match &launch.sim {
        None => {
            let mut command = Command::new(&launch.bootstrap);
            command
                .current_dir(&launch.function_dir)
                .env_clear()
                .envs(launch.env.iter().map(|(k, v)| (k, v)));
            command
        }
        Some(sim) => {
            if !sim::is_static_elf(&launch.bootstrap) {
                return Err(SandboxError::NotStatic(launch.bootstrap.clone()));
            }
            let exe = std::env::current_exe().map_err(SandboxError::NoSimulator)?;
            let mut command = Command::new(exe);
            command
                .args(simulator_args(launch, sim))
                .env_clear()
                .envs(launch.env.iter().map(|(k, v)| (k, v)));
            command
        }
    };
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    Ok(command)
}

/// `scar lambda-sim`'s arguments for `launch`: each variable by name only, its value taken
/// from the simulator's own environment.
fn simulator_args(launch: &Launch, sim: &LambdaSim) -> Vec<std::ffi::OsString> {
    let mut args: Vec<std::ffi::OsString> = vec![
        "lambda-sim".into(),
        "--tmp-mb".into(),
        sim.tmp_mb.to_string().into(),
        "--task".into(),
        launch.function_dir.clone().into(),
    ];
    let mut bind = |host: &Path, target: &str| {
        let mut text = host.as_os_str().to_owned();
        text.push(":");
        text.push(target);
        args.extend(["--ro-bind".into(), text]);
    };
    bind(&launch.bootstrap, SIM_BOOTSTRAP);
    if let Some(dir) = &launch.preload_dir {
        bind(dir, SIM_PRELOAD);
    }
    if let Some(dir) = &sim.cache_dir {
        let mut text = dir.as_os_str().to_owned();
        text.push(":");
        text.push(dir);
        args.extend(["--bind".into(), text]);
    }
    for (name, _) in &launch.env {
        args.extend(["--env".into(), name.into()]);
    }
    args.extend(["--".into(), SIM_BOOTSTRAP.into()]);
    args
}

#[cfg(test)]
mod tests {
    use super::*;

    fn launch(sim: Option<LambdaSim>) -> Launch {
        Launch {
            bootstrap: PathBuf::from("/build/bootstrap"),
            function_dir: PathBuf::from("/src/examples/demo"),
            env: vec![("SCAR_IMAGE".into(), "oci:image:demo".into())],
            sim,
            preload_dir: Some(PathBuf::from("/build/preload")),
        }
    }

    #[test]
    fn the_simulator_gets_lambdas_paths_a_tmp_of_the_ephemeral_size_and_names_only() {
        let args = simulator_args(
            &launch(Some(LambdaSim {
                tmp_mb: 512,
                cache_dir: None,
            })),
            &LambdaSim {
                tmp_mb: 512,
                cache_dir: None,
            },
        );
        let joined = args
            .iter()
            .map(|a| a.to_string_lossy())
            .collect::<Vec<_>>()
            .join(" ");
        assert_eq!(
            joined,
            "lambda-sim --tmp-mb 512 --task /src/examples/demo \
             --ro-bind /build/bootstrap:/opt/bootstrap --ro-bind /build/preload:/opt/preload \
             --env SCAR_IMAGE -- /opt/bootstrap"
        );
    }

    #[test]
    fn a_dynamic_bootstrap_is_refused_under_the_simulator_with_how_to_get_a_static_one() {
        let mut launch = launch(Some(LambdaSim {
            tmp_mb: 1,
            cache_dir: None,
        }));
        // This test binary is dynamically linked on the gnu target.
        launch.bootstrap = std::env::current_exe().unwrap();
        if cfg!(target_env = "gnu") {
            let err = command(&launch).unwrap_err().to_string();
            assert!(
                err.contains("./build.sh") && err.contains("static"),
                "{err}"
            );
        }
    }

    #[test]
    fn paths_seen_by_the_bootstrap_follow_the_sandbox() {
        assert_eq!(
            visible_paths(&launch(None)).0,
            PathBuf::from("/src/examples/demo")
        );
        assert_eq!(
            visible_paths(&launch(Some(LambdaSim {
                tmp_mb: 1,
                cache_dir: None
            })))
            .0,
            PathBuf::from("/var/task")
        );
    }

    #[test]
    fn a_missing_bootstrap_says_how_to_build_one() {
        let err = find_bootstrap(Some(Path::new("/nonexistent/bootstrap"))).unwrap_err();
        assert!(
            err.to_string().contains("cargo build -p scar-bootstrap"),
            "{err}"
        );
    }
}
