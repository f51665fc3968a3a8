//! Engines: ways of running a process inside a root filesystem.
//!
//! - [`namespace`]: user + mount + PID (+ IPC, UTS) namespaces and `pivot_root`.
//! - [`preload`]: for hosts that refuse user namespaces (AWS Lambda): the image's own dynamic
//!   loader plus an `LD_PRELOAD` library that maps absolute paths into the image.
//!
//! The bootstrap and `scar` both go through [`Engine`]; [`select`] implements `auto`.

mod choice;
mod exe;
pub mod fork;
pub mod namespace;
pub mod preload;
pub mod process;
mod spec;
mod types;

pub use self::choice::{EngineOptions, select};
/// The shared probe lives with the namespace engine it answers for.
pub use self::namespace::probe;
pub use exe::{running_exe, set_running_exe};
pub use spec::{DEFAULT_PATH, RunSpecBuilder, SpecError};
pub use types::{
    Container, ContainerHandle, Engine, EngineError, EngineKind, Mount, Outcome, RunSpec, Stdio,
    Unconfined,
};

/// Must be the first call in the `main` of every binary that starts containers (`bootstrap`,
/// `scar`): when an engine re-executes the current binary as a container's helper process, this
/// runs that role and never returns; otherwise it returns at once.
pub fn enter_container_if_requested() {
    namespace::setup::run_if_requested();
}
