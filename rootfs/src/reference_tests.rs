use super::*;

fn r(s: &str) -> Reference {
    s.parse().unwrap()
}

#[test]
fn a_bare_name_is_a_docker_hub_library_image_at_latest() {
    assert_eq!(r("alpine").to_string(), "docker.io/library/alpine:latest");
    assert_eq!(
        r("alpine:3.20").to_string(),
        "docker.io/library/alpine:3.20"
    );
    assert_eq!(
        r("bitnami/redis").to_string(),
        "docker.io/bitnami/redis:latest"
    );
    assert_eq!(
        r("index.docker.io/library/debian:12").to_string(),
        "docker.io/library/debian:12"
    );
    assert_eq!(r("alpine").api_host(), "registry-1.docker.io");
}

#[test]
fn a_host_with_a_dot_a_port_or_localhost_is_a_registry() {
    let x = r("127.0.0.1:5000/team/tool:v1");
    assert_eq!(x.registry, "127.0.0.1:5000");
    assert_eq!(x.repository, "team/tool");
    assert_eq!(x.tag.as_deref(), Some("v1"));
    assert_eq!(r("localhost/foo").registry, "localhost");
    assert_eq!(r("localhost:5000/foo").tag.as_deref(), Some("latest"));
    let ecr = r("123456789012.dkr.ecr.eu-west-1.amazonaws.com/repo:tag");
    assert_eq!(ecr.registry, "123456789012.dkr.ecr.eu-west-1.amazonaws.com");
}

#[test]
fn a_digest_pins_the_manifest_and_drops_the_default_tag() {
    let d = format!("sha256:{}", "a".repeat(64));
    let x = r(&format!("ghcr.io/o/r@{d}"));
    assert_eq!(x.tag, None);
    assert_eq!(x.manifest_ref(), d);
    let y = r(&format!("ghcr.io/o/r:1@{d}"));
    assert_eq!(y.tag.as_deref(), Some("1"));
    assert_eq!(y.manifest_ref(), d);
}

#[test]
fn malformed_references_name_what_is_wrong() {
    assert!(matches!(
        "".parse::<Reference>(),
        Err(ReferenceError::Empty)
    ));
    assert!(matches!(
        "Alpine".parse::<Reference>(),
        Err(ReferenceError::Repository { .. })
    ));
    assert!(matches!(
        "alpine:bad/tag:x".parse::<Reference>(),
        Err(ReferenceError::Registry { .. })
    ));
    assert!(matches!(
        "alpine:-x".parse::<Reference>(),
        Err(ReferenceError::Tag { .. })
    ));
    assert!(matches!(
        "alpine@sha256:zz".parse::<Reference>(),
        Err(ReferenceError::Digest { .. })
    ));
}

#[test]
fn file_sources_parse_paths_tags_and_s3_locations() {
    let x: ImageRef = "oci:/var/task/img:v2".parse().unwrap();
    assert_eq!(
        x,
        ImageRef::OciDir {
            path: "/var/task/img".into(),
            tag: Some("v2".into())
        }
    );
    let y: ImageRef = "oci:./img".parse().unwrap();
    assert_eq!(
        y,
        ImageRef::OciDir {
            path: "./img".into(),
            tag: None
        }
    );
    let z: ImageRef = "oci-archive:s3://bucket/dir/img.tar".parse().unwrap();
    assert_eq!(
        z,
        ImageRef::OciArchive {
            location: Location::S3 {
                bucket: "bucket".into(),
                key: "dir/img.tar".into()
            },
            tag: None
        }
    );
    let w: ImageRef = "docker-archive:/tmp/x.tar".parse().unwrap();
    assert_eq!(
        w,
        ImageRef::DockerArchive {
            location: Location::Path("/tmp/x.tar".into())
        }
    );
    assert!(matches!(
        "docker-archive:s3://bucket".parse::<ImageRef>(),
        Err(ReferenceError::S3(_))
    ));
    assert!(matches!(
        "oci:".parse::<ImageRef>(),
        Err(ReferenceError::MissingPath(_))
    ));
}

#[test]
fn framed_images_parse_with_and_without_a_pin_and_print_back_the_same() {
    let d = format!("sha256:{}", "b".repeat(64));
    for text in [
        "s3://bucket/images/app.scar".to_owned(),
        format!("s3://bucket/images/app.scar@{d}"),
        "framed:/tmp/app.scar".to_owned(),
        format!("framed:/tmp/app.scar@{d}"),
        "s3://bucket/odd@key".to_owned(),
    ] {
        let x: ImageRef = text.parse().unwrap();
        assert!(matches!(x, ImageRef::Framed { .. }), "{text}");
        assert_eq!(x.to_string(), text);
    }
    let x: ImageRef = format!("s3://b/k@{d}").parse().unwrap();
    assert_eq!(
        x,
        ImageRef::Framed {
            location: Location::S3 {
                bucket: "b".into(),
                key: "k".into()
            },
            pin: Some(d.parse().unwrap())
        }
    );
    let y: ImageRef = "framed:./img.scar".parse().unwrap();
    assert_eq!(
        y,
        ImageRef::Framed {
            location: Location::Path("./img.scar".into()),
            pin: None
        }
    );
    // The archive forms keep their meaning.
    assert!(matches!(
        "oci-archive:s3://b/k.tar".parse::<ImageRef>(),
        Ok(ImageRef::OciArchive { .. })
    ));
}

#[test]
fn a_bad_framed_name_says_which_form_to_write() {
    let err = "s3://bucket/key@sha256:zz".parse::<ImageRef>().unwrap_err();
    assert!(matches!(err, ReferenceError::Pin { .. }), "{err}");
    assert!(err.to_string().contains("s3://bucket/key@sha256:"), "{err}");
    assert!(matches!(
        "s3://bucket".parse::<ImageRef>(),
        Err(ReferenceError::S3(_))
    ));
    assert!(matches!(
        "framed:".parse::<ImageRef>(),
        Err(ReferenceError::MissingPath(_))
    ));
}
