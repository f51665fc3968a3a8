//! The one OCI image-layout writer: gzip layers hashed while they are written, a config with
//! the runtime parameters (`Env`, `Entrypoint`, `Cmd`, `WorkingDir`), a manifest and
//! `index.json`.
//!
//! This is how an image is made with no registry and no Docker: `scar image from-dir` packs a
//! directory ([`write_from_dir`]), and `SCAR_IMAGE=oci:<layout>:<tag>` runs it. `scar bench`
//! writes its layered images with [`Blobs::write_layer`] and [`write_image`], and the tests
//! pack their fixtures with [`write_from_dir`]. The layer is reproducible: entries are
//! sorted, owned by root and dated at the epoch, so packing the same tree twice gives the same
//! digests (and the same cache entry). Blobs are written under a temporary name and renamed to
//! their digest once complete, so an interrupted run never leaves a blob whose content does not
//! match its name.

use std::collections::HashMap;
use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use flate2::Compression;
use flate2::write::GzEncoder;
use oci_spec::image::{
    ANNOTATION_REF_NAME, Arch, ConfigBuilder, Descriptor, DescriptorBuilder, Digest,
    ImageConfigurationBuilder, ImageIndex, ImageIndexBuilder, ImageManifestBuilder, MediaType,
    OciLayoutBuilder, Os, PlatformBuilder, RootFsBuilder,
};
use sha2::{Digest as _, Sha256};

/// Runtime parameters and naming of the image to write.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LayoutOptions {
    /// Tag recorded as `org.opencontainers.image.ref.name` in `index.json` (`latest` if empty).
    pub tag: String,
    /// `Env` entries, `NAME=value`.
    pub env: Vec<String>,
    /// `Entrypoint`.
    pub entrypoint: Vec<String>,
    /// `Cmd`.
    pub cmd: Vec<String>,
    /// `WorkingDir`.
    pub working_dir: Option<String>,
    /// GOARCH name (`amd64`, `arm64`); `None` means the running machine's.
    pub architecture: Option<String>,
}

/// What was written: enough to name the image and check it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WrittenImage {
    /// `oci:<layout>:<tag>`, ready for `SCAR_IMAGE`.
    pub reference: String,
    /// Digest of the manifest.
    pub manifest_digest: String,
    /// Digest of the compressed layer blob.
    pub layer_digest: String,
    /// Digest of the uncompressed layer tar (the `diff_id`).
    pub diff_id: String,
    /// Size of the compressed layer in bytes.
    pub layer_size: u64,
    /// Number of entries in the layer.
    pub entries: u64,
}

/// A layer blob written by [`Blobs::write_layer`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LayerBlob {
    /// Digest of the compressed blob (`sha256:<hex>`).
    pub digest: String,
    /// Digest of the uncompressed tar (the `diff_id`).
    pub diff_id: String,
    /// Size of the compressed blob in bytes.
    pub size: u64,
    /// Size of the uncompressed tar in bytes.
    pub uncompressed_size: u64,
    /// Entries the filler reported.
    pub entries: u64,
    /// The blob's file.
    pub path: PathBuf,
}

/// Why a layout could not be written.
#[derive(Debug, thiserror::Error)]
pub enum LayoutError {
    /// The source is missing or not a directory.
    #[error("{path}: not a directory to pack as an image (give the root filesystem's directory)")]
    NotADirectory {
        /// The source path.
        path: PathBuf,
    },
    /// The output lies inside the source, which would pack the image into itself.
    #[error(
        "the output {output} is inside the source directory {source_dir}: write the layout elsewhere"
    )]
    OutputInsideSource {
        /// The layout directory.
        output: PathBuf,
        /// The source directory.
        source_dir: PathBuf,
    },
    /// The output exists and is not an OCI layout.
    #[error(
        "{path} exists and is not an OCI image layout (no oci-layout file): choose another --output"
    )]
    NotALayout {
        /// The output path.
        path: PathBuf,
    },
    /// A tag that cannot be a ref name.
    #[error("`{tag}` is not a valid tag: use letters, digits, `.`, `_` and `-` (at most 128)")]
    InvalidTag {
        /// The tag.
        tag: String,
    },
    /// Reading the source or writing the layout failed.
    #[error("{path}: {source}")]
    Io {
        /// The file concerned.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// The existing `index.json` could not be read, or a document could not be built.
    #[error("{path}: {message}")]
    Document {
        /// The file concerned.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> LayoutError + '_ {
    move |source| LayoutError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn doc_err(path: &Path, message: impl std::fmt::Display) -> LayoutError {
    LayoutError::Document {
        path: path.to_path_buf(),
        message: message.to_string(),
    }
}

/// A writer that hashes and counts what passes through it.
struct Hashing<W> {
    inner: W,
    hasher: Sha256,
    bytes: u64,
}

impl<W: Write> Hashing<W> {
    fn new(inner: W) -> Self {
        Self {
            inner,
            hasher: Sha256::new(),
            bytes: 0,
        }
    }

    fn finish(self) -> (W, String, u64) {
        (
            self.inner,
            format!("sha256:{}", hex::encode(self.hasher.finalize())),
            self.bytes,
        )
    }
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// `blobs/sha256` of a layout, with temporary names that are renamed to digests when complete.
#[derive(Debug)]
pub struct Blobs {
    dir: PathBuf,
}

/// The tar stream of a layer being written: gzip over the blob file, both hashed as they pass.
pub struct LayerStream(Hashing<GzEncoder<Hashing<io::BufWriter<fs::File>>>>);

impl Write for LayerStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

impl Blobs {
    /// Write one gzip layer: `fill` appends the entries to the tar builder and returns how many
    /// it appended. The blob is synced and named by its digest only when complete; on an error
    /// nothing is left behind.
    pub fn write_layer(
        &self,
        fill: impl FnOnce(&mut tar::Builder<LayerStream>) -> Result<u64, LayoutError>,
    ) -> Result<LayerBlob, LayoutError> {
        let temp = self.temp_path();
        let result = self.write_layer_to(&temp, fill);
        if result.is_err() {
            // The temporary name is ours alone.
            let _ = fs::remove_file(&temp);
        }
        result
    }

    fn write_layer_to(
        &self,
        temp: &Path,
        fill: impl FnOnce(&mut tar::Builder<LayerStream>) -> Result<u64, LayoutError>,
    ) -> Result<LayerBlob, LayoutError> {
        let file = fs::File::create(temp).map_err(io_err(temp))?;
        let compressed = Hashing::new(io::BufWriter::with_capacity(1 << 20, file));
        let stream = LayerStream(Hashing::new(GzEncoder::new(
            compressed,
            Compression::default(),
        )));
        let mut builder = tar::Builder::new(stream);
        let entries = fill(&mut builder)?;
        let LayerStream(stream) = builder.into_inner().map_err(io_err(temp))?;
        let (gz, diff_id, uncompressed_size) = stream.finish();
        let compressed = gz.finish().map_err(io_err(temp))?;
        let (buffered, digest, size) = compressed.finish();
        let file = buffered
            .into_inner()
            .map_err(|err| io_err(temp)(err.into_error()))?;
        file.sync_all().map_err(io_err(temp))?;
        let path = self.publish(temp, &digest)?;
        Ok(LayerBlob {
            digest,
            diff_id,
            size,
            uncompressed_size,
            entries,
            path,
        })
    }

    fn temp_path(&self) -> PathBuf {
        let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
        self.dir.join(format!(".tmp-{}-{n}", std::process::id()))
    }

    /// Move a complete temporary file to its digest name.
    fn publish(&self, temp: &Path, digest: &str) -> Result<PathBuf, LayoutError> {
        let hex = digest.trim_start_matches("sha256:");
        let path = self.dir.join(hex);
        fs::rename(temp, &path).map_err(io_err(&path))?;
        Ok(path)
    }

    /// Write a small document as a blob and describe it.
    fn write_json(&self, media_type: MediaType, bytes: &[u8]) -> Result<Descriptor, LayoutError> {
        let temp = self.temp_path();
        fs::write(&temp, bytes).map_err(io_err(&temp))?;
        let digest = format!("sha256:{}", hex::encode(Sha256::digest(bytes)));
        self.publish(&temp, &digest)?;
        Ok(Descriptor::new(
            media_type,
            bytes.len() as u64,
            parse_digest(&digest, &self.dir)?,
        ))
    }
}

fn parse_digest(digest: &str, path: &Path) -> Result<Digest, LayoutError> {
    digest.parse::<Digest>().map_err(|err| doc_err(path, err))
}

/// The running machine's architecture in GOARCH words.
fn host_architecture() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "arm" => "arm",
        other => other,
    }
}

fn valid_tag(tag: &str) -> bool {
    let mut chars = tag.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphanumeric() || c == '_')
        && tag.len() <= 128
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

/// Pack `source` as a one-layer image into the OCI layout `output` (created if missing; an
/// existing layout keeps its other tags, and the entry for `options.tag` is replaced).
pub fn write_from_dir(
    source: &Path,
    output: &Path,
    options: &LayoutOptions,
) -> Result<WrittenImage, LayoutError> {
    let tag = tag_of(options)?;
    if !source.is_dir() {
        return Err(LayoutError::NotADirectory {
            path: source.to_path_buf(),
        });
    }
    let source = source.canonicalize().map_err(io_err(source))?;
    prepare_output(output)?;
    let output_abs = output.canonicalize().map_err(io_err(output))?;
    if output_abs.starts_with(&source) {
        return Err(LayoutError::OutputInsideSource {
            output: output_abs,
            source_dir: source,
        });
    }
    let blobs = Blobs {
        dir: output.join("blobs").join("sha256"),
    };
    fs::create_dir_all(&blobs.dir).map_err(io_err(&blobs.dir))?;
    let layer = blobs.write_layer(|builder| {
        let mut packer = Packer {
            builder,
            hardlinks: HashMap::new(),
            entries: 0,
        };
        packer.add_tree(&source, Path::new(""))?;
        Ok(packer.entries)
    })?;
    let manifest_digest = write_image(output, &blobs, std::slice::from_ref(&layer), options)?;
    Ok(WrittenImage {
        reference: format!("oci:{}:{tag}", output.display()),
        manifest_digest,
        layer_digest: layer.digest,
        diff_id: layer.diff_id,
        layer_size: layer.size,
        entries: layer.entries,
    })
}

/// Create the layout `output` (or check that an existing directory is one) and its blobs
/// directory.
pub fn create_layout(output: &Path) -> Result<Blobs, LayoutError> {
    prepare_output(output)?;
    let blobs = Blobs {
        dir: output.join("blobs").join("sha256"),
    };
    fs::create_dir_all(&blobs.dir).map_err(io_err(&blobs.dir))?;
    Ok(blobs)
}

/// Write the config and the manifest of an image made of `layers` (in `blobs`, in order), and
/// add (or replace) its entry for `options.tag` in `index.json`; the manifest's digest.
pub fn write_image(
    output: &Path,
    blobs: &Blobs,
    layers: &[LayerBlob],
    options: &LayoutOptions,
) -> Result<String, LayoutError> {
    let tag = tag_of(options)?;
    let architecture = options
        .architecture
        .as_deref()
        .unwrap_or_else(|| host_architecture());

    let mut config = ConfigBuilder::default();
    if !options.env.is_empty() {
        config = config.env(options.env.clone());
    }
    if !options.entrypoint.is_empty() {
        config = config.entrypoint(options.entrypoint.clone());
    }
    if !options.cmd.is_empty() {
        config = config.cmd(options.cmd.clone());
    }
    if let Some(dir) = options.working_dir.as_ref().filter(|d| !d.is_empty()) {
        config = config.working_dir(dir.clone());
    }
    let config = config.build().map_err(|err| doc_err(output, err))?;
    let rootfs = RootFsBuilder::default()
        .typ("layers")
        .diff_ids(layers.iter().map(|l| l.diff_id.clone()).collect::<Vec<_>>())
        .build()
        .map_err(|err| doc_err(output, err))?;
    let image_config = ImageConfigurationBuilder::default()
        .architecture(Arch::from(architecture))
        .os(Os::Linux)
        .config(config)
        .rootfs(rootfs)
        .build()
        .map_err(|err| doc_err(output, err))?;
    let config_bytes = serde_json::to_vec(&image_config).map_err(|err| doc_err(output, err))?;
    let config_descriptor = blobs.write_json(MediaType::ImageConfig, &config_bytes)?;

    let layer_descriptors = layers
        .iter()
        .map(|layer| {
            Ok(Descriptor::new(
                MediaType::ImageLayerGzip,
                layer.size,
                parse_digest(&layer.digest, &blobs.dir)?,
            ))
        })
        .collect::<Result<Vec<_>, LayoutError>>()?;
    let manifest = ImageManifestBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageManifest)
        .config(config_descriptor)
        .layers(layer_descriptors)
        .build()
        .map_err(|err| doc_err(output, err))?;
    let manifest_bytes = serde_json::to_vec(&manifest).map_err(|err| doc_err(output, err))?;
    let manifest_blob = blobs.write_json(MediaType::ImageManifest, &manifest_bytes)?;

    let platform = PlatformBuilder::default()
        .architecture(Arch::from(architecture))
        .os(Os::Linux)
        .build()
        .map_err(|err| doc_err(output, err))?;
    let manifest_descriptor = DescriptorBuilder::default()
        .media_type(MediaType::ImageManifest)
        .size(manifest_blob.size())
        .digest(manifest_blob.digest().clone())
        .platform(platform)
        .annotations(HashMap::from([(
            ANNOTATION_REF_NAME.to_owned(),
            tag.to_owned(),
        )]))
        .build()
        .map_err(|err| doc_err(output, err))?;
    write_index(output, tag, manifest_descriptor)?;
    Ok(manifest_blob.digest().to_string())
}

/// The tag of `options` (`latest` when empty), if it can be a ref name.
fn tag_of(options: &LayoutOptions) -> Result<&str, LayoutError> {
    let tag = if options.tag.is_empty() {
        "latest"
    } else {
        options.tag.as_str()
    };
    if !valid_tag(tag) {
        return Err(LayoutError::InvalidTag {
            tag: tag.to_owned(),
        });
    }
    Ok(tag)
}

/// Create the layout skeleton, or check that an existing directory is a layout.
fn prepare_output(output: &Path) -> Result<(), LayoutError> {
    let marker = output.join("oci-layout");
    match fs::read_dir(output) {
        Ok(mut entries) => {
            let empty = entries.next().is_none();
            if !empty && !marker.is_file() {
                return Err(LayoutError::NotALayout {
                    path: output.to_path_buf(),
                });
            }
        }
        Err(err) if err.kind() == io::ErrorKind::NotFound => {
            fs::create_dir_all(output).map_err(io_err(output))?;
        }
        Err(err) => return Err(io_err(output)(err)),
    }
    let layout = OciLayoutBuilder::default()
        .image_layout_version("1.0.0")
        .build()
        .map_err(|err| doc_err(&marker, err))?;
    let bytes = serde_json::to_vec(&layout).map_err(|err| doc_err(&marker, err))?;
    fs::write(&marker, bytes).map_err(io_err(&marker))
}

/// Add (or replace) the entry for `tag` in `index.json`, written atomically.
fn write_index(output: &Path, tag: &str, descriptor: Descriptor) -> Result<(), LayoutError> {
    let path = output.join("index.json");
    let mut manifests = match fs::read(&path) {
        Ok(bytes) => {
            let index: ImageIndex =
                serde_json::from_slice(&bytes).map_err(|err| doc_err(&path, err))?;
            index.manifests().clone()
        }
        Err(err) if err.kind() == io::ErrorKind::NotFound => Vec::new(),
        Err(err) => return Err(io_err(&path)(err)),
    };
    manifests.retain(|existing| {
        existing
            .annotations()
            .as_ref()
            .and_then(|a| a.get(ANNOTATION_REF_NAME))
            .map(String::as_str)
            != Some(tag)
    });
    manifests.push(descriptor);
    let index = ImageIndexBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageIndex)
        .manifests(manifests)
        .build()
        .map_err(|err| doc_err(&path, err))?;
    let bytes = serde_json::to_vec_pretty(&index).map_err(|err| doc_err(&path, err))?;
    let temp = output.join(format!(".index.json.tmp-{}", std::process::id()));
    fs::write(&temp, bytes).map_err(io_err(&temp))?;
    fs::rename(&temp, &path).map_err(io_err(&path))
}

/// Walks the source tree in sorted order and appends each entry as root-owned, epoch-dated.
struct Packer<'a> {
    builder: &'a mut tar::Builder<LayerStream>,
    /// (device, inode) of regular files with several links → first path in the layer.
    hardlinks: HashMap<(u64, u64), PathBuf>,
    entries: u64,
}

impl Packer<'_> {
    fn add_tree(&mut self, dir: &Path, relative: &Path) -> Result<(), LayoutError> {
        let mut names: Vec<_> = fs::read_dir(dir)
            .map_err(io_err(dir))?
            .map(|entry| entry.map(|e| e.file_name()))
            .collect::<Result<_, _>>()
            .map_err(io_err(dir))?;
        names.sort();
        for name in names {
            let path = dir.join(&name);
            let inner = relative.join(&name);
            let metadata = fs::symlink_metadata(&path).map_err(io_err(&path))?;
            let file_type = metadata.file_type();
            let mut header = tar::Header::new_gnu();
            header.set_uid(0);
            header.set_gid(0);
            header.set_mtime(0);
            header.set_mode(metadata.mode() & 0o7777);
            if file_type.is_dir() {
                header.set_entry_type(tar::EntryType::Directory);
                header.set_size(0);
                self.builder
                    .append_data(&mut header, &inner, io::empty())
                    .map_err(io_err(&path))?;
                self.entries += 1;
                self.add_tree(&path, &inner)?;
            } else if file_type.is_symlink() {
                let target = fs::read_link(&path).map_err(io_err(&path))?;
                header.set_entry_type(tar::EntryType::Symlink);
                header.set_size(0);
                self.builder
                    .append_link(&mut header, &inner, &target)
                    .map_err(io_err(&path))?;
                self.entries += 1;
            } else if file_type.is_file() {
                let key = (metadata.dev(), metadata.ino());
                if metadata.nlink() > 1 {
                    if let Some(first) = self.hardlinks.get(&key) {
                        header.set_entry_type(tar::EntryType::Link);
                        header.set_size(0);
                        self.builder
                            .append_link(&mut header, &inner, first)
                            .map_err(io_err(&path))?;
                        self.entries += 1;
                        continue;
                    }
                    self.hardlinks.insert(key, inner.clone());
                }
                header.set_entry_type(tar::EntryType::Regular);
                header.set_size(metadata.len());
                let file = fs::File::open(&path).map_err(io_err(&path))?;
                self.builder
                    .append_data(&mut header, &inner, file)
                    .map_err(io_err(&path))?;
                self.entries += 1;
            } else if file_type.is_fifo() || file_type.is_socket() || file_type.is_block_device() {
                // Containers get their devices from the engine; sockets and pipes are runtime
                // state, not image content.
                tracing::warn!(path = %path.display(), "skipping a special file: images carry no devices, sockets or pipes");
            } else {
                tracing::warn!(path = %path.display(), "skipping a file of unknown type");
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn sample_tree(root: &Path) {
        fs::create_dir_all(root.join("bin")).unwrap();
        fs::write(root.join("bin/tool"), b"#!/bin/sh\necho hi\n").unwrap();
        std::os::unix::fs::symlink("tool", root.join("bin/alias")).unwrap();
        fs::hard_link(root.join("bin/tool"), root.join("bin/same")).unwrap();
        let mut perms = fs::metadata(root.join("bin/tool")).unwrap().permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
        fs::set_permissions(root.join("bin/tool"), perms).unwrap();
    }

    fn options() -> LayoutOptions {
        LayoutOptions {
            tag: "demo".into(),
            env: vec!["PATH=/bin".into()],
            cmd: vec!["/bin/tool".into()],
            working_dir: Some("/work".into()),
            ..LayoutOptions::default()
        }
    }

    fn blob(layout: &Path, digest: &str) -> Vec<u8> {
        fs::read(
            layout
                .join("blobs/sha256")
                .join(digest.trim_start_matches("sha256:")),
        )
        .unwrap()
    }

    #[test]
    fn packed_layer_holds_the_tree_with_links_owned_by_root() {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("src");
        sample_tree(&src);
        let out = tmp.path().join("layout");
        let written = write_from_dir(&src, &out, &options()).unwrap();
        assert_eq!(written.reference, format!("oci:{}:demo", out.display()));

        let compressed = blob(&out, &written.layer_digest);
        assert_eq!(
            format!("sha256:{}", hex::encode(Sha256::digest(&compressed))),
            written.layer_digest
        );
        let mut tar_bytes = Vec::new();
        flate2::read::GzDecoder::new(&compressed[..])
            .read_to_end(&mut tar_bytes)
            .unwrap();
        assert_eq!(
            format!("sha256:{}", hex::encode(Sha256::digest(&tar_bytes))),
            written.diff_id
        );

        let mut archive = tar::Archive::new(&tar_bytes[..]);
        let mut seen = Vec::new();
        for entry in archive.entries().unwrap() {
            let entry = entry.unwrap();
            let header = entry.header();
            assert_eq!(
                (
                    header.uid().unwrap(),
                    header.gid().unwrap(),
                    header.mtime().unwrap()
                ),
                (0, 0, 0)
            );
            let link = entry.link_name().unwrap().map(|l| l.display().to_string());
            seen.push((
                entry.path().unwrap().display().to_string(),
                header.entry_type(),
                link,
            ));
        }
        assert_eq!(
            seen,
            vec![
                ("bin".into(), tar::EntryType::Directory, None),
                (
                    "bin/alias".into(),
                    tar::EntryType::Symlink,
                    Some("tool".into())
                ),
                ("bin/same".into(), tar::EntryType::Regular, None),
                (
                    "bin/tool".into(),
                    tar::EntryType::Link,
                    Some("bin/same".into())
                ),
            ]
        );
    }

    #[test]
    fn config_carries_env_cmd_and_working_dir_and_index_names_the_tag() {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("src");
        sample_tree(&src);
        let out = tmp.path().join("layout");
        let written = write_from_dir(&src, &out, &options()).unwrap();

        let index: serde_json::Value =
            serde_json::from_slice(&fs::read(out.join("index.json")).unwrap()).unwrap();
        let entry = &index["manifests"][0];
        assert_eq!(entry["annotations"][ANNOTATION_REF_NAME], "demo");
        assert_eq!(entry["digest"], written.manifest_digest);
        let manifest: serde_json::Value =
            serde_json::from_slice(&blob(&out, &written.manifest_digest)).unwrap();
        let config_digest = manifest["config"]["digest"].as_str().unwrap();
        let config: serde_json::Value = serde_json::from_slice(&blob(&out, config_digest)).unwrap();
        assert_eq!(config["config"]["Env"][0], "PATH=/bin");
        assert_eq!(config["config"]["Cmd"][0], "/bin/tool");
        assert_eq!(config["config"]["WorkingDir"], "/work");
        assert_eq!(config["rootfs"]["diff_ids"][0], written.diff_id);
        assert_eq!(manifest["layers"][0]["digest"], written.layer_digest);
    }

    #[test]
    fn packing_twice_gives_the_same_digests_and_keeps_other_tags() {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("src");
        sample_tree(&src);
        let out = tmp.path().join("layout");
        let first = write_from_dir(&src, &out, &options()).unwrap();
        let again = write_from_dir(&src, &out, &options()).unwrap();
        assert_eq!(first, again);
        let other = LayoutOptions {
            tag: "other".into(),
            ..options()
        };
        write_from_dir(&src, &out, &other).unwrap();
        let index: serde_json::Value =
            serde_json::from_slice(&fs::read(out.join("index.json")).unwrap()).unwrap();
        assert_eq!(index["manifests"].as_array().unwrap().len(), 2);
        let leftovers: Vec<_> = fs::read_dir(out.join("blobs/sha256"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|name| name.starts_with('.'))
            .collect();
        assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
    }

    #[test]
    fn output_inside_the_source_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        sample_tree(tmp.path());
        let err = write_from_dir(tmp.path(), &tmp.path().join("layout"), &options()).unwrap_err();
        assert!(
            matches!(err, LayoutError::OutputInsideSource { .. }),
            "{err}"
        );
    }

    #[test]
    fn an_output_directory_that_is_not_a_layout_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("src");
        sample_tree(&src);
        let out = tmp.path().join("precious");
        fs::create_dir(&out).unwrap();
        fs::write(out.join("notes.txt"), b"keep me").unwrap();
        let err = write_from_dir(&src, &out, &options()).unwrap_err();
        assert!(
            err.to_string().contains("is not an OCI image layout"),
            "{err}"
        );
        assert_eq!(fs::read(out.join("notes.txt")).unwrap(), b"keep me");
    }

    #[test]
    fn a_tag_with_a_slash_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("src");
        sample_tree(&src);
        let bad = LayoutOptions {
            tag: "a/b".into(),
            ..options()
        };
        let err = write_from_dir(&src, &tmp.path().join("layout"), &bad).unwrap_err();
        assert!(matches!(err, LayoutError::InvalidTag { .. }), "{err}");
    }
}
