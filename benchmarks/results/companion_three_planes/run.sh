#!/bin/bash
# The companion trained on three slice orientations (session 29), as a call of benchmarks/two_phase_run.sh: the same
# commands as the script that ran (commit 22a151f holds it; the card's training.commands holds what ran). INIT was then
# the companion of session 24.
DESCRIPTION="CollaGAN companion for one missing contrast (T1, T2 or FLAIR), trained in the metrics' intensity space; trained on 2 CPU cores in session 29 on axial, coronal and sagittal slices, from the companion of session 24" \
  "$(dirname "$0")/../../two_phase_run.sh" /work/runs/s29/companion CollaGANImpute/Resources/Models/collagan_brats_one_missing.safetensors \
  /work/runs/s29/slices_brasyn_3planes.npz "--planes 3 --brasyn-scale" "--missing-max 1 --brasyn-scale" "--direct-l1 6" \
  "--cycle-l1 60 --direct-l1 60 --name collagan_brats_one_missing"
