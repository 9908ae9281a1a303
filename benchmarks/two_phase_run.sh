#!/bin/bash
# One continuation of a bundled network by the two-phase CPU recipe of docs/training.md, every setting but the ones
# given in one place: a slice cache made if absent, phase 1 (the direct losses) from INIT, phase 2 (METHOD.md's
# losses) from phase 1's checkpoint, each resumed if interrupted. Options given later win, so PHASE1/PHASE2 override
# the defaults below (say "--crop 160" or "--steps 2000"); DESCRIPTION, if set, is the exported card's description.
#   usage: benchmarks/two_phase_run.sh OUT INIT CACHE "cache options" "options of both phases" "phase-1 options" "phase-2 options"
#   e.g.   benchmarks/two_phase_run.sh runs/companion CollaGANImpute/Resources/Models/collagan_brats_one_missing.safetensors \
#              runs/slices_brasyn_3planes.npz "--planes 3 --brasyn-scale" "--missing-max 1 --brasyn-scale" "--direct-l1 6" \
#              "--cycle-l1 60 --direct-l1 60 --name collagan_brats_one_missing"
set -e
OUT=$1; INIT=$2; CACHE=$3; CACHE_OPTIONS=$4; BOTH=$5; PHASE1=$6; PHASE2=$7
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2} MKL_NUM_THREADS=${MKL_NUM_THREADS:-2}
SUBJECTS=$(python3 -c "
import json
card = json.load(open('CollaGANImpute/Resources/Models/collagan_brats.json'))['training']
print(' '.join(['--validation ' + s for s in card['validation_subjects']] + ['--subject ' + s for s in card['train_subjects']]))")
COMMON="$SUBJECTS --branch-width 12 --decoder-width 40 --depth 4 --weights-dtype float16 --crop 128 --optimizer adamw \
  --weight-decay 0.01 --val-slices 16 --progress lines $BOTH"
resume() { [ -f "$1/checkpoint.safetensors" ] && echo --resume; }
date
[ -f "$CACHE" ] || collagan-impute cache --data ../shared/data/training.json --out "$CACHE" $CACHE_OPTIONS --progress lines
date
[ -f "$OUT/phase1/phase1.safetensors" ] || collagan-impute train --data "$CACHE" --out "$OUT/phase1" $COMMON --steps 1000 --batch-size 8 \
  --lr 1e-4 --decay-every 300 --decay-rate 0.7 --cycle-l1 0 --cycle-ssim 0 --adversarial 0 --direct-ssim 1 --validate-every 500 \
  --checkpoint-every 50 --init "$INIT" --name phase1 $PHASE1 $(resume "$OUT/phase1")
date
[ "${PHASES:-2}" = 1 ] && exit 0
collagan-impute train --data "$CACHE" --out "$OUT/phase2" $COMMON --steps 200 --batch-size 4 --lr 1e-4 --lr-discriminator 1e-4 \
  --decay-every 100 --decay-rate 0.7 --cycle-l1 10 --cycle-ssim 1 --adversarial 1 --direct-l1 10 --validate-every 100 \
  --checkpoint-every 25 --init "$OUT/phase1/checkpoint.safetensors" $PHASE2 $(resume "$OUT/phase2") \
  ${DESCRIPTION:+--description "$DESCRIPTION"}
date
