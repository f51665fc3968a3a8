#!/bin/sh
# The offline demo: turn the uploaded PNG picture into a grayscale one.
# SCAR puts the input at $SCAR_INPUT_FILE; everything written to $SCAR_OUTPUT_DIR is uploaded.
set -e
grayscale "$SCAR_INPUT_FILE" "$SCAR_OUTPUT_DIR/$(basename "$SCAR_INPUT_FILE")"
