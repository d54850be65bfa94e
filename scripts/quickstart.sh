#!/usr/bin/env bash
# Set up .venv, then run the main job on the bundled default spec (specs/seed_cnn.yaml):
# validate it, summarise it, build it in Keras, and rebuild it in PyTorch from the same weights.
source "$(dirname "$0")/env.sh" all
SPEC=${1:-specs/seed_cnn.yaml}
.venv/bin/specnet validate "$SPEC"
.venv/bin/specnet summary "$SPEC"
.venv/bin/specnet build "$SPEC" --backend keras --out build/quickstart-keras --force
.venv/bin/specnet build "$SPEC" --backend torch --out build/quickstart-torch --force \
    --weights build/quickstart-keras
