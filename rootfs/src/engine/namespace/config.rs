//! What the engine hands to its helper process (the reports coming back are [`super::channel`]'s).
//!
//! The spec travels as JSON over an inherited pipe (it can be larger than an environment
//! variable may hold: `EVENT` alone may be 128 KiB).

use std::path::PathBuf;

use super::affinity::CpuMask;
use serde::{Deserialize, Serialize};

/// Environment variable that turns a re-executed binary into the container helper; its value
/// is `<config fd>,<report fd>`.
pub const HELPER_ENV: &str = "SCAR_CONTAINER_INIT";

/// argv\[0\] of the helper, so `ps` shows what it is.
pub const HELPER_ARG0: &str = "scar-container-init";

/// The container, as the helper needs it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct InitConfig {
    /// The image's root filesystem (never modified).
    pub root: PathBuf,
    /// The engine's scratch directory: a tmpfs private to the helper's mount namespace is
    /// mounted over it, holding the new root's mount point and the overlay's upper and work.
    pub run_dir: PathBuf,
    /// The command.
    pub argv: Vec<String>,
    /// The complete environment.
    pub env: Vec<(String, String)>,
    /// Working directory inside the container.
    pub workdir: String,
    /// Host paths bound in.
    pub mounts: Vec<BindMount>,
    /// The container's hostname.
    pub hostname: String,
    /// The CPU mask the command gets back before it executes, where the start pinned the
    /// init to the caller's CPU ([`super::affinity`]). Not sent to the helper, which is not
    /// pinned.
    #[serde(skip)]
    pub affinity: Option<CpuMask>,
    /// The init's parent reads the record and does not wait for the init's exit when the
    /// command has ended and the init is alone (the direct start, see
    /// [`super::init::run`]). Not sent to the helper, whose monitor waits for that exit.
    #[serde(skip)]
    pub parent_reads_record: bool,
}

/// One host path bound into the container.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BindMount {
    /// Host path.
    pub host: PathBuf,
    /// Absolute path inside the container.
    pub container: PathBuf,
    /// Read-only.
    pub read_only: bool,
}
