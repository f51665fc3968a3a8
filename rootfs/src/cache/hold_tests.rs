//! Unit tests of holds against eviction: real files in a temporary cache, real `flock`s (two
//! opens of one file conflict like two processes, so one process stands for several runs).

use std::time::{Duration, Instant};

use super::hold::{Claim, Claimed};
use super::space::MIB;
use super::*;
use crate::digest::Digest;

/// A published image named `name`, `size` bytes by its record, with a reference; returns its
/// root directory (as `PreparedImage::root`) and ChainID.
fn image(cache: &Cache, name: &str, size: u64) -> (std::path::PathBuf, Digest) {
    let chain_id = Digest::of(name.as_bytes());
    let build = cache.new_tmp().unwrap();
    std::fs::create_dir(build.join("root")).unwrap();
    std::fs::write(build.join("root/file"), name).unwrap();
    let record = ImageRecord {
        reference: name.to_owned(),
        chain_id,
        verified_diff_ids: Some(vec![chain_id]),
        size,
        layers: 1,
    };
    let dir = cache.publish(&build, &record).unwrap();
    cache
        .write_ref(&RefRecord {
            reference: name.to_owned(),
            manifest: None,
            chain_id,
            config: None,
        })
        .unwrap();
    // Distinct last-used times: LRU order is creation order.
    std::thread::sleep(Duration::from_millis(15));
    (dir.join("root"), chain_id)
}

fn present(cache: &Cache, id: &Digest) -> bool {
    cache.image_dir(id).join("root/file").exists()
}

#[test]
fn an_image_a_run_holds_is_not_evicted_and_the_others_are() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = Cache::open(tmp.path()).unwrap();
    let (root_a, a) = image(&cache, "a", 30 * MIB);
    let (_, b) = image(&cache, "b", 30 * MIB);
    let (_, c) = image(&cache, "c", 30 * MIB);
    let hold = Hold::take(&root_a, "a").unwrap();
    // 100 MiB cap, 90 used: 45 MiB need two evictions; the oldest (a) is in use.
    let room = cache.make_room(45 * MIB, Some(100 * MIB), None).unwrap();
    assert_eq!(room, 70 * MIB);
    assert!(present(&cache, &a), "the held image stays whole");
    assert_eq!(std::fs::read_to_string(root_a.join("file")).unwrap(), "a");
    assert!(!present(&cache, &b) && !present(&cache, &c));
    assert!(cache.read_ref("b").unwrap().is_none());
    drop(hold);
}

#[test]
fn with_every_image_held_and_no_room_the_pull_says_the_cache_is_full_and_in_use() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = Cache::open(tmp.path()).unwrap();
    let (root_a, a) = image(&cache, "a", 30 * MIB);
    let (root_b, b) = image(&cache, "b", 30 * MIB);
    let holds = [
        Hold::take(&root_a, "a").unwrap(),
        Hold::take(&root_b, "b").unwrap(),
    ];
    let err = cache
        .make_room(50 * MIB, Some(100 * MIB), None)
        .unwrap_err();
    let text = err.to_string();
    assert!(
        matches!(
            err,
            CacheError::CannotFit {
                need_mib: 50,
                free_mib: 40,
                in_use: 2,
                in_use_mib: 60,
                ..
            }
        ),
        "{text}"
    );
    assert!(text.contains("the cache is full and in use"), "{text}");
    assert!(text.contains("2 images of 60 MiB"), "{text}");
    assert!(present(&cache, &a) && present(&cache, &b));
    drop(holds);
}

#[test]
fn when_the_images_not_in_use_cannot_make_room_none_is_evicted() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = Cache::open(tmp.path()).unwrap();
    let (root_a, a) = image(&cache, "a", 30 * MIB);
    let (_, b) = image(&cache, "b", 30 * MIB);
    let hold = Hold::take(&root_a, "a").unwrap();
    // 40 MiB free and 30 evictable: 75 MiB cannot fit, so `b` stays too.
    let err = cache
        .make_room(75 * MIB, Some(100 * MIB), None)
        .unwrap_err()
        .to_string();
    assert!(err.contains("needs about 75 MiB, 70 MiB free"), "{err}");
    assert!(err.contains("1 image of 30 MiB"), "{err}");
    assert!(present(&cache, &a) && present(&cache, &b));
    drop(hold);
}

#[test]
fn a_hold_on_an_evicted_image_is_a_clear_error_even_when_it_waited_for_the_eviction() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = Cache::open(tmp.path()).unwrap();
    let (root, id) = image(&cache, "registry.example/app:1", 10 * MIB);
    cache.remove_image(&id).unwrap();
    let err = Hold::take(&root, "registry.example/app:1")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("the image was evicted from the cache while this invocation started"),
        "{err}"
    );
    assert!(
        err.contains("registry.example/app:1") && err.contains("retry"),
        "{err}"
    );

    // A hold that opened the lock file just before an eviction claimed it waits, then finds
    // the image gone.
    let (root, id) = image(&cache, "registry.example/app:2", 10 * MIB);
    let Claimed::Free(claim) = Claim::try_take(&cache.image_dir(&id)).unwrap() else {
        panic!("nobody holds the image yet");
    };
    let waiting = std::thread::spawn(move || Hold::take(&root, "registry.example/app:2"));
    std::thread::sleep(Duration::from_millis(100));
    assert!(!waiting.is_finished(), "the hold waits for the eviction");
    cache.remove_claimed(&id, claim).unwrap();
    let err = waiting.join().unwrap().unwrap_err();
    assert!(matches!(err, CacheError::Evicted { .. }), "{err}");

    // An eviction that claims an image and keeps it lets the waiting hold have it.
    let (root, id) = image(&cache, "registry.example/app:3", 10 * MIB);
    let Claimed::Free(claim) = Claim::try_take(&cache.image_dir(&id)).unwrap() else {
        panic!("nobody holds the image yet");
    };
    let waiting = std::thread::spawn(move || Hold::take(&root, "registry.example/app:3"));
    std::thread::sleep(Duration::from_millis(100));
    assert!(!waiting.is_finished(), "the hold waits for the claim");
    drop(claim);
    let hold = waiting.join().unwrap().unwrap();
    assert!(matches!(
        Claim::try_take(&cache.image_dir(&id)).unwrap(),
        Claimed::InUse
    ));
    drop(hold);
}

#[test]
fn dropping_the_hold_makes_the_image_removable_and_evictable_again() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = Cache::open(tmp.path()).unwrap();
    let (root_a, a) = image(&cache, "a", 30 * MIB);
    let (root_b, b) = image(&cache, "b", 30 * MIB);
    // Two runs of one image at once: both hold it.
    let first = Hold::take(&root_a, "a").unwrap();
    let second = Hold::take(&root_a, "a").unwrap();
    let err = cache.remove_image(&a).unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, CacheError::InUse { .. }), "{text}");
    assert!(
        text.starts_with("a is in use by a running container"),
        "{text}"
    );
    drop(first);
    assert!(matches!(
        cache.remove_image(&a).unwrap_err(),
        CacheError::InUse { .. }
    ));
    drop(second);
    cache.remove_image(&a).unwrap();
    assert!(!present(&cache, &a));

    // `scar cache gc` with a cap: the held image is skipped and named.
    let hold = Hold::take(&root_b, "b").unwrap();
    let trimmed = cache.trim(0).unwrap();
    assert_eq!(
        trimmed,
        Trimmed {
            evicted: 0,
            in_use: vec!["b".to_owned()]
        }
    );
    drop(hold);
    assert_eq!(cache.trim(0).unwrap().evicted, 1);
    assert!(!present(&cache, &b));
    assert_eq!(
        std::fs::read_dir(tmp.path().join("tmp")).unwrap().count(),
        0,
        "evictions leave nothing behind"
    );
}

#[test]
fn a_hold_changes_nothing_in_the_image_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = Cache::open(tmp.path()).unwrap();
    let (root, id) = image(&cache, "pristine", MIB);
    let listing = || {
        let mut entries: Vec<_> = std::fs::read_dir(cache.image_dir(&id))
            .unwrap()
            .map(|e| {
                let meta = e.as_ref().unwrap().metadata().unwrap();
                (e.unwrap().file_name(), meta.len(), meta.modified().unwrap())
            })
            .collect();
        entries.sort();
        entries
    };
    let before = listing();
    assert!(
        before.iter().any(|(name, ..)| name == "in-use"),
        "publishing makes the lock file: {before:?}"
    );
    let hold = Hold::take(&root, "pristine").unwrap();
    assert_eq!(listing(), before);
    drop(hold);
    assert_eq!(listing(), before);
    // An image an older version published has no lock file: the first hold makes it.
    let lock = cache.image_dir(&id).join("in-use");
    std::fs::remove_file(&lock).unwrap();
    let hold = Hold::take(&root, "pristine").unwrap();
    assert!(lock.is_file());
    assert!(matches!(
        cache.remove_image(&id),
        Err(CacheError::InUse { .. })
    ));
    drop(hold);
}

#[test]
fn taking_a_hold_costs_an_open_a_flock_and_an_fstat() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = Cache::open(tmp.path()).unwrap();
    let (root, _) = image(&cache, "warm", MIB);
    // The first hold creates the lock file; the warm path finds it.
    drop(Hold::take(&root, "warm").unwrap());
    let mut took: Vec<Duration> = (0..1000)
        .map(|_| {
            let started = Instant::now();
            let hold = Hold::take(&root, "warm").unwrap();
            let took = started.elapsed();
            drop(hold);
            took
        })
        .collect();
    took.sort();
    let median = took[took.len() / 2];
    println!(
        "Hold::take: median {:.1} µs, p99 {:.1} µs over 1000",
        median.as_secs_f64() * 1e6,
        took[took.len() * 99 / 100].as_secs_f64() * 1e6
    );
    assert!(median < Duration::from_millis(1), "{median:?}");
}
