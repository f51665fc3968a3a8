#!/usr/bin/env bash
# The whole test suite, from a fresh Debian 12 / Ubuntu machine (as root, or a user with sudo):
#
#   ./test.sh
#
# 1. installs what the tests need, idempotently (apt packages, PyPI binaries, rustup targets and
#    components, subordinate id ranges for root);
# 2. cargo fmt --check, clippy with -D warnings, the static release builds (./build.sh, in the
#    background meanwhile), the workspace's binaries, and cargo test for the whole workspace
#    against real services the tests start themselves (the tests build nothing).
#
# Environment: SCAR_TEST_SKIP_INSTALL=1 skips step 1 (a machine already set up).
set -euo pipefail

repo=$(cd "$(dirname "$0")" && pwd)
cd "$repo"

started=$(date +%s)
phase() {
  echo "==> test.sh: $1 (at +$(($(date +%s) - started))s)"
}

# Debian packages the tests use:
#   docker-registry   the CNCF distribution registry (harness Registry)
#   qemu-user-static  runs the aarch64 bootstrap (tests/tests/tools/build.rs)
#   busybox-static, umoci, skopeo  make and move test images
#   bubblewrap, uidmap, util-linux  Lambda-like sandboxes (unshare --map-users, setpriv)
#   musl-tools, zip, unzip, hyperfine, python3-pip: builds, layer zips, benchmarks
apt_packages=(
  ca-certificates curl git build-essential pkg-config python3 python3-pip util-linux
  docker-registry qemu-user-static busybox-static bubblewrap uidmap skopeo umoci
  musl-tools zip unzip hyperfine binutils proot debootstrap time
)
# PyPI binaries: the Runtime API emulator, zig + cargo-zigbuild for the static builds, the linter
# of the SAM templates.
pip_packages=(cargo-lambda ziglang cargo-zigbuild cfn-lint udocker)
rust_targets=(x86_64-unknown-linux-musl aarch64-unknown-linux-musl aarch64-unknown-linux-gnu)

as_root() {
  if [ "$(id -u)" -eq 0 ]; then
    "$@"
  else
    sudo "$@"
  fi
}

install_apt() {
  local missing=() package
  for package in "${apt_packages[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
      missing+=("$package")
    fi
  done
  if [ "${#missing[@]}" -gt 0 ]; then
    echo "test.sh: installing Debian packages: ${missing[*]}"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
  fi
}

install_pip() {
  local missing=() package
  for package in "${pip_packages[@]}"; do
    if ! python3 -m pip show --quiet "$package" >/dev/null 2>&1; then
      missing+=("$package")
    fi
  done
  if [ "${#missing[@]}" -gt 0 ]; then
    echo "test.sh: installing PyPI packages: ${missing[*]}"
    # Debian 12's system Python refuses pip installs without --break-system-packages (PEP 668);
    # a pyenv or venv Python takes them as they are.
    as_root python3 -m pip install --quiet "${missing[@]}" ||
      as_root python3 -m pip install --quiet --break-system-packages "${missing[@]}"
    hash -r
  fi
}

install_rust() {
  if ! command -v cargo >/dev/null 2>&1 || ! command -v rustup >/dev/null 2>&1; then
    echo "test.sh: Rust (cargo, rustup) is missing: install it with rustup (https://rustup.rs)" >&2
    exit 1
  fi
  local installed
  installed=$(rustup component list --installed)
  for component in rustfmt clippy; do
    if ! grep -q "^$component" <<<"$installed"; then
      rustup component add "$component"
    fi
  done
  installed=$(rustup target list --installed)
  for target in "${rust_targets[@]}"; do
    if ! grep -qx "$target" <<<"$installed"; then
      rustup target add "$target"
    fi
  done
}

# `unshare --map-users=0,0,65536` (the Lambda-like sandbox of the preload tests) needs root to own
# the subordinate ids 0-65535.
install_subids() {
  local file
  for file in /etc/subuid /etc/subgid; do
    if ! grep -qx 'root:0:65536' "$file" 2>/dev/null; then
      echo 'root:0:65536' | as_root tee -a "$file" >/dev/null
    fi
  done
}

if [ "${SCAR_TEST_SKIP_INSTALL:-0}" != 1 ]; then
  phase "installing what the tests need"
  install_apt
  install_pip
  install_rust
  install_subids
fi

for tool in docker-registry cargo-lambda qemu-aarch64-static; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "test.sh: $tool is still not on PATH after the install step (PATH=$PATH)" >&2
    exit 1
  fi
done

# A fresh build without incremental caches: they only help rebuilds, and cost disk and time here.
export CARGO_INCREMENTAL=0
phase "disk before the builds: $(df -h --output=avail "$repo" | tail -1 | tr -d ' ') free where the repository is"

phase "cargo fmt --all --check"
cargo fmt --all --check

phase "module graphs: no cycle in any crate (scripts/modgraph.py --strict)"
if ! graphs=$(python3 scripts/modgraph.py --strict bootstrap rootfs tools tests rootfs/preload \
  rootfs/preload/audit examples/demo/grayscale); then
  grep -E 'CYCLE|cycle\(s\)|^    ' <<<"$graphs" >&2
  echo "test.sh: a module cycle (above): move the shared items into a file at the bottom" >&2
  exit 1
fi

# The static release builds (fat LTO, one codegen unit: long single-threaded links) run in the
# background from here on, beside clippy and the debug build of the tests, whose cores they would
# otherwise leave idle. build.sh builds in target/dist and target/preload (locks of their own).
build_log=$(mktemp "${TMPDIR:-/tmp}/scar-test-build.XXXXXX")
phase "./build.sh (static release builds, layer zips) started in the background: $build_log"
# In a session of its own, so that an early exit here stops it with its cargo and linkers.
setsid ./build.sh >"$build_log" 2>&1 &
build_pid=$!
trap 'kill -- -"$build_pid" 2>/dev/null || true' EXIT

phase "cargo clippy --workspace --all-targets -- -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings

# The preload library is a no_std cdylib outside the workspace (its own panic=abort profile).
phase "fmt and clippy of rootfs/preload (glibc and musl builds)"
cargo fmt --manifest-path rootfs/preload/Cargo.toml --check
cargo fmt --manifest-path rootfs/preload/audit/Cargo.toml --check
cargo clippy --manifest-path rootfs/preload/audit/Cargo.toml --locked --release --target-dir target/preload -- -D warnings
cargo clippy --manifest-path rootfs/preload/Cargo.toml --locked --release --target-dir target/preload -- -D warnings
RUSTFLAGS="-C target-feature=-crt-static" cargo clippy --manifest-path rootfs/preload/Cargo.toml --locked \
  --release --target-dir target/preload --target x86_64-unknown-linux-musl -- -D warnings

# Tests never build: they run the binaries built here (target/debug, found from their own
# executable) and the outputs of build.sh (SCAR_E2E_DIST), and fail naming the command to run
# when one is missing or older than its sources.
phase "cargo build --workspace --bins and the test binaries (debug)"
cargo build --workspace --bins --locked
cargo test --workspace --locked --no-run

phase "waiting for ./build.sh"
if ! wait "$build_pid"; then
  cat "$build_log" >&2
  echo "test.sh: ./build.sh failed (its output is above)" >&2
  exit 1
fi
trap - EXIT
grep '^build.sh: ' "$build_log" || true
rm -f "$build_log"

phase "cargo test --workspace"
export SCAR_E2E_DIST="$repo/dist"
# The binaries and dist/ are this run's: sources edited since are not compared with them.
export SCAR_E2E_BUILT=1
# Benchmark tests print their figures on small inputs here; the full runs are `scar bench`.
export SCAR_BENCH_QUICK=1
# As root every test can run, the #[ignore]d ones included (those say why they need more than an
# ordinary user has).
test_args=()
if [ "$(id -u)" -eq 0 ]; then
  test_args=(-- --include-ignored)
fi
cargo test --workspace --locked --no-fail-fast "${test_args[@]}"

phase "disk after the tests: $(du -sh target 2>/dev/null | cut -f1) in target/, $(df -h --output=avail "$repo" | tail -1 | tr -d ' ') free"

phase "all passed"
