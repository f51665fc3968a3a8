#!/usr/bin/env bash
# Build the offline demo's image from what a fresh machine has, with no registry and no Docker:
# the PNG-to-grayscale converter of examples/demo/grayscale (built here), the host's own `dash`
# as /bin/sh and a few coreutils, and the host's dynamic loader and the libraries `ldd` names
# for them; packed by `scar image from-dir` as the OCI layout examples/demo/image, tag `demo`.
#
# Every program in the image is dynamically linked and finds its C library inside the image,
# so the image runs under both engines: the namespace engine (a container root) and the preload
# engine (what runs on Lambda, where user namespaces are refused), which starts programs through
# the image's own loader and so cannot map the paths of a static program.
#
# Usage: examples/demo/build-image.sh [path/to/scar]
# Environment:
#   DEMO_IMAGE    the layout to write (default examples/demo/image)
#   DEMO_PROFILE  the cargo profile the converter is built with (default dev; ./demo.sh says demo)
#   GRAYSCALE     a converter already built (skips the cargo build)
set -euo pipefail

repo=$(cd "$(dirname "$0")/../.." && pwd)
target_dir=${CARGO_TARGET_DIR:-$repo/target}
profile=${DEMO_PROFILE:-dev}
case "$profile" in
    dev) profile_dir=debug ;;
    *) profile_dir=$profile ;;
esac
scar=${1:-$target_dir/$profile_dir/scar}
image=${DEMO_IMAGE:-$repo/examples/demo/image}
# What script.sh runs (sh, basename, grayscale) and a few tools to look around with.
programs="sh basename dirname cat ls cp mv rm mkdir touch head tail wc env sleep id"

if [ ! -x "$scar" ]; then
    echo "build-image.sh: no scar at $scar: run cargo build -p scar-tools first (or pass its path)" >&2
    exit 1
fi
if ! command -v ldd >/dev/null; then
    echo "build-image.sh: ldd is missing: install the Debian package libc-bin" >&2
    exit 1
fi

grayscale=${GRAYSCALE:-}
if [ -z "$grayscale" ]; then
    echo "==> building the grayscale converter (profile $profile)"
    cargo build --quiet --manifest-path "$repo/Cargo.toml" -p scar-demo-grayscale --profile "$profile"
    grayscale=$target_dir/$profile_dir/grayscale
fi

rootfs=$(mktemp -d "${TMPDIR:-/tmp}/scar-demo-rootfs.XXXXXX")
trap 'rm -rf "$rootfs"' EXIT
# Merged /usr, as Debian 12 lays it out, so the library paths `ldd` prints are valid as they are.
mkdir -p "$rootfs"/usr/bin "$rootfs"/usr/lib "$rootfs"/usr/lib64 "$rootfs"/usr/local/bin \
    "$rootfs"/etc "$rootfs"/dev "$rootfs"/proc "$rootfs"/sys "$rootfs"/tmp
chmod 1777 "$rootfs/tmp"
ln -s usr/bin "$rootfs/bin"
ln -s usr/lib "$rootfs/lib"
ln -s usr/lib64 "$rootfs/lib64"

# Copy the loader and the libraries `ldd` lists for $1 to the same paths inside the image.
copy_libraries() {
    local program=$1 listing line path
    if ! listing=$(ldd "$program" 2>&1) || ! grep -q '=>' <<<"$listing"; then
        echo "build-image.sh: $program is not a dynamically linked program (ldd: $listing)" >&2
        exit 1
    fi
    while read -r line; do
        # `libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)` or `/lib64/ld-linux-x86-64.so.2 (0x...)`
        case "$line" in
            *'=> not found'*)
                echo "build-image.sh: $program needs a library the host lacks: $line" >&2
                exit 1
                ;;
            *'=> /'*) path=${line#*=> } ;;
            /*) path=$line ;;
            *) continue ;;
        esac
        path=${path%% (*}
        if [ ! -e "$rootfs$path" ]; then
            mkdir -p "$(dirname "$rootfs$path")"
            cp -L "$path" "$rootfs$path"
        fi
    done <<<"$listing"
}

for name in $programs; do
    host=$(command -v "$name" || true)
    case "$host" in
        /*) ;;
        *)
            echo "build-image.sh: no $name program on this host (Debian packages dash and coreutils)" >&2
            exit 1
            ;;
    esac
    # /bin/sh is dash on Debian: copy dash and link sh to it, as the host does.
    real=$(readlink -f "$host")
    if [ ! -e "$rootfs/usr/bin/${real##*/}" ]; then
        cp "$real" "$rootfs/usr/bin/${real##*/}"
        copy_libraries "$real"
    fi
    [ "${real##*/}" = "$name" ] || ln -s "${real##*/}" "$rootfs/usr/bin/$name"
done
cp "$grayscale" "$rootfs/usr/local/bin/grayscale"
copy_libraries "$grayscale"
# The rest of glibc's own package, as a real image has it (Debian's libc6 ships libdl.so.2 beside
# libc.so.6): the preload engine's library needs it, and on Lambda nothing else has it.
libc=$(find "$rootfs" -name libc.so.6 | head -1)
for stub in libdl.so.2 libpthread.so.0 librt.so.1; do
    host_stub=/${libc#"$rootfs"/}
    host_stub=${host_stub%/*}/$stub
    [ ! -e "$host_stub" ] || [ -e "${libc%/*}/$stub" ] || cp -L "$host_stub" "${libc%/*}/$stub"
done
chmod -R a+rX "$rootfs"

echo "==> packing $rootfs ($(du -sh "$rootfs" | cut -f1)) as an OCI image layout"
rm -rf "$image"
"$scar" image from-dir "$rootfs" --output "$image" --tag demo \
    --env PATH=/usr/local/bin:/usr/bin:/bin --workdir / --cmd /bin/sh
