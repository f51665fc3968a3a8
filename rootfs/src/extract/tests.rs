//! Unit tests of layer application: semantics and hostile archives.

use super::*;
use std::fs::File;
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
    /// A PAX extended header: its records apply to the next entry.
    fn pax(self, records: &[(&str, &[u8])]) -> Self {
        let mut data = Vec::new();
        for (key, value) in records {
            // "<len> <key>=<value>\n", where len counts itself.
            let body = key.len() + value.len() + 3;
            let mut len = body + 1;
            while len != body + len.to_string().len() {
                len = body + len.to_string().len();
            }
            data.extend_from_slice(format!("{len} {key}=").as_bytes());
            data.extend_from_slice(value);
            data.push(b'\n');
        }
        self.entry("PaxHeaders/x", tar::EntryType::XHeader, 0o644, "", &data)
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

/// A directory outside the root with known mode and times, and a way to see that it changed.
struct HostDir {
    path: PathBuf,
    before: Vec<(PathBuf, u32, i64, u32)>,
}

impl HostDir {
    fn new(outside: &Path) -> Self {
        let path = outside.join("host");
        std::fs::create_dir_all(path.join("sub")).unwrap();
        std::fs::set_permissions(path.join("sub"), std::fs::Permissions::from_mode(0o750)).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o750)).unwrap();
        let old = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000_000);
        for p in [path.join("sub"), path.clone()] {
            let f = File::open(&p).unwrap();
            f.set_times(
                std::fs::FileTimes::new()
                    .set_modified(old)
                    .set_accessed(old),
            )
            .unwrap();
        }
        let before = Self::snapshot(&path);
        Self { path, before }
    }

    fn snapshot(path: &Path) -> Vec<(PathBuf, u32, i64, u32)> {
        [path.to_owned(), path.join("sub")]
            .into_iter()
            .map(|p| {
                let m = std::fs::symlink_metadata(&p).unwrap();
                (p, m.mode(), m.mtime(), m.uid())
            })
            .collect()
    }

    fn assert_unchanged(&self, what: &str) {
        assert_eq!(
            Self::snapshot(&self.path),
            self.before,
            "{what}: host dir changed"
        );
        assert_eq!(std::fs::read_dir(&self.path).unwrap().count(), 1, "{what}");
    }
}

#[test]
fn a_directory_swapped_for_a_symlink_in_the_same_layer_keeps_its_metadata_inside() {
    let s = sandbox();
    let host = HostDir::new(&s.outside);
    let l1 = Tar::default()
        .dir("evil/")
        .entry("evil/sub/", tar::EntryType::Directory, 0o777, "", b"")
        .symlink("evil", host.path.to_str().unwrap())
        .done();
    apply_all(&s.root, &[l1]).unwrap();
    host.assert_unchanged("same layer");
    assert!(
        std::fs::symlink_metadata(s.root.join("evil"))
            .unwrap()
            .is_symlink()
    );
}

#[test]
fn a_directory_swapped_for_a_symlink_in_the_next_layer_keeps_its_metadata_inside() {
    let s = sandbox();
    let host = HostDir::new(&s.outside);
    let l1 = Tar::default()
        .dir("evil/")
        .entry("evil/sub/", tar::EntryType::Directory, 0o777, "", b"")
        .done();
    let l2 = Tar::default()
        .symlink("evil", host.path.to_str().unwrap())
        .done();
    apply_all(&s.root, &[l1, l2]).unwrap();
    host.assert_unchanged("next layer");
}

#[test]
fn a_whited_out_directory_replaced_by_a_symlink_keeps_its_metadata_inside() {
    let s = sandbox();
    let host = HostDir::new(&s.outside);
    let l1 = Tar::default()
        .dir("evil/")
        .entry("evil/sub/", tar::EntryType::Directory, 0o777, "", b"")
        .done();
    let l2 = Tar::default()
        .file(".wh.evil", "")
        .symlink("evil", host.path.to_str().unwrap())
        .done();
    apply_all(&s.root, &[l1, l2]).unwrap();
    host.assert_unchanged("whiteout");
}

#[test]
fn records_of_removed_directories_are_dropped_and_not_applied_to_their_successors() {
    let s = sandbox();
    let l1 = Tar::default()
        .dir("a/")
        .entry("a/sub/", tar::EntryType::Directory, 0o555, "", b"")
        .dir("o/")
        .entry("o/old/", tar::EntryType::Directory, 0o500, "", b"")
        .done();
    // A later layer removes `a` and makes `a/sub` again (implicitly, mode 0755); an opaque
    // marker hides `o/old`, which this layer then makes again.
    let l2 = Tar::default()
        .file(".wh.a", "")
        .file("a/sub/f", "x")
        .file("o/.wh..wh..opq", "")
        .file("o/old/f", "y")
        .done();
    let mut x = Extractor::new(&s.root, u64::MAX);
    x.apply_layer(l1.as_slice()).unwrap();
    assert!(x.dirs.contains_key(Path::new("a/sub")));
    x.apply_layer(l2.as_slice()).unwrap();
    assert!(
        !x.dirs.contains_key(Path::new("a/sub")),
        "whiteout drops records"
    );
    assert!(!x.dirs.contains_key(Path::new("a")));
    assert!(
        !x.dirs.contains_key(Path::new("o/old")),
        "opaque drops records"
    );
    assert!(x.dirs.contains_key(Path::new("o")));
    x.finish().unwrap();
    let mode = |p: &str| std::fs::metadata(s.root.join(p)).unwrap().mode() & 0o7777;
    assert_eq!(mode("a/sub"), 0o755);
    assert_eq!(mode("o/old"), 0o755);
}

#[test]
fn a_symlink_hardlinked_is_still_a_symlink_and_nothing_is_written_through_it() {
    let s = sandbox();
    let victim = s.outside.join("victim");
    std::fs::write(&victim, "untouched").unwrap();
    let l1 = Tar::default()
        .symlink("link", victim.to_str().unwrap())
        .hardlink("again", "link")
        .file("again", "overwritten?")
        .done();
    apply_all(&s.root, &[l1]).unwrap();
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "untouched");
    assert!(
        std::fs::symlink_metadata(s.root.join("again"))
            .unwrap()
            .is_file()
    );
}

fn xattr(path: &Path, name: &str) -> Option<Vec<u8>> {
    use std::os::unix::ffi::OsStrExt;
    let p = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
    let n = std::ffi::CString::new(name).unwrap();
    let mut buf = vec![0u8; 256];
    // SAFETY: both strings are NUL-terminated; buf has buf.len() writable bytes.
    let rc = unsafe { libc::lgetxattr(p.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    (rc >= 0).then(|| buf[..rc as usize].to_vec())
}

#[test]
fn only_user_extended_attributes_are_applied() {
    let s = sandbox();
    // cap_setuid+ep, as setcap writes it (VFS_CAP_REVISION_2).
    let cap: &[u8] = &[
        0, 0, 0, 2, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    ];
    let l1 = Tar::default()
        .pax(&[
            ("SCHILY.xattr.security.capability", cap),
            ("SCHILY.xattr.trusted.x", b"t"),
            ("SCHILY.xattr.user.ok", b"fine"),
        ])
        .file("bin/ping", "ping")
        .pax(&[("SCHILY.xattr.system.posix_acl_access", b"\x02\0\0\0")])
        .dir("etc")
        .done();
    let mut x = Extractor::new(&s.root, u64::MAX);
    x.apply_layer(l1.as_slice()).unwrap();
    assert_eq!(x.dropped_xattrs, 3);
    assert_eq!(
        x.dropped_examples,
        [
            "security.capability on bin/ping",
            "trusted.x on bin/ping",
            "system.posix_acl_access on etc"
        ]
    );
    x.finish().unwrap();
    let ping = s.root.join("bin/ping");
    assert_eq!(xattr(&ping, "security.capability"), None);
    assert_eq!(xattr(&ping, "trusted.x"), None);
    if nix::unistd::geteuid().is_root() {
        // Root may set user.* on any file system that has them (the test's tmp does).
        assert_eq!(xattr(&ping, "user.ok").as_deref(), Some(&b"fine"[..]));
    }
}

#[test]
fn small_files_are_charged_in_whole_blocks_with_their_directories() {
    let s = sandbox();
    let block = fsops::block_size(&s.root);
    let mut t = Tar::default();
    for i in 0..100 {
        t = t.file(&format!("d/e/f{i}"), "1");
    }
    let l1 = t.done();
    let mut x = Extractor::new(&s.root, u64::MAX);
    x.apply_layer(l1.as_slice()).unwrap();
    // 100 files of one block, 2 implicit directories, 100 entries' overhead.
    assert_eq!(x.charged(), 102 * block + 100 * ENTRY_OVERHEAD);
    // Space of 80 one-byte files is too little for 100, though their bytes are 100.
    let again = s.root.parent().unwrap().join("again");
    std::fs::create_dir(&again).unwrap();
    let mut x = Extractor::new(&again, 80 * block);
    let err = x.apply_layer(l1.as_slice()).unwrap_err();
    assert!(matches!(err, ExtractError::Budget { .. }), "{err}");
}

#[test]
fn files_get_exactly_their_modes_whether_created_with_them_or_changed_after() {
    let s = sandbox();
    // Some are created with their mode, some (bits the umask takes, the sticky bit, a user
    // xattr to set first) get it by fchmod: the result must not tell which.
    let modes = [
        0o755, 0o644, 0o664, 0o666, 0o600, 0o444, 0o000, 0o1755, 0o777,
    ];
    let mut layer = Tar::default();
    for m in modes {
        layer = layer.entry(&format!("f{m:o}"), tar::EntryType::Regular, m, "", b"data");
    }
    let layer = layer
        .pax(&[("SCHILY.xattr.user.k", b"v")])
        .entry("x444", tar::EntryType::Regular, 0o444, "", b"data")
        // A read-only file replaced by the next entry of the same name.
        .entry("f444", tar::EntryType::Regular, 0o440, "", b"again")
        .done();
    apply_all(&s.root, &[layer]).unwrap();
    for m in modes {
        let path = s.root.join(format!("f{m:o}"));
        let meta = std::fs::metadata(&path).unwrap();
        let want = if m == 0o444 { 0o440 } else { m };
        assert_eq!(meta.mode() & 0o7777, want, "{}", path.display());
        assert_eq!(meta.mtime(), 1_700_000_000, "{}", path.display());
    }
    assert_eq!(std::fs::read(s.root.join("f444")).unwrap(), b"again");
    assert_eq!(std::fs::read(s.root.join("f0")).unwrap(), b"data");
    let x = s.root.join("x444");
    assert_eq!(std::fs::metadata(&x).unwrap().mode() & 0o7777, 0o444);
    if nix::unistd::geteuid().is_root() {
        assert_eq!(xattr(&x, "user.k").as_deref(), Some(&b"v"[..]));
    }
    crate::cache::remove_tree(&s.root).unwrap();
}

#[test]
fn a_default_acl_on_the_root_makes_every_file_take_the_fchmod_path() {
    use std::os::unix::ffi::OsStrExt;
    let s = sandbox();
    assert!(
        fsops::creation_mask(&s.root).is_some(),
        "the umask is readable and the test's directory has no default ACL"
    );
    // user::rwx group::r-x other::--- (the xattr form: version 2, then tag, perm, id each).
    let mut acl = 2u32.to_le_bytes().to_vec();
    for (tag, perm) in [(0x01u16, 7u16), (0x04, 5), (0x20, 0)] {
        acl.extend_from_slice(&tag.to_le_bytes());
        acl.extend_from_slice(&perm.to_le_bytes());
        acl.extend_from_slice(&u32::MAX.to_le_bytes());
    }
    let p = std::ffi::CString::new(s.root.as_os_str().as_bytes()).unwrap();
    // SAFETY: both strings are NUL-terminated; acl has acl.len() readable bytes.
    let rc = unsafe {
        libc::setxattr(
            p.as_ptr(),
            c"system.posix_acl_default".as_ptr(),
            acl.as_ptr().cast(),
            acl.len(),
            0,
        )
    };
    assert_eq!(
        rc,
        0,
        "set a default ACL: {}",
        std::io::Error::last_os_error()
    );
    assert_eq!(fsops::creation_mask(&s.root), None);
    let layer = Tar::default()
        .entry("run", tar::EntryType::Regular, 0o755, "", b"x")
        .done();
    apply_all(&s.root, &[layer]).unwrap();
    let meta = std::fs::metadata(s.root.join("run")).unwrap();
    assert_eq!(meta.mode() & 0o777, 0o755);
}

#[test]
fn openat2_and_the_component_walk_open_the_same_directories_and_refuse_the_same_paths() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    let outside = tmp.path().join("outside");
    std::fs::create_dir_all(root.join("a/b/c")).unwrap();
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(root.join("a/file"), b"x").unwrap();
    std::os::unix::fs::symlink(&outside, root.join("a/out")).unwrap();
    std::os::unix::fs::symlink("b", root.join("a/inner")).unwrap();
    let root_fd = fsops::open_root(&root).unwrap();
    let ino = |fd: &std::os::fd::OwnedFd| nix::sys::stat::fstat(fd).unwrap().st_ino;
    let walk = |rel: &str| {
        let names: Vec<&std::ffi::OsStr> = Path::new(rel).iter().collect();
        fsops::open_walking(&root_fd, &names)
    };
    // This kernel has openat2 (5.6 and later): both ways must be tested here.
    let Some(opened) = fsops::open_beneath(&root_fd, Path::new("a/b/c")) else {
        panic!("openat2 refused on this machine: the test cannot compare the two ways");
    };
    let want = std::fs::metadata(root.join("a/b/c")).unwrap().ino();
    assert_eq!(ino(&opened.unwrap()), want);
    assert_eq!(ino(&walk("a/b/c").unwrap()), want);
    // A symlink anywhere on the way, a file, or nothing: neither opens it.
    for rel in [
        "a/out",
        "a/inner/c",
        "a/out/x",
        "a/file",
        "a/file/x",
        "a/gone",
    ] {
        let by_openat2 = fsops::open_beneath(&root_fd, Path::new(rel)).unwrap();
        let errno =
            |r: std::io::Result<std::os::fd::OwnedFd>| r.err().and_then(|e| e.raw_os_error());
        let (two, walked) = (errno(by_openat2), errno(walk(rel)));
        for (how, got) in [("openat2", two), ("walk", walked)] {
            assert!(
                matches!(got, Some(libc::ELOOP | libc::ENOTDIR | libc::ENOENT)),
                "{how} of {rel}: {got:?}"
            );
        }
    }
    // Through the public door, a stale record is skipped, never followed outside.
    let full = root.join("a/out");
    assert!(
        fsops::open_dir_beneath(&root_fd, Path::new("a/out"), &full)
            .unwrap()
            .is_none()
    );
}

#[test]
fn files_go_into_the_directory_that_is_there_now_after_it_was_removed_or_replaced() {
    let s = sandbox();
    let mut x = Extractor::new(&s.root, u64::MAX);
    // Files are created relative to their parent's descriptor, kept from one file to the next:
    // a directory removed since (a whiteout, a symlink or a file in its place) must not keep
    // receiving files where nobody will see them.
    let lower = Tar::default().file("d/x", "1").file("e/x", "1").done();
    x.apply_layer(&lower[..]).unwrap();
    let upper = Tar::default()
        .file("d/y", "2")
        .file(".wh.d", "")
        .file("d/z", "3")
        .file("e/y", "2")
        .symlink("e", "d")
        .file("e/w", "4")
        .done();
    x.apply_layer(&upper[..]).unwrap();
    x.finish().unwrap();
    let read = |p: &str| std::fs::read_to_string(s.root.join(p)).ok();
    assert_eq!(read("d/z").as_deref(), Some("3"));
    assert_eq!(read("d/x"), None);
    assert_eq!(read("d/y"), None, "whited out with its directory");
    assert_eq!(read("e/w").as_deref(), Some("4"));
    assert_eq!(
        read("d/w").as_deref(),
        Some("4"),
        "through the symlink e -> d"
    );
    assert!(s.root.join("e").symlink_metadata().unwrap().is_symlink());
}

#[test]
fn directories_of_one_depth_shared_among_threads_all_get_their_metadata_deepest_first() {
    let s = sandbox();
    let dirs = 3 * MIN_DIRS_PER_THREAD;
    let mut tar = Tar::default();
    for i in 0..dirs {
        tar = tar
            .entry(&format!("d{i}/"), tar::EntryType::Directory, 0o555, "", b"")
            .entry(
                &format!("d{i}/sub/"),
                tar::EntryType::Directory,
                0o500,
                "",
                b"",
            )
            .file(&format!("d{i}/sub/f"), "x");
    }
    // A record gone stale in the middle of a level: skipped, nothing applied through it.
    let tar = tar.file(".wh.d7", "").symlink("d7", "../outside").done();
    std::fs::set_permissions(&s.outside, std::fs::Permissions::from_mode(0o755)).unwrap();
    apply_all(&s.root, &[tar]).unwrap();
    for i in (0..dirs).filter(|&i| i != 7) {
        for (dir, mode) in [(format!("d{i}"), 0o555), (format!("d{i}/sub"), 0o500)] {
            let meta = std::fs::symlink_metadata(s.root.join(&dir)).unwrap();
            assert_eq!(meta.mode() & 0o7777, mode, "{dir}");
            assert_eq!(
                meta.mtime(),
                1_700_000_000,
                "{dir}: its files were written first"
            );
        }
    }
    let outside = std::fs::metadata(&s.outside).unwrap();
    assert_eq!(
        outside.mode() & 0o7777,
        0o755,
        "nothing applied through the symlink"
    );
    // Leave the tree removable.
    for i in 0..dirs {
        let _ = std::fs::set_permissions(
            s.root.join(format!("d{i}")),
            std::fs::Permissions::from_mode(0o755),
        );
        let _ = std::fs::set_permissions(
            s.root.join(format!("d{i}/sub")),
            std::fs::Permissions::from_mode(0o755),
        );
    }
}
