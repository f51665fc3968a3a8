//! The musl image: a program built with Debian's `musl-gcc` whose library sits in an absolute
//! `RUNPATH` and loads a plugin with `dlopen`, so that musl's own loader does the work.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use super::arch::DebArch;
use super::cache::{RECIPE, cached};
use super::command::{progress, run_ok};
use super::layout::{ImageConfig, OciImage, write_layout};

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
