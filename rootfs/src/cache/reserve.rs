//! Room for builds that run at the same time. Pulls no longer hold the cache's lock while they
//! build, so two sandboxes pulling different images would each count the room left before the
//! other's image is published. Each build therefore writes what it expects to take into its
//! [`RESERVED`] file, and making room for a new build counts the reservations of the builds
//! still alive (whose heartbeat, the mtime of their `.building`, is younger than the stale
//! limit: reading it opens nothing, which on NFS could drop a lock of this very process).

use std::path::Path;
use std::time::SystemTime;

use super::building::RESERVED;
use super::error::{CacheError, io_err};
use super::lock::BUILDING;
use super::pulling::stale_limit;
use super::store::Cache;

impl Cache {
    /// [`Cache::make_room`] for `need` bytes of the build in `build`, counting what the other
    /// live builds reserved, and record `need` as this build's reservation; returns the room
    /// this build may take. Call with the exclusive lock held.
    pub fn make_room_for_build(
        &self,
        need: u64,
        cap: Option<u64>,
        build: &Path,
    ) -> Result<u64, CacheError> {
        let others = self.reserved_by_others(build);
        let room = self.make_room(need.saturating_add(others), cap, None)?;
        let path = build.join(RESERVED);
        std::fs::write(&path, need.to_string()).map_err(io_err("write", &path))?;
        Ok(room.saturating_sub(others))
    }

    /// Bytes reserved by the live builds in `tmp/` other than `own`.
    fn reserved_by_others(&self, own: &Path) -> u64 {
        let limit = stale_limit();
        let now = SystemTime::now();
        let Ok(entries) = std::fs::read_dir(self.root().join("tmp")) else {
            return 0;
        };
        entries
            .flatten()
            .map(|e| e.path())
            .filter(|dir| dir != own)
            .filter(|dir| {
                std::fs::symlink_metadata(dir.join(BUILDING))
                    .and_then(|m| m.modified())
                    .is_ok_and(|m| now.duration_since(m).unwrap_or_default() < limit)
            })
            .filter_map(|dir| std::fs::read_to_string(dir.join(RESERVED)).ok())
            .filter_map(|text| text.trim().parse::<u64>().ok())
            .fold(0, u64::saturating_add)
    }
}

#[cfg(test)]
mod tests {
    use super::super::space::MIB;
    use super::*;

    #[test]
    fn a_second_build_gets_the_room_the_first_did_not_reserve() {
        let tmp = tempfile::tempdir().unwrap();
        let cache = Cache::open(tmp.path()).unwrap();
        let cap = Some(100 * MIB);
        let (first, _l1) = cache.new_build().unwrap();
        let room = cache.make_room_for_build(60 * MIB, cap, &first).unwrap();
        assert_eq!(room, 100 * MIB);
        let (second, _l2) = cache.new_build().unwrap();
        let room = cache.make_room_for_build(30 * MIB, cap, &second).unwrap();
        assert_eq!(room, 40 * MIB, "60 of the 100 MiB are the first build's");
        let (third, _l3) = cache.new_build().unwrap();
        let err = cache.make_room_for_build(20 * MIB, cap, &third);
        assert!(matches!(err, Err(CacheError::CannotFit { .. })), "{err:?}");
        // A build that stopped beating (its builder is gone) reserves nothing.
        let old = SystemTime::now() - stale_limit() - std::time::Duration::from_secs(1);
        std::fs::File::options()
            .write(true)
            .open(first.join(BUILDING))
            .unwrap()
            .set_times(std::fs::FileTimes::new().set_modified(old))
            .unwrap();
        let room = cache.make_room_for_build(20 * MIB, cap, &third).unwrap();
        assert_eq!(room, 70 * MIB);
    }
}
