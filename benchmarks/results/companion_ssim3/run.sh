cd /work/main
DESCRIPTION="The companion for one missing contrast, continued from the bundled companion on 160x160 windows with the direct phase's SSIM weighted x3 (session 31)" \
benchmarks/two_phase_run.sh /work/runs/s31/companion_ssim3 CollaGANImpute/Resources/Models/collagan_brats_one_missing.safetensors \
  /work/runs/s30/slices_brasyn_3planes.npz "--planes 3 --brasyn-scale" "--missing-max 1 --brasyn-scale --crop 160 --bf16" \
  "--direct-l1 6 --direct-ssim 3" "--cycle-l1 60 --direct-l1 60 --name collagan_brats_one_missing"
sed -e 's/companion_box/companion_ssim3/g' -e 's/model box=/model ssim3=/' -e 's/eval_box/eval_ssim3/g' /work/runs/s31/eval_box.sh > /work/runs/s31/eval_ssim3.sh
