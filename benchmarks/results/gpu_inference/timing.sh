# GPU inference timings on the device, which has no SimpleITK or nibabel (carried as wheels) and gets no weights
# (they do not fit the 64 MiB tree beside the wheels): random weights in each architecture time exactly as trained ones.
set -e; mkdir -p /tmp/rw
S=CollaGANImpute/Resources/SampleData/BraTS-GLI-00001-000; P=BraTS-GLI-00001-000
printf '{"subjects":{"%s":{"dir":".","t1":"%s-t1n.nii.gz","t1gd":"%s-t1n.nii.gz","t2":"%s-t2w.nii.gz","flair":"%s-t2f.nii.gz"}}}' $P $P $P $P $P > $S/timing.json
for W in "12 40" "8 32"; do
  set -- $W
  python3 -c "import sys;sys.path.insert(0,'CollaGANImpute');from CollaGANImputeLib.model.networks import Generator,GeneratorConfig as C;from CollaGANImputeLib.model.weights import save_model;save_model(Generator(C(branch_width=$1,decoder_width=$2)),['t1','t1gd','t2','flair'],'/tmp/rw/w$1_$2.safetensors',{'description':'random weights: timing only'})"
  python3 benchmarks/inference.py --devices cuda --weights /tmp/rw/w$1_$2.safetensors --data $S/timing.json --json $OUT/inference_gpu_w$1_$2.json 2>&1 | tail -12
done
