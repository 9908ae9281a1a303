"""Is brain SSIM of 0.65 within reach of a prediction that is only blurrier than the real volume? Each validation
subject's real contrasts scored against themselves after a Gaussian blur (sigma in voxels), by the metrics' own
code. Run from the repository root: python benchmarks/results/blurred_real/blurred_real.py"""
import json
import sys

from scipy.ndimage import gaussian_filter

sys.path.insert(0, "CollaGANImpute")
from CollaGANImputeLib.core.metrics import image_metrics  # noqa: E402
from CollaGANImputeLib.model.weights import bundled_weights, load_model  # noqa: E402
from CollaGANImputeLib.preparation.data import discover_subjects, only_subjects, prepare_subject  # noqa: E402

SIGMAS = (0.5, 0.75, 1.0)
model = load_model(bundled_weights())
names = model.card["training"]["validation_subjects"]
report = {}
for subject in only_subjects(discover_subjects("../shared/data/training.json", model.contrasts), names, "training.json"):
    study = prepare_subject(subject, model.contrasts)
    for key in model.contrasts:
        real = study.images[key]
        scores = {sigma: image_metrics(real, gaussian_filter(real, sigma), study.mask) for sigma in SIGMAS}
        report[f"{subject.name}/{key}"] = {str(s): {"ssim_brain": round(m["ssim_brain"], 4), "psnr_brain": round(m["psnr_brain"], 2)}
                                           for s, m in scores.items()}
        print(subject.name, key, "  ".join(f"sigma {s}: {m['ssim_brain']:.3f} / {m['psnr_brain']:.2f}" for s, m in scores.items()), flush=True)
with open("benchmarks/results/blurred_real/blurred_real.json", "w") as handle:
    json.dump(report, handle, indent=1)
