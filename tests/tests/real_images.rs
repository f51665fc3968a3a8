//! Real-world images (tests/src/debian_images.rs: Debian bookworm packages, arm64 through
//! qemu-user-static, a musl program) run by the real bootstrap from a registry: under the
//! simulated Lambda with the preload engine (the only one Lambda allows) and on the host with
//! the namespace engine.
//!
//! - The paper's grayify case end to end (S3 event in, grayscale video out in S3), with the
//!   paper's script verbatim, on a cold and a warm invocation; under the simulator with the
//!   x86_64 and the arm64 layer zips of `build.sh`. Debian's `libpulse.so.0` carries `RUNPATH
//!   /usr/lib/x86_64-linux-gnu/pulseaudio`: the image's loader must find `libpulsecommon` there.
//! - ImageMagick `convert` on PNG and JPEG (coders are loaded with `dlopen`), Python 3 with PIL
//!   (a C extension), the Java 17 JRE (SCAR's Fakechroot engine fails on Java, grycap/scar#343)
//!   and perl, in one amd64 image; a musl program whose library sits in an absolute RUNPATH and
//!   loads a plugin with `dlopen`.
//!
//! The images are built once (minutes) and cached under /var/tmp/scar-test-images.
//! Run: `cargo test -p scar-e2e --test real_images` (as root).

#[path = "support/bootstrap.rs"]
mod bootstrap_support;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use bootstrap_support::{BUCKET, Function, response_text};
use scar_e2e::Registry;
use scar_e2e::debian_images::{self, DebianImage, FFMPEG_ARM64, OciImage, TOOLS};
use scar_e2e::dist::{self, Arch};

/// The paper's ffmpeg script (README, "What the script sees"), verbatim.
const PAPER_SCRIPT: &str = r#"OUTPUT_DIR="/tmp/$REQUEST_ID/output"
FILENAME=`basename $SCAR_INPUT_FILE`
OUTPUT_FILE=$OUTPUT_DIR/$FILENAME
ffmpeg -loglevel panic -nostats -i $SCAR_INPUT_FILE -vf format=gray $OUTPUT_FILE < /dev/null
"#;

/// Run `argv` in `root` (chroot) and return its stdout, panicking with stderr on failure.
fn in_root(root: &Path, argv: &[&str], stdin: &[u8]) -> Vec<u8> {
    let out = debian_images::run_in_root(root, argv, stdin);
    assert!(
        out.status.success(),
        "{argv:?} in {} failed ({}):\n{}",
        root.display(),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// The programs the tests below run are in the images and work there (checked with chroot,
/// the images' own loader and libraries): a failure below is then the bootstrap's.
#[test]
fn the_debian_images_run_their_programs_in_a_chroot() {
    let tools = TOOLS.root();
    for argv in [
        &["ffmpeg", "-hide_banner", "-version"][..],
        &["convert", "-version"],
        &["python3", "-c", "import PIL.Image; print(PIL.__version__)"],
        &["java", "-version"],
        &["perl", "-e", "print qq(perl $^V\\n)"],
    ] {
        in_root(&tools, argv, b"");
    }
    let readelf = std::process::Command::new("readelf")
        .arg("-d")
        .arg(tools.join("usr/lib/x86_64-linux-gnu/libpulse.so.0"))
        .output()
        .expect("run readelf");
    assert!(
        String::from_utf8_lossy(&readelf.stdout).contains("[/usr/lib/x86_64-linux-gnu/pulseaudio]"),
        "libpulse.so.0 no longer has the absolute RUNPATH this test is about:\n{}",
        String::from_utf8_lossy(&readelf.stdout)
    );
    let arm = FFMPEG_ARM64.root();
    in_root(&arm, &["ffmpeg", "-hide_banner", "-version"], b"");
    let musl = debian_images::musl_root();
    let readelf = std::process::Command::new("readelf")
        .arg("-d")
        .arg(musl.join(debian_images::MUSL_PROGRAM.trim_start_matches('/')))
        .output()
        .expect("run readelf");
    assert!(
        String::from_utf8_lossy(&readelf.stdout)
            .contains(&format!("[{}]", debian_images::MUSL_RUNPATH)),
        "{}",
        String::from_utf8_lossy(&readelf.stdout)
    );
}

// ---- Deploying an image: a registry holding it, a function pulling it ------------------------

/// A registry holding one image, and the reference the function pulls.
struct Pushed {
    registry: Registry,
    reference: String,
}

fn push(image: &OciImage, repo: &str) -> Pushed {
    let registry = Registry::start();
    let reference = image.push(&registry, repo, "v1");
    Pushed {
        registry,
        reference,
    }
}

/// How a test runs its function.
#[derive(Clone, Copy, Debug)]
enum Where {
    /// The simulated Lambda with the unpacked layer zip of `build.sh` for this architecture;
    /// the engine is left to `auto`, which must choose preload there.
    Simulated(Arch),
    /// The host, the static x86_64 bootstrap of `build.sh` (the one in the layer zip; the
    /// debug build takes minutes to pull a gigabyte), `SCAR_ENGINE=namespace`.
    HostNamespace,
}

impl Where {
    fn engine(self) -> &'static str {
        match self {
            Where::Simulated(_) => "preload",
            Where::HostNamespace => "namespace",
        }
    }
}

/// The sandbox's `/tmp` (Lambda's ephemeral storage, up to 10 GiB): it holds the extracted
/// image (the tools image is about 1 GiB), the request directories and the outputs.
const TMP_MB: u32 = 4096;

/// The layer zip of `arch` as Lambda unpacks it at `/opt` (`bootstrap`, `preload/`).
fn unpacked_layer(arch: Arch) -> tempfile::TempDir {
    let zip = dist::layer_zip(arch);
    let dir = tempfile::Builder::new()
        .prefix("scar-layer-zip-")
        .tempdir()
        .expect("tempdir");
    let out = std::process::Command::new("unzip")
        .arg("-q")
        .arg(&zip)
        .arg("-d")
        .arg(dir.path())
        .output()
        .expect("run unzip (apt-get install unzip)");
    assert!(
        out.status.success(),
        "unzip {}: {}",
        zip.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    dir
}

/// Start a function running the pushed image with `env`, where `place` says.
fn start(pushed: &Pushed, place: Where, env: &[(&str, &str)]) -> Function {
    let mut spec = Function::spec()
        .env("SCAR_IMAGE", &pushed.reference)
        .env("SCAR_INSECURE_REGISTRIES", &pushed.registry.host());
    for (name, value) in env {
        spec = spec.env(name, value);
    }
    match place {
        Where::HostNamespace => spec
            .env("SCAR_ENGINE", "namespace")
            .start_bootstrap(&dist::bootstrap(Arch::X86_64)),
        Where::Simulated(arch) => {
            if arch == Arch::Aarch64 {
                if let Err(why) = debian_images::ensure_aarch64_binfmt() {
                    panic!("the arm64 layer cannot run here: {why}");
                }
                // qemu-user runs vfork as a plain fork, so `auto`'s user-namespace probe (a
                // vforked child reporting through shared memory) reports nothing and reads as
                // "available" here; on Lambda's arm64 (native) it sees the refusal.
                spec = spec.env("SCAR_ENGINE", "preload");
            }
            spec.start_simulated_with_layer(unpacked_layer(arch), TMP_MB)
        }
    }
}

/// Invoke with the S3 event of `key` and check it succeeded with the expected engine.
fn invoke_ok(function: &Function, key: &str, place: Where) -> serde_json::Value {
    let result = function.invoke_s3(&[key]);
    assert_eq!(
        result.status,
        200,
        "{key}: {}\n--- bootstrap log ---\n{}",
        result.body,
        function.log()
    );
    assert_eq!(
        response_text(&result.body, "engine"),
        place.engine(),
        "{}",
        result.body
    );
    result.body
}

/// An output object, or a panic naming it with the bootstrap's log.
fn output(function: &Function, key: &str) -> Vec<u8> {
    function
        .s3
        .get_object(BUCKET, key)
        .unwrap_or_else(|| panic!("no {key} in S3\n--- bootstrap log ---\n{}", function.log()))
}

// ---- The paper's grayify case --------------------------------------------------------------

/// Width and height of the test video.
const VIDEO_SIZE: (usize, usize) = (160, 120);

/// A colour test pattern (ffmpeg's `testsrc`), 2 s at 10 frames/s, made by the image's ffmpeg.
fn colour_video(root: &Path) -> Vec<u8> {
    let (w, h) = VIDEO_SIZE;
    in_root(
        root,
        &[
            "ffmpeg",
            "-loglevel",
            "error",
            "-f",
            "lavfi",
            "-i",
            &format!("testsrc=duration=2:size={w}x{h}:rate=10"),
            "-pix_fmt",
            "yuv420p",
            "-f",
            "matroska",
            "pipe:1",
        ],
        b"",
    )
}

/// Every frame of `video` as RGB24, decoded by the image's ffmpeg.
fn rgb_frames(root: &Path, video: &[u8]) -> Vec<u8> {
    in_root(
        root,
        &[
            "ffmpeg",
            "-loglevel",
            "error",
            "-i",
            "pipe:0",
            "-f",
            "rawvideo",
            "-pix_fmt",
            "rgb24",
            "pipe:1",
        ],
        video,
    )
}

/// The share of pixels whose channels differ by more than `tolerance`.
fn coloured_share(rgb: &[u8], tolerance: u8) -> f64 {
    let pixels = rgb.len() / 3;
    let coloured = rgb
        .chunks_exact(3)
        .filter(|p| p[0].abs_diff(p[1]) > tolerance || p[1].abs_diff(p[2]) > tolerance)
        .count();
    coloured as f64 / pixels.max(1) as f64
}

/// Run the paper's script on a colour video, cold then warm, and check both outputs have the
/// input's frames in grayscale (R = G = B within codec rounding).
fn grayify(image: DebianImage, place: Where) {
    let root = image.root();
    let input = colour_video(&root);
    let (w, h) = VIDEO_SIZE;
    let frame = w * h * 3;
    let input_rgb = rgb_frames(&root, &input);
    assert!(
        input_rgb.len() >= 10 * frame && input_rgb.len().is_multiple_of(frame),
        "the input video decodes to {} bytes, not whole {w}x{h} frames",
        input_rgb.len()
    );
    assert!(
        coloured_share(&input_rgb, 40) > 0.3,
        "the input must be in colour for the check to mean anything"
    );
    let pushed = push(&image.layout(), &format!("scar-tests/{}", image.name));
    let function = start(&pushed, place, &[("SCAR_SCRIPT", PAPER_SCRIPT)]);
    for (round, key) in [("cold", "videos/clip.mkv"), ("warm", "videos/again.mkv")] {
        function.s3.put_object(BUCKET, key, &input);
        let started = std::time::Instant::now();
        invoke_ok(&function, key, place);
        eprintln!(
            "grayify {round} invocation ({place:?}, {}): {:.1}s",
            image.name,
            started.elapsed().as_secs_f64()
        );
        let name = key.rsplit('/').next().unwrap_or(key);
        let video = output(&function, &format!("output/{name}"));
        let rgb = rgb_frames(&root, &video);
        assert_eq!(
            rgb.len(),
            input_rgb.len(),
            "{round}: the output has {} frames, the input {}",
            rgb.len() / frame,
            input_rgb.len() / frame
        );
        let share = coloured_share(&rgb, 3);
        assert!(
            share == 0.0,
            "{round}: {:.2}% of the output's pixels are not gray",
            share * 100.0
        );
    }
}

#[test]
fn grayify_under_simulated_lambda_with_the_x86_64_layer_zip_cold_and_warm() {
    grayify(TOOLS, Where::Simulated(Arch::X86_64));
}

#[test]
fn grayify_arm64_under_simulated_lambda_with_the_arm64_layer_zip_cold_and_warm() {
    grayify(FFMPEG_ARM64, Where::Simulated(Arch::Aarch64));
}

#[test]
fn grayify_on_the_host_with_the_namespace_engine_cold_and_warm() {
    grayify(TOOLS, Where::HostNamespace);
}

/// The host's bootstrap runs the arm64 image's programs through qemu-aarch64 (binfmt_misc);
/// the arm64 bootstrap itself cannot use namespaces under qemu-user, whose helper threads make
/// every `unshare(CLONE_NEWUSER)` fail with EINVAL.
#[test]
fn grayify_arm64_on_the_host_with_the_namespace_engine_cold_and_warm() {
    if let Err(why) = debian_images::ensure_aarch64_binfmt() {
        panic!("arm64 programs cannot run here: {why}");
    }
    grayify(FFMPEG_ARM64, Where::HostNamespace);
}

// ---- ImageMagick, Python with PIL, Java, perl ------------------------------------------------

/// One function for the four tools (one pull of the 1 GiB image): the script picks the tool
/// by the input's name.
const TOOLS_SCRIPT: &str = r#"set -e
in="$SCAR_INPUT_FILE"
out="$SCAR_OUTPUT_DIR"
case "$(basename "$in")" in
picture.png)
  convert "$in" -resize 50% "$out/half.jpg"
  convert "$out/half.jpg" -colorspace Gray "$out/gray.png"
  identify "$out/half.jpg" "$out/gray.png" > "$out/identify.txt"
  ;;
photo.png)
  python3 - "$in" "$out" <<'PY'
import sys
import PIL, PIL._imaging
from PIL import Image
Image.open(sys.argv[1]).convert("L").rotate(90, expand=True).save(sys.argv[2] + "/pil.png")
with open(sys.argv[2] + "/pil.txt", "w") as f:
    f.write("extension=%s\n" % PIL._imaging.__file__)
PY
  ;;
Hello.class)
  java -cp "$SCAR_INPUT_DIR" Hello "$REQUEST_ID" > "$out/java.txt"
  java -XshowSettings:properties -version 2> "$out/java-settings.txt"
  ;;
words.txt)
  perl -MDigest::SHA=sha256_hex -e 'local $/; my $t = <>; my @w = split /\s+/, $t; print sha256_hex($t), " ", scalar(@w), "\n"' "$in" > "$out/perl.txt"
  ;;
*)
  echo "no tool for $in" >&2
  exit 3
  ;;
esac
"#;

/// A Java class file (version 49, so no stack maps are needed) of
/// `public class Hello { public static void main(String[] a) { System.out.println("hello from a
/// class file"); System.out.println(a[0]); } }`, assembled by hand: the JRE has no `javac`.
fn hello_class() -> Vec<u8> {
    fn utf8(pool: &mut Vec<u8>, text: &str) {
        pool.push(1);
        pool.extend((text.len() as u16).to_be_bytes());
        pool.extend(text.as_bytes());
    }
    fn refs(pool: &mut Vec<u8>, tag: u8, indexes: &[u16]) {
        pool.push(tag);
        for index in indexes {
            pool.extend(index.to_be_bytes());
        }
    }
    let mut pool = Vec::new();
    utf8(&mut pool, "Hello"); // 1
    refs(&mut pool, 7, &[1]); // 2 Class Hello
    utf8(&mut pool, "java/lang/Object"); // 3
    refs(&mut pool, 7, &[3]); // 4 Class Object
    utf8(&mut pool, "main"); // 5
    utf8(&mut pool, "([Ljava/lang/String;)V"); // 6
    utf8(&mut pool, "Code"); // 7
    utf8(&mut pool, "java/lang/System"); // 8
    refs(&mut pool, 7, &[8]); // 9 Class System
    utf8(&mut pool, "out"); // 10
    utf8(&mut pool, "Ljava/io/PrintStream;"); // 11
    refs(&mut pool, 12, &[10, 11]); // 12 NameAndType out
    refs(&mut pool, 9, &[9, 12]); // 13 Fieldref System.out
    utf8(&mut pool, "java/io/PrintStream"); // 14
    refs(&mut pool, 7, &[14]); // 15 Class PrintStream
    utf8(&mut pool, "println"); // 16
    utf8(&mut pool, "(Ljava/lang/String;)V"); // 17
    refs(&mut pool, 12, &[16, 17]); // 18 NameAndType println
    refs(&mut pool, 10, &[15, 18]); // 19 Methodref PrintStream.println
    utf8(&mut pool, "hello from a class file"); // 20
    refs(&mut pool, 8, &[20]); // 21 String
    let code: &[u8] = &[
        0xb2, 0, 13, // getstatic System.out
        0x12, 21, // ldc "hello from a class file"
        0xb6, 0, 19, // invokevirtual println
        0xb2, 0, 13,   // getstatic System.out
        0x2a, // aload_0
        0x03, // iconst_0
        0x32, // aaload
        0xb6, 0, 19,   // invokevirtual println
        0xb1, // return
    ];
    let mut class = vec![0xca, 0xfe, 0xba, 0xbe, 0, 0, 0, 49];
    class.extend(22u16.to_be_bytes()); // constant_pool_count
    class.extend(pool);
    for half in [
        0x0021u16, // public super
        2,         // this_class
        4,         // super_class
        0,         // interfaces
        0,         // fields
        1,         // methods
        0x0009,    // public static
        5,         // main
        6,         // ([Ljava/lang/String;)V
        1,         // one attribute
        7,         // Code
    ] {
        class.extend(half.to_be_bytes());
    }
    class.extend((12 + code.len() as u32).to_be_bytes());
    class.extend(3u16.to_be_bytes()); // max_stack
    class.extend(1u16.to_be_bytes()); // max_locals
    class.extend((code.len() as u32).to_be_bytes());
    class.extend(code);
    class.extend(0u16.to_be_bytes()); // exception table
    class.extend(0u16.to_be_bytes()); // code attributes
    class.extend(0u16.to_be_bytes()); // class attributes
    class
}

/// A decoded PNG: width, height, and whether every pixel is gray.
fn png_facts(bytes: &[u8]) -> (u32, u32, bool) {
    let mut decoder = png::Decoder::new(std::io::Cursor::new(bytes));
    decoder.set_transformations(png::Transformations::EXPAND);
    let mut reader = decoder.read_info().expect("a PNG");
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).expect("a PNG frame");
    let data = &buf[..info.buffer_size()];
    let gray = match info.color_type {
        png::ColorType::Grayscale | png::ColorType::GrayscaleAlpha => true,
        png::ColorType::Rgb => data.chunks_exact(3).all(|p| p[0] == p[1] && p[1] == p[2]),
        png::ColorType::Rgba => data.chunks_exact(4).all(|p| p[0] == p[1] && p[1] == p[2]),
        png::ColorType::Indexed => false,
    };
    (info.width, info.height, gray)
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(bytes))
}

fn tools(place: Where) {
    let root = TOOLS.root();
    // A 64x48 colour gradient, made by the image's ImageMagick.
    let picture = in_root(
        &root,
        &["convert", "-size", "64x48", "gradient:red-blue", "png:-"],
        b"",
    );
    assert!(
        !png_facts(&picture).2,
        "the input picture must be in colour"
    );
    let pushed = push(&TOOLS.layout(), "scar-tests/tools");
    let function = start(&pushed, place, &[("SCAR_SCRIPT", TOOLS_SCRIPT)]);
    let text = |key: &str| String::from_utf8_lossy(&output(&function, key)).into_owned();

    // ImageMagick: PNG in, JPEG out, then that JPEG to a gray PNG (coders loaded with dlopen).
    function.s3.put_object(BUCKET, "in/picture.png", &picture);
    invoke_ok(&function, "in/picture.png", place);
    let jpeg = output(&function, "output/half.jpg");
    assert_eq!(&jpeg[..3], &[0xff, 0xd8, 0xff], "half.jpg is not a JPEG");
    assert_eq!(
        png_facts(&output(&function, "output/gray.png")),
        (32, 24, true)
    );
    let identify = text("output/identify.txt");
    assert!(identify.contains("JPEG 32x24"), "{identify}");

    // Python 3 with PIL's C extension.
    function.s3.put_object(BUCKET, "in/photo.png", &picture);
    invoke_ok(&function, "in/photo.png", place);
    assert_eq!(
        png_facts(&output(&function, "output/pil.png")),
        (48, 64, true)
    );
    let pil = text("output/pil.txt");
    assert!(
        pil.starts_with("extension=/usr/lib/python3/dist-packages/PIL/_imaging.")
            && pil.trim_end().ends_with(".so"),
        "{pil}"
    );

    // The JVM: a class file, and where the JVM finds itself.
    function
        .s3
        .put_object(BUCKET, "in/Hello.class", &hello_class());
    invoke_ok(&function, "in/Hello.class", place);
    let java = text("output/java.txt");
    let lines: Vec<&str> = java.lines().collect();
    assert_eq!(lines.first(), Some(&"hello from a class file"), "{java}");
    assert!(
        lines.get(1).is_some_and(|id| !id.is_empty()),
        "the class did not print its argument (the request id): {java}"
    );
    let settings = text("output/java-settings.txt");
    assert!(
        settings.contains("java.home = /usr/lib/jvm/java-17-openjdk-amd64"),
        "{settings}"
    );

    // perl with an XS module (Digest::SHA, loaded with dlopen by DynaLoader).
    let words = b"the quick brown fox jumps over the lazy dog\n";
    function.s3.put_object(BUCKET, "in/words.txt", words);
    invoke_ok(&function, "in/words.txt", place);
    assert_eq!(
        text("output/perl.txt"),
        format!("{} 9\n", sha256_hex(words))
    );
}

#[test]
fn imagemagick_python_pil_java_and_perl_run_under_simulated_lambda() {
    tools(Where::Simulated(Arch::X86_64));
}

#[test]
fn imagemagick_python_pil_java_and_perl_run_on_the_host_with_the_namespace_engine() {
    tools(Where::HostNamespace);
}

// ---- musl -----------------------------------------------------------------------------------

fn musl(place: Where) {
    let pushed = push(&debian_images::musl_layout(), "scar-tests/musl");
    // No script: the image has no shell, the bootstrap runs its Entrypoint.
    let function = start(&pushed, place, &[]);
    function
        .s3
        .put_object(BUCKET, "in/hello.txt", b"hello from musl\n");
    invoke_ok(&function, "in/hello.txt", place);
    assert_eq!(output(&function, "output/upper.txt"), b"HELLO FROM MUSL\n");
    let report = String::from_utf8_lossy(&output(&function, "output/report.txt")).into_owned();
    assert_eq!(
        report,
        format!("plugin=upper-plugin\nos-ID={}\n", debian_images::MUSL_ID)
    );
}

#[test]
fn a_musl_program_with_a_runpath_library_and_a_dlopen_plugin_runs_under_simulated_lambda() {
    musl(Where::Simulated(Arch::X86_64));
}

#[test]
fn a_musl_program_with_a_runpath_library_and_a_dlopen_plugin_runs_on_the_host_with_the_namespace_engine()
 {
    musl(Where::HostNamespace);
}
