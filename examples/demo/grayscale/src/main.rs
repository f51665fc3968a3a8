//! `grayscale IN.png OUT.png`: write a grayscale copy of a PNG picture.
//!
//! The tool inside the offline demo's image. It is an ordinary dynamically linked program of the
//! host: `build-image.sh` copies it into the image with the host's loader and C library, so both
//! engines (the namespace engine and the preload engine Lambda needs) can run it.
//! `grayscale --sample OUT.png` draws the colourful sample picture committed in `examples/demo`.

use std::fs::File;
use std::io::{BufReader, BufWriter};
use std::process::ExitCode;

/// What can go wrong, each with the file it concerns.
#[derive(Debug)]
enum Error {
    Usage,
    Open(String, std::io::Error),
    Decode(String, png::DecodingError),
    Encode(String, png::EncodingError),
    Unsupported(String, png::ColorType),
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Usage => write!(
                f,
                "usage: grayscale IN.png OUT.png | grayscale --sample OUT.png"
            ),
            Self::Open(path, err) => write!(f, "{path}: {err}"),
            Self::Decode(path, err) => write!(f, "{path} is not a readable PNG picture: {err}"),
            Self::Encode(path, err) => write!(f, "cannot write the PNG picture {path}: {err}"),
            Self::Unsupported(path, color) => {
                write!(f, "{path}: colour type {color:?} is not supported")
            }
        }
    }
}

/// A decoded picture as 8-bit luma plus an optional alpha channel.
struct Gray {
    width: u32,
    height: u32,
    /// `true` when `pixels` holds (luma, alpha) pairs.
    alpha: bool,
    pixels: Vec<u8>,
}

/// ITU-R BT.601 luma, the weights ffmpeg's `format=gray` uses, in integer arithmetic.
fn luma(r: u8, g: u8, b: u8) -> u8 {
    let y = (299 * u32::from(r) + 587 * u32::from(g) + 114 * u32::from(b) + 500) / 1000;
    // The weights add up to 1000, so y <= 255.
    y.min(255) as u8
}

fn read_gray(path: &str) -> Result<Gray, Error> {
    let file = File::open(path).map_err(|err| Error::Open(path.to_owned(), err))?;
    let mut decoder = png::Decoder::new(BufReader::new(file));
    // Palette and low bit depths are expanded, 16-bit samples reduced: every picture arrives as
    // 8-bit gray, gray+alpha, RGB or RGBA.
    decoder.set_transformations(png::Transformations::EXPAND | png::Transformations::STRIP_16);
    let mut reader = decoder
        .read_info()
        .map_err(|err| Error::Decode(path.to_owned(), err))?;
    let mut buffer = vec![0; reader.output_buffer_size()];
    let frame = reader
        .next_frame(&mut buffer)
        .map_err(|err| Error::Decode(path.to_owned(), err))?;
    let data = &buffer[..frame.buffer_size()];
    let (pixels, alpha) = match frame.color_type {
        png::ColorType::Grayscale => (data.to_vec(), false),
        png::ColorType::GrayscaleAlpha => (data.to_vec(), true),
        png::ColorType::Rgb => (
            data.chunks_exact(3)
                .map(|p| luma(p[0], p[1], p[2]))
                .collect(),
            false,
        ),
        png::ColorType::Rgba => (
            data.chunks_exact(4)
                .flat_map(|p| [luma(p[0], p[1], p[2]), p[3]])
                .collect(),
            true,
        ),
        other => return Err(Error::Unsupported(path.to_owned(), other)),
    };
    Ok(Gray {
        width: frame.width,
        height: frame.height,
        alpha,
        pixels,
    })
}

fn write_png(
    path: &str,
    width: u32,
    height: u32,
    color: png::ColorType,
    pixels: &[u8],
) -> Result<(), Error> {
    let file = File::create(path).map_err(|err| Error::Open(path.to_owned(), err))?;
    let mut encoder = png::Encoder::new(BufWriter::new(file), width, height);
    encoder.set_color(color);
    encoder.set_depth(png::BitDepth::Eight);
    encoder.set_compression(png::Compression::Best);
    let mut writer = encoder
        .write_header()
        .map_err(|err| Error::Encode(path.to_owned(), err))?;
    writer
        .write_image_data(pixels)
        .map_err(|err| Error::Encode(path.to_owned(), err))?;
    writer
        .finish()
        .map_err(|err| Error::Encode(path.to_owned(), err))
}

/// A 256×192 picture with smooth colour gradients and a few discs: compresses well, and its
/// grayscale version is easy to tell apart from the original.
fn sample_picture() -> (u32, u32, Vec<u8>) {
    let (width, height) = (256u32, 192u32);
    let discs = [
        (64i32, 64i32, 40i32, [230u8, 40, 40]),
        (150, 110, 50, [40, 200, 60]),
        (210, 50, 30, [40, 80, 230]),
    ];
    let mut pixels = Vec::with_capacity((width * height * 3) as usize);
    for y in 0..height as i32 {
        for x in 0..width as i32 {
            let mut rgb = [x as u8, (y * 255 / height as i32) as u8, (255 - x) as u8];
            for (cx, cy, r, colour) in discs {
                if (x - cx).pow(2) + (y - cy).pow(2) <= r * r {
                    rgb = colour;
                }
            }
            pixels.extend_from_slice(&rgb);
        }
    }
    (width, height, pixels)
}

fn run(args: &[String]) -> Result<String, Error> {
    match args {
        [flag, output] if flag == "--sample" => {
            let (width, height, pixels) = sample_picture();
            write_png(output, width, height, png::ColorType::Rgb, &pixels)?;
            Ok(format!(
                "wrote the sample picture {output} ({width}x{height})"
            ))
        }
        [input, output] if !input.starts_with('-') => {
            let gray = read_gray(input)?;
            let color = if gray.alpha {
                png::ColorType::GrayscaleAlpha
            } else {
                png::ColorType::Grayscale
            };
            write_png(output, gray.width, gray.height, color, &gray.pixels)?;
            Ok(format!(
                "{input} -> {output} ({}x{}, grayscale)",
                gray.width, gray.height
            ))
        }
        _ => Err(Error::Usage),
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(message) => {
            println!("{message}");
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("grayscale: {err}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn luma_of_white_is_white_and_of_black_is_black() {
        assert_eq!(luma(255, 255, 255), 255);
        assert_eq!(luma(0, 0, 0), 0);
    }

    #[test]
    fn green_weighs_more_than_blue_in_luma() {
        assert!(luma(0, 255, 0) > luma(0, 0, 255));
    }

    #[test]
    fn sample_picture_converts_to_one_channel_of_the_same_size() {
        let dir = std::env::temp_dir().join(format!("grayscale-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let input = dir.join("in.png").to_string_lossy().into_owned();
        let output = dir.join("out.png").to_string_lossy().into_owned();
        run(&["--sample".into(), input.clone()]).unwrap();
        run(&[input, output.clone()]).unwrap();
        let decoder = png::Decoder::new(BufReader::new(File::open(&output).unwrap()));
        let reader = decoder.read_info().unwrap();
        let info = reader.info();
        assert_eq!(
            (info.width, info.height, info.color_type),
            (256, 192, png::ColorType::Grayscale)
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_file_that_is_not_a_png_is_reported_with_its_path() {
        let dir = std::env::temp_dir().join(format!("grayscale-bad-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let input = dir.join("not.png");
        std::fs::write(&input, b"hello").unwrap();
        let err = run(&[
            input.to_string_lossy().into_owned(),
            dir.join("o.png").to_string_lossy().into_owned(),
        ])
        .unwrap_err();
        assert!(
            err.to_string().contains("not.png is not a readable PNG"),
            "{err}"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }
}
