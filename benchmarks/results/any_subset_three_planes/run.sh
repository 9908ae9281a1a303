#!/bin/bash
# The any-subset model trained on three slice orientations (session 29), as a call of benchmarks/two_phase_run.sh: the
# same commands as the script that ran (commit d18b803 holds it; the card's training.commands holds what ran). INIT was
# then the any-subset model of session 24.
DESCRIPTION="CollaGAN, any subset of T1, T1Gd, T2, FLAIR missing; trained on 2 CPU cores in session 29 on axial, coronal and sagittal slices, from the bundled model of session 24" \
  "$(dirname "$0")/../../two_phase_run.sh" /work/runs/s29/any_subset CollaGANImpute/Resources/Models/collagan_brats.safetensors \
  /work/runs/s29/slices_sd_3planes.npz "--planes 3" "--missing-max 3" "--direct-l1 1" "--name collagan_brats"
