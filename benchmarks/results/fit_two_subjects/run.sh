#!/bin/bash
# Can the companion fit FLAIR at all? Fine-tune it on two training subjects only, no augmentation, direct losses,
# then score those same two subjects (in-sample) against the bundled companion. A diagnostic, not a candidate model.
set -e
cd "$(dirname "$0")/../../.."
export OMP_NUM_THREADS=2 MKL_NUM_THREADS=2
OUT=${OUT:-runs/fit_two_subjects}
ARCH="--branch-width 12 --decoder-width 40 --depth 4 --weights-dtype float16 --crop 128 --optimizer adamw --weight-decay 0.01 --val-slices 16 --progress lines"
collagan-impute train --data ../shared/data/training.json --out $OUT/fit --subject Brats18_2013_20_1 --subject TCGA-FG-6692 \
  --validation OpenMS-patient19 $ARCH --steps 800 --batch-size 8 --lr 1e-4 --decay-every 100000 --no-augment \
  --cycle-l1 0 --cycle-ssim 0 --adversarial 0 --direct-ssim 1 --validate-every 200 --checkpoint-every 100 \
  --init CollaGANImpute/Resources/Models/collagan_brats_one_missing.safetensors --name fit --missing-max 1 --brasyn-scale --direct-l1 6 \
  $( [ -f $OUT/fit/checkpoint.safetensors ] && echo --resume )
