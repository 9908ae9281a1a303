#!/bin/bash
# The three-orientation companion continued (session 29), as a call of benchmarks/two_phase_run.sh: the same commands as
# the script that ran (commit b47bb8f holds it; the card's training.commands holds what ran).
DESCRIPTION="CollaGAN companion for one missing contrast (T1, T2 or FLAIR), trained in the metrics' intensity space; trained on 2 CPU cores in session 29 on axial, coronal and sagittal slices, from the companion of session 24, in two runs" \
  "$(dirname "$0")/../../two_phase_run.sh" /work/runs/s29/continued /work/runs/s29/companion/phase2/collagan_brats_one_missing.safetensors \
  /work/runs/s29/slices_brasyn_3planes.npz "--planes 3 --brasyn-scale" "--missing-max 1 --brasyn-scale" \
  "--direct-l1 6 --steps 2000 --decay-every 500" "--cycle-l1 60 --direct-l1 60 --name collagan_brats_one_missing"
