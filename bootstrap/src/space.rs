//! `/tmp` space shared by concurrent invocations (Lambda Managed Instances).
//!
//! Invocations served side by side download their inputs into the same `/tmp`. Checking the free
//! space alone is not enough: two downloads that each fit can together fill the disk, and both
//! fail halfway with `ENOSPC` after paying for the transfer. So each download first reserves its
//! object's size: it is refused at once, with a message that says what to raise, when the
//! filesystem's free space less what the other live downloads reserved cannot hold it plus a
//! small floor (the event file, the script, the outputs' first bytes). A reservation lasts until
//! it is dropped, normally when its download has finished: from then on the written file itself
//! shows in the free space.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

/// Space kept free beyond the object itself.
pub const FLOOR: u64 = 16 * 1024 * 1024;

/// The reservations of one process's live downloads.
#[derive(Debug, Default)]
pub struct Space {
    reserved: Arc<Mutex<u64>>,
}

/// Bytes reserved for one download; given back on drop.
#[derive(Debug)]
pub struct Reservation {
    reserved: Arc<Mutex<u64>>,
    bytes: u64,
}

/// Why a download cannot start.
#[derive(Debug, thiserror::Error)]
pub enum SpaceError {
    /// The object does not fit beside what the other invocations reserved.
    #[error(
        "{} does not fit: {}: raise the function's ephemeral storage",
        size(*.bytes),
        free_text(.path, *.available, *.reserved)
    )]
    Full {
        /// Where the download goes (as the caller named it).
        path: PathBuf,
        /// The object's size.
        bytes: u64,
        /// The filesystem's free space, for an unprivileged user.
        available: u64,
        /// What other live downloads reserved.
        reserved: u64,
    },
    /// `statvfs` failed.
    #[error("cannot read the free space of {}: {source}", .path.display())]
    Statvfs {
        /// The path asked about.
        path: PathBuf,
        /// The error.
        source: nix::Error,
    },
}

impl SpaceError {
    /// The message for a user, naming the object: "s3://b/k is 900 MiB but /tmp has 300 MiB
    /// free (200 MiB of it reserved by concurrent invocations): raise the function's ephemeral
    /// storage".
    pub fn describe(&self, input: &str) -> String {
        match self {
            Self::Full {
                path,
                bytes,
                available,
                reserved,
            } => format!(
                "{input} is {} but {}: raise the function's ephemeral storage",
                size(*bytes),
                free_text(path, *available, *reserved)
            ),
            Self::Statvfs { .. } => format!("{input}: {self}"),
        }
    }
}

impl Space {
    /// Reserve `bytes` for a download into `path`'s filesystem (a directory that exists: the
    /// request root), or say why it cannot fit.
    pub fn reserve(&self, path: &Path, bytes: u64) -> Result<Reservation, SpaceError> {
        // Held across the check and the addition: two downloads must not both take the last
        // free space.
        let mut reserved = self.reserved.lock().unwrap_or_else(PoisonError::into_inner);
        let available = available(path)?;
        check(available, *reserved, bytes).map_err(|()| SpaceError::Full {
            path: path.to_owned(),
            bytes,
            available,
            reserved: *reserved,
        })?;
        *reserved = reserved.saturating_add(bytes);
        Ok(Reservation {
            reserved: self.reserved.clone(),
            bytes,
        })
    }

    /// What the live downloads reserved now.
    pub fn reserved(&self) -> u64 {
        *self.reserved.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Reservation {
    /// The bytes held.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        let mut reserved = self.reserved.lock().unwrap_or_else(PoisonError::into_inner);
        *reserved = reserved.saturating_sub(self.bytes);
    }
}

/// Whether `bytes` (plus the [`FLOOR`]) fit in `available` less what others `reserved`.
fn check(available: u64, reserved: u64, bytes: u64) -> Result<(), ()> {
    let left = available.saturating_sub(reserved);
    if left < bytes.saturating_add(FLOOR) {
        Err(())
    } else {
        Ok(())
    }
}

/// Free bytes of `path`'s filesystem for an unprivileged user.
fn available(path: &Path) -> Result<u64, SpaceError> {
    let stat = nix::sys::statvfs::statvfs(path).map_err(|source| SpaceError::Statvfs {
        path: path.to_owned(),
        source,
    })?;
    #[allow(clippy::useless_conversion)] // the field types differ between libc targets
    let (blocks, fragment) = (
        u64::from(stat.blocks_available()),
        u64::from(stat.fragment_size()),
    );
    Ok(blocks.saturating_mul(fragment))
}

fn free_text(path: &Path, available: u64, reserved: u64) -> String {
    format!(
        "{} has {} free ({} of it reserved by concurrent invocations)",
        path.display(),
        size(available),
        size(reserved)
    )
}

/// `bytes` in MiB (KiB below one MiB), rounded.
fn size(bytes: u64) -> String {
    const MIB: u64 = 1024 * 1024;
    if bytes < MIB {
        format!("{} KiB", bytes.div_ceil(1024))
    } else {
        format!("{} MiB", (bytes + MIB / 2) / MIB)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1024 * 1024;

    #[test]
    fn an_object_fits_when_the_free_space_less_the_reservations_holds_it_and_the_floor() {
        assert!(check(1000 * MIB, 0, 900 * MIB).is_ok());
        assert!(check(916 * MIB, 0, 900 * MIB).is_ok());
        assert!(check(916 * MIB - 1, 0, 900 * MIB).is_err());
        assert!(check(1000 * MIB, 100 * MIB, 900 * MIB).is_err());
        assert!(check(1000 * MIB, 84 * MIB, 900 * MIB).is_ok());
        // Reservations beyond the free space (files written since) never wrap around.
        assert!(check(10 * MIB, 500 * MIB, 0).is_err());
        assert!(check(u64::MAX - 1, 0, u64::MAX).is_err());
    }

    #[test]
    fn the_refusal_names_the_object_the_free_space_the_reservations_and_the_fix() {
        let err = SpaceError::Full {
            path: PathBuf::from("/tmp"),
            bytes: 900 * MIB,
            available: 300 * MIB,
            reserved: 200 * MIB,
        };
        assert_eq!(
            err.describe("s3://b/k"),
            "s3://b/k is 900 MiB but /tmp has 300 MiB free (200 MiB of it reserved by concurrent invocations): raise the function's ephemeral storage"
        );
        assert_eq!(
            err.to_string(),
            "900 MiB does not fit: /tmp has 300 MiB free (200 MiB of it reserved by concurrent invocations): raise the function's ephemeral storage"
        );
        assert_eq!(size(1), "1 KiB");
        assert_eq!(size(1536 * 1024), "2 MiB");
    }

    #[test]
    fn reservations_against_the_real_filesystem_add_up_and_are_given_back_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let space = Space::default();
        let free = available(dir.path()).unwrap();
        assert!(free > 2 * FLOOR, "the test needs some free space: {free}");
        let half = (free - FLOOR) / 2;
        let first = space.reserve(dir.path(), half).unwrap();
        assert_eq!(space.reserved(), half);
        // What is left (less the floor) is now short of another half, give or take the
        // filesystem's own activity: ask for clearly more than is left.
        let err = space.reserve(dir.path(), half + FLOOR).unwrap_err();
        let SpaceError::Full { reserved, .. } = err else {
            panic!("{err}");
        };
        assert_eq!(reserved, half);
        drop(first);
        assert_eq!(space.reserved(), 0);
        let small = space.reserve(dir.path(), 1024).unwrap();
        assert_eq!(small.bytes(), 1024);
        assert!(space.reserve(dir.path(), u64::MAX).is_err());
        drop(small);
        assert_eq!(space.reserved(), 0);
    }

    #[test]
    fn a_missing_directory_is_an_error_naming_it() {
        let err = Space::default()
            .reserve(Path::new("/nonexistent/scar-space"), 1)
            .unwrap_err();
        assert!(matches!(err, SpaceError::Statvfs { .. }), "{err}");
        assert!(err.to_string().contains("/nonexistent/scar-space"), "{err}");
    }
}
