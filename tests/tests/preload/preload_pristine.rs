//! The image cache stays pristine under the preload engine: a script tries every way of writing
//! the cached image it runs from (a hard link made in `/tmp` then written, a symlink in `/tmp`
//! into the cache, a dangling one, a symlinked directory, `/proc/self/root/...`,
//! `/proc/self/fd/N` of a file opened for reading, the cache's own path, chmod, truncate and
//! utime through a link, fchmod of a descriptor opened for reading, rename and unlink of image files, writes into `refs/` and the image's
//! record), each must fail, and afterwards every file of the cache (content, mode, size, mtime),
//! every symlink and every directory entry is what it was. On this host (`scar run --engine
//! preload`) and under the simulated Lambda (the static `scar`, uid 993, the cache in `/tmp`).
//!
//! Run: `cargo test -p scar-e2e --test preload preload_pristine::` (as root: the simulator needs
//! it).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use scar_e2e::lambda_sim::{self, LambdaSim};

/// Bump when the layout recipe changes.
const RECIPE: u32 = 1;

/// Every attack prints `<name> rc=<status>`; each must fail. `$1` is the cache, `$2` the image
/// root inside it (host paths: `/tmp` is the host's in the preload engine). The last lines
/// check that reading the image and writing `/tmp` still work.
const ATTACK: &str = r#"C=$1; R=$2
mkdir -p /tmp/pristine-$$ && cd /tmp/pristine-$$
try() { name=$1; shift; "$@" > /dev/null 2>&1; echo "$name rc=$?"; }
try hardlink ln "$R/etc/os-release" hard
try hardlink-write sh -c 'ln "$0/etc/passwd" hard2 && echo x >> hard2' "$R"
ln -s "$R/etc/os-release" sym
try symlink-write sh -c 'echo x >> sym'
ln -s "$R/etc/brand-new" dangling
try dangling-create sh -c 'echo x > dangling'
ln -s "$R/etc" dir
try dirlink-create sh -c 'echo x > dir/new'
try proc-self-root sh -c 'echo x >> "/proc/self/root$0/etc/os-release"' "$R"
try proc-self-fd perl -e 'open(my $f, "<", "/etc/os-release") or die; open(my $w, ">>", "/proc/self/fd/" . fileno($f)) or die "$!\n"; print $w "x"; close($w) or die "$!\n"'
try cache-path sh -c 'echo x >> "$0/etc/os-release"' "$R"
try chmod-link chmod 777 sym
try truncate-link perl -e 'truncate("sym", 0) or die "$!\n"'
try utime-link perl -e 'utime(1, 1, "sym") or die "$!\n"'
try fchmod-fd perl -e 'open(my $f, "<", "/etc/os-release") or die; chmod(0777, $f) or die "$!\n"'
try rename-cache mv "$R/etc/os-release" moved
try rename-image mv /etc/passwd moved2
try unlink-cache rm "$R/etc/passwd"
try unlink-image rm /etc/os-release
try relative-cache sh -c 'cd "$0/etc" && echo x > os-release' "$R"
try refs-new sh -c 'echo x > "$0/refs/evil"' "$C"
try refs-relative sh -c 'cd "$0/refs" && echo x > evil2' "$C"
try record sh -c 'echo x >> "$0/../image.json"' "$R"
try mkdir-cache mkdir "$C/rootfs/new"
cat /etc/os-release > copy && echo written >> copy && grep -q written copy && echo tmp-writable
grep -q 'SCAR dynamic test image' /etc/os-release && echo image-readable
"#;

/// Prints, for the cache directory `$1`, one line per entry (sorted): files with mode, size,
/// mtime and SHA-256, symlinks with their target, directories with their mode. `lock`,
/// `last-used` (scar's own bookkeeping) and the work areas are left out.
const SUMS: &str = r#"cd "$1" && find . \( -name last-used -o -name lock -o -path ./tmp -o -path ./ingest \) -prune -o -print | sort | while IFS= read -r f; do
  if [ -L "$f" ]; then echo "$f link $(readlink "$f")"
  elif [ -d "$f" ]; then echo "$f dir $(stat -c %a "$f")"
  else echo "$f file $(stat -c '%a %s %Y' "$f") $(sha256sum < "$f" | cut -d' ' -f1)"; fi
done"#;

/// The attacks each test expects to fail.
const ATTACKS: &[&str] = &[
    "hardlink",
    "hardlink-write",
    "symlink-write",
    "dangling-create",
    "dirlink-create",
    "proc-self-root",
    "proc-self-fd",
    "cache-path",
    "chmod-link",
    "truncate-link",
    "utime-link",
    "fchmod-fd",
    "rename-cache",
    "rename-image",
    "unlink-cache",
    "unlink-image",
    "relative-cache",
    "refs-new",
    "refs-relative",
    "record",
    "mkdir-cache",
];

/// The dynamic test image (the host's loader, libc, coreutils, dash and perl) as an OCI layout,
/// readable by the simulated Lambda's uid.
fn layout() -> PathBuf {
    static LAYOUT: OnceLock<PathBuf> = OnceLock::new();
    LAYOUT
        .get_or_init(|| {
            let dest = Path::new(lambda_sim::IMAGE_CACHE).join(format!("pristine-layout-{RECIPE}"));
            if dest.join("index.json").is_file() {
                return dest;
            }
            let root = lambda_sim::dynamic_image();
            let tmp = tempfile::Builder::new()
                .prefix("pristine-layout-")
                .tempdir_in(lambda_sim::IMAGE_CACHE)
                .expect("tempdir in the image cache");
            scar_tools::oci::write_from_dir(
                &root,
                tmp.path(),
                &scar_tools::oci::LayoutOptions::default(),
            )
            .expect("pack the dynamic image as an OCI layout");
            make_readable(tmp.path());
            let built = tmp.keep();
            std::fs::rename(&built, &dest).expect("publish the layout");
            dest
        })
        .clone()
}

fn make_readable(dir: &Path) {
    for entry in std::fs::read_dir(dir).expect("read layout").flatten() {
        let path = entry.path();
        let meta = std::fs::symlink_metadata(&path).expect("stat");
        let mode = if meta.is_dir() { 0o755 } else { 0o644 };
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).expect("chmod");
        if meta.is_dir() {
            make_readable(&path);
        }
    }
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
}

/// The shell line that pulls `image` into `cache` with `scar`, sums the cache, runs [`ATTACK`]
/// (written to `attack`) in the image with the preload engine, and sums it again; sections of
/// its output are separated by `=== <name>` lines.
fn driver(scar: &str, cache: &str, image: &str, attack: &str) -> String {
    format!(
        r#"set -e
sums() {{ ( {SUMS} ) ; }}
{scar} pull --cache {cache} {image} > /dev/null
R=$(ls -d {cache}/rootfs/*/root)
echo "=== before"; sums {cache}
cat > {attack} <<'SCAR_ATTACK_EOF'
{ATTACK}
SCAR_ATTACK_EOF
echo "=== attacks"
{scar} run --engine preload --cache-dir {cache} {image} -- /bin/sh {attack} {cache} "$R"
echo "=== after"; sums {cache}
echo "=== end"
"#
    )
}

/// The lines of `section` in the driver's output.
fn section<'a>(out: &'a str, name: &str) -> Vec<&'a str> {
    let start = format!("=== {name}");
    out.lines()
        .skip_while(|l| *l != start)
        .skip(1)
        .take_while(|l| !l.starts_with("=== "))
        .collect()
}

/// Every attack failed, reading and `/tmp` still work, and the cache is unchanged.
fn assert_pristine(out: &str, err: &str) {
    assert!(
        out.contains("=== end"),
        "the driver did not finish\nstdout:\n{out}\nstderr:\n{err}"
    );
    let attacks = section(out, "attacks");
    for name in ATTACKS {
        let line = attacks
            .iter()
            .find(|l| l.starts_with(&format!("{name} rc=")))
            .unwrap_or_else(|| panic!("attack {name} did not run:\n{out}\n{err}"));
        assert!(
            !line.ends_with(" rc=0"),
            "attack {name} succeeded: {line}\n{out}"
        );
    }
    assert!(attacks.contains(&"tmp-writable"), "{out}\n{err}");
    assert!(attacks.contains(&"image-readable"), "{out}\n{err}");
    let before = section(out, "before");
    let after = section(out, "after");
    assert!(
        before
            .iter()
            .any(|l| l.contains("/root/etc/os-release file"))
            && before.iter().any(|l| l.contains("/image.json file")),
        "the sums do not cover the image and its record:\n{}",
        before.join("\n")
    );
    let changed: Vec<String> = before
        .iter()
        .filter(|l| !after.contains(l))
        .map(|l| format!("- {l}"))
        .chain(
            after
                .iter()
                .filter(|l| !before.contains(l))
                .map(|l| format!("+ {l}")),
        )
        .collect();
    assert!(
        changed.is_empty(),
        "the cache changed:\n{}",
        changed.join("\n")
    );
}

#[test]
fn on_the_host_every_write_path_into_the_cached_image_fails_and_it_stays_unchanged() {
    let scar = scar_e2e::workspace::binary("scar-tools", "scar");
    let layout = layout();
    let work = tempfile::Builder::new()
        .prefix("scar-pristine-")
        .tempdir_in("/tmp")
        .expect("tempdir in /tmp");
    let cache = work.path().join("cache");
    let line = driver(
        &scar.display().to_string(),
        &cache.display().to_string(),
        &format!("oci:{}:latest", layout.display()),
        &work.path().join("attack.sh").display().to_string(),
    );
    let out = Command::new("sh")
        .arg("-c")
        .arg(&line)
        .env("SCAR_PRELOAD_DIR", lambda_sim::preload_libs())
        .output()
        .expect("run the driver");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    println!("{}", section(&stdout, "attacks").join("\n"));
    assert_pristine(&stdout, &stderr);
}

#[test]
fn under_simulated_lambda_every_write_path_into_the_cached_image_fails_and_it_stays_unchanged() {
    let layer = lambda_sim::layer_dir();
    let sim = LambdaSim::new(layer.path())
        .with_scar()
        .ro_bind(layout(), "/images/layout");
    let line = driver(
        &format!("{}/scar", lambda_sim::SCAR_DIR),
        "/tmp/scar",
        "oci:/images/layout:latest",
        "/tmp/attack.sh",
    );
    let out = sim.run(&line, &[("SCAR_PRELOAD_DIR", "/opt/preload")]);
    println!("{}", section(&out.stdout, "attacks").join("\n"));
    assert_pristine(&out.stdout, &out.stderr);
}
