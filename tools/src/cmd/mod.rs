//! One module per subcommand.

pub mod bench;
pub mod cache;
pub mod image;
mod image_push;
pub mod lambda_sim;
pub mod layer;
pub mod local;
mod log;
mod paths;
pub mod pull;
pub mod run;

pub use log::{fail, init_logging, init_run_logging};
pub use paths::default_cache_dir;
