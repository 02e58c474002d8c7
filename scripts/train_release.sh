#!/usr/bin/env bash
# Reproduce the shipped model from scratch: a 50k training set (seed 1) that also supplies
# the fixed training subset, a 10k validation set (seed 2), and epochs of 50k freshly
# generated nets each (EPOCHS, default 35), Adam at lr 2e-3 with cosine decay over the run
# and bf16 autocast. Rerunning the script on a run folder resumes it.
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
    --fresh --epochs "${EPOCHS:-35}" --lr 2e-3 --schedule cosine --seed 0 --quiet $RESUME
