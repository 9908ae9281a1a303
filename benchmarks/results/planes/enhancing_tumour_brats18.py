import sys, json, torch
sys.path.insert(0, "CollaGANImpute"); sys.path.insert(0, "benchmarks")
from quality import held_out_regions
from CollaGANImputeLib.core.metrics import region_metrics
from CollaGANImputeLib.inference.synthesis import ServedInputs
from CollaGANImputeLib.model.weights import bundled_weights, load_model
from CollaGANImputeLib.preparation.data import discover_subjects, only_subjects, prepare_subject
from CollaGANImputeLib.cli.importance import label_files
from pathlib import Path
torch.set_num_threads(2)
model = load_model(bundled_weights())
data = Path("../shared/data/training.json")
subject, = only_subjects(discover_subjects(data, model.contrasts), ["Brats18_2013_11_1"], data)
labels = label_files(data, [subject.name], None)[subject.name]
study = prepare_subject(subject, model.contrasts)
regions, info = held_out_regions(study, subject.name, Path(labels))
inputs = ServedInputs(study)
out = {}
for planes in (1, 3):
    for key in model.contrasts:
        _, fake = inputs.impute(model, key, planes=planes)
        r = region_metrics(study.images[key], fake, study.mask, regions)
        et = {k: v for k, v in r["regions"].items()}
        out[f"{planes}:{key}"] = {"brain": [r["ssim_brain"], r["psnr_brain"]], "regions": et}
        print(planes, key, round(r["ssim_brain"], 3), {k: (round(v["ssim_brain"], 3), round(v["psnr_brain"], 2)) for k, v in et.items() if v}, flush=True)
json.dump(out, open("enhancing_tumour_brats18.json", "w"), indent=1)
