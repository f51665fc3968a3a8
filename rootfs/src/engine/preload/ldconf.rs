//! The image's library search path, for the loader's `--library-path`.
//!
//! The loader is started with `--inhibit-cache`: the host's `/etc/ld.so.cache` names host
//! libraries, and the image's cache (if any) names container paths the loader would open on the
//! host. So the directories the image's `ldconfig` would have cached are read from its
//! `/etc/ld.so.conf` (with `include` globs), and musl's from `/etc/ld-musl-<arch>.path`.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

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
