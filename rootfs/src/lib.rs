//! Image to root filesystem: references and sources, registry pulls, the content-addressed
//! cache, safe layer extraction, and the engines that run a process inside a root filesystem.
//!
//! One invocation reads top to bottom through this crate: [`reference`] names an image,
//! [`pull`] makes its root filesystem available in the [`cache`] (through [`source`],
//! [`registry`] and [`extract`]), and an [`engine`] runs the user's command inside it.
//!
//! [`pull`] is the top: nothing in the crate imports it. What several layers share sits at the
//! bottom and imports nothing above it: [`options`] (what a pull is asked to do), [`blob`]
//! (verifying a blob's bytes, for the downloader and the extractor alike), [`digest`] and
//! [`image`]. `scripts/modgraph.py rootfs/src` checks that no module imports its way back up.

pub mod arena;
pub mod aws;
pub mod blob;
pub mod cache;
pub mod digest;
pub mod engine;
pub mod extract;
pub mod framed;
pub mod image;
pub mod options;
pub mod pull;
pub mod reference;
pub mod registry;
pub mod source;
