//! Unit tests of one pull per image (`pulling.rs`), the heartbeat and the sweep of builds, with
//! threads on a temporary cache: `flock`s of separate opens conflict within a process as
//! between processes.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use super::*;
use crate::digest::Digest;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn record(name: &str) -> ImageRecord {
    let chain_id = Digest::of(name.as_bytes());
    ImageRecord {
        reference: name.to_owned(),
        chain_id,
        verified_diff_ids: Some(vec![chain_id]),
        size: 10,
        layers: 1,
    }
}

/// A complete build of `name` holding one file, with its lock held.
fn build(cache: &Cache, name: &str) -> (std::path::PathBuf, CacheLock) {
    let (dir, lock) = cache.new_build().unwrap();
    std::fs::create_dir(dir.join("root")).unwrap();
    std::fs::write(dir.join("root/file"), name).unwrap();
    (dir, lock)
}

/// Wait for a turn on a thread: what came, after how long, and how many times the holder's
/// heartbeat was seen to move meanwhile.
fn wait(
    cache: &Cache,
    id: Digest,
    deadline: Option<Instant>,
    stale: Duration,
) -> std::thread::JoinHandle<(Option<&'static str>, Duration, usize)> {
    let cache = cache.clone();
    std::thread::spawn(move || {
        let started = Instant::now();
        let moves = std::sync::atomic::AtomicUsize::new(0);
        let moved = || {
            moves.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        };
        let turn = runtime()
            .block_on(cache.wait_turn(&id, "img", deadline, stale, &moved))
            .unwrap();
        let what = turn.map(|t| match t {
            Turn::Ready(_) => "ready",
            Turn::Build(Some(_)) => "build with the lock",
            Turn::Build(None) => "build without the lock",
        });
        (what, started.elapsed(), moves.into_inner())
    })
}

fn first_turn(cache: &Cache, id: &Digest) -> CacheLock {
    match runtime()
        .block_on(cache.wait_turn(id, "img", None, DEFAULT_STALE, &|| {}))
        .unwrap()
    {
        Some(Turn::Build(Some(lock))) => lock,
        _ => panic!("the first puller builds with the lock"),
    }
}

#[test]
fn a_second_puller_waits_for_the_first_and_uses_what_it_published() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = Cache::open(tmp.path()).unwrap();
    let rec = record("a");
    let lock = first_turn(&cache, &rec.chain_id);
    let beat = Heartbeat::start(vec![Arc::new(lock)], Counter::default());
    let waiter = wait(&cache, rec.chain_id, None, DEFAULT_STALE);
    std::thread::sleep(Duration::from_millis(700));
    let (dir, _building) = build(&cache, "a");
    cache.publish(&dir, &rec).unwrap();
    let (what, waited, _) = waiter.join().unwrap();
    drop(beat);
    assert_eq!(what, Some("ready"));
    assert!(waited >= Duration::from_millis(600), "{waited:?}");
}

#[test]
fn a_lock_its_holder_dropped_unpublished_is_taken_over() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = Cache::open(tmp.path()).unwrap();
    let id = record("b").chain_id;
    let lock = first_turn(&cache, &id);
    let waiter = wait(&cache, id, None, DEFAULT_STALE);
    std::thread::sleep(Duration::from_millis(500));
    drop(lock);
    let (what, waited, _) = waiter.join().unwrap();
    assert_eq!(what, Some("build with the lock"));
    assert!(waited < Duration::from_secs(2), "{waited:?}");
}

#[test]
fn a_silent_holder_is_passed_at_the_stale_limit_and_a_beating_one_is_not() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = Cache::open(tmp.path()).unwrap();
    let id = record("c").chain_id;
    // Silent: one beat, then nothing (a frozen sandbox).
    let lock = Arc::new(first_turn(&cache, &id));
    drop(Heartbeat::start(vec![lock.clone()], Counter::default()));
    let (what, waited, moves) = wait(&cache, id, None, Duration::from_secs(1))
        .join()
        .unwrap();
    assert_eq!(what, Some("build without the lock"));
    assert_eq!(moves, 0, "a silent holder never moved");
    assert!(
        waited >= Duration::from_secs(1) && waited < Duration::from_secs(3),
        "{waited:?}"
    );
    // Beating: bytes keep moving, so the waiter is still waiting at its deadline.
    let counter = Counter::default();
    let bytes = Arc::new(AtomicU64::new(0));
    counter.set(bytes.clone()).unwrap();
    let beat = Heartbeat::start(vec![lock], counter);
    let moving = std::thread::spawn(move || {
        for i in 0..40 {
            bytes.store(i, std::sync::atomic::Ordering::Relaxed);
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    let deadline = Instant::now() + Duration::from_millis(3500);
    let (what, waited, moves) = wait(&cache, id, Some(deadline), Duration::from_secs(2))
        .join()
        .unwrap();
    assert_eq!(what, None, "a pull that beats is waited for");
    assert!(waited >= Duration::from_secs(3), "{waited:?}");
    // A beat a second while the bytes move: the waiter saw the line change at least twice in
    // 3.5 s (progress it reports, so that a bootstrap does not take the wait for a stall).
    assert!(moves >= 2, "the holder's moves seen: {moves}");
    moving.join().unwrap();
    drop(beat);
}

#[test]
fn a_second_publisher_keeps_the_first_image_and_drops_its_build() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = Cache::open(tmp.path()).unwrap();
    let rec = record("d");
    let (first, _l1) = build(&cache, "first");
    let (second, _l2) = build(&cache, "second");
    let dest = cache.publish(&first, &rec).unwrap();
    assert_eq!(cache.publish(&second, &rec).unwrap(), dest);
    assert_eq!(std::fs::read(dest.join("root/file")).unwrap(), b"first");
    assert!(!dest.join(BUILDING).exists());
    assert_eq!(
        std::fs::read_dir(tmp.path().join("tmp")).unwrap().count(),
        0
    );
    assert_eq!(cache.lookup(&rec.chain_id).unwrap(), Some(rec));
}

#[test]
fn the_sweep_and_gc_leave_a_build_whose_builder_lives() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = Cache::open(tmp.path()).unwrap();
    let (live, lock) = build(&cache, "live");
    let grave = cache.new_tmp().unwrap();
    assert_eq!(cache.sweep().unwrap(), Some(Swept { tmp: 1, ingest: 0 }));
    assert!(live.join("root/file").exists() && !grave.exists());
    {
        let _held = cache.lock(true).unwrap();
        assert_eq!(cache.collect_garbage().unwrap(), 0);
    }
    assert!(live.join("root/file").exists());
    drop(lock);
    assert_eq!(cache.sweep().unwrap(), Some(Swept { tmp: 1, ingest: 0 }));
    assert_eq!(
        std::fs::read_dir(tmp.path().join("tmp")).unwrap().count(),
        0
    );
}

#[test]
fn a_pull_lock_file_the_sweep_unlinked_is_not_believed() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = Cache::open(tmp.path()).unwrap();
    let id = record("e").chain_id;
    let old = first_turn(&cache, &id);
    std::fs::remove_file(cache.pull_lock_path(&id)).unwrap();
    // The path names a fresh file now: the next puller locks that one, not the old inode.
    let fresh = first_turn(&cache, &id);
    assert!(old.unlinked() && !fresh.unlinked());
}

#[test]
fn a_holder_whose_bytes_stopped_moving_stops_beating_and_is_passed() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = Cache::open(tmp.path()).unwrap();
    let id = record("f").chain_id;
    let lock = Arc::new(first_turn(&cache, &id));
    // Alive (its thread runs) but its download stalled: the counter stays at 7.
    let counter = Counter::default();
    counter.set(Arc::new(AtomicU64::new(7))).unwrap();
    let beat = Heartbeat::start(vec![lock], counter);
    let (what, waited, moves) = wait(&cache, id, None, Duration::from_secs(2))
        .join()
        .unwrap();
    drop(beat);
    assert_eq!(what, Some("build without the lock"));
    // The one beat that followed the counter's attachment (0 to 7) is all it moved.
    assert!(
        moves <= 1,
        "a holder whose bytes stay put does not move: {moves}"
    );
    assert!(
        waited >= Duration::from_secs(2) && waited < Duration::from_secs(4),
        "{waited:?}"
    );
}
