#!/usr/bin/env bash
# Static release builds of `bootstrap` and `scar` for x86_64 and aarch64 (musl), and the layer zips.
#
#   ./build.sh
#
# Produces:
#   dist/scar-layer-x86_64.zip   bootstrap at the root (Lambda unpacks it to /opt/bootstrap),
#   dist/scar-layer-arm64.zip    plus preload/ (the preload engine's libraries) when built
#   dist/scar-x86_64/            scar, bootstrap and preload/ for people
#   dist/scar-aarch64/
#
# Installs what it needs when missing (rustup targets; zig and cargo-zigbuild from PyPI) and is
# idempotent: a second run is a no-op cargo build and rewrites identical zips. A failed build never
# leaves a half-written zip: zips are written under a temporary name and renamed into place.
#
# Environment:
#   SCAR_BUILD_TARGET_DIR  cargo target directory (default target/dist: its own cargo lock, so a
#                          long release build does not block debug builds and tests)
#   SCAR_BUILD_JOBS        cargo -j (default: number of cores)
set -euo pipefail

repo=$(cd "$(dirname "$0")" && pwd)
cd "$repo"

target_dir=${SCAR_BUILD_TARGET_DIR:-$repo/target/dist}
jobs=${SCAR_BUILD_JOBS:-$(nproc)}
dist=$repo/dist
triples=(x86_64-unknown-linux-musl aarch64-unknown-linux-musl)

mkdir -p "$dist"
# One build at a time (tests may call this script while a person runs it).
if command -v flock >/dev/null 2>&1; then
  exec 9>"$dist/.lock"
  flock 9
fi

step_start=$(date +%s)
step() {
  local now
  now=$(date +%s)
  echo "build.sh: $1 (+$((now - step_start))s)" >&2
}

# --- tools -------------------------------------------------------------------------------------
if ! command -v rustup >/dev/null 2>&1; then
  echo "build.sh: rustup is missing: install Rust with rustup (https://rustup.rs), then rerun" >&2
  exit 1
fi
installed_targets=$(rustup target list --installed)
for triple in "${triples[@]}"; do
  if ! grep -qx "$triple" <<<"$installed_targets"; then
    rustup target add "$triple"
  fi
done

# zig is the C cross compiler and linker for both targets (ring and zstd compile C code); the
# PyPI wheels need no system packages and install in seconds.
if ! command -v cargo-zigbuild >/dev/null 2>&1 || ! python3 -m ziglang version >/dev/null 2>&1; then
  if ! command -v python3 >/dev/null 2>&1; then
    echo "build.sh: python3 is missing: apt-get install python3 python3-pip, then rerun" >&2
    exit 1
  fi
  python3 -m pip install --quiet ziglang cargo-zigbuild ||
    python3 -m pip install --quiet --break-system-packages ziglang cargo-zigbuild
  hash -r
fi
step "tools ready"

# --- binaries ----------------------------------------------------------------------------------
# One cargo invocation for both targets: host-side build scripts and proc macros compile once.
target_args=()
for triple in "${triples[@]}"; do
  target_args+=(--target "$triple")
done
cargo zigbuild --release --locked -j "$jobs" \
  -p scar-bootstrap -p scar-tools \
  "${target_args[@]}" \
  --target-dir "$target_dir"
step "release binaries built"

# --- packaging ---------------------------------------------------------------------------------
work=$(mktemp -d "$dist/.build.XXXXXX")
trap 'rm -rf "$work"' EXIT

# zip_dir <dir> <zip>: a zip of <dir>'s contents with unix modes kept and fixed timestamps, so
# identical inputs give identical zips. Written to a temporary name, renamed into place.
zip_dir() {
  local src=$1 dest=$2 tmp
  tmp=$(mktemp "$dist/.$(basename "$dest").XXXXXX")
  python3 - "$src" "$tmp" <<'PY'
import os, stat, sys, zipfile
src, dest = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(dest, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
    for root, dirs, files in os.walk(src):
        dirs.sort()
        for name in sorted(files):
            path = os.path.join(root, name)
            rel = os.path.relpath(path, src)
            mode = stat.S_IMODE(os.stat(path).st_mode)
            info = zipfile.ZipInfo(rel, date_time=(1980, 1, 1, 0, 0, 0))
            info.create_system = 3  # unix: external_attr carries the mode
            info.external_attr = (stat.S_IFREG | mode) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            with open(path, "rb") as f:
                zf.writestr(info, f.read(), compresslevel=9)
PY
  chmod 0644 "$tmp" # mktemp made it 0600
  mv -f "$tmp" "$dest"
}

for triple in "${triples[@]}"; do
  arch=${triple%%-*}
  case "$arch" in
    x86_64) layer_arch=x86_64 ;;
    aarch64) layer_arch=arm64 ;;
  esac
  release=$target_dir/$triple/release

  layer=$work/layer-$arch
  mkdir -p "$layer"
  install -m 0755 "$release/bootstrap" "$layer/bootstrap"
  if [ -x rootfs/preload/build.sh ]; then
    rootfs/preload/build.sh "$arch" "$layer/preload" >&2
    chmod -R a+rX,go-w "$layer/preload"
  fi
  zip_dir "$layer" "$dist/scar-layer-$layer_arch.zip"

  people=$work/scar-$arch
  mkdir -p "$people"
  install -m 0755 "$release/scar" "$release/scar-full" "$release/bootstrap" "$people/"
  if [ -d "$layer/preload" ]; then
    cp -a "$layer/preload" "$people/preload"
  fi
  # Swap the directory in whole: the old copy moves aside first, so a reader never sees a mix.
  if [ -e "$dist/scar-$arch" ]; then
    mv "$dist/scar-$arch" "$work/old-scar-$arch"
  fi
  mv "$people" "$dist/scar-$arch"
  step "packaged $arch"
done

ls -l "$dist"/scar-layer-*.zip >&2
step "done"
