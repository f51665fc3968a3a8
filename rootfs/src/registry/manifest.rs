//! The manifest, index and config documents, OCI or Docker schema 2, and platform selection.

use serde::Deserialize;

use crate::digest::Digest;
use crate::image::ImageConfig;

/// OCI image manifest.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image index.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// Docker schema 2 manifest.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker manifest list.
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// `Accept` for manifest requests: every type this client understands.
pub const ACCEPT: &str = "application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json";

/// Why a document could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// Not JSON of the expected shape.
    #[error("{what} is not a valid OCI/Docker document: {source}")]
    Parse {
        /// Which document.
        what: String,
        /// Parse error.
        #[source]
        source: serde_json::Error,
    },
    /// Docker schema 1 and other relics.
    #[error(
        "{what} has media type `{media_type}`, which is not supported: push the image as OCI or Docker schema 2"
    )]
    Unsupported {
        /// Which document.
        what: String,
        /// The type.
        media_type: String,
    },
    /// No entry for the wanted platform.
    #[error(
        "{what} has no image for {wanted}; it has: {available}. Pass another platform (--platform) or push a {wanted} image"
    )]
    NoPlatform {
        /// Which document.
        what: String,
        /// What was asked for.
        wanted: Platform,
        /// What is there.
        available: String,
    },
    /// Layer count and DiffID count disagree.
    #[error(
        "{what} lists {layers} layers but its config lists {diff_ids} diff_ids: the image is malformed"
    )]
    LayerCount {
        /// Which image.
        what: String,
        /// Layers in the manifest.
        layers: usize,
        /// DiffIDs in the config.
        diff_ids: usize,
    },
    /// Malformed platform string.
    #[error("`{0}` is not a platform: write os/arch[/variant], e.g. linux/arm64")]
    BadPlatform(String),
}

/// A content descriptor.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    /// Media type.
    #[serde(default)]
    pub media_type: String,
    /// Content digest.
    pub digest: Digest,
    /// Size in bytes.
    #[serde(default)]
    pub size: u64,
    /// Platform of an index entry.
    #[serde(default)]
    pub platform: Option<PlatformSpec>,
    /// Annotations (`org.opencontainers.image.ref.name` in layouts).
    #[serde(default)]
    pub annotations: std::collections::HashMap<String, String>,
}

/// The platform object of an index entry.
#[derive(Clone, Debug, Deserialize, Default)]
pub struct PlatformSpec {
    /// `linux`.
    #[serde(default)]
    pub os: String,
    /// `amd64`, `arm64`, ...
    #[serde(default)]
    pub architecture: String,
    /// `v8`, ...
    #[serde(default)]
    pub variant: Option<String>,
}

/// A single-platform image manifest.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    /// Media type.
    #[serde(default)]
    pub media_type: Option<String>,
    /// The config blob.
    pub config: Descriptor,
    /// Layer blobs, bottom first.
    pub layers: Vec<Descriptor>,
}

/// An index or manifest list.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Index {
    /// Entries.
    pub manifests: Vec<Descriptor>,
}

/// Either document a manifest endpoint may answer with.
#[derive(Clone, Debug)]
#[allow(clippy::large_enum_variant)] // short-lived, parsed once per pull
pub enum Document {
    /// One image.
    Manifest(Manifest),
    /// Several, by platform.
    Index(Index),
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Probe {
    #[serde(default)]
    schema_version: Option<u32>,
    #[serde(default)]
    media_type: Option<String>,
    #[serde(default)]
    manifests: Option<serde_json::Value>,
}

impl Document {
    /// Parse a manifest or index, deciding by media type (header, then body) and shape.
    pub fn parse(
        what: &str,
        content_type: Option<&str>,
        body: &[u8],
    ) -> Result<Self, ManifestError> {
        let perr = |source| ManifestError::Parse {
            what: what.to_owned(),
            source,
        };
        let probe: Probe = serde_json::from_slice(body).map_err(perr)?;
        let media_type = probe
            .media_type
            .clone()
            .or_else(|| content_type.map(|c| c.split(';').next().unwrap_or(c).trim().to_owned()))
            .unwrap_or_default();
        if probe.schema_version == Some(1)
            || media_type.contains("manifest.v1+") && !media_type.contains("oci")
        {
            return Err(ManifestError::Unsupported {
                what: what.to_owned(),
                media_type,
            });
        }
        if probe.manifests.is_some() || media_type == OCI_INDEX || media_type == DOCKER_LIST {
            return serde_json::from_slice(body).map(Self::Index).map_err(perr);
        }
        serde_json::from_slice(body)
            .map(Self::Manifest)
            .map_err(perr)
    }
}

/// `os/arch[/variant]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Platform {
    /// `linux`.
    pub os: String,
    /// Go architecture name.
    pub architecture: String,
    /// Variant, if any.
    pub variant: Option<String>,
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

impl Platform {
    /// The machine this runs on (Go's names: x86_64 is amd64, aarch64 is arm64/v8).
    pub fn host() -> Self {
        let (architecture, variant) = match std::env::consts::ARCH {
            "x86_64" => ("amd64", None),
            "aarch64" => ("arm64", Some("v8")),
            "arm" => ("arm", Some("v7")),
            "x86" => ("386", None),
            other => (other, None),
        };
        Self {
            os: "linux".into(),
            architecture: architecture.into(),
            variant: variant.map(Into::into),
        }
    }

    /// Parse `os/arch[/variant]`.
    pub fn parse(s: &str) -> Result<Self, ManifestError> {
        let parts: Vec<&str> = s.split('/').collect();
        match parts.as_slice() {
            [os, arch] if !os.is_empty() && !arch.is_empty() => Ok(Self {
                os: (*os).into(),
                architecture: (*arch).into(),
                variant: None,
            }),
            [os, arch, variant] if !os.is_empty() && !arch.is_empty() && !variant.is_empty() => {
                Ok(Self {
                    os: (*os).into(),
                    architecture: (*arch).into(),
                    variant: Some((*variant).into()),
                })
            }
            _ => Err(ManifestError::BadPlatform(s.to_owned())),
        }
    }

    /// Whether an index entry serves this platform (arm64 without a variant means v8).
    pub fn matches(&self, p: &PlatformSpec) -> bool {
        if p.os != self.os || p.architecture != self.architecture {
            return false;
        }
        let normal = |v: Option<&str>| -> Option<String> {
            match (self.architecture.as_str(), v) {
                ("arm64", None) => Some("v8".into()),
                (_, v) => v.map(Into::into),
            }
        };
        match &self.variant {
            None => true,
            Some(want) => normal(p.variant.as_deref()).as_deref() == normal(Some(want)).as_deref(),
        }
    }
}

/// Pick the entry of `index` for `platform`.
pub fn select<'a>(
    what: &str,
    index: &'a Index,
    platform: &Platform,
) -> Result<&'a Descriptor, ManifestError> {
    index
        .manifests
        .iter()
        .find(|d| d.platform.as_ref().is_some_and(|p| platform.matches(p)))
        .ok_or_else(|| ManifestError::NoPlatform {
            what: what.to_owned(),
            wanted: platform.clone(),
            available: index
                .manifests
                .iter()
                .filter_map(|d| d.platform.as_ref())
                .filter(|p| p.os != "unknown")
                .map(|p| match &p.variant {
                    Some(v) => format!("{}/{}/{v}", p.os, p.architecture),
                    None => format!("{}/{}", p.os, p.architecture),
                })
                .collect::<Vec<_>>()
                .join(", "),
        })
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct RuntimeConfig {
    #[serde(default)]
    env: Option<Vec<String>>,
    #[serde(default)]
    entrypoint: Option<Vec<String>>,
    #[serde(default)]
    cmd: Option<Vec<String>>,
    #[serde(default)]
    working_dir: Option<String>,
    #[serde(default)]
    user: Option<String>,
}

#[derive(Deserialize, Default)]
struct RootFs {
    #[serde(default)]
    diff_ids: Vec<Digest>,
}

#[derive(Deserialize)]
struct ConfigFile {
    #[serde(default)]
    config: Option<RuntimeConfig>,
    #[serde(default)]
    rootfs: RootFs,
}

/// The image config blob: how to run it and the DiffIDs of its layers.
pub fn parse_config(what: &str, body: &[u8]) -> Result<(ImageConfig, Vec<Digest>), ManifestError> {
    let file: ConfigFile = serde_json::from_slice(body).map_err(|source| ManifestError::Parse {
        what: what.to_owned(),
        source,
    })?;
    let c = file.config.unwrap_or_default();
    let config = ImageConfig {
        env: c.env.unwrap_or_default(),
        entrypoint: c.entrypoint.unwrap_or_default(),
        cmd: c.cmd.unwrap_or_default(),
        working_dir: c.working_dir.filter(|s| !s.is_empty()),
        user: c.user.filter(|s| !s.is_empty()),
    };
    Ok((config, file.rootfs.diff_ids))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index() -> Index {
        let d = format!("sha256:{}", "a".repeat(64));
        let text = format!(
            r#"{{"manifests":[
            {{"digest":"{d}","size":1,"platform":{{"os":"linux","architecture":"amd64"}}}},
            {{"digest":"{d}","size":2,"platform":{{"os":"linux","architecture":"arm64","variant":"v8"}}}},
            {{"digest":"{d}","size":3,"platform":{{"os":"unknown","architecture":"unknown"}}}}]}}"#
        );
        match Document::parse("t", None, text.as_bytes()).unwrap() {
            Document::Index(i) => i,
            Document::Manifest(_) => panic!("parsed as manifest"),
        }
    }

    #[test]
    fn the_entry_for_the_wanted_platform_is_selected() {
        let i = index();
        let arm = Platform::parse("linux/arm64").unwrap();
        assert_eq!(select("t", &i, &arm).unwrap().size, 2);
        let arm8 = Platform::parse("linux/arm64/v8").unwrap();
        assert_eq!(select("t", &i, &arm8).unwrap().size, 2);
        let amd = Platform::parse("linux/amd64").unwrap();
        assert_eq!(select("t", &i, &amd).unwrap().size, 1);
    }

    #[test]
    fn a_missing_platform_lists_what_the_index_has() {
        let err = select("t", &index(), &Platform::parse("linux/s390x").unwrap()).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("linux/amd64, linux/arm64/v8"), "{text}");
        assert!(!text.contains("unknown"), "{text}");
    }

    #[test]
    fn schema1_manifests_are_refused_by_name() {
        let err = Document::parse("t", None, br#"{"schemaVersion":1,"fsLayers":[]}"#).unwrap_err();
        assert!(matches!(err, ManifestError::Unsupported { .. }));
    }

    #[test]
    fn config_runtime_fields_and_diff_ids_are_read() {
        let d = format!("sha256:{}", "b".repeat(64));
        let body = format!(
            r#"{{"architecture":"amd64","config":{{"Env":["A=1"],"Cmd":["sh"],"WorkingDir":""}},"rootfs":{{"type":"layers","diff_ids":["{d}"]}}}}"#
        );
        let (c, ids) = parse_config("t", body.as_bytes()).unwrap();
        assert_eq!(c.env, vec!["A=1"]);
        assert_eq!(c.cmd, vec!["sh"]);
        assert_eq!(c.working_dir, None);
        assert_eq!(ids.len(), 1);
    }
}
