"""The decision run of docs/validation_rule.md, "Three orientations by default": the three-orientation path in bf16
on the four validation subjects. Run from the repository root: python benchmarks/results/default_planes/evaluate_bf16.py"""
import json
import sys

import torch

sys.path.insert(0, "CollaGANImpute")
from CollaGANImputeLib.analysis.evaluation import evaluate_subjects  # noqa: E402
from CollaGANImputeLib.model.weights import bundled_weights, load_model  # noqa: E402
from CollaGANImputeLib.preparation.data import discover_subjects, only_subjects  # noqa: E402

torch.set_num_threads(2)
model = load_model(bundled_weights())
names = model.card["training"]["validation_subjects"]
subjects = only_subjects(discover_subjects("../shared/data/training.json", model.contrasts), names, "training.json")
report = evaluate_subjects(model, subjects, planes=3, bf16=True, progress=lambda s: print(s, flush=True))
with open("benchmarks/results/default_planes/evaluate_planes3_bf16.json", "w") as handle:
    json.dump(report, handle, indent=1)
for key, value in report["mean"].items():
    print(key, round(value["ssim_brain"], 4), round(value["psnr_brain"], 2))
