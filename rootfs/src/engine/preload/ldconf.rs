//! The image's library search path, for the loader's `--library-path`.
//!
//! The loader is started with `--inhibit-cache`: the host's `/etc/ld.so.cache` names host
//! libraries, and the image's cache (if any) names container paths the loader would open on the
//! host. So the directories the image's `ldconfig` would have cached are read from its
//! `/etc/ld.so.conf` (with `include` globs), and musl's from `/etc/ld-musl-<arch>.path`.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::resolve::resolve;

/// Which libc the image's loader belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flavor {
    /// glibc (`ld-linux*.so.*`).
    Gnu,
    /// musl (`ld-musl-*.so.1`).
    Musl,
}

impl Flavor {
    /// The flavor of a loader path (`PT_INTERP`).
    pub fn of_loader(interp: &str) -> Self {
        if interp.contains("ld-musl") {
            Self::Musl
        } else {
            Self::Gnu
        }
    }

    /// The name used in file names and `SCAR_PRELOAD_FLAVOR`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Gnu => "gnu",
            Self::Musl => "musl",
        }
    }
}

/// `include` nesting depth honoured (a loop of includes stops here).
const MAX_INCLUDE_DEPTH: usize = 8;

#[cfg(target_arch = "aarch64")]
const TRIPLET: &str = "aarch64-linux-gnu";
#[cfg(not(target_arch = "aarch64"))]
const TRIPLET: &str = "x86_64-linux-gnu";
#[cfg(target_arch = "aarch64")]
const MUSL_ARCH: &str = "aarch64";
#[cfg(not(target_arch = "aarch64"))]
const MUSL_ARCH: &str = "x86_64";

/// Container directories searched for libraries, in order: the image's `LD_LIBRARY_PATH`, its
/// loader configuration, then the loader's built-in defaults.
pub fn search_dirs(root: &Path, flavor: Flavor, ld_library_path: Option<&str>) -> Vec<String> {
    let mut dirs: Vec<String> = Vec::new();
    if let Some(lp) = ld_library_path {
        dirs.extend(
            lp.split([':', ';'])
                .filter(|d| d.starts_with('/'))
                .map(str::to_string),
        );
    }
    match flavor {
        Flavor::Gnu => {
            read_conf(root, "/etc/ld.so.conf", 0, &mut dirs);
            for d in ["/lib", "/usr/lib"] {
                dirs.push(format!("{d}/{TRIPLET}"));
            }
            dirs.extend(["/lib64", "/usr/lib64", "/lib", "/usr/lib"].map(String::from));
        }
        Flavor::Musl => {
            let file = format!("/etc/ld-musl-{MUSL_ARCH}.path");
            match std::fs::read_to_string(resolve(root, Path::new(&file)).unwrap_or_default()) {
                Ok(text) => dirs.extend(
                    text.split(['\n', ':'])
                        .map(str::trim)
                        .filter(|d| d.starts_with('/'))
                        .map(String::from),
                ),
                Err(_) => dirs.extend(["/lib", "/usr/local/lib", "/usr/lib"].map(String::from)),
            }
        }
    }
    dirs
}

/// The `--library-path` value: the search directories that exist in the image, as host paths,
/// without duplicates.
pub fn library_path(root: &Path, dirs: &[String]) -> String {
    let mut seen = HashSet::new();
    let mut out: Vec<String> = Vec::new();
    for d in dirs {
        let Ok(host) = resolve(root, Path::new(d)) else {
            continue;
        };
        if !host.is_dir() || !seen.insert(host.clone()) {
            continue;
        }
        // `:` separates entries; a directory whose host path holds one cannot be listed.
        let s = host.to_string_lossy().into_owned();
        if !s.contains(':') {
            out.push(s);
        }
    }
    out.join(":")
}

fn read_conf(root: &Path, file: &str, depth: usize, dirs: &mut Vec<String>) {
    if depth > MAX_INCLUDE_DEPTH {
        return;
    }
    let Ok(host) = resolve(root, Path::new(file)) else {
        return;
    };
    let Ok(text) = std::fs::read_to_string(host) else {
        return;
    };
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or_default().trim();
        if line.is_empty() || line.starts_with("hwcap ") {
            continue;
        }
        if let Some(pattern) = line
            .strip_prefix("include")
            .filter(|r| r.starts_with([' ', '\t']))
        {
            for pat in pattern.split_whitespace() {
                // Relative include patterns are relative to the including file's directory.
                let pat = if pat.starts_with('/') {
                    pat.to_string()
                } else {
                    let parent = Path::new(file).parent().unwrap_or(Path::new("/"));
                    parent.join(pat).to_string_lossy().into_owned()
                };
                for f in glob(root, &pat) {
                    read_conf(root, &f, depth + 1, dirs);
                }
            }
            continue;
        }
        // `dir`, `dir=TYPE` (old syntax), several per line separated by blanks, `,` or `:`.
        for d in line.split([' ', '\t', ',', ':']) {
            let d = d.split('=').next().unwrap_or_default();
            if d.starts_with('/') {
                dirs.push(d.to_string());
            }
        }
    }
}

/// Expand a pattern whose last component may hold `*` (what ld.so.conf files use), sorted as
/// glob(3) does.
fn glob(root: &Path, pattern: &str) -> Vec<String> {
    let p = Path::new(pattern);
    let (Some(parent), Some(name)) = (p.parent(), p.file_name().and_then(|n| n.to_str())) else {
        return Vec::new();
    };
    if !name.contains('*') {
        return vec![pattern.to_string()];
    }
    let Ok(dir) = resolve(root, parent) else {
        return Vec::new();
    };
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<String> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str().map(String::from))
        .filter(|n| wildcard(name, n))
        .map(|n| parent.join(n).to_string_lossy().into_owned())
        .collect();
    out.sort();
    out
}

/// `*`-only wildcard match.
fn wildcard(pattern: &str, name: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !name.starts_with(first) || name.len() < first.len() + last.len() || !name.ends_with(last) {
        return false;
    }
    let mut rest = &name[first.len()..name.len() - last.len()];
    for mid in &parts[1..parts.len() - 1] {
        match rest.find(mid) {
            Some(i) => rest = &rest[i + mid.len()..],
            None => return false,
        }
    }
    true
}

/// Variables that point libc at the image's own data files, which libc opens internally, past
/// every `LD_PRELOAD` hook: `(name, host value)` pairs for those the container environment
/// `env` does not set itself.
///
/// - `GCONV_PATH` (glibc): the image's gconv directory; glibc then also ignores the compiled-in
///   directory's `gconv-modules.cache`, which would be the host's.
/// - `LOCPATH` (glibc): the image's compiled locales (`/usr/lib/locale/<name>/`), when the image
///   has no `locale-archive` (`LOCPATH` turns the archive off: an image that generated its
///   locales into the archive keeps glibc's built-in archive path instead).
/// - `TZDIR` (glibc): the image's zoneinfo, for `TZ=:UTC` (what Lambda sets) or `TZ=Area/City`.
/// - `TZ`: when unset and the image has `/etc/localtime`, `:<host path of it>` (glibc and musl
///   read `/etc/localtime` directly otherwise: the host's).
pub fn libc_env(root: &Path, flavor: Flavor, env: &[(String, String)]) -> Vec<(String, String)> {
    let set = |name: &str| env.iter().any(|(k, _)| k == name);
    let host_dir = |cpath: &str| {
        resolve(root, Path::new(cpath))
            .ok()
            .filter(|p| p.is_dir())
            .map(|p| p.to_string_lossy().into_owned())
    };
    let mut out = Vec::new();
    if flavor == Flavor::Gnu {
        let gconv = [
            format!("/usr/lib/{TRIPLET}/gconv"),
            "/usr/lib64/gconv".to_string(),
            "/usr/lib/gconv".to_string(),
        ];
        if !set("GCONV_PATH")
            && let Some(dir) = gconv.iter().find_map(|d| host_dir(d))
        {
            out.push(("GCONV_PATH".to_string(), dir));
        }
        if !set("LOCPATH")
            && let Some(dir) = host_dir("/usr/lib/locale")
            && !Path::new(&dir).join("locale-archive").exists()
        {
            out.push(("LOCPATH".to_string(), dir));
        }
        if !set("TZDIR")
            && let Some(dir) = host_dir("/usr/share/zoneinfo")
        {
            out.push(("TZDIR".to_string(), dir));
        }
    }
    if !set("TZ")
        && let Ok(localtime) = resolve(root, Path::new("/etc/localtime"))
        && localtime.is_file()
    {
        out.push(("TZ".to_string(), format!(":{}", localtime.display())));
    }
    // A value holding a newline could not travel in SCAR_PRELOAD_LIBC_ENV.
    out.retain(|(_, v)| !v.contains('\n'));
    out
}

/// Directories scanned for `RUNPATH`s, most (a loop of `RUNPATH`s stops here).
const MAX_RUNPATH_DIRS: usize = 256;

/// Remembered scans: (image root, container directory) → the `RUNPATH`s of its libraries.
type RunpathMemo = HashMap<(PathBuf, String), Vec<String>>;

/// The absolute `RUNPATH`/`RPATH` directories (container paths) of `program` and of the
/// libraries in `dirs`, followed through the directories they name, for musl images.
///
/// musl's loader has no audit interface and opens a `RUNPATH` directory at its container path,
/// on the host. It searches `--library-path` first, so the directories found here are appended
/// to it (as host paths of the image), and the loader finds the image's files there. A
/// directory's scan is remembered per image for the life of the process (the bootstrap starts
/// many containers from one image).
pub fn runpath_dirs(root: &Path, program: &Path, dirs: &[String]) -> Vec<String> {
    static SCANNED: Mutex<Option<RunpathMemo>> = Mutex::new(None);
    let mut found: Vec<String> = elf_runpaths(program).unwrap_or_default();
    let mut todo: Vec<String> = dirs.iter().cloned().chain(found.iter().cloned()).collect();
    let mut seen: HashSet<String> = HashSet::new();
    while let Some(dir) = todo.pop() {
        if seen.len() >= MAX_RUNPATH_DIRS || !seen.insert(dir.clone()) {
            continue;
        }
        let key = (root.to_path_buf(), dir.clone());
        let cached = SCANNED
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_or_insert_with(HashMap::new)
            .get(&key)
            .cloned();
        let runpaths = match cached {
            Some(r) => r,
            None => {
                let r = scan_dir(root, &dir);
                SCANNED
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .get_or_insert_with(HashMap::new)
                    .insert(key, r.clone());
                r
            }
        };
        for r in runpaths {
            if !found.contains(&r) {
                found.push(r.clone());
                todo.push(r);
            }
        }
    }
    found
}

/// The absolute `RUNPATH`s of the shared objects directly in the image directory `dir`.
fn scan_dir(root: &Path, dir: &str) -> Vec<String> {
    let Ok(host) = resolve(root, Path::new(dir)) else {
        return Vec::new();
    };
    let Ok(entries) = std::fs::read_dir(host) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for e in entries.filter_map(|e| e.ok()) {
        // Symbolic links name files of the same directories: each object is read once.
        let is_file = e.file_type().is_ok_and(|t| t.is_file());
        if !is_file || !e.file_name().to_string_lossy().contains(".so") {
            continue;
        }
        for r in elf_runpaths(&e.path()).unwrap_or_default() {
            if !out.contains(&r) {
                out.push(r);
            }
        }
    }
    out
}

/// Absolute entries (no `$ORIGIN`, which the loader expands against the host path it opened)
/// of a 64-bit little-endian ELF object's `DT_RUNPATH` or `DT_RPATH`.
fn elf_runpaths(path: &Path) -> std::io::Result<Vec<String>> {
    const PT_LOAD: u32 = 1;
    const PT_DYNAMIC: u32 = 2;
    const DT_STRTAB: u64 = 5;
    const DT_RPATH: u64 = 15;
    const DT_RUNPATH: u64 = 29;
    let f = File::open(path)?;
    let mut h = [0u8; 64];
    f.read_exact_at(&mut h, 0)?;
    if &h[..4] != b"\x7fELF" || h[4] != 2 || h[5] != 1 {
        return Ok(Vec::new());
    }
    let u16_at = |b: &[u8], o: usize| u16::from_le_bytes([b[o], b[o + 1]]);
    let u32_at = |b: &[u8], o: usize| u32::from_le_bytes(b[o..o + 4].try_into().unwrap_or([0; 4]));
    let u64_at = |b: &[u8], o: usize| u64::from_le_bytes(b[o..o + 8].try_into().unwrap_or([0; 8]));
    let (phoff, phentsize, phnum) = (u64_at(&h, 32), u16_at(&h, 54) as u64, u16_at(&h, 56));
    if phentsize < 56 || phnum > 256 {
        return Ok(Vec::new());
    }
    let mut ph = vec![0u8; (phentsize * phnum as u64) as usize];
    f.read_exact_at(&mut ph, phoff)?;
    let mut loads = Vec::new();
    let mut dynamic = None;
    for i in 0..phnum as usize {
        let p = &ph[i * phentsize as usize..];
        let (kind, off, vaddr, filesz) = (u32_at(p, 0), u64_at(p, 8), u64_at(p, 16), u64_at(p, 32));
        match kind {
            PT_LOAD => loads.push((vaddr, off, filesz)),
            PT_DYNAMIC => dynamic = Some((off, filesz.min(64 * 1024))),
            _ => {}
        }
    }
    let Some((off, size)) = dynamic else {
        return Ok(Vec::new());
    };
    let mut d = vec![0u8; size as usize];
    f.read_exact_at(&mut d, off)?;
    let (mut strtab, mut list) = (None, None);
    for e in d.chunks_exact(16) {
        match u64_at(e, 0) {
            0 => break,
            DT_STRTAB => strtab = Some(u64_at(e, 8)),
            DT_RUNPATH => list = Some(u64_at(e, 8)),
            DT_RPATH if list.is_none() => list = Some(u64_at(e, 8)),
            _ => {}
        }
    }
    let (Some(strtab), Some(list)) = (strtab, list) else {
        return Ok(Vec::new());
    };
    // DT_STRTAB is an address: the loaded segment holding it gives its place in the file.
    let Some(file_off) = loads
        .iter()
        .find(|(vaddr, _, filesz)| (*vaddr..vaddr + filesz).contains(&strtab))
        .map(|(vaddr, off, _)| strtab - vaddr + off)
    else {
        return Ok(Vec::new());
    };
    let mut s = vec![0u8; 4096];
    let n = f.read_at(&mut s, file_off + list)?;
    let s = &s[..n];
    let s = &s[..s.iter().position(|&b| b == 0).unwrap_or(s.len())];
    Ok(String::from_utf8_lossy(s)
        .split(':')
        .filter(|d| d.starts_with('/') && !d.contains('$'))
        .map(String::from)
        .collect())
}

/// Host path of a loader inside the image.
pub fn loader(root: &Path, interp: &str) -> Option<PathBuf> {
    resolve(root, Path::new(interp))
        .ok()
        .filter(|p| p.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ld_so_conf_includes_are_followed_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("etc/ld.so.conf.d")).unwrap();
        std::fs::write(
            root.join("etc/ld.so.conf"),
            "include /etc/ld.so.conf.d/*.conf\n/opt/old=libc6\n",
        )
        .unwrap();
        std::fs::write(
            root.join("etc/ld.so.conf.d/b.conf"),
            "# comment\n/usr/local/lib\n",
        )
        .unwrap();
        std::fs::write(
            root.join("etc/ld.so.conf.d/a.conf"),
            "/opt/a/lib /opt/a/lib64\n",
        )
        .unwrap();
        std::fs::write(root.join("etc/ld.so.conf.d/skip.txt"), "/nope\n").unwrap();
        let dirs = search_dirs(root, Flavor::Gnu, Some("/env/lib:relative"));
        assert_eq!(
            &dirs[..5],
            [
                "/env/lib",
                "/opt/a/lib",
                "/opt/a/lib64",
                "/usr/local/lib",
                "/opt/old"
            ]
        );
        assert!(!dirs.contains(&"/nope".to_string()));
    }

    #[test]
    fn an_include_loop_terminates() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("etc")).unwrap();
        std::fs::write(
            dir.path().join("etc/ld.so.conf"),
            "include /etc/ld.so.conf\n/x\n",
        )
        .unwrap();
        let dirs = search_dirs(dir.path(), Flavor::Gnu, None);
        assert!(dirs.iter().filter(|d| *d == "/x").count() <= MAX_INCLUDE_DEPTH + 1);
    }

    #[test]
    fn musl_images_use_their_path_file_or_musl_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let dirs = search_dirs(dir.path(), Flavor::Musl, None);
        assert_eq!(dirs, ["/lib", "/usr/local/lib", "/usr/lib"]);
        std::fs::create_dir_all(dir.path().join("etc")).unwrap();
        std::fs::write(
            dir.path().join(format!("etc/ld-musl-{MUSL_ARCH}.path")),
            "/a:/b\n/c\n",
        )
        .unwrap();
        assert_eq!(
            search_dirs(dir.path(), Flavor::Musl, None),
            ["/a", "/b", "/c"]
        );
    }

    #[test]
    fn the_library_path_lists_existing_host_dirs_once() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("usr/lib")).unwrap();
        std::os::unix::fs::symlink("usr/lib", root.join("lib")).unwrap();
        let lp = library_path(root, &["/lib".into(), "/usr/lib".into(), "/missing".into()]);
        assert_eq!(lp, root.join("usr/lib").to_string_lossy());
    }
}
