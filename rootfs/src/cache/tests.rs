//! Unit tests of the cache's bookkeeping.

use super::*;

fn record(cache: &Cache, name: &str, size: u64) -> ImageRecord {
    let chain_id = Digest::of(name.as_bytes());
    let build = cache.new_tmp().unwrap();
    std::fs::create_dir(build.join("root")).unwrap();
    std::fs::write(build.join("root/file"), name).unwrap();
    let rec = ImageRecord {
        reference: name.to_owned(),
        chain_id,
        config: ImageConfig::default(),
        size,
        layers: 1,
    };
    cache.publish(&build, &rec).unwrap();
    cache
        .write_ref(&RefRecord {
            reference: name.to_owned(),
            manifest: None,
            chain_id,
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
        })
        .unwrap();
    assert_eq!(cache.collect_garbage().unwrap(), 2);
    assert!(cache.read_ref("dangling").unwrap().is_none());
    assert_eq!(
        std::fs::read_dir(tmp.path().join("tmp")).unwrap().count(),
        0
    );
}
