use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};

use super::*;
use crate::extract::Extractor;
use crate::framed::format::TRAILER_LEN;

const TARGET: u64 = 64 * 1024;

/// Bytes that compress a little but not to nothing (an LCG).
fn noise(len: usize, seed: u32) -> Vec<u8> {
    let mut x = seed;
    (0..len)
        .map(|_| {
            x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (x >> 24) as u8 & 0x3f
        })
        .collect()
}

/// The tree the brief asks for: a file of several frame targets, an empty file and dir, a
/// symlink, a hard link pair, a 150-byte name, a setuid file, a FIFO, a long link target.
pub(crate) fn tree() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let r = dir.path();
    std::fs::create_dir_all(r.join("usr/bin")).unwrap();
    std::fs::create_dir(r.join("empty")).unwrap();
    std::fs::write(r.join("usr/bin/big"), noise(5 * TARGET as usize + 123, 1)).unwrap();
    std::fs::write(r.join("usr/bin/empty-file"), b"").unwrap();
    for i in 0..40 {
        std::fs::write(
            r.join(format!("usr/small{i:02}")),
            noise(3000 + i * 97, i as u32),
        )
        .unwrap();
    }
    std::fs::write(r.join("usr/bin/su"), b"#!/bin/sh\n").unwrap();
    std::fs::set_permissions(
        r.join("usr/bin/su"),
        std::fs::Permissions::from_mode(0o4755),
    )
    .unwrap();
    std::os::unix::fs::symlink("../usr/bin/su", r.join("usr/link")).unwrap();
    let long_target = format!("{}/target", "t".repeat(120));
    std::os::unix::fs::symlink(&long_target, r.join("usr/long-link")).unwrap();
    std::fs::write(r.join("usr/hard-a"), b"same inode").unwrap();
    std::fs::hard_link(r.join("usr/hard-a"), r.join("usr/hard-b")).unwrap();
    let long = "n".repeat(150);
    std::fs::write(r.join("usr").join(&long), b"long name").unwrap();
    nix::unistd::mkfifo(
        &r.join("fifo"),
        nix::sys::stat::Mode::from_bits_truncate(0o644),
    )
    .unwrap();
    dir
}

fn options() -> WriteOptions {
    WriteOptions {
        level: 3,
        compress_literals: false,
        frame_target: TARGET,
        threads: 3,
    }
}

pub(crate) fn write(root: &Path) -> (Vec<u8>, Written) {
    let mut out = Vec::new();
    let written = write_tree(
        root,
        &ImageConfig {
            cmd: vec!["/bin/sh".into()],
            ..ImageConfig::default()
        },
        "test:image",
        &mut out,
        &options(),
    )
    .unwrap();
    (out, written)
}

/// Read the object as a reader would: trailer, index, then every frame alone.
pub(crate) fn frames_of(object: &[u8]) -> (Index, Vec<Vec<u8>>) {
    let trailer = Trailer::decode(object, object.len() as u64).unwrap();
    let start = trailer.index_offset as usize;
    let index = Index::parse(
        &object[start..start + trailer.index_len as usize],
        &trailer,
        Some(&trailer.index_digest),
    )
    .unwrap();
    let frames = index
        .frames
        .iter()
        .map(|f| {
            let range = &object[f.offset as usize..(f.offset + f.length) as usize];
            assert_eq!(
                FrameDigest::of(range),
                f.digest,
                "the digest is of the compressed bytes"
            );
            let tar = zstd::stream::decode_all(range).unwrap();
            assert_eq!(tar.len() as u64, f.size);
            tar
        })
        .collect();
    (index, frames)
}

#[test]
fn the_object_parses_and_every_frame_decodes_alone() {
    let dir = tree();
    let (object, written) = write(dir.path());
    assert_eq!(written.object_len, object.len() as u64);
    let (index, frames) = frames_of(&object);
    assert_eq!(index, written.index);
    assert_eq!(written.index_digest, index.encode().1);
    assert_eq!(index.source, "test:image");
    assert_eq!(index.config.cmd, vec!["/bin/sh".to_string()]);
    assert!(frames.len() >= 7, "{} frames", frames.len());
    assert!(index.frames.iter().all(|f| f.size <= TARGET));
    assert!(!index.frames[0].continues);
    // The big file spans frames of exactly the target, the later ones flagged.
    let continued: Vec<usize> = (0..frames.len())
        .filter(|&i| index.frames[i].continues)
        .collect();
    assert!(continued.len() >= 5, "{continued:?}");
    for &i in &continued {
        assert_eq!(
            index.frames[i - 1].size,
            TARGET,
            "frame {i} continues a full one"
        );
    }
    // A frame that does not continue begins with a tar header (the checksum is valid).
    for (i, tar) in frames.iter().enumerate() {
        if !index.frames[i].continues {
            let mut block = [0u8; 512];
            block.copy_from_slice(&tar[..512]);
            let header = tar::Header::from_byte_slice(&block);
            let all_zero = block.iter().all(|&b| b == 0);
            assert!(all_zero || header.cksum().is_ok(), "frame {i}");
        }
    }
    assert!(frames.last().unwrap().ends_with(&[0u8; 1024]));
    assert_eq!(written.skipped, 0);
    assert_eq!(
        index.tar_size(),
        frames.iter().map(|f| f.len() as u64).sum::<u64>()
    );
    assert_eq!(&object[object.len() - TRAILER_LEN..][..8], b"SCARFRM1");
}

#[test]
fn the_same_tree_gives_the_same_bytes() {
    let dir = tree();
    let (a, wa) = write(dir.path());
    let (b, wb) = write(dir.path());
    assert_eq!(wa.index_digest, wb.index_digest);
    assert!(a == b, "two writes of one tree differ");
}

/// Every path under `root` with what a round trip must keep.
pub(crate) fn describe(root: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_owned()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            let rel = path.strip_prefix(root).unwrap().display().to_string();
            let kind = meta.file_type();
            // The extractor drops setuid/setgid: compare the bits it keeps.
            let mode = meta.mode() & 0o1777;
            let what = if kind.is_dir() {
                stack.push(path.clone());
                format!("dir {mode:o}")
            } else if kind.is_symlink() {
                format!(
                    "link -> {} mtime {}",
                    std::fs::read_link(&path).unwrap().display(),
                    meta.mtime()
                )
            } else if kind.is_file() {
                let data = std::fs::read(&path).unwrap();
                format!(
                    "file {mode:o} {} {} links {} mtime {}",
                    data.len(),
                    Digest::of(&data),
                    meta.nlink(),
                    meta.mtime()
                )
            } else {
                format!("other {mode:o}")
            };
            out.insert(rel, what);
        }
    }
    out
}

#[test]
fn the_frames_are_one_tar_the_extractor_applies_into_the_same_tree() {
    let dir = tree();
    let (object, written) = write(dir.path());
    let (_, frames) = frames_of(&object);
    let tar: Vec<u8> = frames.concat();
    let into = tempfile::tempdir().unwrap();
    let mut extractor = Extractor::new(into.path(), u64::MAX);
    let stats = extractor.apply_layer(&tar[..]).unwrap();
    extractor.finish().unwrap();
    assert_eq!(stats.entries, written.index.entries);
    assert_eq!(describe(dir.path()), describe(into.path()));
    let a = std::fs::metadata(into.path().join("usr/hard-a")).unwrap();
    let b = std::fs::metadata(into.path().join("usr/hard-b")).unwrap();
    assert_eq!(a.ino(), b.ino());

    // The archive itself keeps setuid, lists parents before children in sorted order and
    // names nothing with `./`.
    let mut archive = tar::Archive::new(&tar[..]);
    let mut names = Vec::new();
    for entry in archive.entries().unwrap() {
        let entry = entry.unwrap();
        let name = String::from_utf8(entry.path_bytes().into_owned()).unwrap();
        if name == "usr/bin/su" {
            assert_eq!(entry.header().mode().unwrap(), 0o4755);
        }
        if !nix::unistd::geteuid().is_root() {
            assert_eq!(entry.header().uid().unwrap(), 0);
        }
        names.push(name);
    }
    assert_eq!(names[0], "empty/");
    assert!(names.iter().all(|n| !n.starts_with("./")));
    let usr = names.iter().position(|n| n == "usr/").unwrap();
    let bin = names.iter().position(|n| n == "usr/bin/").unwrap();
    let big = names.iter().position(|n| n == "usr/bin/big").unwrap();
    assert!(usr < bin && bin < big);
    assert!(names.iter().any(|n| n.len() > 150));
}

#[test]
fn an_empty_tree_is_one_frame_of_end_blocks() {
    let dir = tempfile::tempdir().unwrap();
    let (object, written) = write(dir.path());
    let (index, frames) = frames_of(&object);
    assert_eq!(index.entries, 0);
    assert_eq!(frames, vec![vec![0u8; 1024]]);
    assert_eq!(written.object_len, object.len() as u64);
}

#[test]
fn sockets_are_left_out_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a"), b"a").unwrap();
    let _socket = std::os::unix::net::UnixListener::bind(dir.path().join("sock")).unwrap();
    let (object, written) = write(dir.path());
    assert_eq!(written.skipped, 1);
    assert_eq!(frames_of(&object).0.entries, 1);
}

/// A sink that fails after `left` bytes.
struct Failing {
    left: usize,
}

impl Write for Failing {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.left < buf.len() {
            return Err(io::Error::other("disk full"));
        }
        self.left -= buf.len();
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[test]
fn a_failing_output_stops_every_thread_with_its_error() {
    let dir = tree();
    for left in [0, 1000, 100_000] {
        let err = write_tree(
            dir.path(),
            &ImageConfig::default(),
            "x",
            &mut Failing { left },
            &options(),
        )
        .unwrap_err();
        assert!(matches!(err, WriteError::Output(_)), "{err}");
    }
}

#[test]
fn an_unreadable_tree_names_the_path_and_bad_options_are_refused() {
    let missing = Path::new("/nonexistent/scar-tree");
    let err = write_tree(
        missing,
        &ImageConfig::default(),
        "x",
        &mut Vec::new(),
        &options(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("/nonexistent/scar-tree"), "{err}");
    let dir = tempfile::tempdir().unwrap();
    for bad in [
        WriteOptions {
            frame_target: 0,
            ..options()
        },
        WriteOptions {
            frame_target: 5 * FRAME_TARGET,
            ..options()
        },
        WriteOptions {
            level: 0,
            ..options()
        },
    ] {
        let err = write_tree(
            dir.path(),
            &ImageConfig::default(),
            "x",
            &mut Vec::new(),
            &bad,
        )
        .unwrap_err();
        assert!(matches!(err, WriteError::Options(_)), "{err}");
    }
}

#[test]
fn literals_are_left_raw_unless_asked_for_and_both_decode_to_the_same_tar() {
    // Six-bit noise: no matches worth taking, so nearly every byte is a literal, which a
    // Huffman code stores in about six bits and a raw literal in eight.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("noise"), noise(256 * 1024, 7)).unwrap();
    let config = ImageConfig::default();
    let sized = |compress_literals| {
        let mut out = Vec::new();
        let options = WriteOptions {
            compress_literals,
            ..options()
        };
        let written = write_tree(dir.path(), &config, "t:t", &mut out, &options).unwrap();
        let tar: Vec<u8> = frames_of(&out).1.concat();
        (written.index.compressed_size(), tar)
    };
    let (raw, raw_tar) = sized(false);
    let (huffman, huffman_tar) = sized(true);
    assert_eq!(raw_tar, huffman_tar);
    assert!(raw > 256 * 1024, "raw literals take a byte each: {raw}");
    assert!(
        huffman < 256 * 1024 * 7 / 8,
        "Huffman-coded literals take about six bits: {huffman}"
    );
    assert_eq!(WriteOptions::default().level, DEFAULT_LEVEL);
    assert!(!WriteOptions::default().compress_literals);
}
