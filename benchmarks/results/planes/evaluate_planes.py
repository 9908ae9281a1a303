import json, sys, torch
sys.path.insert(0, "CollaGANImpute")
from CollaGANImputeLib.analysis.evaluation import evaluate_subjects
from CollaGANImputeLib.model.weights import bundled_weights, load_model
from CollaGANImputeLib.preparation.data import discover_subjects, only_subjects
torch.set_num_threads(2)
model = load_model(bundled_weights())
names = model.card["training"]["validation_subjects"]
subjects = only_subjects(discover_subjects("../shared/data/training.json", model.contrasts), names, "training.json")
planes = int(sys.argv[1])
report = evaluate_subjects(model, subjects, planes=planes, progress=lambda s: print(s, flush=True))
json.dump(report, open(f"evaluate_planes{planes}.json", "w"), indent=1)
for k, v in report["mean"].items():
    print(k, round(v["ssim_brain"], 4), round(v["psnr_brain"], 2))
