#!/usr/bin/env bash
# Build the offline demo's image from what a fresh machine has, with no registry and no Docker:
# busybox (Debian package busybox-static) for /bin/sh, plus the static PNG-to-grayscale
# converter of examples/demo/grayscale built for musl (the image has no C library), packed by
# `scar image from-dir` as the OCI layout examples/demo/image, tag `demo`.
#
# Usage: examples/demo/build-image.sh [path/to/scar]
# Environment: DEMO_IMAGE  the layout to write (default examples/demo/image)
set -euo pipefail

repo=$(cd "$(dirname "$0")/../.." && pwd)
target_dir=${CARGO_TARGET_DIR:-$repo/target}
scar=${1:-$target_dir/debug/scar}
busybox=${BUSYBOX:-/bin/busybox}
triple="$(uname -m)-unknown-linux-musl"

if [ ! -x "$busybox" ]; then
    echo "build-image.sh: no busybox at $busybox: install the Debian package busybox-static (or set BUSYBOX)" >&2
    exit 1
fi
# A dynamically linked busybox would find no C library inside the image.
if ldd "$busybox" 2>&1 | grep -q '=>'; then
    echo "build-image.sh: $busybox is dynamically linked: install busybox-static (or set BUSYBOX to a static one)" >&2
    exit 1
fi
if [ ! -x "$scar" ]; then
    echo "build-image.sh: no scar at $scar: run cargo build -p scar-tools first" >&2
    exit 1
fi

echo "==> building the grayscale converter for $triple"
cargo build --quiet --manifest-path "$repo/Cargo.toml" -p scar-demo-grayscale --release --target "$triple"

image=${DEMO_IMAGE:-$repo/examples/demo/image}
rootfs=$(mktemp -d "${TMPDIR:-/tmp}/scar-demo-rootfs.XXXXXX")
trap 'rm -rf "$rootfs"' EXIT
mkdir -p "$rootfs/bin" "$rootfs/usr/local/bin" "$rootfs/tmp"
chmod 1777 "$rootfs/tmp"
cp "$busybox" "$rootfs/bin/busybox"
for applet in $("$busybox" --list); do
    [ "$applet" = busybox ] || ln -s busybox "$rootfs/bin/$applet"
done
cp "$target_dir/$triple/release/grayscale" "$rootfs/usr/local/bin/grayscale"

echo "==> packing $rootfs as an OCI image layout"
rm -rf "$image"
"$scar" image from-dir "$rootfs" --output "$image" --tag demo \
    --env PATH=/usr/local/bin:/usr/bin:/bin --workdir / --cmd /bin/sh
