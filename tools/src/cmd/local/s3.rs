//! An S3-compatible endpoint over a local directory (`s3s-fs`, SigV4 checked by `s3s`).
//!
//! Mapping: every bucket `scar local` serves is the data directory itself, so object
//! `s3://<bucket>/<key>` is the file `<data dir>/<key>` (`input/cat.png` is `DIR/input/cat.png`,
//! outputs under `output/` land in `DIR/output/`). `s3s-fs` keeps buckets as subdirectories of its
//! root, so the root is a private directory `DIR/.scar-local/s3` holding one symlink per bucket
//! pointing at `DIR`. The root sits inside `DIR` on purpose: `s3s-fs` writes each object to a
//! temporary file in its root and renames it into place, and a rename cannot cross filesystems.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use s3s::auth::SimpleAuth;
use s3s::service::S3ServiceBuilder;
use tokio::net::TcpListener;

use super::s3_store::Store;

/// Directory inside the data directory that holds `scar local`'s own files.
pub const STATE_DIR: &str = ".scar-local";
/// The prefix the watch turns into events.
pub(super) const INPUT_PREFIX: &str = "input/";
/// The prefix outputs go to: outside [`INPUT_PREFIX`], so outputs never trigger the function
/// again.
pub(super) const OUTPUT_PREFIX: &str = "output/";

/// Why the endpoint could not start.
#[derive(Debug, thiserror::Error)]
pub enum S3Error {
    /// A bucket name S3 would refuse (and that could not be a directory entry safely).
    #[error(
        "`{0}` is not a valid S3 bucket name: use 3 to 63 lowercase letters, digits, `.` and `-`, starting and ending with a letter or digit"
    )]
    BucketName(String),
    /// The data directory or the private root could not be prepared.
    #[error("{path}: {source}")]
    Io {
        /// The path concerned.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// `s3s-fs` refused the root.
    #[error("cannot serve {path} over S3: {message}")]
    Store {
        /// The root.
        path: PathBuf,
        /// What `s3s-fs` said.
        message: String,
    },
}

/// S3's bucket naming rules (the subset that matters here: no `/`, no `..`, no uppercase).
pub fn valid_bucket_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    (3..=63).contains(&bytes.len())
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'.' || *b == b'-')
        && bytes[0].is_ascii_alphanumeric()
        && bytes[bytes.len() - 1].is_ascii_alphanumeric()
        && !name.contains("..")
}

/// A running S3 endpoint and the credentials it accepts.
pub struct S3Endpoint {
    address: SocketAddr,
    /// The access key id clients must sign with.
    pub access_key: String,
    /// The secret key clients must sign with.
    pub secret_key: String,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for S3Endpoint {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// Random hex from the kernel, for credentials that exist only for this run.
fn random_hex(bytes: usize) -> Result<String, S3Error> {
    use std::io::Read;
    let path = Path::new("/dev/urandom");
    let mut buffer = vec![0u8; bytes];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut buffer))
        .map_err(|source| S3Error::Io {
            path: path.to_path_buf(),
            source,
        })?;
    Ok(buffer.iter().map(|b| format!("{b:02x}")).collect())
}

impl S3Endpoint {
    /// Serve `data_dir` as each of `buckets` on `127.0.0.1` (free port), with fresh credentials.
    pub async fn start(data_dir: &Path, buckets: &[String]) -> Result<Self, S3Error> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| S3Error::Io { path, source }
        };
        std::fs::create_dir_all(data_dir).map_err(io(data_dir))?;
        let data_dir = data_dir.canonicalize().map_err(io(data_dir))?;
        let root = data_dir.join(STATE_DIR).join("s3");
        std::fs::create_dir_all(&root).map_err(io(&root))?;
        for bucket in buckets {
            if !valid_bucket_name(bucket) {
                return Err(S3Error::BucketName(bucket.clone()));
            }
            let link = root.join(bucket);
            // Replace a link left by an earlier run for another data directory.
            match std::fs::read_link(&link) {
                Ok(target) if target == data_dir => continue,
                Ok(_) => std::fs::remove_file(&link).map_err(io(&link))?,
                Err(_) => {}
            }
            std::os::unix::fs::symlink(&data_dir, &link).map_err(io(&link))?;
        }

        let store = s3s_fs::FileSystem::new(&root).map_err(|err| S3Error::Store {
            path: root.clone(),
            message: format!("{err:?}"),
        })?;
        let access_key = format!("SCARLOCAL{}", random_hex(6)?.to_uppercase());
        let secret_key = random_hex(20)?;
        let mut builder = S3ServiceBuilder::new(Store::new(store, root.clone()));
        builder.set_auth(SimpleAuth::from_single(
            access_key.clone(),
            secret_key.clone(),
        ));
        let service = builder.build();

        let listener = TcpListener::bind(("127.0.0.1", 0))
            .await
            .map_err(io(&root))?;
        let address = listener.local_addr().map_err(io(&root))?;
        let server = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let service = service.clone();
                tokio::spawn(async move {
                    let io = hyper_util::rt::TokioIo::new(stream);
                    if let Err(err) = hyper::server::conn::http1::Builder::new()
                        .serve_connection(io, service)
                        .await
                    {
                        tracing::debug!(%err, "S3 connection ended");
                    }
                });
            }
        });
        Ok(Self {
            address,
            access_key,
            secret_key,
            server,
        })
    }

    /// `http://127.0.0.1:<port>`, the value of `AWS_ENDPOINT_URL_S3`.
    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_s3::primitives::ByteStream;

    async fn client(endpoint: &S3Endpoint, secret: &str) -> aws_sdk_s3::Client {
        scar_rootfs::aws::s3_client_with_keys(&endpoint.url(), &endpoint.access_key, secret)
    }

    #[tokio::test]
    async fn objects_of_the_bucket_are_files_of_the_data_directory() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("input")).unwrap();
        std::fs::write(dir.path().join("input/cat 1.png"), b"meow").unwrap();
        let endpoint = S3Endpoint::start(dir.path(), &["scar-local".into()])
            .await
            .unwrap();
        let s3 = client(&endpoint, &endpoint.secret_key).await;

        let object = s3
            .get_object()
            .bucket("scar-local")
            .key("input/cat 1.png")
            .send()
            .await
            .unwrap();
        assert_eq!(
            object.body.collect().await.unwrap().into_bytes().as_ref(),
            b"meow"
        );

        s3.put_object()
            .bucket("scar-local")
            .key("output/nested/result.txt")
            .content_type("text/plain")
            .body(ByteStream::from_static(b"done"))
            .send()
            .await
            .unwrap();
        assert_eq!(
            std::fs::read(dir.path().join("output/nested/result.txt")).unwrap(),
            b"done"
        );
        // No temporary or metadata file lands next to the user's files.
        let names: Vec<_> = std::fs::read_dir(dir.path().join("output/nested"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["result.txt"]);
    }

    #[tokio::test]
    async fn whole_objects_ranges_and_suffixes_come_back_exact() {
        let dir = tempfile::tempdir().unwrap();
        // Past several of the store's 1 MiB blocks, and not a multiple of one.
        let data: Vec<u8> = (0..3_500_001u32).map(|i| (i % 251) as u8).collect();
        let endpoint = S3Endpoint::start(dir.path(), &["scar-local".into()])
            .await
            .unwrap();
        let s3 = client(&endpoint, &endpoint.secret_key).await;
        s3.put_object()
            .bucket("scar-local")
            .key("images/big.bin")
            .body(ByteStream::from(data.clone()))
            .send()
            .await
            .unwrap();
        let len = data.len();
        for (range, want) in [
            (None, &data[..]),
            (Some("bytes=0-0".to_owned()), &data[..1]),
            (
                Some("bytes=1000-2500000".to_owned()),
                &data[1000..2_500_001],
            ),
            (
                Some(format!("bytes=1048575-{}", len - 1)),
                &data[1_048_575..],
            ),
            (Some("bytes=-100".to_owned()), &data[len - 100..]),
            (Some("bytes=3000000-".to_owned()), &data[3_000_000..]),
        ] {
            let object = s3
                .get_object()
                .bucket("scar-local")
                .key("images/big.bin")
                .set_range(range.clone())
                .send()
                .await
                .unwrap();
            assert_eq!(
                object.content_length(),
                Some(want.len() as i64),
                "{range:?}"
            );
            let got = object.body.collect().await.unwrap().into_bytes();
            assert!(got.as_ref() == want, "{range:?}: {} bytes", got.len());
        }
    }

    #[tokio::test]
    async fn a_request_signed_with_the_wrong_secret_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let endpoint = S3Endpoint::start(dir.path(), &["scar-local".into()])
            .await
            .unwrap();
        let s3 = client(&endpoint, "not-the-secret").await;
        let result = s3
            .put_object()
            .bucket("scar-local")
            .key("x")
            .body(ByteStream::from_static(b"x"))
            .send()
            .await;
        assert!(result.is_err(), "a badly signed request was accepted");
        assert!(!dir.path().join("x").exists());
    }

    #[tokio::test]
    async fn an_unknown_bucket_is_not_found() {
        let dir = tempfile::tempdir().unwrap();
        let endpoint = S3Endpoint::start(dir.path(), &["scar-local".into()])
            .await
            .unwrap();
        let s3 = client(&endpoint, &endpoint.secret_key).await;
        let err = s3
            .head_object()
            .bucket("other-bucket")
            .key("x")
            .send()
            .await
            .unwrap_err();
        assert!(err.into_service_error().is_not_found());
    }

    #[tokio::test]
    async fn bucket_names_that_could_escape_the_root_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        for bad in ["..", "a/b", "UPPER", "x"] {
            let result = S3Endpoint::start(dir.path(), &[bad.to_owned()]).await;
            assert!(
                matches!(result, Err(S3Error::BucketName(_))),
                "{bad} was accepted"
            );
        }
    }
}
