//! The SCAR supervisor as a library: the `bootstrap` binary is a thin loop around it.
//!
//! One invocation reads through the modules in order: [`runtime`] hands over an event,
//! [`event`] maps it to inputs, [`image`] makes the image available, [`stage`] downloads each
//! input, [`run`] starts the [`container`] (environment: [`container_env`]) until the
//! [`deadline`], [`upload`] sends the outputs back, [`verdict`] judges the run and [`report`]
//! shapes the answer;
//! [`invoke`] strings these together. [`config`] is read once at init, [`logs`] sets up tracing,
//! [`nondumpable`] keeps the bootstrap's secrets out of the container's reach.

pub mod answer;
pub mod config;
pub mod container;
pub mod container_env;
pub mod deadline;
pub mod event;
pub mod image;
pub mod invoke;
pub mod logs;
pub mod nondumpable;
pub mod reply;
pub mod report;
pub mod run;
pub mod runtime;
pub mod space;
pub mod stage;
pub mod upload;
pub mod verdict;
