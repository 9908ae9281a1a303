cd /work/main
DESCRIPTION="The companion for one missing contrast, session 29's companion continued on 160x160 windows in bf16 with seed 1 (session 31)" \
benchmarks/two_phase_run.sh /work/runs/s31/companion_seed1 /work/runs/s31/s29_companion/collagan_brats_one_missing.safetensors \
  /work/runs/s30/slices_brasyn_3planes.npz "--planes 3 --brasyn-scale" "--missing-max 1 --brasyn-scale --crop 160 --bf16 --seed 1" \
  "--direct-l1 6" "--cycle-l1 60 --direct-l1 60 --name collagan_brats_one_missing"
sed -e 's/companion_box/companion_seed1/g' -e 's/model box=/model seed1=/' -e 's/eval_box/eval_seed1/g' /work/runs/s31/eval_box.sh > /work/runs/s31/eval_seed1.sh
