//! An image whose program makes the image's dynamic loader open libraries by every route it has:
//! an absolute `RUNPATH` in the program and in a library (Debian's `libpulse.so.0` case), a
//! `DT_NEEDED` with a slash, `$ORIGIN`, an `ld.so.conf` directory, `dlopen` of a bare name and of
//! an absolute path, and libc's own `dlopen` of a gconv module through `iconv`. None of those
//! paths exists on this host, so a lookup that leaks out of the image fails (or, for gconv,
//! maps the host's module, which the test sees in `/proc/self/maps`).

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::lambda_sim::{cached, dynamic_image, run_ok, write};

/// Bump when the recipe changes, so a stale cached image is not reused.
const RECIPE: u32 = 1;
/// A user that exists only in the image's `/etc/passwd` (and its group in `/etc/group`).
pub const IMAGE_USER: &str = "scarimg";
/// Its uid.
pub const IMAGE_UID: u32 = 4321;

/// The program of [`loader_image`]: prints what each route loaded, then every file mapped into
/// it (`map=<path>`), from `/proc/self/maps`.
pub const LOADPROBE_C: &str = r#"
#include <dlfcn.h>
#include <grp.h>
#include <iconv.h>
#include <pwd.h>
#include <stdio.h>
#include <string.h>
int x_value(void);
int slash_value(void);
int ori_value(void);
int conf_value(void);
static int call(const char *name, const char *sym) {
    void *h = dlopen(name, RTLD_NOW);
    if (!h) { printf("dlopen-error=%s\n", dlerror()); return -1; }
    int (*f)(void) = (int (*)(void))dlsym(h, sym);
    return f ? f() : -2;
}
int main(void) {
    printf("runpath-chain=%d\n", x_value());
    printf("slash=%d\n", slash_value());
    printf("origin=%d\n", ori_value());
    printf("ldconf=%d\n", conf_value());
    printf("dlopen-name=%d\n", call("libplug.so", "plug_value"));
    printf("dlopen-abs=%d\n", call("/opt/plug/abs/libplug2.so", "plug2_value"));
    iconv_t cd = iconv_open("UTF-16LE", "UTF-8");
    if (cd == (iconv_t)-1) { printf("iconv=failed\n"); } else {
        char in[] = "ok", out[16]; char *ip = in, *op = out; size_t il = 2, ol = sizeof out;
        size_t r = iconv(cd, &ip, &il, &op, &ol);
        printf("iconv=%s,%d\n", r == (size_t)-1 ? "error" : "converted", (int)(sizeof out - ol));
        iconv_close(cd);
    }
    struct passwd *pw = getpwnam("scarimg");
    printf("getpwnam=%s\n", pw ? pw->pw_dir : "none");
    struct passwd *pu = getpwuid(4321);
    printf("getpwuid=%s\n", pu ? pu->pw_name : "none");
    struct group *gr = getgrnam("scarimg");
    printf("getgrnam=%d\n", gr ? (int)gr->gr_gid : -1);
    FILE *m = fopen("/proc/self/maps", "r");
    if (!m) { printf("maps=unreadable\n"); return 1; }
    char line[8192];
    while (fgets(line, sizeof line, m)) {
        char *p = strchr(line, '/');
        if (!p) continue;
        p[strcspn(p, "\n")] = 0;
        printf("map=%s\n", p);
    }
    fclose(m);
    return 0;
}
"#;

/// A `(file, source)` pair of a small shared library.
struct Lib {
    /// Container path of the library.
    path: &'static str,
    /// Its `SONAME` (`DT_NEEDED` of whoever links it).
    soname: &'static str,
    /// C source.
    source: &'static str,
    /// Extra linker arguments (`-L`, `-l`, RUNPATH), with `{tmp}` for the build directory.
    link: &'static [&'static str],
}

const LIBS: &[Lib] = &[
    Lib {
        path: "/opt/x/deep/libdeep.so",
        soname: "libdeep.so",
        source: "int deep_value(void) { return 7; }\n",
        link: &[],
    },
    // Debian's libpulse.so.0 → RUNPATH /usr/lib/<triplet>/pulseaudio → libpulsecommon.
    Lib {
        path: "/opt/x/lib/libx.so",
        soname: "libx.so",
        source: "int deep_value(void);\nint x_value(void) { return deep_value() * 6; }\n",
        link: &[
            "-L{tmp}/opt/x/deep",
            "-ldeep",
            "-Wl,-rpath,/opt/x/deep",
            "-Wl,--enable-new-dtags",
        ],
    },
    // A DT_NEEDED with a slash: the loader opens it as is, without any search.
    Lib {
        path: "/opt/y/libslash.so",
        soname: "/opt/y/libslash.so",
        source: "int slash_value(void) { return 5; }\n",
        link: &[],
    },
    Lib {
        path: "/usr/lib/scar-origin/libori.so",
        soname: "libori.so",
        source: "int ori_value(void) { return 3; }\n",
        link: &[],
    },
    Lib {
        path: "/opt/conf/lib/libconf.so",
        soname: "libconf.so",
        source: "int conf_value(void) { return 9; }\n",
        link: &[],
    },
    Lib {
        path: "/opt/plug/libplug.so",
        soname: "libplug.so",
        source: "int plug_value(void) { return 11; }\n",
        link: &[],
    },
    Lib {
        path: "/opt/plug/abs/libplug2.so",
        soname: "libplug2.so",
        source: "int plug2_value(void) { return 13; }\n",
        link: &[],
    },
];

/// [`dynamic_image`] plus `/usr/bin/loadprobe` ([`LOADPROBE_C`]) and its libraries, glibc's
/// UTF-16 gconv module, and a user and group only the image has. Cached under
/// `/var/tmp/scar-test-images`.
pub fn loader_image() -> PathBuf {
    // Built outside `cached`, which holds the image builders' lock while its recipe runs.
    let base = dynamic_image();
    cached(&format!("loader-{RECIPE}"), |tmp| {
        build_loader_image(&base, tmp)
    })
}

/// The recipe of [`loader_image`]: `base` copied into `tmp`, then the libraries, the probe and
/// the configuration files.
fn build_loader_image(base: &Path, tmp: &Path) {
    run_ok(Command::new("cp").arg("-a").arg(base.join(".")).arg(tmp));
    let build = tempfile::tempdir().expect("tempdir");
    let b = build.path();
    let tmp_s = b.to_string_lossy().into_owned();
    for lib in LIBS {
        let src = b.join(format!("{}.c", lib.soname.replace('/', "_")));
        std::fs::write(&src, lib.source).expect("write library source");
        let out = b.join(lib.path.trim_start_matches('/'));
        std::fs::create_dir_all(out.parent().expect("parent")).expect("mkdir");
        let mut cmd = Command::new("gcc");
        cmd.args(["-shared", "-fPIC", "-O2", "-o"])
            .arg(&out)
            .arg(&src)
            .arg(format!("-Wl,-soname,{}", lib.soname));
        for a in lib.link {
            cmd.arg(a.replace("{tmp}", &tmp_s));
        }
        run_ok(&mut cmd);
        let dest = tmp.join(lib.path.trim_start_matches('/'));
        std::fs::create_dir_all(dest.parent().expect("parent")).expect("mkdir");
        std::fs::copy(&out, &dest).expect("copy library into the image");
    }
    // `-l:` links by file; the slash library is named by its SONAME, an absolute path.
    let src = b.join("loadprobe.c");
    std::fs::write(&src, LOADPROBE_C).expect("write loadprobe.c");
    let mut cmd = Command::new("gcc");
    cmd.args(["-O2", "-o"])
        .arg(tmp.join("usr/bin/loadprobe"))
        .arg(&src)
        .arg(format!("-L{tmp_s}/opt/x/lib"))
        .arg(format!("-L{tmp_s}/opt/x/deep"))
        .arg(format!("{tmp_s}/opt/y/libslash.so"))
        .arg(format!("-L{tmp_s}/usr/lib/scar-origin"))
        .arg(format!("-L{tmp_s}/opt/conf/lib"))
        .args(["-lx", "-lori", "-lconf", "-ldl"])
        // Absolute and $ORIGIN entries; /opt/plug serves the dlopen of a bare name.
        .arg("-Wl,-rpath,/opt/x/lib:$ORIGIN/../lib/scar-origin:/opt/plug")
        .arg("-Wl,--enable-new-dtags")
        .arg(format!("-Wl,-rpath-link,{tmp_s}/opt/x/deep"));
    run_ok(&mut cmd);
    write(tmp, "/etc/ld.so.conf.d/scar-conf.conf", "/opt/conf/lib\n");
    // glibc's gconv configuration and the module iconv_open("UTF-16LE") loads.
    let gconv = Path::new("/usr/lib")
        .join(format!("{}-linux-gnu", std::env::consts::ARCH))
        .join("gconv");
    let dest = tmp.join(gconv.strip_prefix("/").expect("absolute"));
    std::fs::create_dir_all(&dest).expect("mkdir gconv");
    for name in ["gconv-modules", "gconv-modules.cache", "UTF-16.so"] {
        if gconv.join(name).exists() {
            std::fs::copy(gconv.join(name), dest.join(name)).expect("copy gconv file");
        }
    }
    if gconv.join("gconv-modules.d").is_dir() {
        run_ok(
            Command::new("cp")
                .arg("-a")
                .arg(gconv.join("gconv-modules.d"))
                .arg(&dest),
        );
    }
    write(
        tmp,
        "/etc/passwd",
        &format!(
            "root:x:0:0:root:/root:/bin/sh\n{IMAGE_USER}:x:{IMAGE_UID}:{IMAGE_UID}::/home/{IMAGE_USER}:/bin/sh\n"
        ),
    );
    write(
        tmp,
        "/etc/group",
        &format!("root:x:0:\n{IMAGE_USER}:x:{IMAGE_UID}:\n"),
    );
    write(
        tmp,
        "/etc/nsswitch.conf",
        "passwd: files\ngroup: files\nhosts: files dns\n",
    );
    let _ = symlink("/usr/share/zoneinfo/UTC", tmp.join("etc/localtime"));
}
