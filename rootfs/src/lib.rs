//! Image to root filesystem: references and sources, registry pulls, the content-addressed
//! cache, safe layer extraction, and the engines that run a process inside a root filesystem.
//!
//! One invocation reads top to bottom through this crate: [`reference`] names an image,
//! [`pull`] makes its root filesystem available in the [`cache`] (through [`registry`] and
//! [`extract`]), and an [`engine`] runs the user's command inside it.

pub mod arena;
pub mod cache;
pub mod digest;
pub mod engine;
pub mod extract;
pub mod image;
pub mod layout;
pub mod pull;
pub mod reference;
pub mod registry;
pub mod source;
