//! The image cache as concurrent users share it: a root filesystem evicted by another process
//! between two invocations is pulled again, not handed out as a directory that is gone.

use crate::bootstrap_support::{BUCKET, COPY_SCRIPT, Function};

#[test]
fn an_image_evicted_between_invocations_is_pulled_again() {
    let cache = tempfile::tempdir().expect("tempdir");
    let cache_dir = cache.path().display().to_string();
    let function = Function::spec()
        .env("SCAR_SCRIPT", COPY_SCRIPT)
        .env("SCAR_CACHE_DIR", &cache_dir)
        .start();
    function.s3.put_object(BUCKET, "in/a.txt", b"first\n");
    let first = function.invoke_s3(&["in/a.txt"]);
    assert_eq!(first.status, 200, "{}\n{}", first.body, function.log());

    // What another process's eviction (`scar cache rm`, a pull needing room) leaves: the
    // image's directory under rootfs/ is gone.
    let rootfs = cache.path().join("rootfs");
    let mut evicted = 0;
    for entry in std::fs::read_dir(&rootfs).expect("the cache has rootfs/") {
        let path = entry.expect("a rootfs entry").path();
        if path.join("root").is_dir() {
            std::fs::remove_dir_all(&path).expect("evict the image");
            evicted += 1;
        }
    }
    assert_eq!(evicted, 1, "one image was cached in {}", rootfs.display());

    function.s3.put_object(BUCKET, "in/b.txt", b"second\n");
    let second = function.invoke_s3(&["in/b.txt"]);
    assert_eq!(second.status, 200, "{}\n{}", second.body, function.log());
    assert_eq!(
        function.s3.get_object(BUCKET, "output/b.txt").as_deref(),
        Some(&b"second\n"[..])
    );
    assert!(
        function.log().contains("pulling it again"),
        "the log does not say the image was pulled again:\n{}",
        function.log()
    );
}
