//! The content-addressed image cache (`SCAR_CACHE_DIR`), shaped like containerd's content store:
//!
//! ```text
//! <cache>/lock                     flock: shared to read, exclusive to write
//! <cache>/refs/<escaped ref>       JSON: reference -> manifest digest, ChainID and config
//!                                  digest (warm resolution)
//! <cache>/rootfs/<chainid hex>/    root/ (the flattened filesystem), image.json (the DiffIDs
//!                                  verified while extracting), last-used, in-use (flock:
//!                                  shared while a run uses the image, exclusive to evict it)
//! <cache>/configs/<digest hex>.json  an image's runtime config, by its config blob's digest
//! <cache>/blobs/sha256/<hex>       compressed blobs, only when asked to keep them
//! <cache>/pulls/<chainid hex>.lock  flock: held by the one process pulling that image, with
//!                                  its heartbeat inside (see `pulling.rs`)
//! <cache>/tmp/, <cache>/ingest/    work areas; a build in `tmp/` is locked by its builder
//!                                  (`.building`), anything else there is garbage after a crash
//! ```
//!
//! Root filesystems are built under `tmp/` and renamed into `rootfs/` only once complete, so a
//! reader never sees a half-extracted image. The cache's lock is taken exclusive only for short
//! steps (making room, publishing, removing); a pull waits for another pull of the same image
//! on that image's own lock, never on the cache's, so a cache shared by many sandboxes (EFS)
//! serves warm starts while others pull.
//!
//! A root is keyed by the ChainID of its layers' DiffIDs, which an image's config merely claims:
//! `image.json` records the DiffIDs that the extraction hashed, and [`Cache::lookup`] serves
//! a root only when they chain to its key (a record without them, as older versions wrote, is
//! rebuilt). The runtime config is not part of a root: images sharing their layers (`FROM x`
//! plus `ENV`) share the root and each keep their own config under `configs/`.

//!
//! This file only names the parts; each lives in its own file, below nothing that uses it:
//! [`CacheError`] and the [records](RefRecord) at the bottom, [`Cache`] itself in `store.rs`,
//! eviction in `space.rs`, which never takes an image a run holds (`hold.rs`), and the sweep of
//! leftovers in `sweep.rs`.

mod building;
mod error;
mod heartbeat;
mod hold;
mod lock;
mod pulling;
mod records;
mod remove;
mod reserve;
mod space;
mod store;
mod sweep;
mod trust;

pub use building::RESERVED;
pub use error::CacheError;
pub use heartbeat::{BEAT, Counter, Heartbeat};
pub use hold::Hold;
pub use lock::{BUILDING, CacheLock};
pub use pulling::{DEFAULT_STALE, POLL, SCAR_CACHE_STALE_SECONDS, Turn, stale_limit};
pub use records::{ImageRecord, RefRecord};
pub use remove::remove_tree;
pub use space::{CachedImage, Trimmed};
pub use store::Cache;
pub use sweep::{STALE_INGEST, Swept};

#[cfg(test)]
mod hold_tests;
#[cfg(test)]
mod pulling_tests;
#[cfg(test)]
mod tests;
