//! `SCAR_IMAGE=s3://bucket/key`: a framed image (#21) made with `framed::write::write_tree`
//! from a busybox tree, put in the function's S3 server and pulled by the static bootstrap
//! under the Lambda simulation at its first invocation, which runs a script on one S3 event.
//! The simulation's root has no shell: the script runs on the image's busybox (static, so
//! unconfined under the preload engine), and the image's config (the index's) sets its `Env`.

use std::path::Path;

use crate::bootstrap_support::{BUCKET, Function};
use scar_rootfs::framed::write::{WriteOptions, write_tree};
use scar_rootfs::image::ImageConfig;

/// A variable only this image's config sets; the script writes it to an output.
const MARKER: &str = "from a framed image in S3";
/// Writes the marker to an output named after the input, and copies the input beside it.
const SCRIPT: &str = r#"echo "$SCAR_MARKER" > "$SCAR_OUTPUT_DIR/$(basename "$SCAR_INPUT_FILE").marker"; cp "$SCAR_INPUT_FILE" "$SCAR_OUTPUT_DIR/""#;

/// A root of a static busybox with its applets and `/etc/passwd`.
fn busybox_tree(root: &Path) {
    let busybox = ["/bin/busybox", "/usr/bin/busybox"]
        .into_iter()
        .map(Path::new)
        .find(|p| p.is_file())
        .expect("busybox is missing: apt-get install busybox-static");
    for dir in ["bin", "etc", "tmp", "proc", "dev", "sys", "root"] {
        std::fs::create_dir_all(root.join(dir)).expect("mkdir");
    }
    std::fs::copy(busybox, root.join("bin/busybox")).expect("copy busybox");
    for applet in ["sh", "cat", "cp", "basename", "ls", "echo"] {
        std::os::unix::fs::symlink("busybox", root.join("bin").join(applet)).expect("symlink");
    }
    std::fs::write(root.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").expect("passwd");
}

#[test]
fn a_framed_image_in_s3_is_pulled_under_simulated_lambda_and_runs_the_script() {
    let tree = tempfile::tempdir().expect("tmp");
    busybox_tree(tree.path());
    let config = ImageConfig {
        env: vec!["PATH=/bin".into(), format!("SCAR_MARKER={MARKER}")],
        ..ImageConfig::default()
    };
    let mut object = Vec::new();
    let written = write_tree(
        tree.path(),
        &config,
        "busybox tree",
        &mut object,
        &WriteOptions::default(),
    )
    .expect("write the framed image");
    let image = format!("s3://{BUCKET}/images/busybox.scar@{}", written.index_digest);
    let function = Function::spec()
        .env("SCAR_IMAGE", &image)
        .env("SCAR_SCRIPT", SCRIPT)
        .env("SCAR_PREFETCH", "false")
        .start_simulated();
    // The bootstrap pulls at the first invocation: the object is there by then.
    function
        .s3
        .put_object(BUCKET, "images/busybox.scar", &object);
    function.s3.put_object(BUCKET, "in/a.txt", b"input\n");
    let result = function.invoke_s3(&["in/a.txt"]);
    assert_eq!(result.status, 200, "{}\n{}", result.body, function.log());
    assert_eq!(
        function
            .s3
            .get_object(BUCKET, "output/a.txt.marker")
            .as_deref(),
        Some(format!("{MARKER}\n").as_bytes()),
        "{}\n{}",
        result.body,
        function.log()
    );
    assert_eq!(
        function.s3.get_object(BUCKET, "output/a.txt").as_deref(),
        Some(&b"input\n"[..])
    );
}
