//! Real-world images for the end-to-end tests, made from Debian bookworm packages (there is no
//! Docker Hub here; the Debian mirror is reachable), pushed to the harness [`Registry`] because
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
//! The Debian roots are made by `debootstrap --variant=minbase --include=...` (the maintainer
//! scripts run in a chroot, through qemu for arm64), so the alternatives links
//! (`/usr/bin/convert`, `/usr/bin/java`, `libblas.so.3`) and `/etc/ld.so.cache` are what a real
//! image has; then documentation, manual pages and translations are dropped, as slim images do.
//! Everything is cached under [`IMAGE_CACHE`] (built in a temporary directory and renamed into
//! place, the recipe version in the name), readable by the simulated Lambda's uid 993. A build
//! takes minutes once; each step prints its progress and time on stderr.

use std::fs::File;
use std::io::{self, Write};
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Instant;

use sha2::{Digest as _, Sha256};

use crate::Registry;
use crate::lambda_sim::IMAGE_CACHE;
use crate::oci::{Blob, Pusher};

/// Bump when a recipe below changes: the cached roots and layouts carry it in their names.
const RECIPE: u32 = 1;
/// The Debian mirror debootstrap downloads from.
pub const MIRROR: &str = "http://deb.debian.org/debian";
/// The Debian release of the images.
pub const SUITE: &str = "bookworm";
/// `PATH` in the images' configs: Debian's default for root.
const IMAGE_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// A Debian architecture.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DebArch {
    /// x86_64.
    Amd64,
    /// aarch64, run here through `qemu-user-static`.
    Arm64,
}

impl DebArch {
    /// Debian's (and OCI's) name: `amd64`, `arm64`.
    pub fn name(self) -> &'static str {
        match self {
            DebArch::Amd64 => "amd64",
            DebArch::Arm64 => "arm64",
        }
    }

    /// The multiarch triplet of library directories: `x86_64-linux-gnu`, `aarch64-linux-gnu`.
    pub fn triplet(self) -> &'static str {
        match self {
            DebArch::Amd64 => "x86_64-linux-gnu",
            DebArch::Arm64 => "aarch64-linux-gnu",
        }
    }
}

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

/// An exclusive `flock` on `IMAGE_CACHE/.<name>.lock`: the tests of one process, the test
/// binaries of `cargo test` and other users' test runs share the cache, and an image must be
/// built once (each holder opens the file itself, so threads exclude each other too).
struct CacheLock {
    _file: File,
}

impl CacheLock {
    fn acquire(name: &str) -> CacheLock {
        std::fs::create_dir_all(IMAGE_CACHE)
            .unwrap_or_else(|err| panic!("cannot create {IMAGE_CACHE}: {err}"));
        let path = Path::new(IMAGE_CACHE).join(format!(".{name}.lock"));
        let file = File::create(&path)
            .unwrap_or_else(|err| panic!("cannot create {}: {err}", path.display()));
        // SAFETY: flock on a descriptor this File owns; it is released when the File closes.
        let rc = unsafe {
            use std::os::fd::AsRawFd;
            libc::flock(file.as_raw_fd(), libc::LOCK_EX)
        };
        assert_eq!(
            rc,
            0,
            "flock {}: {}",
            path.display(),
            io::Error::last_os_error()
        );
        CacheLock { _file: file }
    }
}

/// Print a progress line: image builds take minutes and a silent test looks hung.
fn progress(what: &str, started: Instant) {
    eprintln!(
        "debian_images: {what} ({:.1}s)",
        started.elapsed().as_secs_f64()
    );
}

/// Build `name` in the cache with `recipe` (given a fresh temporary directory) unless it is
/// there; the directory is renamed into place only once complete.
fn cached(name: &str, recipe: impl FnOnce(&Path)) -> PathBuf {
    let dir = Path::new(IMAGE_CACHE).join(name);
    if dir.is_dir() {
        return dir;
    }
    let _lock = CacheLock::acquire(name);
    if dir.is_dir() {
        return dir;
    }
    // Under the lock, any build directory of this name is a dead build's: remove them all.
    let prefix = format!("{name}.tmp-");
    for entry in std::fs::read_dir(IMAGE_CACHE)
        .into_iter()
        .flatten()
        .flatten()
    {
        if entry.file_name().to_string_lossy().starts_with(&prefix) {
            run_ok(Command::new("rm").arg("-rf").arg(entry.path()));
        }
    }
    let tmp = Path::new(IMAGE_CACHE).join(format!("{prefix}{}", std::process::id()));
    std::fs::create_dir_all(&tmp)
        .unwrap_or_else(|err| panic!("cannot create {}: {err}", tmp.display()));
    recipe(&tmp);
    // The simulated Lambda's uid 993 reads the layouts (and tests read roots as that uid).
    run_ok(Command::new("chmod").args(["-R", "a+rX"]).arg(&tmp));
    std::fs::rename(&tmp, &dir).unwrap_or_else(|err| {
        panic!(
            "cannot rename {} to {}: {err}",
            tmp.display(),
            dir.display()
        )
    });
    dir
}

/// Run `cmd`, panicking with its output unless it succeeds.
fn run_ok(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|err| panic!("cannot run {cmd:?}: {err}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// True when the tests run as root (debootstrap, chroot and binfmt_misc need it).
fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

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
        if self.arch == DebArch::Arm64 && std::env::consts::ARCH != "aarch64" {
            if let Err(why) = ensure_aarch64_binfmt() {
                panic!("cannot build the arm64 image {}: {why}", self.name);
            }
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
            format!("/usr/bin/jexec"),
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
    let out = run_in_root(root, &["/sbin/ldconfig"], b"");
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

/// The runtime parameters of an image's config.
#[derive(Clone, Debug)]
pub struct ImageConfig {
    /// `Env`.
    pub env: Vec<String>,
    /// `Entrypoint`.
    pub entrypoint: Vec<String>,
    /// `Cmd`.
    pub cmd: Vec<String>,
}

impl ImageConfig {
    /// Debian's `PATH` and `Cmd ["/bin/sh"]`, as `debian:bookworm` has.
    pub fn shell() -> Self {
        Self {
            env: vec![IMAGE_PATH.to_owned()],
            entrypoint: Vec::new(),
            cmd: vec!["/bin/sh".to_owned()],
        }
    }
}

/// Write `root` as a one-layer OCI image layout into `dest`: the layer is GNU tar's archive of
/// the tree (hard links, symlinks and modes as they are, owners numeric), gzip at the fastest
/// level (the pull's decompression is what the tests wait for). tar, gzip and sha256sum do
/// the byte work: the tests' debug build would take minutes over a gigabyte.
pub fn write_layout(root: &Path, dest: &Path, arch: DebArch, config: &ImageConfig) {
    let started = Instant::now();
    let blobs = dest.join("blobs/sha256");
    std::fs::create_dir_all(&blobs)
        .unwrap_or_else(|err| panic!("cannot create {}: {err}", blobs.display()));
    // Top-level names without a `./` prefix, sorted, so the layer is stable.
    let mut top: Vec<String> = std::fs::read_dir(root)
        .unwrap_or_else(|err| panic!("cannot read {}: {err}", root.display()))
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    top.sort();
    let temp = blobs.join("layer.tmp");
    let out = run_ok(
        Command::new("bash")
            .args([
                "-o",
                "pipefail",
                "-ec",
                r#"layer=$1 root=$2; shift 2
                   tar -C "$root" --numeric-owner --sort=name --format=gnu -cf - "$@" | gzip -1 -n > "$layer"
                   gzip -dc "$layer" | sha256sum | cut -d' ' -f1
                   sha256sum "$layer" | cut -d' ' -f1"#,
                "write_layout",
            ])
            .arg(&temp)
            .arg(root)
            .args(&top),
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let mut sums = text.lines();
    let (Some(diff_hex), Some(layer_hex)) = (sums.next(), sums.next()) else {
        panic!("write_layout: no digests from sha256sum: {text}");
    };
    let diff_id = format!("sha256:{diff_hex}");
    let layer_hex = layer_hex.to_owned();
    let layer_size = std::fs::metadata(&temp)
        .unwrap_or_else(|err| panic!("{}: {err}", temp.display()))
        .len();
    std::fs::rename(&temp, blobs.join(&layer_hex))
        .unwrap_or_else(|err| panic!("cannot name the layer blob: {err}"));

    let mut image_config = serde_json::json!({"Env": config.env});
    if !config.entrypoint.is_empty() {
        image_config["Entrypoint"] = serde_json::json!(config.entrypoint);
    }
    if !config.cmd.is_empty() {
        image_config["Cmd"] = serde_json::json!(config.cmd);
    }
    let config_json = serde_json::json!({
        "architecture": arch.name(),
        "os": "linux",
        "config": image_config,
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
    });
    let config_bytes = serde_json::to_vec(&config_json).expect("config is JSON");
    let config_hex = write_blob(&blobs, &config_bytes);
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": format!("sha256:{config_hex}"), "size": config_bytes.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": format!("sha256:{layer_hex}"), "size": layer_size}],
    });
    let manifest_bytes = serde_json::to_vec(&manifest).expect("manifest is JSON");
    let manifest_hex = write_blob(&blobs, &manifest_bytes);
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": format!("sha256:{manifest_hex}"),
            "size": manifest_bytes.len(),
            "platform": {"architecture": arch.name(), "os": "linux"},
            "annotations": {"org.opencontainers.image.ref.name": "latest"},
        }],
    });
    std::fs::write(
        dest.join("index.json"),
        serde_json::to_vec(&index).expect("index is JSON"),
    )
    .unwrap_or_else(|err| panic!("cannot write index.json: {err}"));
    std::fs::write(
        dest.join("oci-layout"),
        br#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .unwrap_or_else(|err| panic!("cannot write oci-layout: {err}"));
    progress(
        &format!(
            "layout of {}: layer {} MiB gzip",
            root.display(),
            layer_size >> 20
        ),
        started,
    );
}

fn write_blob(blobs: &Path, bytes: &[u8]) -> String {
    let hex = hex::encode(Sha256::digest(bytes));
    let path = blobs.join(&hex);
    std::fs::write(&path, bytes)
        .unwrap_or_else(|err| panic!("cannot write {}: {err}", path.display()));
    hex
}

/// An OCI image layout written by [`write_layout`]: its manifest and the blobs it names.
#[derive(Clone, Debug)]
pub struct OciImage {
    /// The layout directory (`oci:<dir>:latest` names it for `SCAR_IMAGE` too).
    pub dir: PathBuf,
    manifest: Blob,
    blobs: Vec<String>,
}

impl OciImage {
    /// Read the layout at `dir` (one manifest, tagged `latest`).
    pub fn open(dir: &Path) -> OciImage {
        let read_json = |path: PathBuf| -> serde_json::Value {
            let bytes = std::fs::read(&path)
                .unwrap_or_else(|err| panic!("cannot read {}: {err}", path.display()));
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|err| panic!("{} is not JSON: {err}", path.display()))
        };
        let index = read_json(dir.join("index.json"));
        let digest = index["manifests"][0]["digest"]
            .as_str()
            .unwrap_or_else(|| panic!("{}/index.json names no manifest", dir.display()))
            .to_owned();
        let blob_path = |digest: &str| {
            dir.join("blobs/sha256")
                .join(digest.trim_start_matches("sha256:"))
        };
        let manifest_bytes = std::fs::read(blob_path(&digest))
            .unwrap_or_else(|err| panic!("cannot read the manifest {digest}: {err}"));
        let manifest: serde_json::Value = serde_json::from_slice(&manifest_bytes)
            .unwrap_or_else(|err| panic!("the manifest {digest} is not JSON: {err}"));
        let mut blobs = vec![
            manifest["config"]["digest"]
                .as_str()
                .unwrap_or_else(|| panic!("the manifest {digest} has no config"))
                .to_owned(),
        ];
        for layer in manifest["layers"].as_array().into_iter().flatten() {
            blobs.push(
                layer["digest"]
                    .as_str()
                    .unwrap_or_else(|| panic!("a layer of {digest} has no digest"))
                    .to_owned(),
            );
        }
        OciImage {
            dir: dir.to_path_buf(),
            manifest: Blob {
                media_type: "application/vnd.oci.image.manifest.v1+json".to_owned(),
                bytes: manifest_bytes,
            },
            blobs,
        }
    }

    /// Push the image as `repo:tag` to `registry` and return the reference for `SCAR_IMAGE`
    /// (`127.0.0.1:PORT/repo:tag`; the registry is plain HTTP: set `SCAR_INSECURE_REGISTRIES`).
    pub fn push(&self, registry: &Registry, repo: &str, tag: &str) -> String {
        let started = Instant::now();
        let pusher = Pusher::new(&registry.url(), None);
        for digest in &self.blobs {
            let path = self
                .dir
                .join("blobs/sha256")
                .join(digest.trim_start_matches("sha256:"));
            pusher.blob_file(repo, &path, digest);
        }
        pusher.manifest(repo, tag, &self.manifest);
        progress(&format!("pushed {repo}:{tag}"), started);
        format!("{}/{repo}:{tag}", registry.host())
    }

    /// Size of the layer blobs in MiB.
    pub fn layers_mib(&self) -> u64 {
        self.blobs
            .iter()
            .skip(1)
            .filter_map(|d| {
                std::fs::metadata(
                    self.dir
                        .join("blobs/sha256")
                        .join(d.trim_start_matches("sha256:")),
                )
                .ok()
            })
            .map(|m| m.len() >> 20)
            .sum()
    }
}

/// The musl program of [`musl_root`]: reads `$SCAR_INPUT_FILE`, passes it through the plugin
/// its library loads, writes `upper.txt` and `report.txt` into `$SCAR_OUTPUT_DIR`.
const MUSL_MAIN_C: &str = r#"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
int scar_transform(char *buf, size_t len, const char **name);
int main(void) {
    const char *in = getenv("SCAR_INPUT_FILE"), *out = getenv("SCAR_OUTPUT_DIR");
    if (!in || !out) { fprintf(stderr, "SCAR_INPUT_FILE and SCAR_OUTPUT_DIR must be set\n"); return 2; }
    FILE *f = fopen(in, "rb");
    if (!f) { perror(in); return 1; }
    static char buf[1 << 20];
    size_t n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    const char *name = "";
    if (scar_transform(buf, n, &name) != 0) return 1;
    char path[4096];
    snprintf(path, sizeof path, "%s/upper.txt", out);
    FILE *o = fopen(path, "wb");
    if (!o) { perror(path); return 1; }
    fwrite(buf, 1, n, o);
    fclose(o);
    snprintf(path, sizeof path, "%s/report.txt", out);
    o = fopen(path, "w");
    if (!o) { perror(path); return 1; }
    fprintf(o, "plugin=%s\n", name);
    f = fopen("/etc/os-release", "r");
    char line[256];
    while (f && fgets(line, sizeof line, f)) if (strncmp(line, "ID=", 3) == 0) fprintf(o, "os-%s", line);
    if (f) fclose(f);
    fclose(o);
    printf("musl-upper: %zu bytes through %s\n", n, name);
    return 0;
}
"#;

/// The library of the musl program, found through the program's absolute `RUNPATH`; it loads
/// the plugin by absolute path with `dlopen`, as programs with plugin directories do.
const MUSL_LIB_C: &str = r#"
#include <dlfcn.h>
#include <stdio.h>
#include <stddef.h>
int scar_transform(char *buf, size_t len, const char **name) {
    void *h = dlopen("/usr/lib/scar-musl/plugins/libupper.so", RTLD_NOW);
    if (!h) { fprintf(stderr, "dlopen: %s\n", dlerror()); return -1; }
    void (*apply)(char *, size_t) = (void (*)(char *, size_t))dlsym(h, "scar_plugin_apply");
    const char *(*nm)(void) = (const char *(*)(void))dlsym(h, "scar_plugin_name");
    if (!apply || !nm) { fprintf(stderr, "dlsym: %s\n", dlerror()); return -1; }
    apply(buf, len);
    *name = nm();
    return 0;
}
"#;

/// The plugin: upper-cases the bytes.
const MUSL_PLUGIN_C: &str = r#"
#include <ctype.h>
#include <stddef.h>
const char *scar_plugin_name(void) { return "upper-plugin"; }
void scar_plugin_apply(char *buf, size_t len) {
    for (size_t i = 0; i < len; i++) buf[i] = (char)toupper((unsigned char)buf[i]);
}
"#;

/// Where the musl program's library lives: named by its absolute `RUNPATH`.
pub const MUSL_RUNPATH: &str = "/usr/local/lib/scar-musl";
/// The musl program, the image's `Entrypoint` (the image has no shell).
pub const MUSL_PROGRAM: &str = "/usr/bin/musl-upper";
/// `ID` in the musl image's `/etc/os-release`.
pub const MUSL_ID: &str = "scar-musl-real";

/// A musl root from Debian's `musl-tools`: musl's loader (also its libc) and [`MUSL_PROGRAM`]
/// with its library in [`MUSL_RUNPATH`] and a plugin loaded with `dlopen`. No shell: the
/// bootstrap runs the image's `Entrypoint`.
pub fn musl_root() -> PathBuf {
    cached(&format!("musl-real-{RECIPE}"), |root| {
        let started = Instant::now();
        let loader = Path::new("/lib/ld-musl-x86_64.so.1");
        assert!(
            loader.exists() && Path::new("/usr/bin/musl-gcc").is_file(),
            "musl-gcc or {} is missing: apt-get install musl-tools",
            loader.display()
        );
        let src = tempfile::tempdir().expect("tempdir");
        for (name, text) in [
            ("main.c", MUSL_MAIN_C),
            ("lib.c", MUSL_LIB_C),
            ("upper.c", MUSL_PLUGIN_C),
        ] {
            std::fs::write(src.path().join(name), text).expect("write a C source");
        }
        let at = |p: &str| root.join(p.trim_start_matches('/'));
        for dir in [
            "lib",
            "usr/bin",
            MUSL_RUNPATH,
            "/usr/lib/scar-musl/plugins",
            "etc",
            "tmp",
            "proc",
            "dev",
            "sys",
        ] {
            std::fs::create_dir_all(at(dir)).expect("mkdir in the musl root");
        }
        std::fs::set_permissions(at("tmp"), std::fs::Permissions::from_mode(0o1777))
            .expect("chmod /tmp");
        let musl_gcc = |args: &[&str]| {
            run_ok(
                Command::new("musl-gcc")
                    .current_dir(src.path())
                    .args(["-O2"])
                    .args(args),
            );
        };
        let plugin = at("/usr/lib/scar-musl/plugins/libupper.so");
        let library = at(&format!("{MUSL_RUNPATH}/libscarmusl.so"));
        musl_gcc(&[
            "-shared",
            "-fPIC",
            "-o",
            &plugin.to_string_lossy(),
            "upper.c",
        ]);
        musl_gcc(&[
            "-shared",
            "-fPIC",
            "-o",
            &library.to_string_lossy(),
            "lib.c",
        ]);
        musl_gcc(&[
            "-o",
            &at(MUSL_PROGRAM).to_string_lossy(),
            "main.c",
            &format!("-L{}", at(MUSL_RUNPATH).display()),
            "-lscarmusl",
            &format!("-Wl,-rpath,{MUSL_RUNPATH}"),
            "-Wl,--enable-new-dtags",
        ]);
        let libc = std::fs::canonicalize(loader).expect("resolve the musl loader");
        std::fs::copy(&libc, at("/lib/ld-musl-x86_64.so.1")).expect("copy the musl loader");
        std::fs::write(
            at("/etc/os-release"),
            format!("ID={MUSL_ID}\nNAME=\"SCAR musl image\"\n"),
        )
        .expect("write os-release");
        std::fs::write(at("/etc/passwd"), "root:x:0:0:root:/root:/bin/false\n")
            .expect("write passwd");
        progress("musl root built", started);
    })
}

/// The musl root as an OCI layout whose `Entrypoint` is [`MUSL_PROGRAM`].
pub fn musl_layout() -> OciImage {
    let root = musl_root();
    let dir = cached(&format!("musl-real-{RECIPE}-oci"), |tmp| {
        let config = ImageConfig {
            env: vec!["PATH=/usr/bin".to_owned()],
            entrypoint: vec![MUSL_PROGRAM.to_owned()],
            cmd: Vec::new(),
        };
        write_layout(&root, tmp, DebArch::Amd64, &config)
    });
    OciImage::open(&dir)
}

/// Make sure aarch64 programs run here: as root, mount `binfmt_misc` if needed and register
/// `qemu-aarch64` from `/usr/lib/binfmt.d/qemu-aarch64.conf` (Debian's `qemu-user-static`).
/// Its `F` flag opens the interpreter at registration, so it also works inside a bare root
/// that has no qemu. `Err` says what is missing and how to fix it.
pub fn ensure_aarch64_binfmt() -> Result<(), String> {
    if std::env::consts::ARCH == "aarch64" {
        return Ok(());
    }
    let dir = Path::new("/proc/sys/fs/binfmt_misc");
    let entry = dir.join("qemu-aarch64");
    if !entry.exists() {
        let conf = Path::new("/usr/lib/binfmt.d/qemu-aarch64.conf");
        let line = std::fs::read_to_string(conf).map_err(|err| {
            format!(
                "{}: {err}: apt-get install qemu-user-static",
                conf.display()
            )
        })?;
        if !is_root() {
            return Err(format!(
                "qemu-aarch64 is not registered in {} and only root can register it: run the tests as root, or `systemctl restart systemd-binfmt`",
                dir.display()
            ));
        }
        if !dir.join("register").exists() {
            let out = Command::new("mount")
                .args(["-t", "binfmt_misc", "binfmt_misc"])
                .arg(dir)
                .output()
                .map_err(|err| format!("cannot run mount: {err}"))?;
            if !out.status.success() && !dir.join("register").exists() {
                return Err(format!(
                    "mount -t binfmt_misc on {} failed: {}",
                    dir.display(),
                    String::from_utf8_lossy(&out.stderr).trim()
                ));
            }
        }
        // Another test process may register it between the check and the write (EEXIST).
        if let Err(err) = std::fs::write(dir.join("register"), line.trim()) {
            if !entry.exists() {
                return Err(format!(
                    "registering qemu-aarch64 in {}/register failed: {err}",
                    dir.display()
                ));
            }
        }
    }
    let status =
        std::fs::read_to_string(&entry).map_err(|err| format!("{}: {err}", entry.display()))?;
    if !status.lines().any(|l| l == "enabled") {
        return Err(format!(
            "{} is disabled: echo 1 > {}",
            entry.display(),
            entry.display()
        ));
    }
    let flags = status
        .lines()
        .find_map(|l| l.strip_prefix("flags: "))
        .unwrap_or("");
    if !flags.contains('F') {
        return Err(format!(
            "{} is registered without the F flag, so its interpreter is not found inside a bare root: echo -1 > {} and run the test again (it registers /usr/lib/binfmt.d/qemu-aarch64.conf)",
            entry.display(),
            entry.display()
        ));
    }
    Ok(())
}

/// Run `argv` inside `root` with `chroot` (as root), `stdin` fed in, and return its output.
/// The tests use it to make inputs and check outputs with the image's own tools (e.g. decode
/// video with the image's ffmpeg): nothing of the cached root is written.
pub fn run_in_root(root: &Path, argv: &[&str], stdin: &[u8]) -> Output {
    assert!(is_root(), "chroot into {} needs root", root.display());
    // In a private mount namespace, so the cached root is not touched: `/proc` (glibc finds
    // `$ORIGIN` of a program reached through a symlink, such as java, in /proc/self/exe) and
    // the host's `/dev` (`/dev/null`) on the image's empty directories, then chroot.
    let mut child = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "--"])
        .args([
            "sh",
            "-c",
            r#"mount -t proc proc "$1/proc" && mount --rbind /dev "$1/dev" && exec chroot "$@""#,
            "run_in_root",
        ])
        .arg(root)
        .args(argv)
        .env_clear()
        .env("PATH", IMAGE_PATH.trim_start_matches("PATH="))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|err| panic!("cannot run chroot {}: {err}", root.display()));
    let mut input = child.stdin.take().expect("stdin is piped");
    let data = stdin.to_vec();
    let feeder = std::thread::spawn(move || {
        // A program that stops reading early closes the pipe: not an error here.
        let _ = input.write_all(&data);
    });
    let out = child
        .wait_with_output()
        .unwrap_or_else(|err| panic!("wait for chroot: {err}"));
    let _ = feeder.join();
    out
}
