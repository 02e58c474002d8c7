#!/usr/bin/env bash
# Reproduce the shipped model from scratch: a 50k training set (seed 1) that also supplies
# the fixed training subset, a 10k validation set (seed 2), and 60 epochs of 50k freshly
# generated nets each, Adam at lr 2e-3 with cosine decay and bf16 autocast.
# Usage: scripts/train_release.sh [RUN_DIR]   (default runs/release)
set -euo pipefail
RUN=${1:-runs/release}
DEEPROUTE=${DEEPROUTE:-deeproute}
mkdir -p data
[ -f data/train.h5 ] || $DEEPROUTE generate data/train.h5 -n 50000 --seed 1 --quiet
[ -f data/val.h5 ] || $DEEPROUTE generate data/val.h5 -n 10000 --seed 2 --quiet
RESUME=""
[ -f "$RUN/last.pt" ] && RESUME="--resume"
$DEEPROUTE train --train data/train.h5 --val data/val.h5 --out "$RUN" \
    --fresh --epochs 60 --lr 2e-3 --schedule cosine --seed 0 --quiet $RESUME
