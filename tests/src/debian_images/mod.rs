//! Real-world images for the end-to-end tests, made from Debian bookworm packages (there is no
//! Docker Hub here; the Debian mirror is reachable), pushed to the harness [`crate::Registry`] because
//! the bootstrap pulls from registries.
//!
//! - [`TOOLS`]: amd64, what `apt-get install ffmpeg imagemagick python3 python3-pil
//!   openjdk-17-jre-headless perl` gives. Debian's `libpulse.so.0` (ffmpeg's) carries `RUNPATH
//!   /usr/lib/x86_64-linux-gnu/pulseaudio`, ImageMagick loads its coders with `dlopen`, PIL is
//!   a C extension, the JVM finds `libjvm.so` through `$ORIGIN`.
//! - [`FFMPEG_ARM64`]: arm64 with `ffmpeg` only, run through `qemu-user-static` (see
//!   [`ensure_aarch64_binfmt`]).
//! - [`musl_root`]: Debian's musl (`musl-tools`): a program built with `musl-gcc` whose library
//!   sits in an absolute `RUNPATH` and loads a plugin with `dlopen`, so musl's loader does the
//!   work a glibc image's does.
//!
//! The Debian roots are made by `debootstrap --foreign --variant=minbase --include=...` (which
//! resolves the dependencies and downloads every package) and `dpkg-deb` unpacking each one:
//! about a minute per image, where a full debootstrap, which runs every maintainer script in a
//! chroot, took 2.5 min (amd64) and 5.8 min (arm64, through qemu). What the maintainer scripts
//! do that matters is done explicitly (`configure`): the alternatives links
//! (`/usr/bin/convert`, `/usr/bin/java`, `libblas.so.3`, `awk`), `/etc/passwd` and
//! `/etc/group`, and `/etc/ld.so.cache` from the image's own `ldconfig`. Documentation, manual
//! pages and translations are dropped, as slim images do (tools: 788 MiB, a 302 MiB gzip
//! layer; arm64 ffmpeg: 468 MiB, 181 MiB). Everything is cached under
//! [`IMAGE_CACHE`](crate::lambda_sim::IMAGE_CACHE) (built in a temporary directory and renamed
//! into place, the recipe version in the name), readable by the simulated Lambda's uid 993; each
//! step prints its progress and time on stderr.

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

mod arch;
mod cache;
mod command;
mod host;
mod layout;
mod musl;

pub use arch::DebArch;
use cache::{RECIPE, cached};
use command::{is_root, progress, run_ok};
pub use host::{ensure_aarch64_binfmt, run_in_root};
pub use layout::{ImageConfig, OciImage, write_layout};
pub use musl::{MUSL_ID, MUSL_PROGRAM, MUSL_RUNPATH, musl_layout, musl_root};

/// The Debian mirror debootstrap downloads from.
pub const MIRROR: &str = "http://deb.debian.org/debian";
/// The Debian release of the images.
pub const SUITE: &str = "bookworm";
/// A Debian root made of `packages` (with their dependencies) for `arch`.
#[derive(Clone, Copy, Debug)]
pub struct DebianImage {
    /// Name in the cache and the registry repository (`scar-tests/<name>`).
    pub name: &'static str,
    /// Architecture of the packages.
    pub arch: DebArch,
    /// Packages given to `debootstrap --include`.
    pub packages: &'static [&'static str],
}

/// amd64 bookworm with ffmpeg, ImageMagick, Python 3 with PIL, the Java 17 JRE and perl.
pub const TOOLS: DebianImage = DebianImage {
    name: "tools",
    arch: DebArch::Amd64,
    packages: &[
        "ffmpeg",
        "imagemagick",
        "python3",
        "python3-pil",
        "openjdk-17-jre-headless",
        "perl",
    ],
};

/// arm64 bookworm with ffmpeg.
pub const FFMPEG_ARM64: DebianImage = DebianImage {
    name: "ffmpeg-arm64",
    arch: DebArch::Arm64,
    packages: &["ffmpeg"],
};

impl DebianImage {
    /// The root filesystem, built with debootstrap on first use (minutes), then cached.
    pub fn root(&self) -> PathBuf {
        let name = format!("debian-{}-{}-{RECIPE}", self.name, self.arch.name());
        cached(&name, |tmp| self.build_root(tmp))
    }

    fn build_root(&self, dest: &Path) {
        assert!(
            is_root(),
            "building the Debian image {} needs root (debootstrap, dpkg-deb, chroot)",
            self.name
        );
        assert!(
            Path::new("/usr/sbin/debootstrap").is_file(),
            "debootstrap is missing: apt-get install debootstrap"
        );
        if self.arch == DebArch::Arm64
            && let Err(why) = ensure_aarch64_binfmt()
        {
            panic!("cannot build the arm64 image {}: {why}", self.name);
        }
        let started = Instant::now();
        eprintln!(
            "debian_images: building {} ({} {SUITE} + {}) from {MIRROR}; about a minute, once",
            self.name,
            self.arch.name(),
            self.packages.join(" ")
        );
        // Only debootstrap's first stage: it resolves the dependencies and downloads every
        // package. Unpacking them all with dpkg-deb is 2.5x (amd64) to 5x (arm64, where the
        // second stage runs every maintainer script under qemu) faster than a full debootstrap.
        let out = Command::new("debootstrap")
            .args(["--foreign", "--variant=minbase", "--arch", self.arch.name()])
            .arg(format!("--include={}", self.packages.join(",")))
            .arg(SUITE)
            .arg(dest)
            .arg(MIRROR)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|err| panic!("cannot run debootstrap: {err}"));
        if !out.status.success() {
            let log = std::fs::read_to_string(dest.join("debootstrap/debootstrap.log"))
                .unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(30).collect();
            panic!(
                "debootstrap of {} failed ({}): is {MIRROR} reachable?\n{}{}\n--- debootstrap.log (end) ---\n{}",
                self.name,
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr),
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
        progress(&format!("{}: packages downloaded", self.name), started);
        // `--keep-directory-symlink`: /bin, /lib, /sbin are merged-/usr links to keep.
        run_ok(
            Command::new("bash")
                .args([
                    "-o",
                    "pipefail",
                    "-ec",
                    r#"for deb in "$1"/var/cache/apt/archives/*.deb; do
                         dpkg-deb --fsys-tarfile "$deb" | tar -x --keep-directory-symlink -C "$1"
                       done"#,
                    "unpack",
                ])
                .arg(dest),
        );
        progress(&format!("{}: packages unpacked", self.name), started);
        configure(dest, self.arch);
        slim(dest);
        progress(
            &format!("{}: root ready, {} MiB", self.name, du_mib(dest)),
            started,
        );
    }

    /// The root packed as an OCI image layout (one gzip layer), cached next to the root.
    pub fn layout(&self) -> OciImage {
        let root = self.root();
        let name = format!("debian-{}-{}-{RECIPE}-oci", self.name, self.arch.name());
        let dir = cached(&name, |tmp| {
            write_layout(&root, tmp, self.arch, &ImageConfig::shell())
        });
        OciImage::open(&dir)
    }
}

/// What the maintainer scripts that matter here would have done: the alternatives links the
/// tests' programs are reached by (`update-alternatives --install` in the postinsts of mawk,
/// imagemagick-6.q16, libblas3, liblapack3, openjdk-17-jre-headless, ...), `/etc/passwd` and
/// `/etc/group` from base-passwd, and `/etc/ld.so.cache` from the image's own `ldconfig`.
fn configure(root: &Path, arch: DebArch) {
    let triplet = arch.triplet();
    let jvm = format!("/usr/lib/jvm/java-17-openjdk-{}", arch.name());
    // (link, alternative name, target)
    let mut links: Vec<(String, String, String)> = vec![
        ("/usr/bin/awk".into(), "awk".into(), "/usr/bin/mawk".into()),
        (
            "/usr/bin/nawk".into(),
            "nawk".into(),
            "/usr/bin/mawk".into(),
        ),
        (
            "/usr/bin/which".into(),
            "which".into(),
            "/usr/bin/which.debianutils".into(),
        ),
        ("/usr/bin/pager".into(), "pager".into(), "/bin/more".into()),
        (
            "/usr/sbin/rmt".into(),
            "rmt".into(),
            "/usr/sbin/rmt-tar".into(),
        ),
        (
            "/usr/bin/jexec".into(),
            "jexec".into(),
            format!("{jvm}/lib/jexec"),
        ),
    ];
    for lib in ["blas", "lapack"] {
        links.push((
            format!("/usr/lib/{triplet}/lib{lib}.so.3"),
            format!("lib{lib}.so.3-{triplet}"),
            format!("/usr/lib/{triplet}/{lib}/lib{lib}.so.3"),
        ));
    }
    for prog in [
        "animate",
        "compare",
        "composite",
        "conjure",
        "convert",
        "display",
        "identify",
        "import",
        "mogrify",
        "montage",
        "stream",
    ] {
        for name in [prog.to_owned(), format!("{prog}-im6")] {
            links.push((
                format!("/usr/bin/{name}"),
                name.clone(),
                format!("/usr/bin/{prog}-im6.q16"),
            ));
        }
    }
    for tool in ["java", "jpackage", "keytool", "rmiregistry"] {
        links.push((
            format!("/usr/bin/{tool}"),
            tool.into(),
            format!("{jvm}/bin/{tool}"),
        ));
    }
    let at = |path: &str| root.join(path.trim_start_matches('/'));
    std::fs::create_dir_all(at("/etc/alternatives")).expect("create /etc/alternatives");
    for (link, name, target) in links {
        // The target resolves inside the root (merged /usr: /bin/more is /usr/bin/more).
        let resolved = at(&target.replacen(
            "/bin/",
            "/usr/bin/",
            usize::from(target.starts_with("/bin/")),
        ));
        if !resolved.exists() || at(&link).symlink_metadata().is_ok() {
            continue;
        }
        let alternative = format!("/etc/alternatives/{name}");
        symlink(&target, at(&alternative))
            .unwrap_or_else(|err| panic!("cannot link {alternative}: {err}"));
        symlink(&alternative, at(&link)).unwrap_or_else(|err| panic!("cannot link {link}: {err}"));
    }
    for file in ["passwd", "group"] {
        let master = at(&format!("/usr/share/base-passwd/{file}.master"));
        if master.is_file() && !at(&format!("/etc/{file}")).exists() {
            std::fs::copy(&master, at(&format!("/etc/{file}")))
                .unwrap_or_else(|err| panic!("cannot copy {}: {err}", master.display()));
        }
    }
    // The image's own (static) ldconfig, through qemu for arm64: the cache a real image has.
    let out = host::configure_in_root(root, &["/sbin/ldconfig"]);
    assert!(
        out.status.success(),
        "ldconfig in {} failed: {}",
        root.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Drop what slim images drop (documentation, manual pages, translations, apt's caches) and
/// the device nodes (image extraction skips them, and an unprivileged copy cannot make them).
fn slim(root: &Path) {
    for dir in [
        "usr/share/doc",
        "usr/share/man",
        "usr/share/info",
        "usr/share/locale",
        "var/cache/apt",
        "var/lib/apt/lists",
        "debootstrap",
    ] {
        let path = root.join(dir);
        if path.exists() {
            run_ok(Command::new("rm").arg("-rf").arg(&path));
        }
    }
    for dir in ["dev", "proc", "sys", "var/cache/apt/archives/partial"] {
        let path = root.join(dir);
        // debootstrap may leave /proc as a symlink to the host's; an image has a directory.
        if path
            .symlink_metadata()
            .is_ok_and(|m| m.file_type().is_symlink())
        {
            std::fs::remove_file(&path)
                .unwrap_or_else(|err| panic!("cannot remove {}: {err}", path.display()));
        }
        if path.is_dir() {
            run_ok(
                Command::new("find")
                    .arg(&path)
                    .args(["-mindepth", "1", "-delete"]),
            );
        } else {
            std::fs::create_dir_all(&path)
                .unwrap_or_else(|err| panic!("cannot create {}: {err}", path.display()));
        }
    }
}

/// Disk use of a tree in MiB (`du -sm`).
pub fn du_mib(path: &Path) -> u64 {
    let out = run_ok(Command::new("du").arg("-sm").arg(path));
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}
