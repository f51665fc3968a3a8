//! What a prepared image is: a root filesystem on disk plus the parts of its OCI config that
//! decide how a process starts in it.

use std::path::PathBuf;

/// The runtime parts of an image's OCI config (`config` object of the image config blob).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ImageConfig {
    /// `Env`: `NAME=value` entries, in image order.
    pub env: Vec<String>,
    /// `Entrypoint`, empty when unset.
    pub entrypoint: Vec<String>,
    /// `Cmd`, empty when unset.
    pub cmd: Vec<String>,
    /// `WorkingDir`, `None` when unset or empty.
    pub working_dir: Option<String>,
    /// `User` (`uid`, `uid:gid`, `name`, `name:group`), `None` when unset or empty.
    pub user: Option<String>,
}

/// A root filesystem ready to be entered: published in the cache, never modified by a run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PreparedImage {
    /// The reference as the user wrote it (for logs and responses).
    pub reference: String,
    /// Directory holding the flattened root filesystem.
    pub root: PathBuf,
    /// The image's runtime configuration.
    pub config: ImageConfig,
    /// `sha256:<hex>` ChainID of the layers: the cache key of `root`.
    pub chain_id: String,
}
