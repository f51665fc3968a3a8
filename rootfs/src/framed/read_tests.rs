use std::path::Path;

use bytes::Bytes;

use super::*;
use crate::digest::Digest;
use crate::framed::format::{FORMAT, FORMAT_SHA256, FrameDigest, TRAILER_LEN, Trailer};
use crate::image::ImageConfig;
use crate::options::PullOptions;
use crate::pull::{self, PullError};

/// A tar of a few files, one of them spanning several frames of `FRAME` bytes.
fn tar_bytes() -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    let mut add = |name: &str, data: &[u8]| {
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_entry_type(tar::EntryType::Regular);
        header.set_cksum();
        builder.append_data(&mut header, name, data).unwrap();
    };
    add("etc/hello", b"hello, framed\n");
    let big: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect();
    add("bin/big", &big);
    add("usr/share/note", b"note\n");
    builder.into_inner().unwrap()
}

const FRAME: usize = 64 * 1024;

/// A framed object of `tar` cut every `FRAME` bytes: its bytes and index.
fn object(tar: &[u8]) -> (Vec<u8>, Index) {
    let frames: Vec<(&[u8], bool)> = tar
        .chunks(FRAME)
        .enumerate()
        .map(|(i, c)| (c, i > 0))
        .collect();
    framed(&frames, 3)
}

/// A framed object of `frames` (each one's tar bytes, and whether it continues the previous
/// one's last entry) that declares `entries` entries: its bytes and index.
pub(crate) fn framed(frames: &[(&[u8], bool)], entries: u64) -> (Vec<u8>, Index) {
    let mut out = Vec::new();
    let mut index = Index {
        format: FORMAT.into(),
        source: "test".into(),
        config: ImageConfig::default(),
        frames: Vec::new(),
        entries,
    };
    for &(tar, continues) in frames {
        let compressed = zstd::bulk::compress(tar, 3).unwrap();
        index.frames.push(Frame {
            offset: out.len() as u64,
            length: compressed.len() as u64,
            size: tar.len() as u64,
            digest: FrameDigest::of(&compressed),
            continues,
        });
        out.extend_from_slice(&compressed);
    }
    seal(out, index)
}

/// `frames` followed by `index` and its trailer.
pub(crate) fn seal(mut out: Vec<u8>, index: Index) -> (Vec<u8>, Index) {
    let (bytes, digest) = index.encode();
    let trailer = Trailer {
        index_offset: out.len() as u64,
        index_len: bytes.len() as u64,
        index_digest: digest,
    };
    out.extend_from_slice(&bytes);
    out.extend_from_slice(&trailer.encode());
    (out, index)
}

/// The groups' bytes of `object`, as a fetcher hands them on.
pub(crate) fn parts(object: &[u8], index: &Index) -> Vec<Result<Bytes, String>> {
    groups(index)
        .iter()
        .map(|g| {
            Ok(Bytes::copy_from_slice(
                &object[g.start as usize..=g.end as usize],
            ))
        })
        .collect()
}

fn apply_parts(
    index: &Index,
    parts: Vec<Result<Bytes, String>>,
    root: &Path,
) -> Result<Applied, ReadError> {
    let wrap = |input| input;
    let into = (root, u64::MAX);
    crate::framed::parallel::apply("framed:test", index, parts.into_iter(), 2, into, &wrap)
}

#[test]
fn a_good_object_applies_to_the_tree_it_was_made_from() {
    let tar = tar_bytes();
    let (object, index) = object(&tar);
    assert!(index.frames.len() > 3, "{} frames", index.frames.len());
    let dir = tempfile::tempdir().unwrap();
    let applied = apply_parts(&index, parts(&object, &index), dir.path()).unwrap();
    assert_eq!(applied.entries, 3);
    assert_eq!(
        std::fs::read(dir.path().join("etc/hello")).unwrap(),
        b"hello, framed\n"
    );
    let big: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect();
    assert_eq!(std::fs::read(dir.path().join("bin/big")).unwrap(), big);
    assert_eq!(
        std::fs::read(dir.path().join("usr/share/note")).unwrap(),
        b"note\n"
    );
}

#[test]
fn groups_cover_every_frame_once_at_frame_boundaries() {
    let (_, mut index) = object(&tar_bytes());
    // Pretend the frames are 1.5 MiB each: two fit in GROUP_TARGET, three do not.
    let mut at = 0;
    for f in &mut index.frames {
        f.offset = at;
        f.length = 3 * 512 * 1024;
        at += f.length;
    }
    let g = groups(&index);
    assert!(index.frames.len() >= 4, "{} frames", index.frames.len());
    // The first frame alone (decoding starts sooner), then two to a range.
    assert_eq!(g[0].frames, 0..1);
    assert_eq!(g[1].frames, 1..3);
    assert!(g.iter().all(|g| g.end + 1 - g.start <= GROUP_TARGET));
    assert_eq!(g[0].end + 1, g[1].start);
    let covered: Vec<usize> = g.iter().flat_map(|g| g.frames.clone()).collect();
    assert_eq!(covered, (0..index.frames.len()).collect::<Vec<_>>());
    assert_eq!(g.last().unwrap().end + 1, at);
    // A frame larger than the target is a range alone.
    index.frames[1].length = 5 * 1024 * 1024;
    let mut at = 0;
    for f in &mut index.frames {
        f.offset = at;
        at += f.length;
    }
    assert_eq!(groups(&index)[1].frames, 1..2);
}

#[test]
fn a_corrupt_frame_byte_is_refused_naming_the_frame() {
    let (mut object, index) = object(&tar_bytes());
    let f = &index.frames[2];
    object[(f.offset + f.length / 2) as usize] ^= 0x55;
    let dir = tempfile::tempdir().unwrap();
    let err = apply_parts(&index, parts(&object, &index), dir.path()).unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, ReadError::Corrupt { frame: 3, .. }), "{text}");
    assert!(text.contains("framed:test: frame 3/"), "{text}");
    assert!(text.contains("corrupt or replaced"), "{text}");
}

#[test]
fn a_frame_whose_digest_in_the_index_lies_is_refused() {
    let tar = tar_bytes();
    let (object, mut index) = object(&tar);
    index.frames[1].digest = FrameDigest::of(b"something else");
    let dir = tempfile::tempdir().unwrap();
    let err = apply_parts(&index, parts(&object, &index), dir.path()).unwrap_err();
    let text = err.to_string();
    assert!(text.contains("frame 2/"), "{text}");
    assert!(text.contains("the index says"), "{text}");
    // A frame whose size lies is refused too.
    let (object, mut index) = self::object(&tar);
    index.frames[0].size -= 1;
    let err = apply_parts(&index, parts(&object, &index), dir.path()).unwrap_err();
    assert!(matches!(err, ReadError::Corrupt { frame: 1, .. }), "{err}");
}

#[test]
fn a_frame_that_is_its_digest_but_no_zstd_is_refused_before_anything_is_written() {
    let (mut object, mut index) = object(&tar_bytes());
    let f = index.frames[0].clone();
    let garbage = &mut object[f.offset as usize..(f.offset + f.length) as usize];
    garbage.fill(0x5a);
    index.frames[0].digest = FrameDigest::of(garbage);
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    std::fs::create_dir(&root).unwrap();
    let err = apply_parts(&index, parts(&object, &index), &root).unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, ReadError::Corrupt { frame: 1, .. }), "{text}");
    assert!(text.contains("does not decode"), "{text}");
    assert_eq!(std::fs::read_dir(&root).unwrap().count(), 0, "{text}");
}

#[test]
fn an_object_of_the_previous_format_with_sha256_frames_is_still_read_and_checked() {
    let tar = tar_bytes();
    let (object, mut index) = object(&tar);
    index.format = FORMAT_SHA256.into();
    for f in &mut index.frames {
        let bytes = &object[f.offset as usize..(f.offset + f.length) as usize];
        f.digest = FrameDigest::Sha256(Digest::of(bytes));
    }
    let frames_end = index.compressed_size() as usize;
    let (sealed, index) = seal(object[..frames_end].to_vec(), index);
    let dir = tempfile::tempdir().unwrap();
    let applied = apply_parts(&index, parts(&sealed, &index), dir.path()).unwrap();
    assert_eq!(applied.entries, 3);
    assert_eq!(
        std::fs::read(dir.path().join("etc/hello")).unwrap(),
        b"hello, framed\n"
    );
    // Its SHA-256 digests are checked as such: one that lies is refused.
    let mut lying = index.clone();
    lying.frames[1].digest = FrameDigest::Sha256(Digest::of(b"something else"));
    let other = tempfile::tempdir().unwrap();
    let err = apply_parts(&lying, parts(&sealed, &lying), other.path()).unwrap_err();
    assert!(matches!(err, ReadError::Corrupt { frame: 2, .. }), "{err}");
    assert!(err.to_string().contains("sha256:"), "{err}");
}

#[test]
fn an_index_of_the_first_format_is_refused_with_the_fix() {
    let (object, mut index) = object(&tar_bytes());
    index.format = "scar-frames/1".into();
    let frames_end = index.compressed_size() as usize;
    let (sealed, _) = seal(object[..frames_end].to_vec(), index);
    let tail = &sealed[sealed.len() - TRAILER_LEN..];
    let trailer = Trailer::decode(tail, sealed.len() as u64).unwrap();
    let at = trailer.index_offset as usize;
    let err = Index::parse(&sealed[at..at + trailer.index_len as usize], &trailer, None)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("scar-frames/1") && err.contains("push the image again"),
        "{err}"
    );
}

#[test]
fn bytes_that_stop_early_or_fail_are_refused() {
    let (object, index) = object(&tar_bytes());
    let all = parts(&object, &index);
    let dir = tempfile::tempdir().unwrap();
    let err = apply_parts(&index, Vec::new(), dir.path()).unwrap_err();
    assert!(err.to_string().contains("stopped before frame 1"), "{err}");
    let mut failing = all.clone();
    failing[0] = Err("cannot download s3://b/k: SlowDown".into());
    let err = apply_parts(&index, failing, dir.path()).unwrap_err();
    assert!(err.to_string().contains("SlowDown"), "{err}");
    let mut short = all;
    short[0] = Ok(Bytes::from_static(b"short"));
    let err = apply_parts(&index, short, dir.path()).unwrap_err();
    assert!(err.to_string().contains("came back as 5 bytes"), "{err}");
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn a_framed_file_pulls_into_the_cache_as_one_verified_layer() {
    let (object, _) = object(&tar_bytes());
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("image.scar");
    std::fs::write(&file, &object).unwrap();
    let options = PullOptions::new(dir.path().join("cache"));
    let name = format!("framed:{}", file.display());
    let (prepared, report) = runtime()
        .block_on(pull::prepare_with_progress(&name, &options, None))
        .unwrap();
    assert_eq!(report.layers, 1);
    assert_eq!(
        std::fs::read(prepared.root.join("etc/hello")).unwrap(),
        b"hello, framed\n"
    );
    let trailer = Trailer::decode(&object, object.len() as u64).unwrap();
    assert_eq!(prepared.chain_id, trailer.index_digest.to_string());
    let cache = crate::cache::Cache::open(&options.cache_dir).unwrap();
    let record = cache.lookup(&trailer.index_digest).unwrap().unwrap();
    assert_eq!(record.verified_diff_ids, Some(vec![trailer.index_digest]));
    assert_eq!(record.layers, 1);
}

#[test]
fn a_wrong_pin_a_truncated_object_and_a_corrupt_frame_publish_nothing() {
    let (object, _) = object(&tar_bytes());
    let dir = tempfile::tempdir().unwrap();
    let options = PullOptions::new(dir.path().join("cache"));
    let rt = runtime();
    let pull = |bytes: &[u8], suffix: &str| {
        let file = dir.path().join("image.scar");
        std::fs::write(&file, bytes).unwrap();
        let name = format!("framed:{}{suffix}", file.display());
        rt.block_on(pull::prepare(&name, &options)).unwrap_err()
    };
    let other = Digest::of(b"another index");
    let err = pull(&object, &format!("@{other}"));
    let text = err.to_string();
    assert!(text.contains("image.scar is not a framed image"), "{text}");
    assert!(text.contains("the object was replaced"), "{text}");
    let err = pull(&object[..object.len() - 100], "");
    assert!(err.to_string().contains("trailer"), "{err}");
    let mut corrupt = object.clone();
    corrupt[10] ^= 1;
    let err = pull(&corrupt, "");
    assert!(matches!(err, PullError::Framed(_)), "{err}");
    assert!(err.to_string().contains("corrupt or replaced"), "{err}");
    let roots = std::fs::read_dir(dir.path().join("cache/rootfs"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(roots, 0, "nothing may be published");
}
