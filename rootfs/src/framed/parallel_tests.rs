use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use super::*;
use crate::framed::format::Trailer;
use crate::framed::read::tests::{framed, parts};
use crate::framed::write::tests::{describe, frames_of, tree, write};

/// The index of a framed object.
fn index_of(object: &[u8]) -> Index {
    let trailer = Trailer::decode(object, object.len() as u64).unwrap();
    let at = trailer.index_offset as usize;
    Index::parse(&object[at..at + trailer.index_len as usize], &trailer, None).unwrap()
}

fn apply_with(
    object: &[u8],
    threads: usize,
    (root, budget): (&Path, u64),
    wrap: Wrap<'_>,
) -> Result<Applied, ReadError> {
    let index = index_of(object);
    let parts = parts(object, &index);
    apply(
        "framed:test",
        &index,
        parts.into_iter(),
        threads,
        (root, budget),
        wrap,
    )
}

fn apply_to(object: &[u8], threads: usize, root: &Path) -> Result<Applied, ReadError> {
    apply_with(object, threads, (root, u64::MAX), &|input| input)
}

/// A root to extract into, inside a directory that also holds `outside`.
fn roots() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let outside = dir.path().join("outside");
    std::fs::create_dir(&root).unwrap();
    std::fs::create_dir(&outside).unwrap();
    (dir, root, outside)
}

/// A framed object whose every tar piece is a segment of its own (a frame beginning at an
/// entry boundary), so that threads take them at once.
fn segmented(pieces: &[Vec<u8>]) -> Vec<u8> {
    let end = [0u8; 1024];
    let frames: Vec<(&[u8], bool)> = pieces
        .iter()
        .map(|p| (p.as_slice(), false))
        .chain([(&end[..], false)])
        .collect();
    framed(&frames, pieces.len() as u64).0
}

/// One tar entry (no end blocks): a file, or a symlink when `link` is given.
fn piece(name: &str, data: &[u8], link: Option<&str>) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_mode(0o644);
    header.set_size(if link.is_some() { 0 } else { data.len() as u64 });
    match link {
        Some(target) => {
            header.set_entry_type(tar::EntryType::Symlink);
            builder.append_link(&mut header, name, target).unwrap();
        }
        None => {
            header.set_entry_type(tar::EntryType::Regular);
            header.set_cksum();
            builder.append_data(&mut header, name, data).unwrap();
        }
    }
    let mut bytes = builder.into_inner().unwrap();
    // into_inner() ends the archive: keep the entry alone.
    bytes.truncate(bytes.len() - 1024);
    bytes
}

#[test]
fn segments_begin_where_a_frame_does_not_continue() {
    let (object, written) = write(tree().path());
    let (index, _) = frames_of(&object);
    let segments = segments(&written.index);
    assert_eq!(segments.first().map(|s| s.start), Some(0));
    assert_eq!(segments.last().map(|s| s.end), Some(index.frames.len()));
    for pair in segments.windows(2) {
        assert_eq!(pair[0].end, pair[1].start);
        assert!(!index.frames[pair[1].start].continues);
    }
    assert!(segments.iter().any(|s| s.len() > 1), "{segments:?}");
}

#[test]
fn any_number_of_threads_extracts_the_tree_the_object_was_made_from() {
    let dir = tree();
    let r = dir.path();
    for d in 0..6 {
        std::fs::create_dir(r.join(format!("d{d}"))).unwrap();
        for f in 0..25 {
            let data = format!("{d}/{f}").repeat(400 + f * 13);
            std::fs::write(r.join(format!("d{d}/f{f:02}")), data).unwrap();
        }
    }
    // A hardlink whose two names are far apart (in different segments), a symlink to a
    // directory, a read-only directory with a file in it.
    std::fs::write(r.join("aaa-first"), b"linked").unwrap();
    std::fs::create_dir(r.join("zzz")).unwrap();
    std::fs::hard_link(r.join("aaa-first"), r.join("zzz/second")).unwrap();
    std::os::unix::fs::symlink("usr/bin", r.join("bin")).unwrap();
    // A link's own time, an old one (the links are made last, at the end of the pull).
    let old = nix::sys::time::TimeSpec::new(1_000_000_000, 0);
    let age = |link: &Path| {
        let flag = nix::sys::stat::UtimensatFlags::NoFollowSymlink;
        nix::sys::stat::utimensat(nix::fcntl::AT_FDCWD, link, &old, &old, flag).unwrap();
    };
    age(&r.join("bin"));
    // Hundreds of symlinks with their own times, made side by side, and a hardlink to one of
    // them (made once they are there).
    for d in 0..4 {
        for l in 0..80 {
            let link = r.join(format!("d{d}/l{l:02}"));
            std::os::unix::fs::symlink(format!("../t{l}"), &link).unwrap();
            age(&link);
        }
        std::fs::hard_link(r.join(format!("d{d}/l00")), r.join(format!("d{d}/hard"))).unwrap();
    }
    std::fs::create_dir(r.join("ro")).unwrap();
    std::fs::write(r.join("ro/inside"), b"x").unwrap();
    std::fs::set_permissions(r.join("ro"), std::fs::Permissions::from_mode(0o555)).unwrap();
    let (object, written) = write(r);
    assert!(segments(&written.index).len() >= 5);
    let want = describe(r);
    for threads in [1, 2, 4] {
        let (_dir, root, _) = roots();
        let applied = apply_to(&object, threads, &root).unwrap();
        assert_eq!(applied.entries, written.index.entries, "{threads} threads");
        assert!(applied.charged >= applied.bytes_written);
        assert_eq!(describe(&root), want, "{threads} threads");
        crate::cache::remove_tree(&root).unwrap();
    }
}

#[test]
fn a_file_or_a_link_under_a_symlink_is_refused_and_nothing_lands_outside() {
    let (_dir, root, outside) = roots();
    // A file is written before any link is made; a link is refused before any is made.
    for evil in [
        piece("x/evil", b"pwned", None),
        piece("x/evil", b"", Some("/etc/passwd")),
    ] {
        let object = segmented(&[
            piece("x", b"", Some(outside.to_str().unwrap())),
            piece("y", b"between", None),
            evil,
        ]);
        for threads in [1, 2] {
            let err = apply_to(&object, threads, &root).unwrap_err();
            let text = err.to_string();
            assert!(
                matches!(
                    err,
                    ReadError::Extract {
                        source: ExtractError::NotFlat { .. },
                        ..
                    }
                ),
                "{text}"
            );
            assert!(text.contains("push the image again"), "{text}");
            assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0);
            crate::cache::remove_tree(&root).unwrap();
            std::fs::create_dir(&root).unwrap();
        }
    }
}

#[test]
fn a_name_twice_or_a_whiteout_is_refused() {
    let (_dir, root, _) = roots();
    let twice = segmented(&[
        piece("dup", b"one", None),
        piece("other", b"", None),
        piece("dup", b"two", None),
    ]);
    let err = apply_to(&twice, 2, &root).unwrap_err().to_string();
    assert!(
        err.contains("`dup`") && err.contains("a name twice"),
        "{err}"
    );
    crate::cache::remove_tree(&root).unwrap();
    std::fs::create_dir(&root).unwrap();
    // A symlink is made after every file, where the file has taken its name already.
    let file_then_link = segmented(&[
        piece("lib/dup", b"one", None),
        piece("other", b"", None),
        piece("lib/dup", b"", Some("other")),
    ]);
    let err = apply_to(&file_then_link, 2, &root).unwrap_err().to_string();
    assert!(
        err.contains("`lib/dup`") && err.contains("a name twice"),
        "{err}"
    );
    assert_eq!(std::fs::read(root.join("lib/dup")).unwrap(), b"one");
    crate::cache::remove_tree(&root).unwrap();
    std::fs::create_dir(&root).unwrap();
    let whiteout = segmented(&[piece("a", b"", None), piece("dir/.wh.a", b"", None)]);
    let err = apply_to(&whiteout, 2, &root).unwrap_err().to_string();
    assert!(err.contains("is a whiteout"), "{err}");
}

#[test]
fn a_reader_that_fails_stops_every_thread_with_its_error() {
    struct Failing(Box<dyn Read + Send>, usize);
    impl Read for Failing {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.1 == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the deadline passed",
                ));
            }
            let len = buf.len().min(self.1);
            let n = self.0.read(&mut buf[..len])?;
            self.1 -= n;
            Ok(n)
        }
    }
    let (object, _) = write(tree().path());
    let (_dir, root, _) = roots();
    let wrap = |input| Box::new(Failing(input, 100_000)) as Box<dyn Read + Send>;
    let err = apply_with(&object, 2, (&root, u64::MAX), &wrap).unwrap_err();
    assert!(err.to_string().contains("the deadline passed"), "{err}");
}

#[test]
fn the_budget_is_shared_by_the_threads() {
    let (object, written) = write(tree().path());
    let (_dir, root, _) = roots();
    let all = written.index.tar_size();
    let err = apply_with(&object, 2, (&root, all / 2), &|input| input).unwrap_err();
    assert!(err.to_string().contains("expands past"), "{err}");
}
