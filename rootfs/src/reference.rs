//! What `SCAR_IMAGE` names: a registry reference (with Docker Hub normalisation, tags and
//! digests) or a local/S3 image source (`oci:`, `oci-archive:`, `docker-archive:`, a framed
//! image as `s3://bucket/key` or `framed:PATH`).

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use crate::digest::{Digest, DigestError};

/// Docker Hub's canonical name, as containerd spells it.
pub const DOCKER_HUB: &str = "docker.io";
/// The host that actually serves Docker Hub's registry API.
pub const DOCKER_HUB_API: &str = "registry-1.docker.io";

/// Why an image reference was refused.
#[derive(Debug, thiserror::Error)]
pub enum ReferenceError {
    /// Empty `SCAR_IMAGE`.
    #[error("the image reference is empty: set it to an image such as alpine:3.20")]
    Empty,
    /// Bad repository path.
    #[error(
        "`{reference}` is not a valid image reference: repository `{repository}` must be lowercase letters, digits and . _ - / separators"
    )]
    Repository {
        /// The whole reference.
        reference: String,
        /// The offending repository.
        repository: String,
    },
    /// Bad registry host.
    #[error("`{reference}` names registry `{registry}`, whose port is not a number")]
    Registry {
        /// The whole reference.
        reference: String,
        /// The offending host.
        registry: String,
    },
    /// Bad tag.
    #[error("`{reference}` has an invalid tag `{tag}`: tags are up to 128 letters, digits, _ . -")]
    Tag {
        /// The whole reference.
        reference: String,
        /// The offending tag.
        tag: String,
    },
    /// Bad digest.
    #[error("`{reference}` has an invalid digest")]
    Digest {
        /// The whole reference.
        reference: String,
        /// What is wrong with it.
        #[source]
        source: DigestError,
    },
    /// `oci:` etc. with nothing after.
    #[error("`{0}` names no path: write e.g. oci:/var/task/image:latest")]
    MissingPath(String),
    /// Malformed `s3://` location.
    #[error("`{0}` is not an S3 location: write s3://bucket/key")]
    S3(String),
    /// A framed image's pin that is not a digest.
    #[error(
        "`{reference}` has an invalid pin: write s3://bucket/key@sha256:<64 hex> (or framed:PATH@sha256:...) with the digest `scar image push` printed"
    )]
    Pin {
        /// The whole reference.
        reference: String,
        /// What is wrong with it.
        #[source]
        source: DigestError,
    },
}

/// An image in a registry: `registry/repository[:tag][@digest]`.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Reference {
    /// Registry host with optional port (`docker.io`, `127.0.0.1:5000`).
    pub registry: String,
    /// Repository path (`library/alpine`).
    pub repository: String,
    /// Tag, `None` when only a digest was given.
    pub tag: Option<String>,
    /// Digest pin.
    pub digest: Option<Digest>,
}

impl Reference {
    /// What to ask the registry's manifest endpoint for: the digest when pinned, else the tag.
    pub fn manifest_ref(&self) -> String {
        match (&self.digest, &self.tag) {
            (Some(d), _) => d.to_string(),
            (None, Some(t)) => t.clone(),
            (None, None) => "latest".to_owned(),
        }
    }

    /// The host the registry API answers on (Docker Hub's differs from its name).
    pub fn api_host(&self) -> &str {
        if self.registry == DOCKER_HUB {
            DOCKER_HUB_API
        } else {
            &self.registry
        }
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for Reference {
    type Err = ReferenceError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let s = input.trim();
        if s.is_empty() {
            return Err(ReferenceError::Empty);
        }
        let (name_tag, digest) = match s.split_once('@') {
            Some((n, d)) => {
                let digest = d.parse().map_err(|source| ReferenceError::Digest {
                    reference: input.to_owned(),
                    source,
                })?;
                (n, Some(digest))
            }
            None => (s, None),
        };
        // A tag is a colon after the last slash; a colon before it is a registry port.
        let last_slash = name_tag.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match name_tag[last_slash..].rfind(':') {
            Some(i) => (
                &name_tag[..last_slash + i],
                Some(name_tag[last_slash + i + 1..].to_owned()),
            ),
            None => (name_tag, None),
        };
        let (registry, repository) = match name.split_once('/') {
            Some((first, rest))
                if first.contains('.') || first.contains(':') || first == "localhost" =>
            {
                (first.to_owned(), rest.to_owned())
            }
            _ => (DOCKER_HUB.to_owned(), name.to_owned()),
        };
        let registry = if registry == "index.docker.io" {
            DOCKER_HUB.to_owned()
        } else {
            registry
        };
        let repository = if registry == DOCKER_HUB && !repository.contains('/') {
            format!("library/{repository}")
        } else {
            repository
        };
        if let Some((_, port)) = registry.rsplit_once(':')
            && (port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()))
        {
            return Err(ReferenceError::Registry {
                reference: input.to_owned(),
                registry,
            });
        }
        if !valid_repository(&repository) {
            return Err(ReferenceError::Repository {
                reference: input.to_owned(),
                repository,
            });
        }
        if let Some(t) = &tag
            && !valid_tag(t)
        {
            return Err(ReferenceError::Tag {
                reference: input.to_owned(),
                tag: t.clone(),
            });
        }
        let tag = match (tag, &digest) {
            (None, None) => Some("latest".to_owned()),
            (t, _) => t,
        };
        Ok(Self {
            registry,
            repository,
            tag,
            digest,
        })
    }
}

fn valid_repository(repo: &str) -> bool {
    !repo.is_empty()
        && repo.split('/').all(|component| {
            let b = component.as_bytes();
            !b.is_empty()
                && b[0].is_ascii_alphanumeric()
                && b[b.len() - 1].is_ascii_alphanumeric()
                && b.iter().all(|c| {
                    c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, b'.' | b'_' | b'-')
                })
        })
}

fn valid_tag(tag: &str) -> bool {
    let b = tag.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
}

/// Where a file-backed image lives: a local path or an S3 object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Location {
    /// A local file or directory.
    Path(PathBuf),
    /// `s3://bucket/key`.
    S3 {
        /// Bucket name.
        bucket: String,
        /// Object key.
        key: String,
    },
}

impl Location {
    fn parse(input: &str, rest: &str) -> Result<Self, ReferenceError> {
        if rest.is_empty() {
            return Err(ReferenceError::MissingPath(input.to_owned()));
        }
        if let Some(bucket_key) = rest.strip_prefix("s3://") {
            return match bucket_key.split_once('/') {
                Some((bucket, key)) if !bucket.is_empty() && !key.is_empty() => Ok(Self::S3 {
                    bucket: bucket.to_owned(),
                    key: key.to_owned(),
                }),
                _ => Err(ReferenceError::S3(input.to_owned())),
            };
        }
        Ok(Self::Path(PathBuf::from(rest)))
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Path(p) => write!(f, "{}", p.display()),
            Self::S3 { bucket, key } => write!(f, "s3://{bucket}/{key}"),
        }
    }
}

/// Any image `SCAR_IMAGE` can name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ImageRef {
    /// An image in a registry.
    Registry(Reference),
    /// `oci:<dir>[:tag]`: an OCI image layout directory.
    OciDir {
        /// The layout directory.
        path: PathBuf,
        /// `org.opencontainers.image.ref.name` to select; `None` takes the only image.
        tag: Option<String>,
    },
    /// `oci-archive:<path or s3://b/k>[:tag]`: a tar of an OCI image layout.
    OciArchive {
        /// Where the tar is.
        location: Location,
        /// Tag to select, as for [`ImageRef::OciDir`].
        tag: Option<String>,
    },
    /// `docker-archive:<path or s3://b/k>`: the output of `docker save`.
    DockerArchive {
        /// Where the tar is.
        location: Location,
    },
    /// `s3://bucket/key[@sha256:...]` or `framed:PATH[@sha256:...]`: a framed image (see
    /// [`crate::framed::format`]), pinned to the digest of its index when `pin` is given.
    Framed {
        /// Where the object is.
        location: Location,
        /// The digest its index must have.
        pin: Option<Digest>,
    },
}

/// Split `rest[@sha256:...]` of a framed image name into the location text and its pin.
fn split_pin(input: &str, rest: &str) -> Result<(String, Option<Digest>), ReferenceError> {
    // Only an `@` followed by an algorithm is a pin: `@` is a legal character of S3 keys.
    match rest.rsplit_once('@') {
        Some((location, pin)) if pin.contains(':') => {
            let digest = pin.parse().map_err(|source| ReferenceError::Pin {
                reference: input.to_owned(),
                source,
            })?;
            Ok((location.to_owned(), Some(digest)))
        }
        _ => Ok((rest.to_owned(), None)),
    }
}

/// Split `path[:tag]` where the tag can only follow the last `/`.
fn split_tag(rest: &str) -> (&str, Option<String>) {
    let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
    match rest[last_slash..].rfind(':') {
        Some(i) if last_slash + i > 0 => (
            &rest[..last_slash + i],
            Some(rest[last_slash + i + 1..].to_owned()).filter(|t| !t.is_empty()),
        ),
        _ => (rest, None),
    }
}

impl FromStr for ImageRef {
    type Err = ReferenceError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let s = input.trim();
        if let Some(rest) = s.strip_prefix("oci:") {
            let (path, tag) = split_tag(rest);
            if path.is_empty() {
                return Err(ReferenceError::MissingPath(input.to_owned()));
            }
            return Ok(Self::OciDir {
                path: PathBuf::from(path),
                tag,
            });
        }
        if let Some(rest) = s.strip_prefix("oci-archive:") {
            // `s3://b/k` has its own colon: only a colon after the key's last slash is a tag.
            let (path, tag) = split_tag(rest);
            return Ok(Self::OciArchive {
                location: Location::parse(input, path)?,
                tag,
            });
        }
        if let Some(rest) = s.strip_prefix("docker-archive:") {
            return Ok(Self::DockerArchive {
                location: Location::parse(input, rest)?,
            });
        }
        if s.starts_with("s3://") {
            let (location, pin) = split_pin(input, s)?;
            return Ok(Self::Framed {
                location: Location::parse(input, &location)?,
                pin,
            });
        }
        if let Some(rest) = s.strip_prefix("framed:") {
            let (location, pin) = split_pin(input, rest)?;
            return Ok(Self::Framed {
                location: Location::parse(input, &location)?,
                pin,
            });
        }
        if let Some(rest) = s.strip_prefix("docker://") {
            return rest.parse().map(Self::Registry);
        }
        s.parse().map(Self::Registry)
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Registry(r) => write!(f, "{r}"),
            Self::OciDir { path, tag } => {
                write!(f, "oci:{}", path.display())?;
                tag.iter().try_for_each(|t| write!(f, ":{t}"))
            }
            Self::OciArchive { location, tag } => {
                write!(f, "oci-archive:{location}")?;
                tag.iter().try_for_each(|t| write!(f, ":{t}"))
            }
            Self::DockerArchive { location } => write!(f, "docker-archive:{location}"),
            Self::Framed { location, pin } => {
                if let Location::Path(_) = location {
                    write!(f, "framed:")?;
                }
                write!(f, "{location}")?;
                pin.iter().try_for_each(|d| write!(f, "@{d}"))
            }
        }
    }
}

#[cfg(test)]
#[path = "reference_tests.rs"]
mod tests;
