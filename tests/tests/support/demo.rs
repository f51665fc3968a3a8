//! Shared by `local.rs` and `examples.rs`: the offline demo's binaries, image and sample
//! picture, the response document of `scar local invoke`, and the pixel-by-pixel check of the
//! demo's output (each output pixel must be the BT.601 luma of the input pixel, so a copy or a
//! wrong conversion fails).

#![allow(dead_code)] // each test file uses a different part

use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

/// The root of this repository.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("repo root")
        .to_path_buf()
}

/// `scar`, `bootstrap` and the demo's converter of this workspace, as built before the tests
/// (see `scar_e2e::workspace`).
pub fn demo_binaries() -> &'static [PathBuf; 3] {
    static BINS: OnceLock<[PathBuf; 3]> = OnceLock::new();
    BINS.get_or_init(|| {
        scar_e2e::workspace::binaries([
            ("scar-tools", "scar"),
            ("scar-bootstrap", "bootstrap"),
            ("scar-demo-grayscale", "grayscale"),
        ])
    })
}

/// The demo's image, built once per test process by the demo's own script from
/// [`demo_binaries`] (so the script does not start a cargo build of its own).
pub fn demo_image() -> &'static Path {
    static IMAGE: OnceLock<PathBuf> = OnceLock::new();
    IMAGE.get_or_init(|| {
        let [scar, _, grayscale] = demo_binaries();
        let image = std::env::temp_dir()
            .join(format!("scar-demo-image-{}", std::process::id()))
            .join("image");
        let output = Command::new("bash")
            .arg(repo().join("examples/demo/build-image.sh"))
            .arg(scar)
            .env("DEMO_IMAGE", &image)
            .env("GRAYSCALE", grayscale)
            .output()
            .expect("run examples/demo/build-image.sh");
        assert!(
            output.status.success(),
            "build-image.sh failed: {}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        image
    })
}

/// The demo's RGB sample picture.
pub fn sample() -> PathBuf {
    repo().join("examples/demo/sample.png")
}

/// The JSON document `scar local invoke` prints last on stdout.
pub fn response(output: &Output) -> serde_json::Value {
    let text = String::from_utf8_lossy(&output.stdout);
    let start = text
        .find("\n{")
        .map(|i| i + 1)
        .or_else(|| text.starts_with('{').then_some(0))
        .expect("a JSON document on stdout");
    serde_json::from_str(&text[start..]).expect("the response is JSON")
}

fn decode(path: &Path) -> (png::ColorType, u32, u32, Vec<u8>) {
    let file = std::fs::File::open(path)
        .unwrap_or_else(|err| panic!("no picture at {}: {err}", path.display()));
    let mut decoder = png::Decoder::new(BufReader::new(file));
    decoder.set_transformations(png::Transformations::EXPAND);
    let mut reader = decoder.read_info().unwrap();
    let mut buffer = vec![0; reader.output_buffer_size()];
    let frame = reader.next_frame(&mut buffer).unwrap();
    buffer.truncate(frame.buffer_size());
    (frame.color_type, frame.width, frame.height, buffer)
}

/// Assert that `output` is the grayscale version of the RGB picture `input`.
pub fn assert_grayscale_of(input: &Path, output: &Path) {
    let (in_color, width, height, rgb) = decode(input);
    assert_eq!(in_color, png::ColorType::Rgb, "the sample picture is RGB");
    let (out_color, out_width, out_height, gray) = decode(output);
    assert_eq!(
        out_color,
        png::ColorType::Grayscale,
        "{} is not a grayscale PNG",
        output.display()
    );
    assert_eq!((out_width, out_height), (width, height));
    let expected: Vec<u8> = rgb
        .chunks_exact(3)
        .map(|p| {
            ((299 * u32::from(p[0]) + 587 * u32::from(p[1]) + 114 * u32::from(p[2]) + 500) / 1000)
                as u8
        })
        .collect();
    // Not assert_eq!: a mismatch would print every pixel twice.
    assert!(
        gray == expected,
        "the output pixels are not the luma of the input pixels"
    );
}
