"""The decision run of docs/validation_rule.md, "The any-subset model trained on all three slice orientations": the
bundled any-subset model alone (its companion set aside) and the candidate each impute every contrast of the four
validation subjects from the other three, by the default path (three orientations, bf16 on this CPU). The candidate
gets the bundled card's landmark mapping (T1Gd's offsets), which the rule keeps. A report already written is reused.
Run from the repository root: python benchmarks/results/any_subset_three_planes/evaluate.py WEIGHTS"""
import json
import sys
from pathlib import Path

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
candidate.card["intensity_landmarks"] = bundled.card["intensity_landmarks"]  # kept as they are, by the rule
names = bundled.card["training"]["validation_subjects"]
subjects = only_subjects(discover_subjects("../shared/data/training.json", bundled.contrasts), names, "training.json")
for label, model in (("bundled", bundled), ("candidate", candidate)):
    path = Path(f"benchmarks/results/any_subset_three_planes/evaluate_{label}_planes3_bf16.json")
    if path.exists():
        report = json.loads(path.read_text())
    else:
        report = evaluate_subjects(model, subjects, planes=3, bf16=True, progress=lambda s: print(label, s, flush=True))
        path.write_text(json.dumps(report, indent=1))
    means = report["mean"]
    print(label, {key: (round(v["ssim_brain"], 4), round(v["psnr_brain"], 2)) for key, v in means.items()},
          "mean SSIM", round(float(np.mean([v["ssim_brain"] for v in means.values()])), 4), flush=True)
