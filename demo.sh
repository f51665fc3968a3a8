#!/usr/bin/env bash
# README command 1: turn examples/demo/sample.png into a grayscale picture, offline, through
# `scar local`: the real bootstrap, an embedded Lambda Runtime API and S3 endpoint, and an
# image built here from the host's dash, libc and a converter built from this repository (no
# registry, no Docker, no AWS).
#
# Usage: ./demo.sh [--lambda-sim] [--engine auto|namespace|preload]
#   --lambda-sim   run the bootstrap under `scar lambda-sim`, the project's Lambda simulator
#                  (uid 993, seccomp, user namespaces refused, a bare read-only root; needs root):
#                  the preload engine runs the script, as on AWS Lambda. The bootstrap is then the
#                  static one of ./build.sh (slow the first time), as the layer ships it
#   --engine E     ask for an engine (SCAR_ENGINE); the default, auto, takes the namespace
#                  engine where user namespaces work
# Environment: DEMO_PROFILE  the cargo profile to build with (default demo: the dev profile
#              without debug info, see Cargo.toml; the release profile's fat LTO is slow)
set -euo pipefail
cd "$(dirname "$0")"

lambda_sim=
engine=auto
while [ $# -gt 0 ]; do
    case "$1" in
        --lambda-sim) lambda_sim=1 ;;
        --engine)
            engine=${2:-}
            shift
            ;;
        --engine=*) engine=${1#--engine=} ;;
        *)
            echo "usage: $0 [--lambda-sim] [--engine auto|namespace|preload]" >&2
            exit 2
            ;;
    esac
    shift
done
case "$engine" in
    auto | namespace | preload) ;;
    *)
        echo "demo.sh: --engine $engine: use auto, namespace or preload" >&2
        exit 2
        ;;
esac

profile=${DEMO_PROFILE:-demo}
case "$profile" in
    dev) profile_dir=debug ;;
    *) profile_dir=$profile ;;
esac
target_dir=${CARGO_TARGET_DIR:-$PWD/target}
bin=$target_dir/$profile_dir

echo "==> building scar, the bootstrap and the demo's converter (cargo profile $profile)"
cargo build --quiet --profile "$profile" -p scar-tools -p scar-bootstrap -p scar-demo-grayscale

# The preload engine's LD_PRELOAD libraries, beside the bootstrap as the layer ships them: only
# when the preload engine will run on this host (asked for, or user namespaces are refused here);
# under --lambda-sim the layer's libraries come from ./build.sh below.
if [ -z "$lambda_sim" ] && { [ "$engine" = preload ] ||
    { [ "$engine" = auto ] && ! unshare --user --map-root-user true 2>/dev/null; }; }; then
    echo "==> building the preload engine's libraries into $bin/preload"
    rootfs/preload/build.sh "$(uname -m)" "$bin/preload"
fi

GRAYSCALE=$bin/grayscale examples/demo/build-image.sh "$bin/scar"

bootstrap=$bin/bootstrap
if [ -n "$lambda_sim" ]; then
    # The simulator's root holds no C library (Lambda's is not this distribution): the layer's
    # static bootstrap, with the preload libraries beside it.
    echo "==> ./build.sh: the static bootstrap and the layer's preload libraries"
    ./build.sh
    bootstrap=$PWD/dist/scar-$(uname -m)/bootstrap
fi

options=()
[ "$engine" = auto ] || options+=(--env "SCAR_ENGINE=$engine")
[ -z "$lambda_sim" ] || options+=(--lambda-sim)
echo "==> scar local invoke${options[*]:+ ${options[*]}}: examples/demo/sample.png as an S3 upload to input/sample.png"
rm -rf examples/demo/run
start=$(date +%s%N)
"$bin/scar" local invoke --function examples/demo ${options[@]+"${options[@]}"} \
    --input examples/demo/sample.png --dir examples/demo/run \
    --bootstrap "$bootstrap"
elapsed_ms=$(( ($(date +%s%N) - start) / 1000000 ))

result=examples/demo/run/output/sample.png
if [ ! -s "$result" ]; then
    echo "demo.sh: no result at $result: see the messages above" >&2
    exit 1
fi
echo
echo "Done in $((elapsed_ms / 1000)).$(printf %03d $((elapsed_ms % 1000))) s: the grayscale picture is $result"
echo "(the original is examples/demo/sample.png; the local bucket is examples/demo/run/)"
