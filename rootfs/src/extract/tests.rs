//! Unit tests of layer application: semantics and hostile archives.

use super::*;
use std::os::unix::fs::{MetadataExt, PermissionsExt};

/// A tar built entry by entry, with raw names so hostile ones can be written.
#[derive(Default)]
struct Tar(Vec<u8>);

impl Tar {
    fn entry(
        mut self,
        name: &str,
        kind: tar::EntryType,
        mode: u32,
        link: &str,
        data: &[u8],
    ) -> Self {
        let mut h = tar::Header::new_ustar();
        let n = name.as_bytes();
        h.as_old_mut().name[..n.len()].copy_from_slice(n);
        let l = link.as_bytes();
        h.as_old_mut().linkname[..l.len()].copy_from_slice(l);
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_size(data.len() as u64);
        h.set_mtime(1_700_000_000);
        h.set_cksum();
        self.0.extend_from_slice(h.as_bytes());
        self.0.extend_from_slice(data);
        let pad = (512 - data.len() % 512) % 512;
        self.0.extend(std::iter::repeat_n(0u8, pad));
        self
    }
    fn file(self, name: &str, data: &str) -> Self {
        self.entry(name, tar::EntryType::Regular, 0o644, "", data.as_bytes())
    }
    fn dir(self, name: &str) -> Self {
        self.entry(name, tar::EntryType::Directory, 0o755, "", b"")
    }
    fn symlink(self, name: &str, target: &str) -> Self {
        self.entry(name, tar::EntryType::Symlink, 0o777, target, b"")
    }
    fn hardlink(self, name: &str, target: &str) -> Self {
        self.entry(name, tar::EntryType::Link, 0o644, target, b"")
    }
    fn done(mut self) -> Vec<u8> {
        self.0.extend(std::iter::repeat_n(0u8, 1024));
        self.0
    }
}

struct Sandbox {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    outside: PathBuf,
}

fn sandbox() -> Sandbox {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    let outside = tmp.path().join("outside");
    std::fs::create_dir(&root).unwrap();
    std::fs::create_dir(&outside).unwrap();
    Sandbox {
        _tmp: tmp,
        root,
        outside,
    }
}

fn apply_all(root: &Path, layers: &[Vec<u8>]) -> Result<(), ExtractError> {
    let mut x = Extractor::new(root, u64::MAX);
    for l in layers {
        x.apply_layer(l.as_slice())?;
    }
    x.finish()
}

#[test]
fn layers_merge_and_whiteouts_remove_lower_entries() {
    let s = sandbox();
    let l1 = Tar::default()
        .dir("etc")
        .file("etc/keep", "k")
        .file("etc/gone", "g")
        .dir("opt/")
        .file("opt/old", "o")
        .done();
    let l2 = Tar::default()
        .file("etc/.wh.gone", "")
        .file("opt/new", "n")
        .file("opt/.wh..wh..opq", "")
        .file("etc/added", "a")
        .done();
    apply_all(&s.root, &[l1, l2]).unwrap();
    assert_eq!(
        std::fs::read_to_string(s.root.join("etc/keep")).unwrap(),
        "k"
    );
    assert!(!s.root.join("etc/gone").exists());
    assert!(!s.root.join("etc/.wh.gone").exists());
    assert!(
        !s.root.join("opt/old").exists(),
        "opaque dir keeps lower content"
    );
    assert_eq!(
        std::fs::read_to_string(s.root.join("opt/new")).unwrap(),
        "n"
    );
    assert!(!s.root.join("opt/.wh..wh..opq").exists());
    assert_eq!(
        std::fs::read_to_string(s.root.join("etc/added")).unwrap(),
        "a"
    );
}

#[test]
fn hardlinks_work_across_layers_and_symlinks_are_kept_verbatim() {
    let s = sandbox();
    let l1 = Tar::default().file("bin/busybox", "bb").done();
    let l2 = Tar::default()
        .hardlink("bin/sh", "bin/busybox")
        .symlink("bin/ls", "/bin/busybox")
        .done();
    apply_all(&s.root, &[l1, l2]).unwrap();
    let a = std::fs::metadata(s.root.join("bin/busybox")).unwrap();
    let b = std::fs::metadata(s.root.join("bin/sh")).unwrap();
    assert_eq!(a.ino(), b.ino());
    assert_eq!(
        std::fs::read_link(s.root.join("bin/ls")).unwrap(),
        PathBuf::from("/bin/busybox")
    );
}

#[test]
fn a_file_replaces_a_directory_and_a_directory_replaces_a_file() {
    let s = sandbox();
    let l1 = Tar::default().file("a/x", "1").file("b", "2").done();
    let l2 = Tar::default()
        .file("a", "file now")
        .dir("b")
        .file("b/y", "3")
        .done();
    apply_all(&s.root, &[l1, l2]).unwrap();
    assert_eq!(
        std::fs::read_to_string(s.root.join("a")).unwrap(),
        "file now"
    );
    assert_eq!(std::fs::read_to_string(s.root.join("b/y")).unwrap(), "3");
}

#[test]
fn a_file_replaces_a_symlink_to_outside_without_writing_through_it() {
    let s = sandbox();
    let victim = s.outside.join("victim");
    std::fs::write(&victim, "untouched").unwrap();
    let target = victim.to_str().unwrap();
    let l1 = Tar::default()
        .symlink("link", target)
        .file("same", "old")
        .done();
    let l2 = Tar::default()
        .file("link", "a file now")
        .file("same", "new")
        .done();
    apply_all(&s.root, &[l1, l2]).unwrap();
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "untouched");
    let link = s.root.join("link");
    assert!(std::fs::symlink_metadata(&link).unwrap().is_file());
    assert_eq!(std::fs::read_to_string(link).unwrap(), "a file now");
    assert_eq!(std::fs::read_to_string(s.root.join("same")).unwrap(), "new");
}

#[test]
fn entries_under_an_absolute_symlinked_parent_land_inside_the_root() {
    let s = sandbox();
    let target = s.outside.to_str().unwrap().to_owned();
    let l1 = Tar::default()
        .symlink("link", &target)
        .file("link/pwned", "x")
        .done();
    apply_all(&s.root, &[l1]).unwrap();
    assert!(!s.outside.join("pwned").exists());
    assert!(
        s.root
            .join(target.trim_start_matches('/'))
            .join("pwned")
            .exists()
    );
}

#[test]
fn modes_drop_setuid_and_read_only_directories_get_their_mode_at_the_end() {
    let s = sandbox();
    let l1 = Tar::default()
        .entry("ro", tar::EntryType::Directory, 0o555, "", b"")
        .entry("ro/suid", tar::EntryType::Regular, 0o4755, "", b"x")
        .done();
    let l2 = Tar::default().file("ro/later", "y").done();
    apply_all(&s.root, &[l1, l2]).unwrap();
    let m = std::fs::metadata(s.root.join("ro/suid")).unwrap();
    assert_eq!(m.permissions().mode() & 0o7777, 0o755);
    let d = std::fs::metadata(s.root.join("ro")).unwrap();
    assert_eq!(d.permissions().mode() & 0o7777, 0o555);
    assert_eq!(d.mtime(), 1_700_000_000);
    assert!(s.root.join("ro/later").exists());
    crate::cache::remove_tree(&s.root).unwrap();
}

#[test]
fn device_nodes_are_skipped() {
    let s = sandbox();
    let l1 = Tar::default()
        .entry("dev/null", tar::EntryType::Char, 0o666, "", b"")
        .done();
    let mut x = Extractor::new(&s.root, u64::MAX);
    let stats = x.apply_layer(l1.as_slice()).unwrap();
    assert_eq!(stats.skipped, 1);
    assert!(!s.root.join("dev/null").exists());
}

#[test]
fn hostile_names_are_refused_and_nothing_lands_outside() {
    let s = sandbox();
    let outside_rel = "../outside/evil".to_owned();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("dotdot", Tar::default().file(&outside_rel, "x").done()),
        (
            "absolute",
            Tar::default().file("/tmp/scar-evil-absolute", "x").done(),
        ),
        (
            "symlink parent escape",
            Tar::default()
                .symlink("esc", "../outside")
                .file("esc/evil", "x")
                .done(),
        ),
        (
            "hardlink to /etc/passwd",
            Tar::default().hardlink("passwd", "/etc/passwd").done(),
        ),
        (
            "hardlink climbing out",
            Tar::default()
                .hardlink("passwd", "../../../../etc/passwd")
                .done(),
        ),
        (
            "hardlink through a symlink to /etc",
            Tar::default()
                .symlink("e", "/etc")
                .hardlink("passwd", "e/passwd")
                .done(),
        ),
    ];
    for (i, (what, layer)) in cases.into_iter().enumerate() {
        let root = s.root.join(i.to_string());
        std::fs::create_dir(&root).unwrap();
        let err = apply_all(&root, &[layer]).expect_err(what);
        let text = err.to_string();
        assert!(text.contains("refused"), "{what}: {text}");
    }
    assert_eq!(std::fs::read_dir(&s.outside).unwrap().count(), 0);
    assert!(!Path::new("/tmp/scar-evil-absolute").exists());
}

#[test]
fn a_layer_larger_than_the_budget_stops_with_a_budget_error() {
    let s = sandbox();
    let big = vec![0u8; 64 * 1024];
    let l1 = Tar::default()
        .entry("a", tar::EntryType::Regular, 0o644, "", &big)
        .entry("b", tar::EntryType::Regular, 0o644, "", &big)
        .done();
    let mut x = Extractor::new(&s.root, 100 * 1024);
    let err = x.apply_layer(l1.as_slice()).unwrap_err();
    assert!(matches!(err, ExtractError::Budget { .. }), "{err}");
}
