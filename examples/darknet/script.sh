#!/bin/sh
# Object detection with YOLO (Darknet) on the uploaded picture, the paper's section 4.2.
# Writes the detections as text and the picture with the boxes drawn.
set -e
name=$(basename "$SCAR_INPUT_FILE")
stem=${name%.*}
cd /opt/darknet
./darknet detect cfg/yolo.cfg yolo.weights "$SCAR_INPUT_FILE" -out "$SCAR_OUTPUT_DIR/$stem-detections" \
    > "$SCAR_OUTPUT_DIR/$stem-detections.txt"
cat "$SCAR_OUTPUT_DIR/$stem-detections.txt"
