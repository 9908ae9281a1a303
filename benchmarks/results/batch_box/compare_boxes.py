"""Per-batch brain box against the whole-volume box on the validation subjects (rule: docs/validation_rule.md), as run on
commit 45205bb, where `synthesise` still cut every slice to the whole volume's box: the per-batch variants wrap it."""
import json
import sys
import time

import numpy as np
import torch

sys.path.insert(0, "/work/main/CollaGANImpute")
from CollaGANImputeLib.analysis import evaluation
from CollaGANImputeLib.inference import synthesis
from CollaGANImputeLib.model.weights import load_model
from CollaGANImputeLib.preparation import study as study_mod
from CollaGANImputeLib.preparation.data import discover_subjects, only_subjects

torch.set_num_threads(2)
original = synthesis.synthesise

def per_batch(least):
    def synth(generator, stack, target, mask, *, batch_size=8, smoothing=(0.0, 0.0), views=1, **kw):
        assert views == 1
        out = np.zeros(mask.shape, dtype=np.float32)
        slices = study_mod.brain_slices(mask)
        multiple = generator.config.size_multiple
        R, C, _ = study_mod.padded_bounds(mask, multiple)
        for start in range(0, len(slices), batch_size):
            chosen = slices[start:start + batch_size]
            sub = np.zeros_like(mask); sub[chosen] = mask[chosen]
            r, c, _ = study_mod.padded_bounds(sub, multiple)
            def widen(s, S, size):
                L = min(max(s.stop - s.start, least), S.stop - S.start)
                if L == s.stop - s.start: return s
                centre = (s.start + s.stop) // 2
                a = max(S.start, min(centre - L // 2, S.stop - L)); return slice(a, a + L)
            r, c = widen(r, R, mask.shape[1]), widen(c, C, mask.shape[2])
            local = np.zeros((mask.shape[0], r.stop - r.start, c.stop - c.start), bool)
            local[chosen] = mask[chosen][:, r, c]
            res = original(generator, np.ascontiguousarray(stack[:, :, r, c]), target, local, batch_size=batch_size, crop=False, **kw)
            out[chosen, r, c] = res[chosen]
        out[~mask] = 0
        return synthesis.smooth_in_brain(out, mask, smoothing) if any(smoothing) else out
    return synth

model = load_model()
data = "/work/shared/data/training.json"
names = model.card["training"]["validation_subjects"]
subjects = only_subjects(discover_subjects(data, model.contrasts), names, data)
report = {}
for label, fn in (("volume", original), ("batch", per_batch(0)), ("batch128", per_batch(128))):
    evaluation.synthesise = fn
    t0 = time.time()
    r = evaluation.evaluate_subjects(model, subjects)
    report[label] = {"mean": r["mean"], "results": r["results"], "wall_s": time.time() - t0}
    print(label, round(time.time() - t0), {k: (round(v["ssim_brain"], 4), round(v["psnr_brain"], 2)) for k, v in r["mean"].items()}, flush=True)
    json.dump(report, open("/tmp/boxes.json", "w"), indent=1)
