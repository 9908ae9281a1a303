cd /work/main
DESCRIPTION="The companion for one missing contrast, continued from the bundled companion on each batch's brain box (session 31)" \
benchmarks/two_phase_run.sh /work/runs/s31/companion_box CollaGANImpute/Resources/Models/collagan_brats_one_missing.safetensors \
  /work/runs/s30/slices_brasyn_3planes.npz "--planes 3 --brasyn-scale" "--missing-max 1 --brasyn-scale --crop 0 --brain-box --bf16" \
  "--direct-l1 6" "--cycle-l1 60 --direct-l1 60 --name collagan_brats_one_missing"
