"""Exploration on TRAINING subjects only: the served model applied to axial, coronal and sagittal slices, and their mean."""
import sys, time
import numpy as np, torch
sys.path.insert(0, "CollaGANImpute")
from CollaGANImputeLib.core.metrics import image_metrics
from CollaGANImputeLib.inference.intensity_landmarks import model_landmarks
from CollaGANImputeLib.inference.synthesis import ServedInputs, synthesise
from CollaGANImputeLib.model.weights import bundled_weights, load_model
from CollaGANImputeLib.preparation.data import discover_subjects, only_subjects, prepare_subject

torch.set_num_threads(2)


def quantile_restored(mean, members, mask):
    """The mean's brain voxels given, rank for rank, the mean quantile function of the members."""
    out = mean.copy()
    values = mean[mask]
    order = np.argsort(values, kind="stable")
    target = np.mean([np.sort(m[mask]) for m in members], axis=0)
    restored = np.empty_like(values)
    restored[order] = target
    out[mask] = restored
    return out
model = load_model(bundled_weights())
PLANES = {"axial": (0, 1, 2), "coronal": (1, 0, 2), "sagittal": (2, 0, 1)}
names = sys.argv[1:]
subjects = only_subjects(discover_subjects("../shared/data/training.json", model.contrasts), names, "training.json")
for subject in subjects:
    study = prepare_subject(subject, model.contrasts)
    inputs = ServedInputs(study)
    for key in model.contrasts:
        server = model.serving([key], [k for k in model.contrasts if k != key])
        stack, target = inputs(server), model.contrasts.index(key)
        fakes = {}
        for plane, order in PLANES.items():
            mask = np.ascontiguousarray(study.mask.transpose(order))
            s = np.ascontiguousarray(stack.transpose((0, *[o + 1 for o in order])))
            t0 = time.time()
            fake = synthesise(server.generator, s, target, mask, bf16=True)
            fakes[plane] = model_landmarks(server, key, np.ascontiguousarray(fake.transpose(np.argsort(order))), study.mask)
        fakes["mean3"] = (fakes["axial"] + fakes["coronal"] + fakes["sagittal"]) / 3
        fakes["mean3q"] = quantile_restored(fakes["mean3"], [fakes[p] for p in PLANES], study.mask)
        fakes["axcor"] = (fakes["axial"] + fakes["coronal"]) / 2
        fakes["axcorq"] = quantile_restored(fakes["axcor"], [fakes["axial"], fakes["coronal"]], study.mask)
        line = []
        for arm, fake in fakes.items():
            m = image_metrics(study.images[key], fake, study.mask)
            line.append(f"{arm} {m['ssim_brain']:.3f}/{m['psnr_brain']:.2f}")
        print(subject.name, key, " | ".join(line), flush=True)
