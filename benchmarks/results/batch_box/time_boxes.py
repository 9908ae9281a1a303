"""Synthesis time of the sample case's T1Gd with the engine of the tree given (argv[1]), in a fresh process: one
warm-up, then two timed studies, 2 threads. Run alternately on a checkout of 45205bb (one box for the whole volume) and
of the per-batch box."""
import json
import sys
import time

tree = sys.argv[1]
sys.path.insert(0, tree + "/CollaGANImpute")
import torch; torch.set_num_threads(2)
from CollaGANImputeLib.analysis.demo import sample_case_files
from CollaGANImputeLib.inference.synthesis import model_inputs, synthesise
from CollaGANImputeLib.model.weights import load_model
from CollaGANImputeLib.preparation.study import prepare_study

m = load_model("/work/main/CollaGANImpute/Resources/Models/collagan_brats.safetensors")
files = sample_case_files(m.contrasts)
study = prepare_study({k: v for k, v in files.items() if k != "t1gd"}, m.contrasts)
stack = model_inputs(m, study)
synthesise(m.generator, stack, 1, study.mask)
best = []
for _ in range(2):
    t0 = time.perf_counter(); synthesise(m.generator, stack, 1, study.mask); best.append(time.perf_counter() - t0)
print(json.dumps({"tree": tree, "synth_s": best}))
