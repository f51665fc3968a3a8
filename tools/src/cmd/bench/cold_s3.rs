//! The S3 side of the cold-start section: the project's S3 endpoint (the one `scar local`
//! serves, in this process on a runtime of its own) holding the bench image in the S3 format,
//! uploaded by `scar image push`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::cmd::local::s3::S3Endpoint;

use super::context::Bench;
use super::images::BenchImage;
use super::pull::remove_tree;

/// The bucket the endpoint serves.
const BUCKET: &str = "scar-bench";

/// A bench image in the S3 format behind a running S3 endpoint.
pub struct S3Image {
    // Field order is drop order: the endpoint's task goes before the runtime that runs it.
    endpoint: S3Endpoint,
    _runtime: tokio::runtime::Runtime,
    address: SocketAddr,
    dir: PathBuf,
    reference: String,
}

impl S3Image {
    /// Start the endpoint over `<work>/s3` and upload `image` to it with `scar image push`
    /// (pulled from the bench's registry). The error is the reason the S3 rows give.
    pub fn prepare(bench: &Bench, image: &BenchImage) -> Result<S3Image, String> {
        let dir = bench.work.join("s3");
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("bench-s3")
            .enable_all()
            .build()
            .map_err(|err| format!("a runtime for the S3 endpoint: {err}"))?;
        let endpoint = runtime
            .block_on(S3Endpoint::start(&dir, &[BUCKET.to_string()]))
            .map_err(|err| format!("the S3 endpoint: {err}"))?;
        let url = endpoint.url();
        let address: SocketAddr = url
            .trim_start_matches("http://")
            .parse()
            .map_err(|err| format!("the S3 endpoint's address {url}: {err}"))?;
        let key = format!("{}.scar", image.name);
        let mut s3 = S3Image {
            endpoint,
            _runtime: runtime,
            address,
            dir,
            reference: format!("s3://{BUCKET}/{key}"),
        };
        let pin = s3.push(bench, image)?;
        s3.reference.push_str(&pin);
        eprintln!("scar bench: the S3 rows pull {} from {url}", s3.reference);
        Ok(s3)
    }

    /// Where the endpoint listens.
    pub fn addr(&self) -> SocketAddr {
        self.address
    }

    /// The directory whose files are the bucket's objects.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `s3://scar-bench/<image>.scar@sha256:<index digest>`, the name a function would use.
    pub fn reference(&self) -> &str {
        &self.reference
    }

    /// The S3 variables of a `scar pull` of [`S3Image::reference`], reaching the endpoint
    /// directly or through `via` (the proxy forwards bytes, so the signature still holds).
    pub fn configure(&self, command: &mut Command, via: Option<SocketAddr>) {
        let host = via.unwrap_or(self.address);
        for var in ["AWS_ENDPOINT_URL", "AWS_SESSION_TOKEN", "AWS_PROFILE"] {
            command.env_remove(var);
        }
        command
            .env("AWS_ENDPOINT_URL_S3", format!("http://{host}"))
            .env("AWS_ACCESS_KEY_ID", &self.endpoint.access_key)
            .env("AWS_SECRET_ACCESS_KEY", &self.endpoint.secret_key)
            .env("AWS_REGION", "us-east-1")
            .env("AWS_DEFAULT_REGION", "us-east-1")
            .env("AWS_EC2_METADATA_DISABLED", "true");
    }
}

impl S3Image {
    /// `scar image push <registry image> s3://scar-bench/<image>.scar` through the endpoint.
    /// Uploaded, not written beside it: `s3s-fs` keeps the ETag of an object it received, and
    /// for a file it did not receive it hashes the whole file on every GET, ranges included
    /// (measured: a 260 MiB object pulled in 31 s instead of a few). Returns the pin push
    /// printed (`@sha256:...`), or nothing when it printed none.
    fn push(&self, bench: &Bench, image: &BenchImage) -> Result<String, String> {
        let cache = bench.work.join("s3-push-cache");
        eprintln!(
            "scar bench: scar image push of {} to {}",
            image.name, self.reference
        );
        let mut command = bench.scar_command("image");
        self.configure(&mut command, None);
        let output = command
            .arg("push")
            .arg(bench.registry.reference(image.name))
            .arg(&self.reference)
            .arg("--cache")
            .arg(&cache)
            .stdin(Stdio::null())
            .output()
            .map_err(|err| format!("cannot run scar image push: {err}"));
        remove_tree(&cache);
        let output = output?;
        let text = String::from_utf8_lossy(&output.stdout).into_owned()
            + &String::from_utf8_lossy(&output.stderr);
        if !output.status.success() {
            // clap and `fail` both start the line that says what went wrong with "error".
            let line = text
                .lines()
                .find(|l| l.trim_start().to_ascii_lowercase().starts_with("error"))
                .or_else(|| text.lines().rev().find(|l| !l.trim().is_empty()));
            return Err(format!(
                "scar image push failed: {}",
                line.unwrap_or("no output").trim()
            ));
        }
        Ok(pin_in(&text).unwrap_or_default())
    }
}

/// The first `@sha256:<64 hex>` in `text`.
fn pin_in(text: &str) -> Option<String> {
    text.match_indices("@sha256:").find_map(|(at, _)| {
        let hex = text.get(at + 8..at + 8 + 64)?;
        hex.bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
            .then(|| format!("@sha256:{hex}"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pin_is_read_from_what_push_prints() {
        let digest = "0123456789abcdef".repeat(4);
        let text = format!("42 frames\nSCAR_IMAGE=framed:/x/large.scar@sha256:{digest}\n");
        assert_eq!(pin_in(&text), Some(format!("@sha256:{digest}")));
        assert_eq!(pin_in("no pin @sha256:abc"), None);
        assert_eq!(pin_in(&format!("@sha256:{}", "Z".repeat(64))), None);
    }
}
