//! Packing a root as an OCI image layout, and pushing it to the harness registry.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use sha2::{Digest as _, Sha256};

use super::arch::DebArch;
use super::command::{progress, run_ok};
use crate::Registry;
use crate::oci::{Blob, Pusher};

/// `PATH` in the images' configs: Debian's default for root.
pub(super) const IMAGE_PATH: &str =
    "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The runtime parameters of an image's config.
#[derive(Clone, Debug)]
pub struct ImageConfig {
    /// `Env`.
    pub env: Vec<String>,
    /// `Entrypoint`.
    pub entrypoint: Vec<String>,
    /// `Cmd`.
    pub cmd: Vec<String>,
}

impl ImageConfig {
    /// Debian's `PATH` and `Cmd ["/bin/sh"]`, as `debian:bookworm` has.
    pub fn shell() -> Self {
        Self {
            env: vec![IMAGE_PATH.to_owned()],
            entrypoint: Vec::new(),
            cmd: vec!["/bin/sh".to_owned()],
        }
    }
}

/// Write `root` as a one-layer OCI image layout into `dest`: the layer is GNU tar's archive of
/// the tree (hard links, symlinks and modes as they are, owners numeric), gzip at the fastest
/// level (the pull's decompression is what the tests wait for). tar, gzip and sha256sum do
/// the byte work: the tests' debug build would take minutes over a gigabyte.
pub fn write_layout(root: &Path, dest: &Path, arch: DebArch, config: &ImageConfig) {
    let started = Instant::now();
    let blobs = dest.join("blobs/sha256");
    std::fs::create_dir_all(&blobs)
        .unwrap_or_else(|err| panic!("cannot create {}: {err}", blobs.display()));
    // Top-level names without a `./` prefix, sorted, so the layer is stable.
    let mut top: Vec<String> = std::fs::read_dir(root)
        .unwrap_or_else(|err| panic!("cannot read {}: {err}", root.display()))
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    top.sort();
    let temp = blobs.join("layer.tmp");
    let out = run_ok(
        Command::new("bash")
            .args([
                "-o",
                "pipefail",
                "-ec",
                r#"layer=$1 root=$2; shift 2
                   tar -C "$root" --numeric-owner --sort=name --format=gnu -cf - "$@" | gzip -1 -n > "$layer"
                   gzip -dc "$layer" | sha256sum | cut -d' ' -f1
                   sha256sum "$layer" | cut -d' ' -f1"#,
                "write_layout",
            ])
            .arg(&temp)
            .arg(root)
            .args(&top),
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let mut sums = text.lines();
    let (Some(diff_hex), Some(layer_hex)) = (sums.next(), sums.next()) else {
        panic!("write_layout: no digests from sha256sum: {text}");
    };
    let diff_id = format!("sha256:{diff_hex}");
    let layer_hex = layer_hex.to_owned();
    let layer_size = std::fs::metadata(&temp)
        .unwrap_or_else(|err| panic!("{}: {err}", temp.display()))
        .len();
    std::fs::rename(&temp, blobs.join(&layer_hex))
        .unwrap_or_else(|err| panic!("cannot name the layer blob: {err}"));

    let mut image_config = serde_json::json!({"Env": config.env});
    if !config.entrypoint.is_empty() {
        image_config["Entrypoint"] = serde_json::json!(config.entrypoint);
    }
    if !config.cmd.is_empty() {
        image_config["Cmd"] = serde_json::json!(config.cmd);
    }
    let config_json = serde_json::json!({
        "architecture": arch.name(),
        "os": "linux",
        "config": image_config,
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
    });
    let config_bytes = serde_json::to_vec(&config_json).expect("config is JSON");
    let config_hex = write_blob(&blobs, &config_bytes);
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": format!("sha256:{config_hex}"), "size": config_bytes.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": format!("sha256:{layer_hex}"), "size": layer_size}],
    });
    let manifest_bytes = serde_json::to_vec(&manifest).expect("manifest is JSON");
    let manifest_hex = write_blob(&blobs, &manifest_bytes);
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": format!("sha256:{manifest_hex}"),
            "size": manifest_bytes.len(),
            "platform": {"architecture": arch.name(), "os": "linux"},
            "annotations": {"org.opencontainers.image.ref.name": "latest"},
        }],
    });
    std::fs::write(
        dest.join("index.json"),
        serde_json::to_vec(&index).expect("index is JSON"),
    )
    .unwrap_or_else(|err| panic!("cannot write index.json: {err}"));
    std::fs::write(
        dest.join("oci-layout"),
        br#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .unwrap_or_else(|err| panic!("cannot write oci-layout: {err}"));
    progress(
        &format!(
            "layout of {}: layer {} MiB gzip",
            root.display(),
            layer_size >> 20
        ),
        started,
    );
}

fn write_blob(blobs: &Path, bytes: &[u8]) -> String {
    let hex = hex::encode(Sha256::digest(bytes));
    let path = blobs.join(&hex);
    std::fs::write(&path, bytes)
        .unwrap_or_else(|err| panic!("cannot write {}: {err}", path.display()));
    hex
}

/// An OCI image layout written by [`write_layout`]: its manifest and the blobs it names.
#[derive(Clone, Debug)]
pub struct OciImage {
    /// The layout directory (`oci:<dir>:latest` names it for `SCAR_IMAGE` too).
    pub dir: PathBuf,
    manifest: Blob,
    blobs: Vec<String>,
}

impl OciImage {
    /// Read the layout at `dir` (one manifest, tagged `latest`).
    pub fn open(dir: &Path) -> OciImage {
        let read_json = |path: PathBuf| -> serde_json::Value {
            let bytes = std::fs::read(&path)
                .unwrap_or_else(|err| panic!("cannot read {}: {err}", path.display()));
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|err| panic!("{} is not JSON: {err}", path.display()))
        };
        let index = read_json(dir.join("index.json"));
        let digest = index["manifests"][0]["digest"]
            .as_str()
            .unwrap_or_else(|| panic!("{}/index.json names no manifest", dir.display()))
            .to_owned();
        let blob_path = |digest: &str| {
            dir.join("blobs/sha256")
                .join(digest.trim_start_matches("sha256:"))
        };
        let manifest_bytes = std::fs::read(blob_path(&digest))
            .unwrap_or_else(|err| panic!("cannot read the manifest {digest}: {err}"));
        let manifest: serde_json::Value = serde_json::from_slice(&manifest_bytes)
            .unwrap_or_else(|err| panic!("the manifest {digest} is not JSON: {err}"));
        let mut blobs = vec![
            manifest["config"]["digest"]
                .as_str()
                .unwrap_or_else(|| panic!("the manifest {digest} has no config"))
                .to_owned(),
        ];
        for layer in manifest["layers"].as_array().into_iter().flatten() {
            blobs.push(
                layer["digest"]
                    .as_str()
                    .unwrap_or_else(|| panic!("a layer of {digest} has no digest"))
                    .to_owned(),
            );
        }
        OciImage {
            dir: dir.to_path_buf(),
            manifest: Blob {
                media_type: "application/vnd.oci.image.manifest.v1+json".to_owned(),
                bytes: manifest_bytes,
            },
            blobs,
        }
    }

    /// Push the image as `repo:tag` to `registry` and return the reference for `SCAR_IMAGE`
    /// (`127.0.0.1:PORT/repo:tag`; the registry is plain HTTP: set `SCAR_INSECURE_REGISTRIES`).
    pub fn push(&self, registry: &Registry, repo: &str, tag: &str) -> String {
        let started = Instant::now();
        let pusher = Pusher::new(&registry.url(), None);
        for digest in &self.blobs {
            let path = self
                .dir
                .join("blobs/sha256")
                .join(digest.trim_start_matches("sha256:"));
            pusher.blob_file(repo, &path, digest);
        }
        pusher.manifest(repo, tag, &self.manifest);
        progress(&format!("pushed {repo}:{tag}"), started);
        format!("{}/{repo}:{tag}", registry.host())
    }

    /// Size of the layer blobs in MiB.
    pub fn layers_mib(&self) -> u64 {
        self.blobs
            .iter()
            .skip(1)
            .filter_map(|d| {
                std::fs::metadata(
                    self.dir
                        .join("blobs/sha256")
                        .join(d.trim_start_matches("sha256:")),
                )
                .ok()
            })
            .map(|m| m.len() >> 20)
            .sum()
    }
}
