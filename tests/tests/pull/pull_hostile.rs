//! Hostile images and failing registries: each gives a clear error naming what is wrong, writes
//! nothing outside the cache directory, and leaves no usable half image behind. Also a registry
//! behind a token service, 429 answers and connections dropped mid-blob.

use std::path::Path;
use std::time::Instant;

use scar_e2e::Registry;
use scar_e2e::cache::assert_no_image_left;
use scar_e2e::fault::{Fault, FaultProxy};
use scar_e2e::oci::{self, Compression, ImageBuilder, LayerBuilder, Pusher};
use scar_e2e::token::TokenRegistry;
use scar_rootfs::image::PreparedImage;
use scar_rootfs::options::{Credentials, PullOptions};
use scar_rootfs::pull::PullError;

fn pull(image: &str, options: &PullOptions) -> Result<PreparedImage, PullError> {
    crate::pull_support::pull_blocking(image, options)
}

fn options(cache: &Path, host: &str) -> PullOptions {
    let mut o = PullOptions::new(cache);
    o.insecure_registries = vec![host.to_owned()];
    o
}

/// Push a one-layer image and pull it, expecting an error containing `expected`.
fn expect_refused(registry: &Registry, name: &str, layer: oci::Layer, expected: &str) -> String {
    let image = ImageBuilder::new()
        .layer(
            LayerBuilder::new(Compression::Gzip)
                .file("etc/ok", b"ok")
                .finish(),
        )
        .layer(layer)
        .build();
    Pusher::new(&registry.url(), None).image(name, "v1", &image);
    let cache = tempfile::tempdir().expect("tmp");
    let err = pull(
        &format!("{}/{name}:v1", registry.host()),
        &options(cache.path(), &registry.host()),
    )
    .expect_err("a hostile image must be refused");
    let text = err.to_string();
    assert!(
        text.contains(expected),
        "error for {name} should say `{expected}`: {text}"
    );
    assert_no_image_left(cache.path());
    text
}

/// A unique path outside every cache that a hostile entry aims at.
fn target_outside(tag: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("scar-hostile-{tag}-{}", std::process::id()))
}

#[test]
fn hostile_entry_names_are_refused_and_nothing_lands_outside_the_cache() {
    let registry = Registry::start();
    let dotdot = target_outside("dotdot");
    let climb = format!("../../../../../../../../..{}", dotdot.display());
    let layer = LayerBuilder::new(Compression::Gzip)
        .file(&climb, b"pwned")
        .finish();
    let text = expect_refused(&registry, "hostile/dotdot", layer, "contains `..`");
    assert!(
        text.contains("layer 2/2"),
        "the error names the layer: {text}"
    );
    assert!(!dotdot.exists());

    let absolute = target_outside("absolute");
    let layer = LayerBuilder::new(Compression::Gzip)
        .file(absolute.to_str().expect("utf8"), b"pwned")
        .finish();
    expect_refused(&registry, "hostile/absolute", layer, "absolute name");
    assert!(!absolute.exists());

    let escape = target_outside("symlink");
    std::fs::create_dir_all(&escape).expect("mkdir target");
    let layer = LayerBuilder::new(Compression::Gzip)
        .symlink(
            "esc",
            &format!("../../../../../../../../..{}", escape.display()),
        )
        .file("esc/pwned", b"pwned")
        .finish();
    expect_refused(
        &registry,
        "hostile/symlink",
        layer,
        "points outside the image root",
    );
    assert!(!escape.join("pwned").exists());
    std::fs::remove_dir_all(&escape).expect("cleanup");

    let passwd_links =
        std::fs::metadata("/etc/passwd").map(|m| std::os::unix::fs::MetadataExt::nlink(&m));
    let layer = LayerBuilder::new(Compression::Gzip)
        .hardlink("passwd", "/etc/passwd")
        .finish();
    expect_refused(
        &registry,
        "hostile/hardlink",
        layer,
        "hardlink to `/etc/passwd`",
    );
    let layer = LayerBuilder::new(Compression::Gzip)
        .hardlink("passwd", "../../../../../../../../../etc/passwd")
        .finish();
    expect_refused(
        &registry,
        "hostile/hardlink-climb",
        layer,
        "is a hardlink to",
    );
    let after = std::fs::metadata("/etc/passwd").map(|m| std::os::unix::fs::MetadataExt::nlink(&m));
    assert_eq!(passwd_links.ok(), after.ok(), "/etc/passwd gained no link");
}

#[test]
fn a_blob_whose_bytes_do_not_match_its_digest_is_refused() {
    let registry = Registry::start();
    let layer = LayerBuilder::new(Compression::Gzip)
        .file("data", &[7u8; 100_000])
        .finish();
    let image = ImageBuilder::new().layer(layer.clone()).build();
    Pusher::new(&registry.url(), None).image("hostile/corrupt", "v1", &image);
    // Corrupt the registry's storage: same length, different bytes.
    let stored = oci::stored_blob_path(&registry.storage_dir(), &layer.blob.digest());
    let mut bytes = std::fs::read(&stored).expect("stored blob");
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&stored, bytes).expect("corrupt blob");
    let cache = tempfile::tempdir().expect("tmp");
    let err = pull(
        &format!("{}/hostile/corrupt:v1", registry.host()),
        &options(cache.path(), &registry.host()),
    )
    .expect_err("corrupt blob");
    let text = err.to_string();
    assert!(
        text.contains("does not match its digest") || text.contains("corrupt or truncated"),
        "{text}"
    );
    assert_no_image_left(cache.path());
}

/// Push a one-layer image, rewrite its layer blob in the registry's storage with `edit`, and
/// pull it: the error text.
fn pull_with_stored_blob_edited(name: &str, edit: impl FnOnce(&mut Vec<u8>)) -> String {
    let registry = Registry::start();
    let layer = LayerBuilder::new(Compression::Gzip)
        .file("data", &[7u8; 100_000])
        .finish();
    let image = ImageBuilder::new().layer(layer.clone()).build();
    Pusher::new(&registry.url(), None).image(name, "v1", &image);
    let stored = oci::stored_blob_path(&registry.storage_dir(), &layer.blob.digest());
    let mut bytes = std::fs::read(&stored).expect("stored blob");
    edit(&mut bytes);
    std::fs::write(&stored, bytes).expect("edited blob");
    let cache = tempfile::tempdir().expect("tmp");
    let err = pull(
        &format!("{}/{name}:v1", registry.host()),
        &options(cache.path(), &registry.host()),
    )
    .expect_err("edited blob");
    assert_no_image_left(cache.path());
    err.to_string()
}

#[test]
fn a_valid_gzip_that_is_not_the_blob_of_its_digest_is_refused_by_the_digest_check() {
    // Same length and still a valid gzip of the same tar: only the MTIME field of the gzip
    // header differs, which no CRC covers, so nothing but the digest can tell.
    let text = pull_with_stored_blob_edited("hostile/retimed", |bytes| bytes[4] ^= 0x01);
    assert!(text.contains("does not match its digest"), "{text}");
}

#[test]
fn a_blob_longer_than_its_manifest_announces_is_refused() {
    let text = pull_with_stored_blob_edited("hostile/longer", |bytes| {
        bytes.extend_from_slice(&[0u8; 4096]);
    });
    assert!(text.contains("is longer than the"), "{text}");
}

#[test]
fn a_truncated_gzip_layer_is_refused_as_corrupt() {
    let registry = Registry::start();
    let data: Vec<u8> = (0..400_000u32)
        .flat_map(|i| i.wrapping_mul(2_654_435_761).to_le_bytes())
        .collect();
    let mut layer = LayerBuilder::new(Compression::Gzip)
        .file("data", &data)
        .finish();
    let half = layer.blob.bytes.len() / 2;
    layer.blob.bytes.truncate(half);
    expect_refused(
        &registry,
        "hostile/truncated",
        layer,
        "gzip data is corrupt or truncated",
    );
}

#[test]
fn a_manifest_naming_a_missing_blob_is_refused() {
    let registry = Registry::start();
    let layer = LayerBuilder::new(Compression::Gzip)
        .file("data", b"soon gone")
        .finish();
    let image = ImageBuilder::new().layer(layer.clone()).build();
    let pusher = Pusher::new(&registry.url(), None);
    pusher.image("hostile/missing", "v1", &image);
    pusher.delete_blob("hostile/missing", &layer.blob.digest());
    let cache = tempfile::tempdir().expect("tmp");
    let err = pull(
        &format!("{}/hostile/missing:v1", registry.host()),
        &options(cache.path(), &registry.host()),
    )
    .expect_err("missing blob");
    let text = err.to_string();
    assert!(
        text.contains("not found") && text.contains(&layer.blob.digest()),
        "{text}"
    );
    assert_no_image_left(cache.path());
}

#[test]
fn a_layer_of_100_000_small_files_extracts_completely() {
    let registry = Registry::start();
    let mut builder = LayerBuilder::new(Compression::Gzip).without_tar_copy();
    for d in 0..100 {
        builder = builder.dir(&format!("d{d:03}"));
        for f in 0..1000 {
            builder = builder.file(&format!("d{d:03}/f{f:04}"), format!("{d}-{f}").as_bytes());
        }
    }
    let image = ImageBuilder::new().layer(builder.finish()).build();
    Pusher::new(&registry.url(), None).image("big/many", "v1", &image);
    let cache = tempfile::tempdir().expect("tmp");
    let t = Instant::now();
    let p = pull(
        &format!("{}/big/many:v1", registry.host()),
        &options(cache.path(), &registry.host()),
    )
    .expect("pull 100 000 files");
    println!(
        "100 000 small files pulled and extracted in {:.2} s",
        t.elapsed().as_secs_f64()
    );
    let mut count = 0;
    for d in std::fs::read_dir(&p.root).expect("root") {
        count += std::fs::read_dir(d.expect("entry").path())
            .expect("dir")
            .count();
    }
    assert_eq!(count, 100_000);
    assert_eq!(
        std::fs::read_to_string(p.root.join("d099/f0999")).expect("last"),
        "99-999"
    );
}

#[test]
fn a_gzip_bomb_expanding_past_the_cache_cap_is_stopped() {
    let registry = Registry::start();
    let layer = LayerBuilder::new(Compression::Gzip)
        .without_tar_copy()
        .big_file("bomb", 256 << 20, |_, buf| buf.fill(0))
        .finish();
    println!(
        "bomb: {} bytes of gzip, 256 MiB of zeros",
        layer.blob.bytes.len()
    );
    let image = ImageBuilder::new().layer(layer).build();
    Pusher::new(&registry.url(), None).image("hostile/bomb", "v1", &image);
    let cache = tempfile::tempdir().expect("tmp");
    let mut o = options(cache.path(), &registry.host());
    o.max_cache_bytes = Some(64 << 20);
    let err = pull(&format!("{}/hostile/bomb:v1", registry.host()), &o).expect_err("bomb");
    let text = err.to_string();
    assert!(text.contains("expands past 64 MiB"), "{text}");
    assert_no_image_left(cache.path());
}

#[test]
fn an_image_that_cannot_fit_is_refused_before_any_layer_is_downloaded() {
    let registry = Registry::start();
    let noise: Vec<u8> = (0..(3u32 << 20) / 4)
        .flat_map(|i| (i.wrapping_mul(2_654_435_761) ^ (i >> 3)).to_le_bytes())
        .collect();
    let layer = LayerBuilder::new(Compression::Gzip)
        .file("noise", &noise)
        .finish();
    let digest = layer.blob.digest();
    let image = ImageBuilder::new().layer(layer).build();
    Pusher::new(&registry.url(), None).image("big/fat", "v1", &image);
    let proxy = FaultProxy::start(
        &registry.host(),
        Fault::DropAfter { bytes: usize::MAX },
        "never",
        0,
    );
    let cache = tempfile::tempdir().expect("tmp");
    let mut o = options(cache.path(), &proxy.host());
    o.max_cache_bytes = Some(2 << 20);
    let err = pull(&format!("{}/big/fat:v1", proxy.host()), &o).expect_err("cannot fit");
    let text = err.to_string();
    assert!(
        text.contains("image needs about") && text.contains("MiB free in"),
        "{text}"
    );
    let layer_requests: Vec<_> = proxy
        .requests()
        .into_iter()
        .filter(|r| r.contains(&digest))
        .collect();
    assert!(
        layer_requests.is_empty(),
        "no layer may be downloaded: {layer_requests:?}"
    );
    assert_no_image_left(cache.path());
}

#[test]
fn a_registry_answering_429_is_retried_after_its_retry_after() {
    let registry = Registry::start();
    let image = ImageBuilder::new()
        .layer(
            LayerBuilder::new(Compression::Gzip)
                .file("a", b"a")
                .finish(),
        )
        .build();
    Pusher::new(&registry.url(), None).image("busy/app", "v1", &image);
    let proxy = FaultProxy::start(
        &registry.host(),
        Fault::TooManyRequests {
            retry_after_secs: 1,
        },
        "/v2/busy/",
        2,
    );
    let cache = tempfile::tempdir().expect("tmp");
    let p = pull(
        &format!("{}/busy/app:v1", proxy.host()),
        &options(cache.path(), &proxy.host()),
    )
    .expect("pull through 429s");
    assert_eq!(std::fs::read_to_string(p.root.join("a")).expect("a"), "a");
    assert_eq!(
        proxy.injected(),
        2,
        "both 429s were served: {:?}",
        proxy.requests()
    );
}

#[test]
fn a_connection_dropped_mid_blob_is_resumed_with_a_range_request() {
    let registry = Registry::start();
    let noise: Vec<u8> = (0..(2u32 << 20) / 4)
        .flat_map(|i| i.wrapping_mul(2_654_435_761).to_le_bytes())
        .collect();
    let layer = LayerBuilder::new(Compression::Gzip)
        .file("noise", &noise)
        .finish();
    let digest = layer.blob.digest();
    let image = ImageBuilder::new().layer(layer).build();
    Pusher::new(&registry.url(), None).image("flaky/app", "v1", &image);
    let proxy = FaultProxy::start(
        &registry.host(),
        Fault::DropAfter { bytes: 300_000 },
        &digest,
        1,
    );
    let cache = tempfile::tempdir().expect("tmp");
    let p = pull(
        &format!("{}/flaky/app:v1", proxy.host()),
        &options(cache.path(), &proxy.host()),
    )
    .expect("pull through a dropped connection");
    assert_eq!(std::fs::read(p.root.join("noise")).expect("noise"), noise);
    assert_eq!(proxy.injected(), 1);
    let resumed = proxy
        .requests()
        .iter()
        .any(|r| r.contains(&digest) && r.to_ascii_lowercase().contains("range: bytes="));
    assert!(
        resumed,
        "the download resumed with Range: {:?}",
        proxy.requests()
    );

    // A connection that drops every time ends in a clear error and no image.
    let proxy = FaultProxy::start(
        &registry.host(),
        Fault::DropAfter { bytes: 1000 },
        &digest,
        1000,
    );
    let cache = tempfile::tempdir().expect("tmp");
    let err = pull(
        &format!("{}/flaky/app:v1", proxy.host()),
        &options(cache.path(), &proxy.host()),
    )
    .expect_err("always dropping");
    let text = err.to_string();
    assert!(text.contains("connection dropped"), "{text}");
    assert_no_image_left(cache.path());
}

#[test]
fn a_registry_behind_a_token_service_is_pulled_with_anonymous_and_user_tokens() {
    let registry = TokenRegistry::start("scar", "t0ken-pass");
    let image = ImageBuilder::new()
        .layer(
            LayerBuilder::new(Compression::Gzip)
                .file("hello", b"token")
                .finish(),
        )
        .build();
    for repo in ["public/app", "private/app"] {
        Pusher::new(&registry.url(), Some(registry.push_authorization(repo)))
            .image(repo, "v1", &image);
    }
    let issued_before = registry.issued();
    let cache = tempfile::tempdir().expect("tmp");
    let mut o = options(cache.path(), &registry.host());
    // The token service speaks plain HTTP on another port: it must be listed too (#17).
    o.insecure_registries.push(registry.realm_host());
    let p = pull(&format!("{}/public/app:v1", registry.host()), &o).expect("anonymous token pull");
    assert_eq!(
        std::fs::read_to_string(p.root.join("hello")).expect("hello"),
        "token"
    );
    assert!(
        registry.issued() > issued_before,
        "a token was requested from {}",
        registry.realm()
    );

    let other = tempfile::tempdir().expect("tmp");
    o.cache_dir = other.path().to_owned();
    let err =
        pull(&format!("{}/private/app:v1", registry.host()), &o).expect_err("anonymous private");
    assert!(err.to_string().contains("SCAR_REGISTRY_USERNAME"), "{err}");
    o.credentials = Some(Credentials {
        username: "scar".into(),
        password: "nope".into(),
    });
    let err = pull(&format!("{}/private/app:v1", registry.host()), &o).expect_err("wrong password");
    assert!(
        err.to_string().contains("check SCAR_REGISTRY_USERNAME"),
        "{err}"
    );
    o.credentials = Some(Credentials {
        username: "scar".into(),
        password: "t0ken-pass".into(),
    });
    let p = pull(&format!("{}/private/app:v1", registry.host()), &o).expect("user token pull");
    assert_eq!(
        std::fs::read_to_string(p.root.join("hello")).expect("hello"),
        "token"
    );
}

#[test]
fn blob_redirects_to_storage_are_followed_without_the_registry_credentials() {
    let registry = Registry::start_with_basic_auth("scar", "s3cret");
    let image = ImageBuilder::new()
        .layer(
            LayerBuilder::new(Compression::Gzip)
                .file("stored", b"from storage")
                .finish(),
        )
        .build();
    Pusher::with_basic(&registry.url(), "scar", "s3cret").image("team/redirect", "v1", &image);
    let blobs = image
        .blobs()
        .into_iter()
        .map(|b| (b.digest(), b.bytes.clone()))
        .collect();
    let store = scar_e2e::fault::BlobStore::start(blobs);
    let proxy = FaultProxy::start(
        &registry.host(),
        Fault::Redirect { base: store.base() },
        "/blobs/",
        usize::MAX,
    );
    let cache = tempfile::tempdir().expect("tmp");
    let mut o = options(cache.path(), &proxy.host());
    o.credentials = Some(Credentials {
        username: "scar".into(),
        password: "s3cret".into(),
    });
    let p = pull(&format!("{}/team/redirect:v1", proxy.host()), &o).expect("pull via redirects");
    assert_eq!(
        std::fs::read_to_string(p.root.join("stored")).expect("stored"),
        "from storage"
    );
    let seen = store.authorizations();
    assert_eq!(
        seen.len(),
        2,
        "config and layer came from storage: {seen:?}"
    );
    assert!(
        seen.iter().all(Option::is_none),
        "credentials leaked to storage: {seen:?}"
    );
}
