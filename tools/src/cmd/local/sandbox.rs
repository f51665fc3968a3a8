//! Starting the real `bootstrap` the way Lambda does: a clean environment with Lambda's
//! variables, the function directory as working directory, and optionally Lambda's
//! restrictions (`--lambda-sim`).
//!
//! `--lambda-sim` wraps the bootstrap in bubblewrap (`bwrap`, Debian package `bubblewrap`)
//! rather than `unshare` + `setpriv`: `unshare --map-users` needs a `root:0:65536` range in
//! `/etc/subuid`, while `bwrap` needs nothing and works for root and for ordinary users alike.
//! The sandbox is Lambda's shape: uid/gid 993, the host's root read-only, the layer's bootstrap
//! at `/opt/bootstrap`, the function read-only at `/var/task`, a fresh `/tmp` tmpfs of the
//! function's `EphemeralStorage` size, a private PID namespace and `/proc`, and
//! `--disable-userns`, which sets `user.max_user_namespaces` to 0 inside so that creating a
//! user namespace fails as it does on Lambda.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use tokio::process::Command;

/// Where Lambda puts a layer's bootstrap, and the function's code.
const SIM_BOOTSTRAP: &str = "/opt/bootstrap";
const SIM_TASK_ROOT: &str = "/var/task";
/// Where the layer puts the preload engine's libraries (next to the bootstrap).
const SIM_PRELOAD: &str = "/opt/preload";
/// The uid and gid Lambda runs functions as (`sbx_user1051`).
const SIM_UID: u32 = 993;

/// Lambda's restrictions to apply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LambdaSim {
    /// Size of `/tmp` in MB.
    pub tmp_mb: u64,
}

/// Why the bootstrap could not be found or started.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// No bootstrap binary at the expected place.
    #[error(
        "no bootstrap at {0}: build it with `cargo build -p scar-bootstrap` (it is looked for next to scar), or pass --bootstrap PATH"
    )]
    NoBootstrap(PathBuf),
    /// `bwrap` is missing.
    #[error("--lambda-sim needs bubblewrap (`bwrap`): install the Debian package bubblewrap")]
    NoBwrap,
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

fn find_on_path(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
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
            let bwrap = find_on_path("bwrap").ok_or(SandboxError::NoBwrap)?;
            let mut command = Command::new(bwrap);
            command.args(bwrap_args(launch, sim));
            // bwrap itself needs no environment; `--clearenv`/`--setenv` set the bootstrap's.
            command.env_clear();
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

fn bwrap_args(launch: &Launch, sim: &LambdaSim) -> Vec<String> {
    let uid = SIM_UID.to_string();
    let mut args: Vec<String> = [
        "--unshare-user",
        "--uid",
        &uid,
        "--gid",
        &uid,
        "--unshare-pid",
        "--unshare-ipc",
        "--unshare-uts",
        "--die-with-parent",
        "--ro-bind",
        "/",
        "/",
        "--dev",
        "/dev",
        "--proc",
        "/proc",
        "--size",
        &(sim.tmp_mb * 1024 * 1024).to_string(),
        "--tmpfs",
        "/tmp",
        // /var and /opt are replaced so that /var/task and /opt/bootstrap can exist on a
        // read-only root without touching the host.
        "--tmpfs",
        "/var",
        "--tmpfs",
        "/opt",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend([
        "--ro-bind".into(),
        launch.bootstrap.display().to_string(),
        SIM_BOOTSTRAP.into(),
    ]);
    if let Some(dir) = &launch.preload_dir {
        args.extend([
            "--ro-bind".into(),
            dir.display().to_string(),
            SIM_PRELOAD.into(),
        ]);
    }
    args.extend([
        "--ro-bind".into(),
        launch.function_dir.display().to_string(),
        SIM_TASK_ROOT.into(),
    ]);
    args.extend([
        "--chdir".into(),
        SIM_TASK_ROOT.into(),
        "--disable-userns".into(),
        "--clearenv".into(),
    ]);
    for (name, value) in &launch.env {
        args.extend(["--setenv".into(), name.clone(), value.clone()]);
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
    fn the_sandbox_has_lambdas_paths_and_a_tmp_of_the_ephemeral_size() {
        let args = bwrap_args(
            &launch(Some(LambdaSim { tmp_mb: 512 })),
            &LambdaSim { tmp_mb: 512 },
        );
        let joined = args.join(" ");
        assert!(joined.contains("--ro-bind / /"), "{joined}");
        assert!(joined.contains("--size 536870912 --tmpfs /tmp"), "{joined}");
        assert!(
            joined.contains("--ro-bind /build/bootstrap /opt/bootstrap"),
            "{joined}"
        );
        assert!(
            joined.contains("--ro-bind /src/examples/demo /var/task"),
            "{joined}"
        );
        assert!(
            joined.contains("--ro-bind /build/preload /opt/preload"),
            "{joined}"
        );
        assert!(joined.contains("--uid 993 --gid 993"), "{joined}");
        assert!(joined.contains("--disable-userns --clearenv"), "{joined}");
        assert!(
            joined.ends_with("--setenv SCAR_IMAGE oci:image:demo -- /opt/bootstrap"),
            "{joined}"
        );
    }

    #[test]
    fn paths_seen_by_the_bootstrap_follow_the_sandbox() {
        assert_eq!(
            visible_paths(&launch(None)).0,
            PathBuf::from("/src/examples/demo")
        );
        assert_eq!(
            visible_paths(&launch(Some(LambdaSim { tmp_mb: 1 }))).0,
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
