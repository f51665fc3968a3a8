#!/bin/sh
# Make a thumbnail of the uploaded picture: at most 256x256, aspect ratio kept.
# SCAR puts the input at $SCAR_INPUT_FILE; everything written to $SCAR_OUTPUT_DIR is uploaded.
set -e
name=$(basename "$SCAR_INPUT_FILE")
magick "$SCAR_INPUT_FILE" -auto-orient -thumbnail '256x256>' "$SCAR_OUTPUT_DIR/thumb-$name"
echo "thumbnail of $name: $(magick identify -format '%wx%h' "$SCAR_OUTPUT_DIR/thumb-$name")"
