cd /work/main
DESCRIPTION="The companion for one missing contrast, continued from the bundled companion on 160x160 windows with T1, T2 and FLAIR alone as targets (session 31)" \
benchmarks/two_phase_run.sh /work/runs/s31/companion_targets CollaGANImpute/Resources/Models/collagan_brats_one_missing.safetensors \
  /work/runs/s30/slices_brasyn_3planes.npz "--planes 3 --brasyn-scale" "--missing-max 1 --brasyn-scale --crop 160 --bf16 --targets t1,t2,flair" \
  "--direct-l1 6" "--cycle-l1 60 --direct-l1 60 --name collagan_brats_one_missing"
sed -e 's/companion_box/companion_targets/g' -e 's/model box=/model targets=/' -e 's/eval_box/eval_targets/g' /work/runs/s31/eval_box.sh > /work/runs/s31/eval_targets.sh
