"""The decision run of docs/validation_rule.md, "The any-subset model trained on all three slice orientations": the
bundled any-subset model alone (its companion set aside) and the candidate each impute every contrast of the four
validation subjects from the other three, by the default path (three orientations, bf16 on this CPU), in one run.
Run from the repository root: python benchmarks/results/any_subset_three_planes/evaluate.py WEIGHTS"""
import json
import sys

import numpy as np
import torch

sys.path.insert(0, "CollaGANImpute")
from CollaGANImputeLib.analysis.evaluation import evaluate_subjects  # noqa: E402
from CollaGANImputeLib.model.weights import load_model  # noqa: E402
from CollaGANImputeLib.preparation.data import discover_subjects, only_subjects  # noqa: E402

torch.set_num_threads(2)
bundled = load_model()
bundled.companion = None  # the any-subset model alone, as the candidate is
candidate = load_model(sys.argv[1])
names = bundled.card["training"]["validation_subjects"]
subjects = only_subjects(discover_subjects("../shared/data/training.json", bundled.contrasts), names, "training.json")
for label, model in (("bundled", bundled), ("candidate", candidate)):
    report = evaluate_subjects(model, subjects, planes=3, bf16=True, progress=lambda s: print(label, s, flush=True))
    with open(f"benchmarks/results/any_subset_three_planes/evaluate_{label}_planes3_bf16.json", "w") as handle:
        json.dump(report, handle, indent=1)
    means = report["mean"]
    print(label, {key: (round(v["ssim_brain"], 4), round(v["psnr_brain"], 2)) for key, v in means.items()},
          "mean SSIM", round(float(np.mean([v["ssim_brain"] for v in means.values()])), 4), flush=True)
