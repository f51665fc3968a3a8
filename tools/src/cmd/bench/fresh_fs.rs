//! A fresh file system for one cold pull, as a Lambda sandbox meets its `/tmp`: a new ext4 made
//! in a sparse file and loop-mounted (as root), unmounted and deleted afterwards.
//!
//! On a long-used host file system a pull pays for what the runs before it left: ext4 without a
//! journal scans the inode tables for recently deleted inodes before it reuses one (the host
//! root here spent 60% of a framed pull's time in that scan), and which route follows which
//! removal decides who pays. A file system of its own per pull gives every route the same
//! empty start. Without root or loop devices the pull runs on the host file system and the
//! bench says so.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// A mounted fresh ext4; unmounted and its backing file removed on drop.
pub struct FreshFs {
    backing: PathBuf,
    mount: PathBuf,
}

impl FreshFs {
    /// Make an ext4 of `bytes` in `<dir>.ext4` (sparse) and mount it on `dir` (created).
    pub fn mount(dir: &Path, bytes: u64) -> Result<Self, String> {
        let mut backing = dir.as_os_str().to_owned();
        backing.push(".ext4");
        let backing = PathBuf::from(backing);
        let file = std::fs::File::create(&backing)
            .map_err(|err| format!("create {}: {err}", backing.display()))?;
        file.set_len(bytes)
            .map_err(|err| format!("size {}: {err}", backing.display()))?;
        drop(file);
        std::fs::create_dir_all(dir).map_err(|err| format!("mkdir {}: {err}", dir.display()))?;
        // The inode tables and the journal written now, not by a kernel thread during the pull.
        let made = run(Command::new("mkfs.ext4")
            .args(["-q", "-F", "-E", "lazy_itable_init=0,lazy_journal_init=0"])
            .arg(&backing));
        if let Err(err) = made {
            let _ = std::fs::remove_file(&backing);
            return Err(err);
        }
        if let Err(err) = run(Command::new("mount")
            .args(["-o", "loop"])
            .arg(&backing)
            .arg(dir))
        {
            let _ = std::fs::remove_file(&backing);
            return Err(err);
        }
        Ok(FreshFs {
            backing,
            mount: dir.to_owned(),
        })
    }
}

impl Drop for FreshFs {
    fn drop(&mut self) {
        let _ = run(Command::new("umount").arg(&self.mount));
        let _ = std::fs::remove_dir(&self.mount);
        let _ = std::fs::remove_file(&self.backing);
    }
}

/// Run `command`; its stderr as the error when it fails.
fn run(command: &mut Command) -> Result<(), String> {
    let shown = format!("{command:?}");
    let out = command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .map_err(|err| format!("{shown}: {err}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{shown}: {} {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fresh_file_system_is_mounted_empty_and_gone_after() {
        if !nix::unistd::geteuid().is_root() {
            panic!(
                "this test mounts a loop device: run it as root (the README's test command does)"
            );
        }
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("fs");
        let fs = FreshFs::mount(&dir, 64 << 20).unwrap();
        let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
        assert!(
            mounts.contains(&format!("{} ext4", dir.display())),
            "{mounts}"
        );
        std::fs::write(dir.join("x"), b"x").unwrap();
        drop(fs);
        let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
        assert!(!mounts.contains(&dir.display().to_string()), "{mounts}");
        assert!(!dir.exists() && !tmp.path().join("fs.ext4").exists());
    }
}
