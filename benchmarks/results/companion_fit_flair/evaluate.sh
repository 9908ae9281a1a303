#!/bin/bash
# FLAIR by the default path, each model alone against the bundled companion alone: the four validation subjects, then
# the six training subjects the rule fixed.   usage: benchmarks/results/companion_fit_flair/evaluate.sh OUT
set -e
OUT=$1
cd "$(dirname "$0")/../../.."
export OMP_NUM_THREADS=2
for STAGE in steps1000 steps2000 augmented1000; do
  M="--model bundled=CollaGANImpute/Resources/Models/collagan_brats_one_missing.safetensors --model fitted=$OUT/$STAGE/phase1/phase1.safetensors"
  python3 benchmarks/compare_models.py --data ../shared/data/training.json $M --alone --contrast flair --as-acquired-only \
    --out benchmarks/results/companion_fit_flair --stem "evaluate_${STAGE}_validation"
  python3 benchmarks/compare_models.py --data ../shared/data/training.json $M --alone --contrast flair --as-acquired-only \
    --held-out AURORA-MET-example --held-out TCGA-FG-6692 --held-out BRATS2012_HG0015 --held-out BraTS-SSA-00002-000 \
    --held-out BraTS19_2013_10_1 --held-out Brats18_2013_20_1 --out benchmarks/results/companion_fit_flair --stem "evaluate_${STAGE}_training"
done
