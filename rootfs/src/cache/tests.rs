//! Unit tests of the cache's bookkeeping.

use super::space::MIB;
use super::store::TOUCH_INTERVAL;
use super::*;
use crate::digest::Digest;
use crate::image::ImageConfig;

fn record(cache: &Cache, name: &str, size: u64) -> ImageRecord {
    let chain_id = Digest::of(name.as_bytes());
    let build = cache.new_tmp().unwrap();
    std::fs::create_dir(build.join("root")).unwrap();
    std::fs::write(build.join("root/file"), name).unwrap();
    let rec = ImageRecord {
        reference: name.to_owned(),
        chain_id,
        verified_diff_ids: Some(vec![chain_id]),
        size,
        layers: 1,
    };
    cache.publish(&build, &rec).unwrap();
    cache
        .write_ref(&RefRecord {
            reference: name.to_owned(),
            manifest: None,
            chain_id,
            config: None,
        })
        .unwrap();
    rec
}

#[test]
fn a_published_image_is_found_by_its_reference() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = Cache::open(tmp.path()).unwrap();
    let rec = record(&cache, "docker.io/library/a:1", 10);
    let r = cache.read_ref("docker.io/library/a:1").unwrap().unwrap();
    assert_eq!(r.chain_id, rec.chain_id);
    assert_eq!(cache.lookup(&r.chain_id).unwrap(), Some(rec));
    assert!(cache.read_ref("docker.io/library/b:1").unwrap().is_none());
    assert_eq!(
        std::fs::read_dir(tmp.path().join("tmp")).unwrap().count(),
        0
    );
}

#[test]
fn eviction_removes_the_least_recently_used_image_first() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = Cache::open(tmp.path()).unwrap();
    let old = record(&cache, "old", 40 * MIB);
    std::thread::sleep(std::time::Duration::from_millis(20));
    let new = record(&cache, "new", 40 * MIB);
    // The cap holds 100 MiB; asking for 30 MiB more must evict exactly the older image.
    let room = cache.make_room(30 * MIB, Some(100 * MIB), None).unwrap();
    assert!(room >= 30 * MIB);
    assert!(cache.lookup(&old.chain_id).unwrap().is_none());
    assert!(cache.lookup(&new.chain_id).unwrap().is_some());
    assert!(cache.read_ref("old").unwrap().is_none());
}

#[test]
fn an_image_larger_than_the_cap_cannot_fit_and_says_so() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = Cache::open(tmp.path()).unwrap();
    let err = cache
        .make_room(300 * MIB, Some(100 * MIB), None)
        .unwrap_err();
    let text = err.to_string();
    assert!(text.contains("needs about 300 MiB, 100 MiB free"), "{text}");
}

#[test]
fn garbage_collection_removes_leftovers_and_dangling_refs() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = Cache::open(tmp.path()).unwrap();
    let build = cache.new_tmp().unwrap();
    std::fs::write(build.join("half"), "x").unwrap();
    cache
        .write_ref(&RefRecord {
            reference: "dangling".into(),
            manifest: None,
            chain_id: Digest::of(b"nothing"),
            config: None,
        })
        .unwrap();
    assert_eq!(cache.collect_garbage().unwrap(), 2);
    assert!(cache.read_ref("dangling").unwrap().is_none());
    assert_eq!(
        std::fs::read_dir(tmp.path().join("tmp")).unwrap().count(),
        0
    );
}

#[test]
fn a_lookup_renews_a_stale_last_used_mark_and_leaves_a_fresh_one_alone() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = Cache::open(tmp.path()).unwrap();
    let rec = record(&cache, "marked", 10);
    let mark = cache.image_dir(&rec.chain_id).join("last-used");
    let set_age = |age: std::time::Duration| {
        let when = std::time::SystemTime::now() - age;
        let file = std::fs::File::options().write(true).open(&mark).unwrap();
        file.set_times(std::fs::FileTimes::new().set_modified(when))
            .unwrap();
        when
    };
    let mtime = || std::fs::metadata(&mark).unwrap().modified().unwrap();
    let stale = set_age(TOUCH_INTERVAL * 2);
    cache.lookup(&rec.chain_id).unwrap().unwrap();
    assert!(mtime() > stale + TOUCH_INTERVAL, "a stale mark is renewed");
    let fresh = set_age(TOUCH_INTERVAL / 4);
    cache.lookup(&rec.chain_id).unwrap().unwrap();
    assert_eq!(mtime(), fresh, "a fresh mark is not rewritten");
}

#[test]
fn a_new_cache_gets_every_directory_and_opens_again_as_it_was() {
    let tmp = tempfile::tempdir().unwrap();
    Cache::open(tmp.path()).unwrap();
    for sub in ["refs", "rootfs", "configs", "tmp", "ingest"] {
        assert!(tmp.path().join(sub).is_dir(), "{sub}");
    }
    let rec = record(&Cache::open(tmp.path()).unwrap(), "again", 10);
    assert!(
        Cache::open(tmp.path())
            .unwrap()
            .lookup(&rec.chain_id)
            .unwrap()
            .is_some()
    );
}

#[test]
fn a_record_without_verified_diff_ids_is_not_served_and_a_verified_build_replaces_it() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = Cache::open(tmp.path()).unwrap();
    let rec = record(&cache, "proven", 10);
    let meta = cache.image_dir(&rec.chain_id).join("image.json");
    let unproven = ImageRecord {
        verified_diff_ids: None,
        ..rec.clone()
    };
    std::fs::write(&meta, serde_json::to_vec(&unproven).unwrap()).unwrap();
    assert!(cache.lookup(&rec.chain_id).unwrap().is_none());
    // DiffIDs that chain to another key prove nothing either.
    let other = ImageRecord {
        verified_diff_ids: Some(vec![Digest::of(b"other layer")]),
        ..rec.clone()
    };
    std::fs::write(&meta, serde_json::to_vec(&other).unwrap()).unwrap();
    assert!(cache.lookup(&rec.chain_id).unwrap().is_none());
    let build = cache.new_tmp().unwrap();
    std::fs::create_dir(build.join("root")).unwrap();
    std::fs::write(build.join("root/file"), "verified").unwrap();
    cache.publish(&build, &rec).unwrap();
    assert_eq!(cache.lookup(&rec.chain_id).unwrap(), Some(rec.clone()));
    let root = cache.image_dir(&rec.chain_id).join("root/file");
    assert_eq!(std::fs::read_to_string(root).unwrap(), "verified");
    assert_eq!(
        std::fs::read_dir(tmp.path().join("tmp")).unwrap().count(),
        0
    );
}

#[test]
fn configs_are_kept_per_digest_and_collected_once_no_reference_names_them() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = Cache::open(tmp.path()).unwrap();
    let rec = record(&cache, "shared", 10);
    let config = |who: &str| ImageConfig {
        env: vec![format!("WHO={who}")],
        ..ImageConfig::default()
    };
    let (a, b) = (Digest::of(b"config a"), Digest::of(b"config b"));
    cache.write_config(&a, &config("a")).unwrap();
    cache.write_config(&b, &config("b")).unwrap();
    assert_eq!(cache.read_config(&a).unwrap(), Some(config("a")));
    assert_eq!(cache.read_config(&b).unwrap(), Some(config("b")));
    cache
        .write_ref(&RefRecord {
            reference: "shared".into(),
            manifest: None,
            chain_id: rec.chain_id,
            config: Some(a),
        })
        .unwrap();
    assert_eq!(cache.collect_garbage().unwrap(), 1);
    assert_eq!(cache.read_config(&a).unwrap(), Some(config("a")));
    assert_eq!(cache.read_config(&b).unwrap(), None);
}
