//! A framed image's ranges that break off are asked again alone (#21): `scar pull
//! s3://bucket/key` through `scar_e2e::fault`'s proxy, which cuts the connection of the first
//! range requests after 2 MiB of their answer; the pull still brings the tree back whole, with
//! one more request per cut range, for the same bytes.

use scar_e2e::fault::{Fault, FaultProxy, Seen};
use scar_rootfs::framed::format::{Index, Trailer};
use scar_rootfs::framed::read::groups;

use crate::pull_framed::{BUCKET, Fixture, assert_same_tree, fixture, pulled_root, scar_pull};

#[test]
fn a_range_cut_short_is_asked_again_alone_and_the_pull_completes() {
    let f = fixture("apps/cut.scar", 24 << 20);
    let object = std::fs::read(&f.object).expect("object");
    let trailer = Trailer::decode(&object, object.len() as u64).expect("trailer");
    let at = trailer.index_offset as usize;
    let index: Index =
        serde_json::from_slice(&object[at..at + trailer.index_len as usize]).expect("index");
    let ranges = groups(&index).len();
    assert!(ranges >= 4, "{ranges} ranges");
    // The first request is the tail (1 MiB, under the cut: it goes through whole); the next two
    // are ranges, cut after 2 MiB when they are longer.
    let seen = pull_through(
        &f,
        "apps/cut.scar",
        FaultProxy::start(&upstream(&f), Fault::DropAfter { bytes: 2 << 20 }, "GET", 3),
        &[("SCAR_PULL_RANGES", "4")],
    );
    // The faulted ranges longer than the cut are the ones cut (a small range goes through).
    let span = |line: &str| -> Option<(u64, u64)> {
        let (_, range) = line.rsplit_once("bytes=")?;
        let (a, b) = range.trim_end_matches(']').split_once('-')?;
        Some((a.parse().ok()?, b.parse().ok()?))
    };
    let cut: Vec<(u64, u64)> = seen
        .iter()
        .filter(|s| s.faulted)
        .filter_map(|s| span(&s.line))
        .filter(|(a, b)| b - a + 1 > 2 << 20)
        .collect();
    assert!(!cut.is_empty(), "no range was cut: {seen:#?}");
    assert_eq!(
        seen.len(),
        1 + ranges + cut.len(),
        "the tail, every range once and each cut one again: {seen:#?}"
    );
    for range in &cut {
        let asked = seen
            .iter()
            .filter(|s| span(&s.line) == Some(*range))
            .count();
        assert_eq!(
            asked, 2,
            "{range:?} asked again, for the same bytes: {seen:#?}"
        );
    }
}

/// The first GET of a pull is the object's tail (the trailer and the index): when its answer
/// breaks off midway, the SDK does not ask again (it retries requests, not bodies), so the pull
/// does.
#[test]
fn a_tail_cut_short_is_asked_again_and_the_pull_completes() {
    let f = fixture("apps/tail.scar", 8 << 20);
    let size = std::fs::metadata(&f.object).expect("object").len();
    assert!(
        size > 1 << 20,
        "the object ({size} bytes) is longer than the tail asked for"
    );
    // Only the first GET is faulted: the tail, cut after 256 KiB of its 1 MiB.
    let gets = pull_through(
        &f,
        "apps/tail.scar",
        FaultProxy::start(
            &upstream(&f),
            Fault::DropAfter { bytes: 256 << 10 },
            "GET",
            1,
        ),
        &[],
    );
    assert!(gets[0].faulted, "the first GET was cut: {gets:#?}");
    let tails = gets.iter().filter(|s| s.line.contains("bytes=-")).count();
    assert_eq!(tails, 2, "the tail asked twice, once cut: {gets:#?}");
}

/// The fixture's S3 endpoint as `host:port`.
fn upstream(f: &Fixture) -> String {
    f.s3.endpoint().trim_start_matches("http://").to_owned()
}

/// Pull `s3://BUCKET/key` of `f` through `proxy` (with `extra` variables), check the tree came
/// back whole, and return the GETs the proxy saw.
fn pull_through(f: &Fixture, key: &str, proxy: FaultProxy, extra: &[(&str, &str)]) -> Vec<Seen> {
    let mut env = f.s3.env();
    for (k, v) in &mut env {
        if k == "AWS_ENDPOINT_URL_S3" {
            *v = format!("http://{}", proxy.host());
        }
    }
    let cache = tempfile::tempdir().expect("tmp");
    let out = scar_pull(&format!("s3://{BUCKET}/{key}"), cache.path(), &env, extra);
    assert_same_tree(f.tree.path(), &pulled_root(&out));
    proxy
        .seen()
        .into_iter()
        .filter(|s| s.line.starts_with("GET"))
        .collect()
}
