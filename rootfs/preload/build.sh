#!/usr/bin/env bash
# Build the preload engine's LD_PRELOAD library for one architecture.
#
#   rootfs/preload/build.sh <x86_64|aarch64> <outdir>
#
# Puts into <outdir>:
#   libscar_preload-gnu.so   glibc images, linked against a glibc 2.17 baseline (CentOS 7 onwards)
#   libscar_preload-musl.so  musl images (x86_64 only)
#   libscar_audit.so         glibc images: the loader's LD_AUDIT module (no libc, no DT_NEEDED)
#
# Installs what it needs (rustup targets, zig and cargo-zigbuild from PyPI) when missing; running
# it again does nothing more than a cargo build. The crate is outside the workspace (its own
# profile with panic = "abort"); its build directory is target/preload of the repository.
set -euo pipefail

arch=${1:-}
out=${2:-}
case "$arch" in
  x86_64 | aarch64) ;;
  *)
    echo "usage: $0 <x86_64|aarch64> <outdir>" >&2
    exit 2
    ;;
esac
if [ -z "$out" ]; then
  echo "usage: $0 <x86_64|aarch64> <outdir>" >&2
  exit 2
fi

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
target_dir=${SCAR_PRELOAD_TARGET_DIR:-$repo/target/preload}

need_target() {
  if ! rustup target list --installed | grep -qx "$1"; then
    rustup target add "$1"
  fi
}

# zig supplies the glibc 2.17 link stubs (symbol versions no newer than the oldest image we
# support) and a cross linker for aarch64 and musl.
if ! command -v cargo-zigbuild >/dev/null 2>&1 || ! python3 -m ziglang version >/dev/null 2>&1; then
  python3 -m pip install --quiet ziglang cargo-zigbuild
fi

mkdir -p "$out"

need_target "$arch-unknown-linux-gnu"
cargo zigbuild --release --quiet \
  --manifest-path "$here/Cargo.toml" \
  --target "$arch-unknown-linux-gnu.2.17" \
  --target-dir "$target_dir"
install -m 0644 "$target_dir/$arch-unknown-linux-gnu/release/libscar_preload.so" "$out/libscar_preload-gnu.so"
# The audit module links no libc (its build.rs says -nostdlib), so any glibc target will do.
cargo zigbuild --release --quiet \
  --manifest-path "$here/audit/Cargo.toml" \
  --target "$arch-unknown-linux-gnu.2.17" \
  --target-dir "$target_dir"
install -m 0644 "$target_dir/$arch-unknown-linux-gnu/release/libscar_audit.so" "$out/libscar_audit.so"

if [ "$arch" = x86_64 ]; then
  need_target x86_64-unknown-linux-musl
  # A cdylib cannot be built with musl's default static C runtime.
  RUSTFLAGS="-C target-feature=-crt-static" cargo zigbuild --release --quiet \
    --manifest-path "$here/Cargo.toml" \
    --target x86_64-unknown-linux-musl \
    --target-dir "$target_dir"
  install -m 0644 "$target_dir/x86_64-unknown-linux-musl/release/libscar_preload.so" "$out/libscar_preload-musl.so"
fi

ls -l "$out"/libscar_preload-*.so "$out"/libscar_audit.so >&2
