//! Test-side image builders: layers from arbitrary (also hostile) tar entries, compressed with
//! gzip, zstd or not at all; images, multi-platform indexes; written as OCI layouts, OCI and
//! Docker archives, or pushed to a registry over the distribution API.

use std::io::Write;
use std::path::Path;

use sha2::{Digest as _, Sha256};

/// OCI media types used by the builders.
pub mod media {
    /// Image manifest.
    pub const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
    /// Image index.
    pub const INDEX: &str = "application/vnd.oci.image.index.v1+json";
    /// Image config.
    pub const CONFIG: &str = "application/vnd.oci.image.config.v1+json";
    /// Docker schema 2 manifest.
    pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
    /// Docker config.
    pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
    /// Docker gzip layer.
    pub const DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
}

/// `sha256:<hex>` of bytes.
pub fn digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// How a layer is compressed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    /// gzip.
    Gzip,
    /// zstd.
    Zstd,
    /// Plain tar.
    None,
}

impl Compression {
    fn media_type(self) -> &'static str {
        match self {
            Self::Gzip => "application/vnd.oci.image.layer.v1.tar+gzip",
            Self::Zstd => "application/vnd.oci.image.layer.v1.tar+zstd",
            Self::None => "application/vnd.oci.image.layer.v1.tar",
        }
    }
}

/// A content blob.
#[derive(Clone, Debug)]
pub struct Blob {
    /// Media type it is referenced with.
    pub media_type: String,
    /// Its bytes.
    pub bytes: Vec<u8>,
}

impl Blob {
    /// `sha256:<hex>`.
    pub fn digest(&self) -> String {
        digest(&self.bytes)
    }

    fn descriptor(&self) -> serde_json::Value {
        serde_json::json!({
            "mediaType": self.media_type,
            "digest": self.digest(),
            "size": self.bytes.len(),
        })
    }
}

/// A layer: its blob and the DiffID of its uncompressed tar.
#[derive(Clone, Debug)]
pub struct Layer {
    /// Compressed blob.
    pub blob: Blob,
    /// `sha256:` of the uncompressed tar.
    pub diff_id: String,
    /// The uncompressed tar (kept for Docker archives).
    pub tar: Vec<u8>,
}

enum Sink {
    Gzip(flate2::write::GzEncoder<Vec<u8>>),
    Zstd(zstd::stream::write::Encoder<'static, Vec<u8>>),
    Plain(Vec<u8>),
}

/// Builds one layer entry by entry, streaming into the compressor.
pub struct LayerBuilder {
    sink: Sink,
    hasher: Sha256,
    keep_tar: bool,
    tar: Vec<u8>,
    compression: Compression,
}

impl LayerBuilder {
    /// A new layer compressed with `compression`.
    pub fn new(compression: Compression) -> Self {
        let sink = match compression {
            Compression::Gzip => Sink::Gzip(flate2::write::GzEncoder::new(
                Vec::new(),
                flate2::Compression::fast(),
            )),
            Compression::Zstd => {
                Sink::Zstd(zstd::stream::write::Encoder::new(Vec::new(), 3).expect("zstd encoder"))
            }
            Compression::None => Sink::Plain(Vec::new()),
        };
        Self {
            sink,
            hasher: Sha256::new(),
            keep_tar: compression != Compression::None,
            tar: Vec::new(),
            compression,
        }
    }

    /// Do not keep a copy of the uncompressed tar (huge layers).
    pub fn without_tar_copy(mut self) -> Self {
        self.keep_tar = false;
        self
    }

    fn write(&mut self, bytes: &[u8]) {
        self.hasher.update(bytes);
        if self.keep_tar {
            self.tar.extend_from_slice(bytes);
        }
        match &mut self.sink {
            Sink::Gzip(w) => w.write_all(bytes).expect("gzip"),
            Sink::Zstd(w) => w.write_all(bytes).expect("zstd"),
            Sink::Plain(v) => v.extend_from_slice(bytes),
        }
    }

    /// Any entry, with the name and link target written raw (hostile names included).
    pub fn raw(
        mut self,
        name: &str,
        kind: tar::EntryType,
        mode: u32,
        link: &str,
        data: &[u8],
    ) -> Self {
        let mut header = tar::Header::new_gnu();
        let n = name.as_bytes();
        assert!(
            n.len() <= 100 && link.len() <= 100,
            "raw names are at most 100 bytes"
        );
        header.as_old_mut().name[..n.len()].copy_from_slice(n);
        header.as_old_mut().linkname[..link.len()].copy_from_slice(link.as_bytes());
        header.set_entry_type(kind);
        header.set_mode(mode);
        header.set_size(data.len() as u64);
        header.set_mtime(1_700_000_000);
        header.set_uid(0);
        header.set_gid(0);
        header.set_cksum();
        self.write(header.as_bytes());
        self.write(data);
        let pad = (512 - data.len() % 512) % 512;
        self.write(&vec![0; pad]);
        self
    }

    /// A PAX extended header (`key=value` records, e.g. `SCHILY.xattr.user.x`) for the next entry.
    pub fn pax(self, records: &[(&str, &[u8])]) -> Self {
        let mut data = Vec::new();
        for (key, value) in records {
            // "<len> <key>=<value>\n", where <len> counts its own digits too.
            let body = key.len() + value.len() + 3;
            let mut len = body + 1;
            while len != body + len.to_string().len() {
                len = body + len.to_string().len();
            }
            data.extend_from_slice(format!("{len} {key}=").as_bytes());
            data.extend_from_slice(value);
            data.push(b'\n');
        }
        self.raw("PaxHeaders/next", tar::EntryType::XHeader, 0o644, "", &data)
    }

    /// A regular file (mode 0644).
    pub fn file(self, name: &str, data: &[u8]) -> Self {
        self.raw(name, tar::EntryType::Regular, 0o644, "", data)
    }

    /// A regular file with a mode.
    pub fn file_mode(self, name: &str, mode: u32, data: &[u8]) -> Self {
        self.raw(name, tar::EntryType::Regular, mode, "", data)
    }

    /// A big file of `len` bytes made by `fill` (called with the offset), written in chunks.
    pub fn big_file(mut self, name: &str, len: u64, mut fill: impl FnMut(u64, &mut [u8])) -> Self {
        let mut header = tar::Header::new_gnu();
        header.set_path(name).expect("name");
        header.set_entry_type(tar::EntryType::Regular);
        header.set_mode(0o644);
        header.set_size(len);
        header.set_mtime(1_700_000_000);
        header.set_cksum();
        self.write(header.as_bytes());
        let mut buf = vec![0u8; 1 << 20];
        let mut off = 0u64;
        while off < len {
            let n = (len - off).min(buf.len() as u64) as usize;
            fill(off, &mut buf[..n]);
            self.write(&buf[..n]);
            off += n as u64;
        }
        let pad = ((512 - len % 512) % 512) as usize;
        self.write(&vec![0; pad]);
        self
    }

    /// A directory (mode 0755).
    pub fn dir(self, name: &str) -> Self {
        self.raw(name, tar::EntryType::Directory, 0o755, "", b"")
    }

    /// A symlink.
    pub fn symlink(self, name: &str, target: &str) -> Self {
        self.raw(name, tar::EntryType::Symlink, 0o777, target, b"")
    }

    /// A hardlink to an earlier entry (or a lower layer's file).
    pub fn hardlink(self, name: &str, target: &str) -> Self {
        self.raw(name, tar::EntryType::Link, 0o644, target, b"")
    }

    /// `.wh.<name>` in `dir` ("" for the root).
    pub fn whiteout(self, dir: &str, name: &str) -> Self {
        let path = if dir.is_empty() {
            format!(".wh.{name}")
        } else {
            format!("{dir}/.wh.{name}")
        };
        self.file(&path, b"")
    }

    /// `.wh..wh..opq` in `dir`.
    pub fn opaque(self, dir: &str) -> Self {
        self.file(&format!("{dir}/.wh..wh..opq"), b"")
    }

    /// A character device node.
    pub fn char_device(self, name: &str) -> Self {
        self.raw(name, tar::EntryType::Char, 0o666, "", b"")
    }

    /// Close the archive and compress.
    pub fn finish(mut self) -> Layer {
        self.write(&[0u8; 1024]);
        let bytes = match self.sink {
            Sink::Gzip(w) => w.finish().expect("gzip"),
            Sink::Zstd(w) => w.finish().expect("zstd"),
            Sink::Plain(v) => v,
        };
        let diff_id = format!("sha256:{}", hex::encode(self.hasher.finalize()));
        let tar = if self.compression == Compression::None {
            bytes.clone()
        } else {
            self.tar
        };
        Layer {
            blob: Blob {
                media_type: self.compression.media_type().to_owned(),
                bytes,
            },
            diff_id,
            tar,
        }
    }
}

/// An image: config, manifest, layers.
#[derive(Clone, Debug)]
pub struct Image {
    /// Config blob.
    pub config: Blob,
    /// Manifest blob.
    pub manifest: Blob,
    /// Layers bottom first.
    pub layers: Vec<Layer>,
}

/// Builds an [`Image`].
#[derive(Clone, Debug)]
pub struct ImageBuilder {
    layers: Vec<Layer>,
    config: serde_json::Value,
    docker: bool,
    os: String,
    arch: String,
    variant: Option<String>,
}

impl Default for ImageBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl ImageBuilder {
    /// An image for this machine's platform.
    pub fn new() -> Self {
        let (arch, variant) = match std::env::consts::ARCH {
            "aarch64" => ("arm64", Some("v8".to_owned())),
            _ => ("amd64", None),
        };
        Self {
            layers: Vec::new(),
            config: serde_json::json!({}),
            docker: false,
            os: "linux".into(),
            arch: arch.into(),
            variant,
        }
    }

    /// Add a layer on top.
    pub fn layer(mut self, layer: Layer) -> Self {
        self.layers.push(layer);
        self
    }

    /// Set a runtime config field (`Env`, `Cmd`, `Entrypoint`, `WorkingDir`, `User`).
    pub fn config(mut self, key: &str, value: serde_json::Value) -> Self {
        self.config[key] = value;
        self
    }

    /// Platform of the image.
    pub fn platform(mut self, os: &str, arch: &str, variant: Option<&str>) -> Self {
        self.os = os.into();
        self.arch = arch.into();
        self.variant = variant.map(Into::into);
        self
    }

    /// Use Docker schema 2 media types instead of OCI.
    pub fn docker_media_types(mut self) -> Self {
        self.docker = true;
        self
    }

    /// Serialise config and manifest.
    pub fn build(self) -> Image {
        let diff_ids: Vec<&str> = self.layers.iter().map(|l| l.diff_id.as_str()).collect();
        let mut config = serde_json::json!({
            "architecture": self.arch,
            "os": self.os,
            "config": self.config,
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
        });
        if let Some(v) = &self.variant {
            config["variant"] = serde_json::json!(v);
        }
        let config = Blob {
            media_type: if self.docker {
                media::DOCKER_CONFIG
            } else {
                media::CONFIG
            }
            .into(),
            bytes: serde_json::to_vec(&config).expect("json"),
        };
        let mut layers = self.layers;
        if self.docker {
            for l in &mut layers {
                if l.blob.media_type.ends_with("gzip") {
                    l.blob.media_type = media::DOCKER_LAYER.into();
                }
            }
        }
        let manifest_type = if self.docker {
            media::DOCKER_MANIFEST
        } else {
            media::MANIFEST
        };
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": manifest_type,
            "config": config.descriptor(),
            "layers": layers.iter().map(|l| l.blob.descriptor()).collect::<Vec<_>>(),
        });
        let manifest = Blob {
            media_type: manifest_type.into(),
            bytes: serde_json::to_vec(&manifest).expect("json"),
        };
        Image {
            config,
            manifest,
            layers,
        }
    }
}

impl Image {
    /// Every blob (config, layers) but not the manifest.
    pub fn blobs(&self) -> Vec<&Blob> {
        std::iter::once(&self.config)
            .chain(self.layers.iter().map(|l| &l.blob))
            .collect()
    }

    fn platform(&self) -> serde_json::Value {
        let config: serde_json::Value = serde_json::from_slice(&self.config.bytes).expect("json");
        let mut p = serde_json::json!({"os": config["os"], "architecture": config["architecture"]});
        if let Some(v) = config.get("variant") {
            p["variant"] = v.clone();
        }
        p
    }
}

/// An index over several platform images.
pub fn index(images: &[&Image]) -> Blob {
    let manifests: Vec<serde_json::Value> = images
        .iter()
        .map(|i| {
            let mut d = i.manifest.descriptor();
            d["platform"] = i.platform();
            d
        })
        .collect();
    let body =
        serde_json::json!({"schemaVersion": 2, "mediaType": media::INDEX, "manifests": manifests});
    Blob {
        media_type: media::INDEX.into(),
        bytes: serde_json::to_vec(&body).expect("json"),
    }
}

/// Write an OCI image layout: every image's blobs, and `index.json` naming each by tag.
pub fn write_layout(dir: &Path, images: &[(&str, &Image)]) {
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).expect("mkdir layout");
    std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).expect("write");
    let mut manifests = Vec::new();
    for (tag, image) in images {
        for blob in image.blobs().into_iter().chain([&image.manifest]) {
            let hex = blob.digest()["sha256:".len()..].to_owned();
            std::fs::write(blobs.join(hex), &blob.bytes).expect("write blob");
        }
        let mut d = image.manifest.descriptor();
        d["annotations"] = serde_json::json!({"org.opencontainers.image.ref.name": tag});
        manifests.push(d);
    }
    let index =
        serde_json::json!({"schemaVersion": 2, "mediaType": media::INDEX, "manifests": manifests});
    std::fs::write(
        dir.join("index.json"),
        serde_json::to_vec(&index).expect("json"),
    )
    .expect("write");
}

/// A tar of a directory tree (for OCI archives).
pub fn tar_dir(dir: &Path, out: &Path) {
    let file = std::fs::File::create(out).expect("create archive");
    let mut builder = tar::Builder::new(file);
    builder.append_dir_all(".", dir).expect("tar layout");
    builder.finish().expect("finish archive");
}

/// Write a `docker save` archive of `image` tagged `name`.
pub fn write_docker_archive(out: &Path, name: &str, image: &Image) {
    let file = std::fs::File::create(out).expect("create archive");
    let mut builder = tar::Builder::new(file);
    let mut add = |path: &str, bytes: &[u8]| {
        let mut h = tar::Header::new_gnu();
        h.set_size(bytes.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(1_700_000_000);
        builder.append_data(&mut h, path, bytes).expect("append");
    };
    let config_name = format!("{}.json", &image.config.digest()["sha256:".len()..]);
    add(&config_name, &image.config.bytes);
    let mut layer_names = Vec::new();
    for (i, layer) in image.layers.iter().enumerate() {
        let name = format!("layer{i}/layer.tar");
        add(&name, &layer.tar);
        layer_names.push(name);
    }
    let manifest =
        serde_json::json!([{"Config": config_name, "RepoTags": [name], "Layers": layer_names}]);
    add(
        "manifest.json",
        &serde_json::to_vec(&manifest).expect("json"),
    );
    builder.into_inner().expect("finish archive");
}

/// Pushes images to a registry over the distribution API (monolithic blob uploads).
pub struct Pusher {
    base: String,
    auth: Option<String>,
    http: reqwest::blocking::Client,
}

impl Pusher {
    /// A pusher for the registry at `url` (`http://host:port`), with a ready `Authorization`.
    pub fn new(url: &str, authorization: Option<String>) -> Self {
        Self {
            base: url.trim_end_matches('/').to_owned(),
            auth: authorization,
            http: reqwest::blocking::Client::builder()
                .timeout(std::time::Duration::from_secs(300))
                .build()
                .expect("http client"),
        }
    }

    /// A pusher using HTTP basic auth.
    pub fn with_basic(url: &str, user: &str, password: &str) -> Self {
        use base64::Engine as _;
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        Self::new(url, Some(format!("Basic {token}")))
    }

    fn req(&self, method: reqwest::Method, url: &str) -> reqwest::blocking::RequestBuilder {
        let r = self.http.request(method, url);
        match &self.auth {
            Some(a) => r.header("Authorization", a),
            None => r,
        }
    }

    /// Upload raw bytes as a blob of `repo` under their digest.
    pub fn blob(&self, repo: &str, bytes: &[u8]) {
        let d = digest(bytes);
        let head = self
            .req(
                reqwest::Method::HEAD,
                &format!("{}/v2/{repo}/blobs/{d}", self.base),
            )
            .send()
            .expect("HEAD blob");
        if head.status().is_success() {
            return;
        }
        self.put_blob(repo, &d, bytes.to_vec().into());
    }

    /// Upload a file as a blob whose digest is already known, streaming it from disk.
    pub fn blob_file(&self, repo: &str, path: &Path, digest: &str) {
        let file = std::fs::File::open(path).expect("open blob file");
        self.put_blob(repo, digest, file.into());
    }

    /// Start an upload session of `repo` and finish it with one PUT of `body` as `digest`.
    fn put_blob(&self, repo: &str, digest: &str, body: reqwest::blocking::Body) {
        let start = self
            .req(
                reqwest::Method::POST,
                &format!("{}/v2/{repo}/blobs/uploads/", self.base),
            )
            .send()
            .expect("start upload");
        assert_eq!(
            start.status().as_u16(),
            202,
            "start upload: {:?}",
            start.text()
        );
        let location = start.headers()["location"]
            .to_str()
            .expect("location")
            .to_owned();
        let url = if location.starts_with("http") {
            location
        } else {
            format!("{}{location}", self.base)
        };
        let sep = if url.contains('?') { '&' } else { '?' };
        let put = self
            .req(reqwest::Method::PUT, &format!("{url}{sep}digest={digest}"))
            .header("Content-Type", "application/octet-stream")
            .body(body)
            .send()
            .expect("PUT blob");
        assert_eq!(put.status().as_u16(), 201, "PUT blob: {:?}", put.text());
    }

    /// Put a manifest or index under `reference` (tag or digest).
    pub fn manifest(&self, repo: &str, reference: &str, blob: &Blob) {
        let put = self
            .req(
                reqwest::Method::PUT,
                &format!("{}/v2/{repo}/manifests/{reference}", self.base),
            )
            .header("Content-Type", &blob.media_type)
            .body(blob.bytes.clone())
            .send()
            .expect("PUT manifest");
        assert_eq!(put.status().as_u16(), 201, "PUT manifest: {:?}", put.text());
    }

    /// Push an image's blobs and manifest as `repo:tag`.
    pub fn image(&self, repo: &str, tag: &str, image: &Image) {
        for blob in image.blobs() {
            self.blob(repo, &blob.bytes);
        }
        self.manifest(repo, tag, &image.manifest);
    }

    /// Push platform images and an index over them as `repo:tag`.
    pub fn index(&self, repo: &str, tag: &str, images: &[&Image]) {
        for image in images {
            self.image(repo, &image.manifest.digest(), image);
        }
        self.manifest(repo, tag, &index(images));
    }

    /// Delete a blob (the registry must allow deletes).
    pub fn delete_blob(&self, repo: &str, digest: &str) {
        let r = self
            .req(
                reqwest::Method::DELETE,
                &format!("{}/v2/{repo}/blobs/{digest}", self.base),
            )
            .send()
            .expect("DELETE blob");
        assert_eq!(r.status().as_u16(), 202, "DELETE blob: {:?}", r.text());
    }
}

/// Where the filesystem storage driver keeps a blob's bytes (to corrupt them on purpose).
pub fn stored_blob_path(storage: &Path, digest: &str) -> std::path::PathBuf {
    let hex = digest.trim_start_matches("sha256:");
    storage.join(format!(
        "docker/registry/v2/blobs/sha256/{}/{hex}/data",
        &hex[..2]
    ))
}

/// Applets a [`busybox_image`] links in `/bin`: what the tests' scripts call.
pub const BUSYBOX_APPLETS: &[&str] = &[
    "sh", "cat", "cp", "echo", "tr", "ls", "mkdir", "sleep", "basename", "wc", "head", "true",
];

/// A runnable image: Debian's static busybox (`busybox-static`) at `/bin/busybox` with
/// [`BUSYBOX_APPLETS`] linked in `/bin`, then `files` (path, contents) in a second layer, both
/// gzip (what every archive format takes, docker-archive included); `PATH=/bin`, `Cmd` `/bin/sh`.
pub fn busybox_image(files: &[(&str, &[u8])]) -> Image {
    let busybox = std::fs::read(crate::images::BUSYBOX).unwrap_or_else(|err| {
        panic!(
            "{}: {err}: apt-get install busybox-static",
            crate::images::BUSYBOX
        )
    });
    let mut base = LayerBuilder::new(Compression::Gzip)
        .dir("bin")
        .dir("etc")
        .raw("tmp", tar::EntryType::Directory, 0o1777, "", b"")
        .file_mode("bin/busybox", 0o755, &busybox)
        .file("etc/passwd", b"root:x:0:0:root:/root:/bin/sh\n");
    for applet in BUSYBOX_APPLETS {
        base = base.symlink(&format!("bin/{applet}"), "busybox");
    }
    let mut top = LayerBuilder::new(Compression::Gzip);
    for (path, data) in files {
        top = top.file(path, data);
    }
    ImageBuilder::new()
        .layer(base.finish())
        .layer(top.finish())
        .config("Env", serde_json::json!(["PATH=/bin"]))
        .config("Cmd", serde_json::json!(["/bin/sh"]))
        .build()
}
