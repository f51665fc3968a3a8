//! The manifest, index and config documents, OCI or Docker schema 2, read through `oci-spec`'s
//! types, and platform selection.

use oci_spec::image::{Arch, Os, Platform as OciPlatform};
use oci_spec::image::{Descriptor, ImageConfiguration, ImageIndex, ImageManifest};
use serde_json::Value;

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

/// Either document a manifest endpoint may answer with.
#[derive(Clone, Debug)]
#[allow(clippy::large_enum_variant)] // short-lived, parsed once per pull
pub enum Document {
    /// One image.
    Manifest(ImageManifest),
    /// Several, by platform (an OCI index or a Docker manifest list).
    Index(ImageIndex),
}

impl Document {
    /// Parse a manifest or index, deciding by media type (body, then header) and shape.
    pub fn parse(
        what: &str,
        content_type: Option<&str>,
        body: &[u8],
    ) -> Result<Self, ManifestError> {
        let perr = |source| ManifestError::Parse {
            what: what.to_owned(),
            source,
        };
        let mut value: Value = serde_json::from_slice(body).map_err(perr)?;
        let schema_version = value.get("schemaVersion").and_then(Value::as_u64);
        let media_type = value
            .get("mediaType")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .or_else(|| content_type.map(|c| c.split(';').next().unwrap_or(c).trim().to_owned()))
            .unwrap_or_default();
        if schema_version == Some(1)
            || media_type.contains("manifest.v1+") && !media_type.contains("oci")
        {
            return Err(ManifestError::Unsupported {
                what: what.to_owned(),
                media_type,
            });
        }
        let is_index = value.get("manifests").is_some_and(|m| !m.is_null())
            || media_type == OCI_INDEX
            || media_type == DOCKER_LIST;
        lenient::document(&mut value);
        let document = if is_index {
            let index: ImageIndex = serde_json::from_value(value).map_err(perr)?;
            for d in index.manifests() {
                digest_of(what, d)?;
            }
            Self::Index(index)
        } else {
            let manifest: ImageManifest = serde_json::from_value(value).map_err(perr)?;
            for d in std::iter::once(manifest.config()).chain(manifest.layers()) {
                digest_of(what, d)?;
            }
            Self::Manifest(manifest)
        };
        Ok(document)
    }
}

/// The sha256 digest a descriptor names: the only algorithm this client verifies, so a
/// document naming another is refused as it was before it was read through `oci-spec`.
pub fn digest_of(what: &str, descriptor: &Descriptor) -> Result<Digest, ManifestError> {
    descriptor
        .digest()
        .as_ref()
        .parse()
        .map_err(|e: crate::digest::DigestError| ManifestError::Parse {
            what: what.to_owned(),
            source: serde::de::Error::custom(e),
        })
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
    pub fn matches(&self, p: &OciPlatform) -> bool {
        // Compared as `oci-spec` reads them (`Os::from`, `Arch::from`), so both sides agree.
        if *p.os() != Os::from(self.os.as_str())
            || *p.architecture() != Arch::from(self.architecture.as_str())
        {
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
            Some(want) => {
                normal(p.variant().as_deref()).as_deref() == normal(Some(want)).as_deref()
            }
        }
    }
}

/// Pick the entry of an index's `manifests` for `platform`.
pub fn select<'a>(
    what: &str,
    manifests: &'a [Descriptor],
    platform: &Platform,
) -> Result<&'a Descriptor, ManifestError> {
    manifests
        .iter()
        .find(|d| d.platform().as_ref().is_some_and(|p| platform.matches(p)))
        .ok_or_else(|| ManifestError::NoPlatform {
            what: what.to_owned(),
            wanted: platform.clone(),
            available: manifests
                .iter()
                .filter_map(|d| d.platform().as_ref())
                .filter(|p| *p.os() != Os::Other("unknown".into()))
                .map(|p| match p.variant() {
                    Some(v) => format!("{}/{}/{v}", p.os(), p.architecture()),
                    None => format!("{}/{}", p.os(), p.architecture()),
                })
                .collect::<Vec<_>>()
                .join(", "),
        })
}

/// The image config blob: how to run it and the DiffIDs of its layers.
pub fn parse_config(what: &str, body: &[u8]) -> Result<(ImageConfig, Vec<Digest>), ManifestError> {
    let perr = |source| ManifestError::Parse {
        what: what.to_owned(),
        source,
    };
    let mut value: Value = serde_json::from_slice(body).map_err(perr)?;
    lenient::config(&mut value);
    let file: ImageConfiguration = serde_json::from_value(value).map_err(perr)?;
    let diff_ids = file
        .rootfs()
        .diff_ids()
        .iter()
        .map(|d| {
            d.parse()
                .map_err(|e: crate::digest::DigestError| perr(serde::de::Error::custom(e)))
        })
        .collect::<Result<Vec<Digest>, _>>()?;
    let config = match file.config() {
        Some(c) => ImageConfig {
            env: c.env().clone().unwrap_or_default(),
            entrypoint: c.entrypoint().clone().unwrap_or_default(),
            cmd: c.cmd().clone().unwrap_or_default(),
            working_dir: c.working_dir().clone().filter(|s| !s.is_empty()),
            user: c.user().clone().filter(|s| !s.is_empty()),
        },
        None => ImageConfig::default(),
    };
    Ok((config, diff_ids))
}

/// What real images send that `oci-spec`'s types refuse and this client always accepted,
/// filled in before the typed parse. Only absent keys are added (and ignored fields that
/// `oci-spec` reads more strictly than the tools that write them are dropped); a present
/// value is never changed, so every check on what a document says stays as strict.
mod lenient {
    use serde_json::{Map, Value, json};

    /// A manifest or index: `schemaVersion` (the media type or shape already said which),
    /// and in each descriptor the fields older tools and layouts omit.
    pub(super) fn document(value: &mut Value) {
        let Some(doc) = value.as_object_mut() else {
            return;
        };
        fill(doc, "schemaVersion", json!(2));
        if let Some(config) = doc.get_mut("config").and_then(Value::as_object_mut) {
            descriptor(config);
        }
        for key in ["layers", "manifests"] {
            if let Some(list) = doc.get_mut(key).and_then(Value::as_array_mut) {
                for d in list.iter_mut().filter_map(Value::as_object_mut) {
                    descriptor(d);
                }
            }
        }
    }

    /// `mediaType` and `size` of a descriptor (an index entry without them still names its
    /// manifest by digest, which is verified), and `os`/`architecture` of its platform.
    fn descriptor(d: &mut Map<String, Value>) {
        fill(d, "mediaType", json!(""));
        fill(d, "size", json!(0));
        if let Some(p) = d.get_mut("platform").and_then(Value::as_object_mut) {
            fill(p, "os", json!(""));
            fill(p, "architecture", json!(""));
        }
    }

    /// A config: `architecture`, `os` and `rootfs` may be absent (no layers: an empty root);
    /// `ExposedPorts` and `Volumes` are maps `oci-spec` wants with `{}` values and `Labels` one
    /// it wants with string values, none of which a pull reads, so they are dropped.
    pub(super) fn config(value: &mut Value) {
        let Some(file) = value.as_object_mut() else {
            return;
        };
        fill(file, "architecture", json!(""));
        fill(file, "os", json!(""));
        fill(file, "rootfs", json!({}));
        if let Some(rootfs) = file.get_mut("rootfs").and_then(Value::as_object_mut) {
            fill(rootfs, "type", json!("layers"));
            fill(rootfs, "diff_ids", json!([]));
        }
        if let Some(c) = file.get_mut("config").and_then(Value::as_object_mut) {
            for ignored in ["ExposedPorts", "Volumes", "Labels"] {
                c.remove(ignored);
            }
        }
    }

    fn fill(map: &mut Map<String, Value>, key: &str, default: Value) {
        if !map.contains_key(key) {
            map.insert(key.to_owned(), default);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index() -> ImageIndex {
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
        assert_eq!(select("t", i.manifests(), &arm).unwrap().size(), 2);
        let arm8 = Platform::parse("linux/arm64/v8").unwrap();
        assert_eq!(select("t", i.manifests(), &arm8).unwrap().size(), 2);
        let amd = Platform::parse("linux/amd64").unwrap();
        assert_eq!(select("t", i.manifests(), &amd).unwrap().size(), 1);
    }

    #[test]
    fn a_missing_platform_lists_what_the_index_has() {
        let i = index();
        let err = select("t", i.manifests(), &Platform::parse("linux/s390x").unwrap()).unwrap_err();
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

    fn sha(c: char) -> String {
        format!("sha256:{}", c.to_string().repeat(64))
    }

    #[test]
    fn the_oci_media_types_are_oci_specs() {
        use oci_spec::image::MediaType;
        assert_eq!(OCI_MANIFEST, MediaType::ImageManifest.as_ref());
        assert_eq!(OCI_INDEX, MediaType::ImageIndex.as_ref());
    }

    #[test]
    fn docker_schema2_manifests_and_manifest_lists_are_read() {
        let (c, l) = (sha('c'), sha('d'));
        let manifest = format!(
            r#"{{"schemaVersion":2,"mediaType":"{DOCKER_MANIFEST}",
            "config":{{"mediaType":"application/vnd.docker.container.image.v1+json","size":7,"digest":"{c}"}},
            "layers":[{{"mediaType":"application/vnd.docker.image.rootfs.diff.tar.gzip","size":9,"digest":"{l}"}}]}}"#
        );
        let Document::Manifest(m) = Document::parse("t", None, manifest.as_bytes()).unwrap() else {
            panic!("parsed as an index");
        };
        assert_eq!(digest_of("t", m.config()).unwrap().to_string(), c);
        assert_eq!(
            m.layers()[0].media_type().to_string(),
            "application/vnd.docker.image.rootfs.diff.tar.gzip"
        );
        let list = format!(
            r#"{{"schemaVersion":2,"mediaType":"{DOCKER_LIST}","manifests":[
            {{"mediaType":"{DOCKER_MANIFEST}","size":5,"digest":"{c}","platform":{{"architecture":"arm64","os":"linux","variant":"v8"}}}}]}}"#
        );
        let Document::Index(i) = Document::parse("t", None, list.as_bytes()).unwrap() else {
            panic!("parsed as a manifest");
        };
        let arm = Platform::parse("linux/arm64").unwrap();
        assert_eq!(select("t", i.manifests(), &arm).unwrap().size(), 5);
    }

    #[test]
    fn fields_oci_spec_requires_but_images_omit_are_filled_in() {
        // No schemaVersion, a config descriptor without mediaType or size.
        let manifest = format!(r#"{{"config":{{"digest":"{}"}},"layers":[]}}"#, sha('e'));
        let Document::Manifest(m) = Document::parse("t", None, manifest.as_bytes()).unwrap() else {
            panic!("parsed as an index");
        };
        assert_eq!(m.config().size(), 0);
        // A config with no os, architecture or rootfs, and ports, volumes and labels in shapes
        // oci-spec's types refuse.
        let body = br#"{"config":{"User":"app","ExposedPorts":{"80/tcp":null},"Volumes":{"/v":null},"Labels":{"n":1}}}"#;
        let (c, ids) = parse_config("t", body).unwrap();
        assert_eq!(c.user.as_deref(), Some("app"));
        assert!(ids.is_empty());
    }

    #[test]
    fn a_digest_of_another_algorithm_is_refused_as_before() {
        let manifest = format!(
            r#"{{"schemaVersion":2,"config":{{"mediaType":"x","size":1,"digest":"sha512:{}"}},"layers":[]}}"#,
            "a".repeat(128)
        );
        let err = Document::parse("t", None, manifest.as_bytes()).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("not a valid OCI/Docker document"), "{text}");
        assert!(text.contains("only sha256 is supported"), "{text}");
        let config = format!(
            r#"{{"rootfs":{{"type":"layers","diff_ids":["sha512:{}"]}}}}"#,
            "b".repeat(128)
        );
        let err = parse_config("t", config.as_bytes()).unwrap_err();
        assert!(
            err.to_string().contains("only sha256 is supported"),
            "{err}"
        );
    }

    #[test]
    fn a_document_that_is_not_json_is_a_parse_error_naming_it() {
        let err = Document::parse("manifest of x", None, b"<html>").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("manifest of x is not a valid OCI/Docker document"),
            "{err}"
        );
    }

    #[test]
    fn a_config_as_docker_build_writes_it_is_read() {
        // The shape `docker build` and BuildKit write: legacy container_config, ports, labels,
        // a stop signal, history with empty layers, nulls where nothing is set.
        let d = sha('f');
        let body = format!(
            r##"{{"architecture":"amd64","os":"linux","created":"2024-01-02T03:04:05.6Z",
            "docker_version":"20.10.23","container":"0123abc",
            "container_config":{{"Hostname":"x","Cmd":["/bin/sh","-c","#(nop) CMD []"]}},
            "config":{{"Hostname":"","Domainname":"","User":"","AttachStdin":false,
              "ExposedPorts":{{"80/tcp":{{}}}},"Tty":false,"Env":["PATH=/usr/bin"],
              "Cmd":["nginx","-g","daemon off;"],"Image":"sha256:0","Volumes":null,
              "WorkingDir":"","Entrypoint":["/docker-entrypoint.sh"],"OnBuild":null,
              "Labels":{{"maintainer":"someone"}},"StopSignal":"SIGQUIT","ArgsEscaped":true}},
            "rootfs":{{"type":"layers","diff_ids":["{d}"]}},
            "history":[{{"created":"2024-01-01T00:00:00Z","created_by":"ADD file in /","empty_layer":false}},
              {{"created":"2024-01-01T00:00:01Z","created_by":"CMD [\"bash\"]","empty_layer":true}}]}}"##
        );
        let (c, ids) = parse_config("t", body.as_bytes()).unwrap();
        assert_eq!(c.entrypoint, vec!["/docker-entrypoint.sh"]);
        assert_eq!(c.cmd, vec!["nginx", "-g", "daemon off;"]);
        assert_eq!(c.env, vec!["PATH=/usr/bin"]);
        assert_eq!((c.user, c.working_dir), (None, None));
        assert_eq!(
            ids.iter().map(ToString::to_string).collect::<Vec<_>>(),
            vec![d]
        );
    }
}
