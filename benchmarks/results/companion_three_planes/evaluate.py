"""The decision run of docs/validation_rule.md, "The companion trained on all three slice orientations": the candidate
companion imputes T1, T2 and FLAIR of the four validation subjects from the other three, by the default path (three
orientations, bf16 on this CPU), then by the axial path for the record, its reports written into FOLDER (default:
this one). Run from the repository root: python benchmarks/results/companion_three_planes/evaluate.py WEIGHTS [FOLDER]"""
import json
import sys

import torch

sys.path.insert(0, "CollaGANImpute")
from CollaGANImputeLib.analysis.evaluation import evaluate_subjects  # noqa: E402
from CollaGANImputeLib.model.weights import bundled_weights, load_model  # noqa: E402
from CollaGANImputeLib.preparation.data import discover_subjects, only_subjects  # noqa: E402

torch.set_num_threads(2)
folder = sys.argv[2] if len(sys.argv) > 2 else "benchmarks/results/companion_three_planes"
candidate = load_model(sys.argv[1])
names = load_model(bundled_weights()).card["training"]["validation_subjects"]
subjects = only_subjects(discover_subjects("../shared/data/training.json", candidate.contrasts), names, "training.json")
for planes in (3, 1):
    report = evaluate_subjects(candidate, subjects, ["t1", "t2", "flair"], planes=planes, bf16=True, progress=lambda s: print(s, flush=True))
    with open(f"{folder}/evaluate_planes{planes}_bf16.json", "w") as handle:
        json.dump(report, handle, indent=1)
    means = report["mean"]
    print(f"planes {planes}:", {key: (round(v["ssim_brain"], 4), round(v["psnr_brain"], 2)) for key, v in means.items()},
          "mean SSIM", round(sum(v["ssim_brain"] for v in means.values()) / len(means), 4), flush=True)
