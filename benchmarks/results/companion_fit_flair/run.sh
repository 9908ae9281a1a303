#!/bin/bash
# The fit-harder diagnostic as run (docs/validation_rule.md, "Can the companion fit FLAIR harder, and does it carry?"):
# phase 1 of the bundled companion's recipe from the bundled companion, every sample asking for FLAIR, no augmentation,
# 1000 steps (OUT/steps1000), then 1000 more from those weights (OUT/steps2000); the first 1000 again with the
# augmentation kept (OUT/augmented1000); then evaluate.sh OUT.
#   usage: benchmarks/results/companion_fit_flair/run.sh OUT CACHE   (CACHE: collagan-impute cache --planes 3 --brasyn-scale)
set -e
OUT=$1; CACHE=$2
cd "$(dirname "$0")/../../.."
export OMP_NUM_THREADS=2 MKL_NUM_THREADS=2
SUBJECTS=$(python3 -c "
import json
card = json.load(open('CollaGANImpute/Resources/Models/collagan_brats.json'))['training']
print(' '.join(['--validation ' + s for s in card['validation_subjects']] + ['--subject ' + s for s in card['train_subjects']]))")
COMMON="$SUBJECTS --branch-width 12 --decoder-width 40 --depth 4 --weights-dtype float16 --crop 160 --optimizer adamw \
  --weight-decay 0.01 --val-slices 16 --progress lines --missing-max 1 --brasyn-scale --bf16 --steps 1000 --batch-size 8 \
  --lr 1e-4 --decay-every 300 --decay-rate 0.7 --cycle-l1 0 --cycle-ssim 0 --adversarial 0 --direct-ssim 1 --direct-l1 6 \
  --validate-every 500 --checkpoint-every 50 --name collagan_brats_one_missing --targets flair"
BUNDLED=CollaGANImpute/Resources/Models/collagan_brats_one_missing.safetensors
stage() {  # OUT folder, start weights, further options
  RESUME=$([ -f "$OUT/$1/checkpoint.safetensors" ] && echo --resume || true)
  [ -f "$OUT/$1/collagan_brats_one_missing.safetensors" ] || collagan-impute train --data "$CACHE" --out "$OUT/$1" $COMMON --init "$2" $3 $RESUME
}
stage steps1000 "$BUNDLED" --no-augment
stage steps2000 "$OUT/steps1000/collagan_brats_one_missing.safetensors" --no-augment
stage augmented1000 "$BUNDLED"
