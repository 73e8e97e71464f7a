#!/usr/bin/env bash
# Reproduce every shipped checkpoint (CPU, seed 0, 1 torch thread). Run from anywhere:
#   bash checkpoints/train_all.sh            (PYTHON=python3 bash checkpoints/train_all.sh to pick the interpreter)
# Each run stops once validation exact match reaches 0.998, then scores 1000 fresh pairs into meta.json.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}

rm -rf checkpoints/dates/snapshots  # snapshots of an earlier run would mix with the new ones
"$PY" -m model.train --task dates --out checkpoints/dates --snapshots 0,100,250,500 --stop-at 0.998 --quiet
"$PY" -m model.train --task reverse --out checkpoints/reverse --stop-at 0.998 --quiet
"$PY" -m model.train --task numbers --out checkpoints/numbers --stop-at 0.998 --quiet
