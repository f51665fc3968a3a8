#!/bin/sh
# Grayify one picture sent over HTTP. SCAR writes the request body to $SCAR_INPUT_FILE, named
# from the URL's last path segment (POST /holiday.png -> holiday.png); the one file written to
# $SCAR_OUTPUT_DIR is the answer's body, its Content-Type from its extension.
# The offline demo's image has a small PNG converter, `grayscale`; an ImageMagick image
# (SCAR_IMAGE=docker.io/dpokidov/imagemagick:latest) takes any picture format.
set -e
name=$(basename "$SCAR_INPUT_FILE")
if command -v grayscale >/dev/null 2>&1; then
    grayscale "$SCAR_INPUT_FILE" "$SCAR_OUTPUT_DIR/$name"
else
    magick "$SCAR_INPUT_FILE" -colorspace Gray "$SCAR_OUTPUT_DIR/$name"
fi
