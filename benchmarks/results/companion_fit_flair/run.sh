#!/bin/bash
# The fit-harder diagnostic (docs/validation_rule.md, "Can the companion fit FLAIR harder, and does it carry?"): phase 1
# of the bundled companion's recipe (benchmarks/two_phase_run.sh, PHASES=1) from the bundled companion, every sample
# asking for FLAIR, no augmentation, 1000 steps (OUT/steps1000), then 1000 more from those weights (OUT/steps2000); the
# first 1000 again with the augmentation kept (OUT/augmented1000); then evaluate.sh OUT.
#   usage: benchmarks/results/companion_fit_flair/run.sh OUT CACHE   (CACHE: made if absent, --planes 3 --brasyn-scale)
set -e
OUT=$1; CACHE=$2
RUN="$(dirname "$0")/../../two_phase_run.sh"
BUNDLED=CollaGANImpute/Resources/Models/collagan_brats_one_missing.safetensors
BOTH="--missing-max 1 --brasyn-scale --crop 160 --bf16 --targets flair"
export PHASES=1
"$RUN" "$OUT/steps1000" "$BUNDLED" "$CACHE" "--planes 3 --brasyn-scale" "$BOTH" "--direct-l1 6 --no-augment" ""
"$RUN" "$OUT/steps2000" "$OUT/steps1000/phase1/phase1.safetensors" "$CACHE" "--planes 3 --brasyn-scale" "$BOTH" "--direct-l1 6 --no-augment" ""
"$RUN" "$OUT/augmented1000" "$BUNDLED" "$CACHE" "--planes 3 --brasyn-scale" "$BOTH" "--direct-l1 6" ""
