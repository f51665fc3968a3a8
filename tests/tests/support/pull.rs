//! What the pull tests share.

use scar_rootfs::image::PreparedImage;
use scar_rootfs::options::PullOptions;
use scar_rootfs::pull::{self, PullError};

/// `pull::prepare` from a plain test: a two-worker runtime for one pull.
pub fn pull_blocking(image: &str, options: &PullOptions) -> Result<PreparedImage, PullError> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime for the pull")
        .block_on(pull::prepare(image, options))
}
