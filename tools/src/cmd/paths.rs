//! Where `scar`'s commands keep things on this machine, one answer for all of them.

use std::path::PathBuf;

/// The image cache: `$SCAR_CACHE_DIR`, else `$XDG_CACHE_HOME/scar`, else `~/.cache/scar`, else
/// `/tmp/scar` (the bootstrap's default on Lambda, where there is no home). `scar pull`,
/// `scar cache`, `scar run` and `scar local` all use it, so an image pulled by one is found by
/// the others.
pub fn default_cache_dir() -> PathBuf {
    cache_dir_from(|name| std::env::var_os(name))
}

fn cache_dir_from(var: impl Fn(&str) -> Option<std::ffi::OsString>) -> PathBuf {
    let set = |name| {
        var(name)
            .filter(|value| !value.is_empty())
            .map(PathBuf::from)
    };
    if let Some(dir) = set("SCAR_CACHE_DIR") {
        return dir;
    }
    if let Some(dir) = set("XDG_CACHE_HOME") {
        return dir.join("scar");
    }
    match set("HOME") {
        Some(home) => home.join(".cache").join("scar"),
        None => PathBuf::from("/tmp/scar"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cache_is_found_in_the_environment_in_order() {
        let at = |vars: &[(&str, &str)]| {
            cache_dir_from(|name| {
                vars.iter()
                    .find(|(n, _)| *n == name)
                    .map(|(_, v)| std::ffi::OsString::from(v))
            })
        };
        let all = [
            ("SCAR_CACHE_DIR", "/c"),
            ("XDG_CACHE_HOME", "/x"),
            ("HOME", "/h"),
        ];
        assert_eq!(at(&all), PathBuf::from("/c"));
        assert_eq!(at(&all[1..]), PathBuf::from("/x/scar"));
        assert_eq!(at(&all[2..]), PathBuf::from("/h/.cache/scar"));
        assert_eq!(
            at(&[("SCAR_CACHE_DIR", ""), ("HOME", "/h")]),
            PathBuf::from("/h/.cache/scar")
        );
        assert_eq!(at(&[]), PathBuf::from("/tmp/scar"));
    }
}
