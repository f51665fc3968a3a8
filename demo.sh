#!/usr/bin/env bash
# README command 1: turn examples/demo/sample.png into a grayscale picture, offline, through
# `scar local`: the real bootstrap, an embedded Lambda Runtime API and S3 endpoint, and an
# image built here from busybox and a static converter (no registry, no Docker, no AWS).
set -euo pipefail
cd "$(dirname "$0")"
target_dir=${CARGO_TARGET_DIR:-$PWD/target}

echo "==> building scar and the bootstrap (debug build: the release profile's LTO is slow)"
cargo build --quiet -p scar-tools -p scar-bootstrap
examples/demo/build-image.sh "$target_dir/debug/scar"

echo "==> scar local invoke: examples/demo/sample.png as an S3 upload to input/sample.png"
rm -rf examples/demo/run
start=$(date +%s%N)
"$target_dir/debug/scar" local invoke --function examples/demo \
    --input examples/demo/sample.png --dir examples/demo/run \
    --bootstrap "$target_dir/debug/bootstrap"
elapsed_ms=$(( ($(date +%s%N) - start) / 1000000 ))

result=examples/demo/run/output/sample.png
if [ ! -s "$result" ]; then
    echo "demo.sh: no result at $result: see the messages above" >&2
    exit 1
fi
echo
echo "Done in $((elapsed_ms / 1000)).$(printf %03d $((elapsed_ms % 1000))) s: the grayscale picture is $result"
echo "(the original is examples/demo/sample.png; the local bucket is examples/demo/run/)"
