//! The images the bench pulls and runs, built on this machine from Debian packages and cached
//! under the bench's cache directory (by default `/var/tmp/scar-bench`).
//!
//! - `small`: the static busybox of Debian's `busybox-static` with its applet links (~1 MB gzip).
//! - `medium`: `debootstrap --variant=minbase bookworm` without apt's package cache and lists
//!   (~45 MB gzip, a dynamic Debian userland: what most SCAR images are built on).
//! - `large`: the same base layer plus gcc, g++, python3, perl and Go 1.19 as two more layers
//!   (~290 MB gzip, ~940 MB of files).
//! - `ffmpeg`: the medium base layer plus Debian's `ffmpeg` (what `apt-get install ffmpeg` gives)
//!   as a second layer: the SCAR paper's grayify case (full runs only: a ~100 MB download).
//! - `dyn` (quick mode only): the host's own `/bin/true`, `sh`, `find` and friends with their
//!   loader and libraries, a few MB, so the quick run needs no download.

use std::fs;
use std::io;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::Command;

use super::oci::{LayerSpec, Layout, OciError, write_layout};

/// Bumped whenever what goes into a layout changes, so stale cached layouts are not reused.
const LAYOUT_VERSION: u32 = 1;

/// Debian packages added to the minbase tree for the large image.
const LARGE_PACKAGES: &str = "gcc,g++,python3,perl,golang-1.19-go";

/// Debian packages added to the minbase tree for the paper's grayify image.
const FFMPEG_PACKAGES: &str = "ffmpeg";

/// Why an image could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// A needed tool is missing.
    #[error("{tool} not found: install the Debian package {package}")]
    Missing {
        /// The program.
        tool: &'static str,
        /// The package that has it.
        package: &'static str,
    },
    /// A builder command failed.
    #[error("{command} failed ({status}); its log is {log}")]
    Command {
        /// What ran.
        command: String,
        /// Its exit status.
        status: String,
        /// Where its output went.
        log: PathBuf,
    },
    /// A filesystem operation failed.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The path.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// Writing the OCI layout failed.
    #[error(transparent)]
    Oci(#[from] OciError),
}

fn io_err(what: &'static str, path: &Path) -> impl FnOnce(io::Error) -> ImageError + use<> {
    let path = path.to_path_buf();
    move |source| ImageError::Io { what, path, source }
}

/// An image ready to be pushed, with a flattened copy of its tree for the peers that take a
/// directory (bwrap, unshare + chroot).
#[derive(Clone, Debug)]
pub struct BenchImage {
    /// Short name: the repository is `bench/<name>`.
    pub name: &'static str,
    /// The OCI layout and its figures.
    pub layout: Layout,
    /// The image's files as one directory tree.
    pub root: PathBuf,
}

/// Build (or reuse from `cache`) the images of a run that `wanted` accepts (by name; the base
/// layer of the larger ones is always built). Quick mode builds only images that need nothing
/// downloaded.
pub fn prepare(
    cache: &Path,
    quick: bool,
    mirror: &str,
    wanted: impl Fn(&str) -> bool,
) -> Result<Vec<BenchImage>, ImageError> {
    let roots = cache.join("roots");
    let layouts = cache.join("layouts");
    fs::create_dir_all(&roots).map_err(io_err("create", &roots))?;
    fs::create_dir_all(&layouts).map_err(io_err("create", &layouts))?;
    let layout_dir = |name: &str| layouts.join(format!("{name}-v{LAYOUT_VERSION}"));

    let mut images = Vec::new();
    let small = cached_tree(&roots.join("busybox"), build_busybox)?;
    images.push(packed("small", &layout_dir("small"), &small, |_| {
        vec![LayerSpec::whole(&small)]
    })?);
    if quick {
        let dynamic = cached_tree(&roots.join("dyn"), build_host_programs)?;
        images.push(packed("dyn", &layout_dir("dyn"), &dynamic, |_| {
            vec![LayerSpec::whole(&dynamic)]
        })?);
        return Ok(images);
    }
    let minbase = cached_tree(&roots.join("minbase"), |dest| {
        debootstrap(dest, &[], mirror, &roots.join("debootstrap-minbase.log"))
    })?;
    images.push(packed("medium", &layout_dir("medium"), &minbase, |_| {
        vec![LayerSpec::whole(&minbase)]
    })?);
    if wanted("large") {
        images.push(large_image(&roots, &layout_dir("large"), &minbase, mirror)?);
    }
    if wanted("ffmpeg") {
        images.push(ffmpeg_image(
            &roots,
            &layout_dir("ffmpeg"),
            &minbase,
            mirror,
        )?);
    }
    Ok(images)
}

/// `large`: the minbase layer, then the compilers and interpreters, then Go as a third layer.
fn large_image(
    roots: &Path,
    layout: &Path,
    minbase: &Path,
    mirror: &str,
) -> Result<BenchImage, ImageError> {
    let large = cached_tree(&roots.join("large"), |dest| {
        debootstrap(
            dest,
            &[LARGE_PACKAGES],
            mirror,
            &roots.join("debootstrap-large.log"),
        )
    })?;
    let go = vec![
        "usr/lib/go-1.19".to_string(),
        "usr/share/go-1.19".to_string(),
    ];
    packed("large", layout, &large, |_| {
        vec![
            LayerSpec::whole(minbase),
            LayerSpec {
                upper: large.clone(),
                lower: Some(minbase.to_path_buf()),
                include: Vec::new(),
                exclude: go.clone(),
            },
            LayerSpec {
                upper: large.clone(),
                lower: Some(minbase.to_path_buf()),
                include: go.clone(),
                exclude: Vec::new(),
            },
        ]
    })
}

/// `ffmpeg`: the minbase layer, then Debian's ffmpeg with what it pulls in.
fn ffmpeg_image(
    roots: &Path,
    layout: &Path,
    minbase: &Path,
    mirror: &str,
) -> Result<BenchImage, ImageError> {
    let ffmpeg = cached_tree(&roots.join("ffmpeg"), |dest| {
        debootstrap(
            dest,
            &[FFMPEG_PACKAGES],
            mirror,
            &roots.join("debootstrap-ffmpeg.log"),
        )
    })?;
    packed("ffmpeg", layout, &ffmpeg, |_| {
        vec![
            LayerSpec::whole(minbase),
            LayerSpec {
                upper: ffmpeg.clone(),
                lower: Some(minbase.to_path_buf()),
                include: Vec::new(),
                exclude: Vec::new(),
            },
        ]
    })
}

fn packed(
    name: &'static str,
    dir: &Path,
    root: &Path,
    layers: impl FnOnce(&Path) -> Vec<LayerSpec>,
) -> Result<BenchImage, ImageError> {
    let layout = match Layout::load(dir) {
        Ok(layout) => layout,
        Err(_) => {
            eprintln!("scar bench: packing image {name} into {}", dir.display());
            write_layout(dir, "latest", &layers(root))?
        }
    };
    Ok(BenchImage {
        name,
        layout,
        root: root.to_path_buf(),
    })
}

/// Return `dest`, building it first with `build` into a staging directory renamed into place.
fn cached_tree(
    dest: &Path,
    build: impl FnOnce(&Path) -> Result<(), ImageError>,
) -> Result<PathBuf, ImageError> {
    if dest.is_dir() {
        return Ok(dest.to_path_buf());
    }
    let staging = dest.with_extension("partial");
    if staging.exists() {
        fs::remove_dir_all(&staging).map_err(io_err("remove", &staging))?;
    }
    build(&staging)?;
    fs::rename(&staging, dest).map_err(io_err("rename into place", dest))?;
    Ok(dest.to_path_buf())
}

/// A program's absolute path from `PATH`, if it is installed.
pub fn which(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
        .map(|dir| dir.join(program))
        .find(|candidate| {
            fs::metadata(candidate)
                .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
                .unwrap_or(false)
        })
}

fn run_logged(command: &mut Command, log: &Path) -> Result<(), ImageError> {
    let file = fs::File::create(log).map_err(io_err("create", log))?;
    let err_file = file.try_clone().map_err(io_err("open", log))?;
    let shown = format!("{command:?}");
    let status = command
        .stdout(file)
        .stderr(err_file)
        .status()
        .map_err(io_err("run", Path::new(&shown)))?;
    if status.success() {
        Ok(())
    } else {
        Err(ImageError::Command {
            command: shown,
            status: status.to_string(),
            log: log.to_path_buf(),
        })
    }
}

fn debootstrap(dest: &Path, include: &[&str], mirror: &str, log: &Path) -> Result<(), ImageError> {
    let tool = which("debootstrap").ok_or(ImageError::Missing {
        tool: "debootstrap",
        package: "debootstrap",
    })?;
    eprintln!(
        "scar bench: debootstrap bookworm into {} (log {})",
        dest.display(),
        log.display()
    );
    let mut command = Command::new(tool);
    command.arg("--variant=minbase");
    for packages in include {
        command.arg(format!("--include={packages}"));
    }
    command.arg("bookworm").arg(dest).arg(mirror);
    run_logged(&mut command, log)?;
    // What `docker build` images of Debian leave out too: the package cache and index lists.
    for dir in ["var/cache/apt/archives", "var/lib/apt/lists"] {
        let dir = dest.join(dir);
        let entries = fs::read_dir(&dir).map_err(io_err("list", &dir))?;
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_file() {
                fs::remove_file(&path).map_err(io_err("remove", &path))?;
            }
        }
    }
    Ok(())
}

fn base_dirs(root: &Path) -> Result<(), ImageError> {
    for dir in ["etc", "tmp", "proc", "dev", "sys", "root"] {
        let path = root.join(dir);
        fs::create_dir_all(&path).map_err(io_err("create", &path))?;
    }
    let tmp = root.join("tmp");
    fs::set_permissions(&tmp, fs::Permissions::from_mode(0o1777)).map_err(io_err("chmod", &tmp))?;
    let passwd = root.join("etc/passwd");
    fs::write(&passwd, "root:x:0:0:root:/root:/bin/sh\n").map_err(io_err("write", &passwd))?;
    let group = root.join("etc/group");
    fs::write(&group, "root:x:0:\n").map_err(io_err("write", &group))?;
    Ok(())
}

fn build_busybox(root: &Path) -> Result<(), ImageError> {
    let busybox = which("busybox").ok_or(ImageError::Missing {
        tool: "busybox",
        package: "busybox-static",
    })?;
    base_dirs(root)?;
    let bin = root.join("bin");
    fs::create_dir_all(&bin).map_err(io_err("create", &bin))?;
    fs::copy(&busybox, bin.join("busybox")).map_err(io_err("copy", &busybox))?;
    let listing = Command::new(&busybox)
        .arg("--list-full")
        .output()
        .map_err(io_err("run", &busybox))?;
    for applet in String::from_utf8_lossy(&listing.stdout).lines() {
        let link = root.join(applet.trim_start_matches('/'));
        if link.file_name().is_none() || link.exists() {
            continue;
        }
        if let Some(parent) = link.parent() {
            fs::create_dir_all(parent).map_err(io_err("create", parent))?;
        }
        symlink("/bin/busybox", &link).map_err(io_err("symlink", &link))?;
    }
    Ok(())
}

/// Programs of the host copied into the quick run's dynamic image.
const HOST_PROGRAMS: [&str; 6] = ["true", "sh", "find", "wc", "cat", "ls"];

fn build_host_programs(root: &Path) -> Result<(), ImageError> {
    base_dirs(root)?;
    let bin = root.join("bin");
    fs::create_dir_all(&bin).map_err(io_err("create", &bin))?;
    for program in HOST_PROGRAMS {
        let Some(path) = which(program) else {
            continue;
        };
        fs::copy(&path, bin.join(program)).map_err(io_err("copy", &path))?;
        let ldd = Command::new("ldd")
            .arg(&path)
            .output()
            .map_err(io_err("run ldd on", &path))?;
        for lib in library_paths(&String::from_utf8_lossy(&ldd.stdout)) {
            let dest = root.join(lib.strip_prefix("/").unwrap_or(&lib));
            if dest.exists() {
                continue;
            }
            if let Some(parent) = dest.parent() {
                fs::create_dir_all(parent).map_err(io_err("create", parent))?;
            }
            // fs::copy follows the host's symlink chain (libc.so.6 -> libc-2.36.so) so the
            // image gets the file under the name the loader asks for.
            fs::copy(&lib, &dest).map_err(io_err("copy", &lib))?;
        }
    }
    Ok(())
}

/// Absolute library paths named in `ldd` output (`name => /path (0x..)` and `/path (0x..)`).
fn library_paths(ldd: &str) -> Vec<PathBuf> {
    ldd.lines()
        .filter_map(|line| {
            let line = line.trim();
            let candidate = match line.split_once("=>") {
                Some((_, right)) => right.trim(),
                None => line,
            };
            let path = candidate.split_whitespace().next()?;
            path.starts_with('/').then(|| PathBuf::from(path))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ldd_output_gives_the_libraries_and_the_loader() {
        let out = "\tlinux-vdso.so.1 (0x00007ffd)\n\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x7f)\n\t/lib64/ld-linux-x86-64.so.2 (0x7f)\n";
        assert_eq!(
            library_paths(out),
            [
                PathBuf::from("/lib/x86_64-linux-gnu/libc.so.6"),
                PathBuf::from("/lib64/ld-linux-x86-64.so.2")
            ]
        );
    }
}
