#!/usr/bin/env bash
# Set up .venv and run the main job on the bundled default spec (specs/seed_cnn.yaml).
source "$(dirname "$0")/env.sh" all
SPEC=${1:-specs/seed_cnn.yaml}
.venv/bin/specnet validate "$SPEC"
.venv/bin/specnet summary "$SPEC"
