#!/usr/bin/env bash
# Set up .venv, then run the main job on the bundled default spec (specs/seed_cnn.yaml):
# validate and summarise it, train it for a few epochs in Keras on the built-in data, evaluate
# the run, and rebuild the trained model in PyTorch from the run's canonical weights.
source "$(dirname "$0")/env.sh" all
SPEC=${1:-specs/seed_cnn.yaml}
RUN=runs/quickstart
.venv/bin/specnet validate "$SPEC"
.venv/bin/specnet summary "$SPEC"
.venv/bin/specnet train "$SPEC" --backend keras --epochs 3 --out "$RUN" --force
.venv/bin/specnet evaluate "$RUN"
.venv/bin/specnet build "$SPEC" --backend torch --weights "$RUN" --out build/quickstart-torch --force
echo "run directory: $RUN (weights, native model, metrics.csv, training_curves.png, checkpoints)"
