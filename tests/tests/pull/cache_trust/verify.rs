//! Every layer is verified against its DiffID, and each image keeps its own config (#17 items 2
//! and 3).
//!
//! Poisoning: the evil image E's config copies the real image R's DiffIDs over other layers, so
//! it claims R's ChainID (the cache key). E must be refused from every source (registry, OCI
//! layout directory, `oci-archive:`, `docker-archive:`, both archives from S3) with an error
//! naming the layer and both digests, and publish nothing; R pulled afterwards must get its own
//! files. Configs: images sharing their layers with different Env/Entrypoint/Cmd/WorkingDir/User
//! each get their own config, a config-only tag update is seen with `always` and not with
//! `if-not-present`, and a record written without the proof of verification (as older
//! versions wrote) is rebuilt rather than trusted.
//!
//! Each case runs in-process as root and through the static `scar pull` as uid 993 in the
//! Lambda simulator (cache in a host directory owned by 993 bound at `/tmp/cache`, which the
//! test then inspects).

use std::path::{Path, PathBuf};

use scar_e2e::lambda_sim::{self, LambdaSim, SANDBOX_UID, SimOutput};
use scar_e2e::oci::{self, Compression, Image, ImageBuilder, LayerBuilder, Pusher};
use scar_e2e::{Registry, S3Server};
use scar_rootfs::image::{ImageConfig, PreparedImage};
use scar_rootfs::options::{PullOptions, PullPolicy};
use scar_rootfs::pull::{self, PullError};

/// What the real image's `etc/who` holds.
const REAL: &[u8] = b"the real image\n";
/// What the evil image's `etc/who` holds.
const EVIL: &[u8] = b"the evil image, posing as the real one\n";
/// The S3 bucket of the archive cases.
const BUCKET: &str = "scar-trust";
/// Where the cache is in the simulated Lambda (a host directory bound there).
const SIM_CACHE: &str = "/tmp/cache";
/// Where the layout and archives are in the simulated Lambda.
const SIM_IMAGES: &str = "/images";

fn pull(image: &str, options: &PullOptions) -> Result<PreparedImage, PullError> {
    crate::pull_support::pull_blocking(image, options)
}

fn options(cache: &Path, registry: Option<&Registry>, s3: Option<&S3Server>) -> PullOptions {
    let mut o = PullOptions::new(cache);
    if let Some(r) = registry {
        o.insecure_registries = vec![r.host()];
    }
    o.s3 = s3.map(|s3| s3.client().into());
    o
}

/// The real image R, the evil image E claiming R's DiffIDs, and E's true top DiffID.
struct Poison {
    real: Image,
    evil: Image,
    /// The DiffID E's config claims for its top layer (R's).
    claimed: String,
    /// What E's top layer really uncompresses to.
    actual: String,
}

fn poison() -> Poison {
    let base = LayerBuilder::new(Compression::Gzip)
        .dir("etc")
        .file("etc/base", b"shared base\n")
        .finish();
    let real_top = LayerBuilder::new(Compression::Gzip)
        .file("etc/who", REAL)
        .finish();
    let mut evil_top = LayerBuilder::new(Compression::Gzip)
        .file("etc/who", EVIL)
        .file("etc/planted", EVIL)
        .finish();
    let actual = evil_top.diff_id.clone();
    // The attack: E's config lists R's DiffIDs, so its ChainID is R's.
    evil_top.diff_id = real_top.diff_id.clone();
    let claimed = real_top.diff_id.clone();
    assert_ne!(claimed, actual, "the two top layers differ");
    let real = ImageBuilder::new()
        .layer(base.clone())
        .layer(real_top)
        .build();
    let evil = ImageBuilder::new().layer(base).layer(evil_top).build();
    Poison {
        real,
        evil,
        claimed,
        actual,
    }
}

/// The refusal names the layer (2 of 2), the DiffID claimed and the digest found.
fn assert_refusal(text: &str, p: &Poison, source: &str) {
    for part in ["layer 2/2", &p.claimed, &p.actual, "DiffID"] {
        assert!(
            text.contains(part),
            "the refusal of the evil image from {source} should say `{part}`: {text}"
        );
    }
}

/// Entries of `dir`, empty when it does not exist.
fn entries(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default()
}

/// Nothing published: no root, no reference, no config, no work area or download left.
fn assert_nothing_published(cache: &Path, source: &str) {
    for sub in ["rootfs", "refs", "configs", "tmp", "ingest"] {
        let left = entries(&cache.join(sub));
        assert!(
            left.is_empty(),
            "after refusing the evil image from {source}, {sub}/ still holds {left:?}"
        );
    }
}

/// `root` is R's: its file, and nothing E planted.
fn assert_real_root(root: &Path, source: &str) {
    assert_eq!(
        std::fs::read(root.join("etc/who")).unwrap_or_default(),
        REAL,
        "the real image from {source} has its own etc/who"
    );
    assert!(
        !root.join("etc/planted").exists(),
        "nothing of the evil image in the real one ({source})"
    );
}

/// A directory readable by uid 993 holding `layout/` (tags `real` and `evil`), `oci.tar` (its
/// tar) and the docker archives `real-docker.tar` and `evil-docker.tar`.
fn local_sources(p: &Poison) -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("scar-trust-src-")
        .tempdir()
        .expect("tempdir");
    let layout = dir.path().join("layout");
    oci::write_layout(&layout, &[("real", &p.real), ("evil", &p.evil)]);
    oci::tar_dir(&layout, &dir.path().join("oci.tar"));
    oci::write_docker_archive(
        &dir.path().join("real-docker.tar"),
        "trust/real:v1",
        &p.real,
    );
    oci::write_docker_archive(
        &dir.path().join("evil-docker.tar"),
        "trust/evil:v1",
        &p.evil,
    );
    open_to_all(dir.path());
    dir
}

/// Make a tree readable (and its directories traversable) by the sandbox's user.
fn open_to_all(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let status = std::process::Command::new("chmod")
        .args(["-R", "a+rX"])
        .arg(dir)
        .status()
        .expect("run chmod");
    assert!(status.success(), "chmod -R a+rX {}", dir.display());
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
}

/// S3 with the OCI archive and both docker archives of [`local_sources`].
fn s3_sources(dir: &Path) -> S3Server {
    let s3 = S3Server::start();
    s3.create_bucket(BUCKET);
    s3.put_file(BUCKET, "images/oci.tar", &dir.join("oci.tar"));
    s3.put_file(
        BUCKET,
        "images/real-docker.tar",
        &dir.join("real-docker.tar"),
    );
    s3.put_file(
        BUCKET,
        "images/evil-docker.tar",
        &dir.join("evil-docker.tar"),
    );
    s3
}

/// (evil, real) references for each local and S3 source, with `dir` the directory of
/// [`local_sources`] as the puller sees it.
fn archive_cases(dir: &str) -> Vec<(&'static str, String, String)> {
    vec![
        (
            "an OCI layout directory",
            format!("oci:{dir}/layout:evil"),
            format!("oci:{dir}/layout:real"),
        ),
        (
            "an oci-archive",
            format!("oci-archive:{dir}/oci.tar:evil"),
            format!("oci-archive:{dir}/oci.tar:real"),
        ),
        (
            "a docker-archive",
            format!("docker-archive:{dir}/evil-docker.tar"),
            format!("docker-archive:{dir}/real-docker.tar"),
        ),
        (
            "an oci-archive in S3",
            format!("oci-archive:s3://{BUCKET}/images/oci.tar:evil"),
            format!("oci-archive:s3://{BUCKET}/images/oci.tar:real"),
        ),
        (
            "a docker-archive in S3",
            format!("docker-archive:s3://{BUCKET}/images/evil-docker.tar"),
            format!("docker-archive:s3://{BUCKET}/images/real-docker.tar"),
        ),
    ]
}

// ---- the simulated Lambda -------------------------------------------------------------------

/// A cache directory owned by the sandbox's user (as `/tmp` is on Lambda), bound writable.
fn sim_cache() -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("scar-trust-cache-")
        .tempdir()
        .expect("tempdir");
    std::os::unix::fs::chown(dir.path(), Some(SANDBOX_UID), Some(SANDBOX_UID))
        .expect("chown the cache to the sandbox's user");
    dir
}

/// The static `scar pull IMAGE` as uid 993 in the simulator, with `env`.
fn sim_pull(sim: &LambdaSim, image: &str, env: &[(&str, &str)]) -> SimOutput {
    let scar = format!("{}/scar", lambda_sim::SCAR_DIR);
    sim.run_argv(&[&scar, "pull", image, "--cache", SIM_CACHE], env)
}

fn simulator(cache: &Path, images: Option<&Path>) -> (LambdaSim, tempfile::TempDir) {
    let layer = lambda_sim::layer_dir();
    let mut sim = LambdaSim::new(layer.path())
        .with_scar()
        .bind(cache, SIM_CACHE);
    if let Some(dir) = images {
        sim = sim.ro_bind(dir, SIM_IMAGES);
    }
    (sim, layer)
}

/// The root `scar pull` printed (its first line of output).
fn printed_root(out: &SimOutput, cache: &Path) -> PathBuf {
    let line = out.stdout.lines().next().unwrap_or_default();
    let inside = line
        .strip_prefix(SIM_CACHE)
        .unwrap_or_else(|| panic!("scar pull printed no root under {SIM_CACHE}: {out:?}"));
    cache.join(inside.trim_start_matches('/'))
}

// ---- (a) poisoning --------------------------------------------------------------------------

#[test]
fn an_image_claiming_anothers_diff_ids_is_refused_from_a_registry_as_root_and_as_uid_993() {
    let registry = Registry::start();
    let p = poison();
    let pusher = Pusher::new(&registry.url(), None);
    pusher.image("trust/real", "v1", &p.real);
    pusher.image("trust/evil", "v1", &p.evil);
    let real = format!("{}/trust/real:v1", registry.host());
    let evil = format!("{}/trust/evil:v1", registry.host());

    let cache = tempfile::tempdir().expect("tempdir");
    let opts = options(cache.path(), Some(&registry), None);
    let err = pull(&evil, &opts).expect_err("the evil image must be refused");
    assert_refusal(&err.to_string(), &p, "a registry");
    assert_nothing_published(cache.path(), "a registry");
    let prepared = pull(&real, &opts).expect("the real image");
    assert_real_root(&prepared.root, "a registry");

    // The same as uid 993 through the static `scar pull` in the simulated Lambda.
    let cache = sim_cache();
    let (sim, _layer) = simulator(cache.path(), None);
    let host = registry.host();
    let env = [("SCAR_INSECURE_REGISTRIES", host.as_str())];
    let out = sim_pull(&sim, &evil, &env);
    assert_ne!(out.code, Some(0), "uid 993 pulled the evil image: {out:?}");
    assert_refusal(&out.stderr, &p, "a registry as uid 993");
    assert_nothing_published(cache.path(), "a registry as uid 993");
    let out = sim_pull(&sim, &real, &env);
    out.assert_success();
    assert_real_root(&printed_root(&out, cache.path()), "a registry as uid 993");
}

#[test]
fn an_image_claiming_anothers_diff_ids_is_refused_from_layouts_and_archives_local_and_in_s3() {
    let p = poison();
    let sources = local_sources(&p);
    let s3 = s3_sources(sources.path());
    let dir = sources.path().to_str().expect("utf-8 temp path");
    for (source, evil, real) in archive_cases(dir) {
        let cache = tempfile::tempdir().expect("tempdir");
        let opts = options(cache.path(), None, Some(&s3));
        let err =
            pull(&evil, &opts).expect_err(&format!("the evil image from {source} must be refused"));
        assert_refusal(&err.to_string(), &p, source);
        assert_nothing_published(cache.path(), source);
        let prepared = pull(&real, &opts).unwrap_or_else(|e| panic!("real from {source}: {e}"));
        assert_real_root(&prepared.root, source);
    }
}

#[test]
fn as_uid_993_an_image_claiming_anothers_diff_ids_is_refused_from_layouts_and_archives() {
    let p = poison();
    let sources = local_sources(&p);
    let s3 = s3_sources(sources.path());
    let s3_env = s3.env();
    let env: Vec<(&str, &str)> = s3_env
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    for (source, evil, real) in archive_cases(SIM_IMAGES) {
        let cache = sim_cache();
        let (sim, _layer) = simulator(cache.path(), Some(sources.path()));
        let what = format!("{source} as uid 993");
        let out = sim_pull(&sim, &evil, &env);
        assert_ne!(
            out.code,
            Some(0),
            "{what}: the evil image was pulled: {out:?}"
        );
        assert_refusal(&out.stderr, &p, &what);
        assert_nothing_published(cache.path(), &what);
        let out = sim_pull(&sim, &real, &env);
        out.assert_success();
        assert_real_root(&printed_root(&out, cache.path()), &what);
    }
}

// ---- (b), (c) one config per image -------------------------------------------------------------

/// The config each of two images sharing their layers declares.
fn config_of(name: &str) -> ImageConfig {
    ImageConfig {
        env: vec!["PATH=/bin".into(), format!("WHO={name}")],
        entrypoint: vec![format!("/bin/{name}-entry")],
        cmd: vec![format!("--{name}")],
        working_dir: Some(format!("/work/{name}")),
        user: Some(format!("{}:{}", name.len(), name.len())),
    }
}

/// An image of `layers` with the config `c`.
fn image_with(layers: &[oci::Layer], c: &ImageConfig) -> Image {
    let mut b = ImageBuilder::new();
    for l in layers {
        b = b.layer(l.clone());
    }
    b.config("Env", serde_json::json!(c.env))
        .config("Entrypoint", serde_json::json!(c.entrypoint))
        .config("Cmd", serde_json::json!(c.cmd))
        .config("WorkingDir", serde_json::json!(c.working_dir))
        .config("User", serde_json::json!(c.user))
        .build()
}

fn shared_layers() -> Vec<oci::Layer> {
    vec![
        LayerBuilder::new(Compression::Gzip)
            .dir("etc")
            .file("etc/shared", b"one root for both\n")
            .finish(),
    ]
}

/// The config a warm start (no network, `if-not-present`) finds for `image` in `cache`.
fn warm_config(image: &str, cache: &Path) -> ImageConfig {
    pull::prepare_cached(image, &PullOptions::new(cache))
        .unwrap_or_else(|e| panic!("warm lookup of {image}: {e}"))
        .unwrap_or_else(|| panic!("{image} is not found warm in {}", cache.display()))
        .config
}

/// The config a cache written by the sandbox's user holds for `image`, read from its files:
/// the reference's record names a config digest, `configs/<hex>.json` holds the config.
fn stored_config(image: &str, cache: &Path) -> ImageConfig {
    let wanted = image
        .parse::<scar_rootfs::reference::ImageRef>()
        .expect("a reference")
        .to_string();
    let read = |path: &Path| -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(path).expect("read")).expect("json")
    };
    let record = entries(&cache.join("refs"))
        .iter()
        .map(|path| read(path))
        .find(|r| r["reference"] == wanted.as_str())
        .unwrap_or_else(|| panic!("no reference {wanted} in {}", cache.display()));
    let digest = record["config"]
        .as_str()
        .expect("the reference names its config");
    let hex = digest.strip_prefix("sha256:").expect("a sha256 digest");
    serde_json::from_value(read(&cache.join(format!("configs/{hex}.json")))).expect("a config")
}

#[test]
fn images_sharing_their_layers_each_keep_their_own_config_as_root_and_as_uid_993() {
    let registry = Registry::start();
    let layers = shared_layers();
    let names = ["first", "second", "third-one"];
    let pusher = Pusher::new(&registry.url(), None);
    for name in names {
        pusher.image(
            &format!("trust/{name}"),
            "v1",
            &image_with(&layers, &config_of(name)),
        );
    }
    let reference = |name: &str| format!("{}/trust/{name}:v1", registry.host());

    let cache = tempfile::tempdir().expect("tempdir");
    let opts = options(cache.path(), Some(&registry), None);
    let mut chains = Vec::new();
    for name in names {
        let prepared = pull(&reference(name), &opts).expect("pull");
        assert_eq!(prepared.config, config_of(name), "cold pull of {name}");
        chains.push(prepared.chain_id);
    }
    assert!(
        chains.windows(2).all(|w| w[0] == w[1]),
        "one root: {chains:?}"
    );
    assert_eq!(entries(&cache.path().join("rootfs")).len(), 1);
    for name in names {
        assert_eq!(warm_config(&reference(name), cache.path()), config_of(name));
        let again = pull(&reference(name), &opts).expect("warm pull");
        assert_eq!(again.config, config_of(name), "warm pull of {name}");
    }

    // As uid 993: the static `scar pull` stores each image's config; a warm start read from
    // that cache gives each its own.
    let cache = sim_cache();
    let (sim, _layer) = simulator(cache.path(), None);
    let host = registry.host();
    let env = [("SCAR_INSECURE_REGISTRIES", host.as_str())];
    for name in names {
        sim_pull(&sim, &reference(name), &env).assert_success();
    }
    assert_eq!(entries(&cache.path().join("rootfs")).len(), 1);
    assert_eq!(entries(&cache.path().join("configs")).len(), names.len());
    for name in names {
        assert_eq!(
            stored_config(&reference(name), cache.path()),
            config_of(name),
            "{name} pulled as uid 993"
        );
    }
}

#[test]
fn a_config_only_tag_update_is_seen_with_always_and_not_with_if_not_present() {
    let registry = Registry::start();
    let layers = shared_layers();
    let pusher = Pusher::new(&registry.url(), None);
    let (old, new) = (config_of("before"), config_of("after"));
    pusher.image("trust/app", "v1", &image_with(&layers, &old));
    let image = format!("{}/trust/app:v1", registry.host());

    let cache = tempfile::tempdir().expect("tempdir");
    let mut lazy = options(cache.path(), Some(&registry), None);
    lazy.policy = PullPolicy::IfNotPresent;
    let mut always = lazy.clone();
    always.policy = PullPolicy::Always;
    assert_eq!(pull(&image, &lazy).expect("first pull").config, old);
    pusher.image("trust/app", "v1", &image_with(&layers, &new));
    assert_eq!(
        pull(&image, &lazy).expect("if-not-present").config,
        old,
        "if-not-present keeps the remembered resolution"
    );
    assert_eq!(pull(&image, &always).expect("always").config, new);
    assert_eq!(pull(&image, &lazy).expect("after always").config, new);
    assert_eq!(warm_config(&image, cache.path()), new);

    // As uid 993 (`SCAR_PULL_POLICY` as the bootstrap's users set it).
    pusher.image("trust/app", "v1", &image_with(&layers, &old));
    let cache = sim_cache();
    let (sim, _layer) = simulator(cache.path(), None);
    let host = registry.host();
    let env = |policy: &'static str| {
        [
            ("SCAR_INSECURE_REGISTRIES", host.clone()),
            ("SCAR_PULL_POLICY", policy.to_owned()),
        ]
    };
    let run = |policy: &'static str| {
        let env = env(policy);
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        sim_pull(&sim, &image, &env).assert_success();
        stored_config(&image, cache.path())
    };
    assert_eq!(run("if-not-present"), old);
    pusher.image("trust/app", "v1", &image_with(&layers, &new));
    assert_eq!(run("if-not-present"), old, "uid 993, if-not-present");
    assert_eq!(run("always"), new, "uid 993, always");
    assert_eq!(run("if-not-present"), new, "uid 993, after always");
}

// ---- (d) records without the proof ------------------------------------------------------------

/// Rewrite the one `rootfs/*/image.json` of `cache` as a version without verification wrote it
/// (no `verified_diff_ids`, the config inside), and plant a file in its root that the image
/// does not have: a root nobody verified.
fn forge_old_record(cache: &Path) -> PathBuf {
    let dirs = entries(&cache.join("rootfs"));
    let [dir] = dirs.as_slice() else {
        panic!("one published root expected: {dirs:?}");
    };
    let meta = dir.join("image.json");
    let record: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&meta).expect("image.json")).expect("json");
    let old = serde_json::json!({
        "reference": record["reference"],
        "chain_id": record["chain_id"],
        "config": {"env": [], "entrypoint": [], "cmd": [], "working_dir": null, "user": null},
        "size": record["size"],
        "layers": record["layers"],
    });
    std::fs::write(&meta, serde_json::to_vec(&old).expect("json")).expect("write image.json");
    let planted = dir.join("root/etc/planted");
    std::fs::write(&planted, EVIL).expect("plant");
    planted
}

#[test]
fn a_record_without_the_proof_of_verification_is_rebuilt_not_trusted() {
    let registry = Registry::start();
    let p = poison();
    Pusher::new(&registry.url(), None).image("trust/real", "v1", &p.real);
    let real = format!("{}/trust/real:v1", registry.host());
    let cache = tempfile::tempdir().expect("tempdir");
    let opts = options(cache.path(), Some(&registry), None);
    let first = pull(&real, &opts).expect("pull");
    let planted = forge_old_record(cache.path());
    assert!(
        pull::prepare_cached(&real, &opts)
            .expect("lookup")
            .is_none(),
        "a warm start must not trust a record without the proof"
    );
    let again = pull(&real, &opts).expect("pull again");
    assert_eq!(again.chain_id, first.chain_id);
    assert!(!planted.exists(), "the unverified root was replaced");
    assert_real_root(&again.root, "a rebuilt record");
    let meta: serde_json::Value = serde_json::from_slice(
        &std::fs::read(again.root.parent().expect("dir").join("image.json")).expect("read"),
    )
    .expect("json");
    let verified: Vec<String> = p.real.layers.iter().map(|l| l.diff_id.clone()).collect();
    assert_eq!(meta["verified_diff_ids"], serde_json::json!(verified));
    assert!(
        pull::prepare_cached(&real, &opts)
            .expect("lookup")
            .is_some(),
        "the rebuilt record is trusted"
    );

    // As uid 993: the same forged record in a cache the static `scar pull` then uses.
    let cache = sim_cache();
    let (sim, _layer) = simulator(cache.path(), None);
    let host = registry.host();
    let env = [("SCAR_INSECURE_REGISTRIES", host.as_str())];
    sim_pull(&sim, &real, &env).assert_success();
    let planted = forge_old_record(cache.path());
    std::os::unix::fs::chown(&planted, Some(SANDBOX_UID), Some(SANDBOX_UID)).expect("chown");
    let out = sim_pull(&sim, &real, &env);
    out.assert_success();
    assert!(
        !planted.exists(),
        "uid 993: the unverified root was replaced"
    );
    assert_real_root(
        &printed_root(&out, cache.path()),
        "a rebuilt record as uid 993",
    );
}
