#!/bin/bash
# The any-subset model trained on three slice orientations (docs/validation_rule.md): session 24's options, from the bundled weights.
set -e
cd /work/main
export OMP_NUM_THREADS=2 MKL_NUM_THREADS=2
CACHE=/work/runs/s29/slices_sd_3planes.npz
OUT=/work/runs/s29/any_subset
date
[ -f $CACHE ] || collagan-impute cache --data ../shared/data/training.json --out $CACHE --planes 3 --progress lines
date
VAL="--validation BraTS-GLI-00001-000 --validation TCGA-DU-7294 --validation Brats18_2013_11_1 --validation OpenMS-patient07"
SUBJ=""
for s in AURORA-MET-example TCGA-FG-6692 BRATS2012_HG0015 BraTS-SSA-00002-000 BraTS19_2013_10_1 Brats18_2013_20_1 Brats18_2013_23_1 Brats18_2013_2_1 Brats18_CBICA_ABM_1 Brats18_CBICA_ALU_1 Brats18_CBICA_AME_1 Brats18_CBICA_AVG_1 Brats18_TCIA01_201_1 Brats18_TCIA01_378_1 Brats18_TCIA01_425_1 Brats18_TCIA01_499_1 Brats18_TCIA02_135_1 Brats18_TCIA02_370_1 Brats18_TCIA03_265_1 Brats18_TCIA13_623_1 CompImg-GliomaGAN-example OpenMS-patient19; do SUBJ="$SUBJ --subject $s"; done
ARCH="--branch-width 12 --decoder-width 40 --depth 4 --weights-dtype float16 --crop 128 --optimizer adamw --weight-decay 0.01 --val-slices 16 --progress lines"
[ -f $OUT/phase1/phase1.safetensors ] || collagan-impute train --data $CACHE --out $OUT/phase1 $VAL $SUBJ $ARCH --steps 1000 --batch-size 8 --lr 1e-4 --decay-every 300 --decay-rate 0.7 \
  --cycle-l1 0 --cycle-ssim 0 --adversarial 0 --direct-ssim 1 --direct-l1 1 --validate-every 500 --checkpoint-every 50 \
  --init CollaGANImpute/Resources/Models/collagan_brats.safetensors --name phase1 --missing-max 3 \
  $( [ -f $OUT/phase1/checkpoint.safetensors ] && echo --resume )
date
collagan-impute train --data $CACHE --out $OUT/phase2 $VAL $SUBJ $ARCH --steps 200 --batch-size 4 --lr 1e-4 --lr-discriminator 1e-4 --decay-every 100 --decay-rate 0.7 \
  --cycle-l1 10 --cycle-ssim 1 --adversarial 1 --direct-l1 10 --validate-every 100 --checkpoint-every 25 \
  --init $OUT/phase1/checkpoint.safetensors --name collagan_brats --missing-max 3 \
  --description "CollaGAN, any subset of T1, T1Gd, T2, FLAIR missing; trained on 2 CPU cores in session 29 on axial, coronal and sagittal slices, from the bundled model of session 24"
date
