#!/usr/bin/env bash
# Reproduce every shipped checkpoint (CPU, seed 0, 1 torch thread). Run from anywhere:
#   bash checkpoints/train_all.sh            (PYTHON=python3 bash checkpoints/train_all.sh to pick the interpreter)
# Each encoder-decoder run stops once validation exact match reaches 0.998, then scores 1000 fresh pairs into
# meta.json; the induction run trains 3000 steps and scores 1000 fresh sequences; the shapes run (a vision
# transformer) trains 1000 steps and scores 1000 fresh images, with each head's share of [CLS]'s attention on the red
# object. Every run writes to a staging directory and replaces its checkpoint (snapshots included) only when it
# finishes.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}

"$PY" -m model.train --task dates --out checkpoints/dates --snapshots 0,100,250,500 --stop-at 0.998 --quiet
"$PY" -m model.train --task reverse --out checkpoints/reverse --stop-at 0.998 --quiet
"$PY" -m model.train --task numbers --out checkpoints/numbers --stop-at 0.998 --quiet
# decoder-only, attention-only: snapshots every 50 steps across the phase change (500-1000), then sparser
"$PY" -m model.train --task induction --out checkpoints/induction --quiet \
  --snapshots 0,50,100,150,200,250,300,350,400,450,500,550,600,650,700,750,800,850,900,950,1000,1050,1100,1150,1200,1500,2000,2500,3000
# a vision transformer on generated images: which shape is the red one?
"$PY" -m model.train --task shapes --out checkpoints/shapes --snapshots 0,100,300 --quiet
