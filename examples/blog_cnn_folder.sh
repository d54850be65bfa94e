#!/usr/bin/env bash
# The classic blog CNN on an image folder, the whole story from the command line:
# train → evaluate → predict → export to ONNX → parity.
#
#   bash examples/blog_cnn_folder.sh [WORK]       (from the repository root, .venv set up)
#
# WORK (default examples-out/blog) receives the generated photos, the run and the ONNX file.
# EPOCHS=2 trains quickly (the test suite runs it so).
set -euo pipefail
cd "$(dirname "$0")/.."
WORK=${1:-examples-out/blog}
BIN=${BIN:-.venv/bin}
EPOCHS=${EPOCHS:-10}

# 1. a folder of photos, one subfolder per class (your own folder works the same way)
"$BIN/python" examples/make_squares.py "$WORK/photos" --per-class 24

# 2. train the blog CNN on it; --data overrides the spec's data.path
"$BIN/specnet" train examples/blog_cnn.yaml --backend keras --data "$WORK/photos" \
    --epochs "$EPOCHS" -o "$WORK/run" --force --quiet

# 3. loss, accuracy, per-class precision/recall and the confusion matrix, by class name
"$BIN/specnet" evaluate "$WORK/run"

# 4. classify a whole folder (recursively), the two most likely classes, as CSV
"$BIN/specnet" predict "$WORK/run" "$WORK/photos/red" --format csv --top-k 2 > "$WORK/predictions.csv"
head -3 "$WORK/predictions.csv"

# 5. one ONNX file for any runtime, checked against the Keras model before it is written
"$BIN/specnet" export "$WORK/run" --onnx --via direct -o "$WORK/blog_cnn.onnx" --force

# 6. the trained weights in Keras, PyTorch and ONNX Runtime: the same function?
"$BIN/specnet" parity "$WORK/run" --backends keras,torch,onnx --quiet
