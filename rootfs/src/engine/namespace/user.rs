//! The image's `User` in a user namespace that maps only container root.
//!
//! Only uid 0 and gid 0 are mapped (to the caller), because an unprivileged process may map
//! nothing but its own ids. A `User` that names root runs as root; any other user cannot be
//! represented, so the command runs as container root and the reason is logged.

use std::io::Read;
use std::path::Path;

use nix::fcntl::{OFlag, OpenHow, ResolveFlag, open, openat2};
use nix::sys::stat::Mode;

/// What to do about the image's `User`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UserDecision {
    /// Container root: no `User`, or one that resolves to uid 0.
    Root,
    /// The image asks for another user, which is not mapped: run as root anyway, because of
    /// the reason given.
    RootInstead(String),
}

/// Decide how to run the image's `User` inside the root filesystem at `root`.
pub fn decide(root: &Path, user: Option<&str>) -> UserDecision {
    let Some(user) = user.map(str::trim).filter(|u| !u.is_empty()) else {
        return UserDecision::Root;
    };
    let name = user.split(':').next().unwrap_or(user);
    let uid = match name.parse::<u32>() {
        Ok(uid) => Some(uid),
        Err(_) => read_in_root(root, "etc/passwd").and_then(|passwd| lookup_uid(&passwd, name)),
    };
    match uid {
        Some(0) => UserDecision::Root,
        Some(uid) => UserDecision::RootInstead(format!(
            "the image's User `{user}` is uid {uid}, but only container root is mapped in an unprivileged user namespace"
        )),
        None => UserDecision::RootInstead(format!(
            "the image's User `{user}` is not in the image's /etc/passwd"
        )),
    }
}

/// The uid of `name` in an `/etc/passwd` text.
pub fn lookup_uid(passwd: &str, name: &str) -> Option<u32> {
    passwd.lines().find_map(|line| {
        let mut fields = line.split(':');
        if fields.next()? != name {
            return None;
        }
        fields.nth(1)?.parse().ok()
    })
}

/// Read a file of the image, symlinks resolved inside the image (never the host's file).
fn read_in_root(root: &Path, relative: &str) -> Option<String> {
    let root_fd = open(
        root,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .ok()?;
    let how = OpenHow::new()
        .flags(OFlag::O_RDONLY | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    let fd = openat2(&root_fd, relative, how).ok()?;
    let mut text = String::new();
    std::fs::File::from(fd)
        .take(1 << 20)
        .read_to_string(&mut text)
        .ok()?;
    Some(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534::/:/sbin/nologin\nadmin:x:0:0::/:/bin/sh\n";

    #[test]
    fn names_are_looked_up_in_passwd() {
        assert_eq!(lookup_uid(PASSWD, "nobody"), Some(65534));
        assert_eq!(lookup_uid(PASSWD, "admin"), Some(0));
        assert_eq!(lookup_uid(PASSWD, "ghost"), None);
    }

    #[test]
    fn root_and_uid_zero_run_as_root_and_others_run_as_root_with_a_reason() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("etc")).unwrap();
        std::fs::write(dir.path().join("etc/passwd"), PASSWD).unwrap();
        assert_eq!(decide(dir.path(), None), UserDecision::Root);
        assert_eq!(decide(dir.path(), Some("0:0")), UserDecision::Root);
        assert_eq!(decide(dir.path(), Some("admin")), UserDecision::Root);
        let UserDecision::RootInstead(reason) = decide(dir.path(), Some("nobody")) else {
            panic!()
        };
        assert!(reason.contains("65534"), "{reason}");
        let UserDecision::RootInstead(reason) = decide(dir.path(), Some("ghost")) else {
            panic!()
        };
        assert!(reason.contains("not in the image"), "{reason}");
    }

    #[test]
    fn a_passwd_symlink_to_the_host_is_read_inside_the_image() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("etc")).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", dir.path().join("etc/passwd")).unwrap();
        // /etc/passwd resolves to itself inside the image: a loop onto the same symlink, not
        // the host's file.
        assert!(matches!(
            decide(dir.path(), Some("root")),
            UserDecision::RootInstead(_)
        ));
    }
}
