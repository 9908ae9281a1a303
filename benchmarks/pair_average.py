"""The bundled pair's two imputations of one contrast, alone and averaged, on the validation subjects.

For each contrast the companion serves (T1, T2, FLAIR missing alone), both models of the pair impute it from the
other three, each with its own card's mapping, in fp32 and in bf16 autocast; each imputation and the mean of the
two are scored (brain SSIM, PSNR and NMSE, whole volumes, BraSyn normalisation). The rule this answers is in
docs/validation_rule.md ("The pair's two imputations averaged"), written before the script ran.

    python benchmarks/pair_average.py --data ../shared/data/training.json [--out benchmarks/results/pair_average]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "CollaGANImpute"))

from CollaGANImputeLib.core.contrasts import display_name
from CollaGANImputeLib.core.metrics import NORMALISATION, image_metrics
from CollaGANImputeLib.inference.synthesis import ServedInputs
from CollaGANImputeLib.io.atomic import write_text_atomic
from CollaGANImputeLib.model.weights import bundled_weights, load_model
from CollaGANImputeLib.preparation.data import discover_subjects, only_subjects, prepare_subject

METRICS = ("ssim_brain", "psnr_brain", "nmse_brain")
ARMS = ("model", "companion", "mean")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="manifest holding the validation subjects (training.json)")
    parser.add_argument("--weights", type=Path, help="the pair's any-subset model (default: the bundled one)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/pair_average"))
    args = parser.parse_args(argv)
    torch.set_num_threads(2)

    model = load_model(args.weights or bundled_weights())
    if model.companion is None:
        parser.error(f"model '{model.name}' has no companion to average with")
    served = model.card["companion"]["contrasts"]
    names = model.card["training"]["validation_subjects"]
    subjects = only_subjects(discover_subjects(args.data, model.contrasts), names, args.data)
    rows = []
    for subject in subjects:
        study = prepare_subject(subject, model.contrasts)
        inputs = ServedInputs(study)
        for key in served:
            for precision, bf16 in (("fp32", False), ("bf16", True)):
                fakes = {}
                for arm, server in (("model", model), ("companion", model.companion)):
                    started = time.perf_counter()
                    fakes[arm] = inputs.imputed_by(server, key, bf16=bf16, planes=1)  # the axial path, as its rule was written
                    print(f"{subject.name} {display_name(key)} {precision} {arm}: {time.perf_counter() - started:.1f} s", flush=True)
                fakes["mean"] = (fakes["model"] + fakes["companion"]) / 2
                for arm in ARMS:
                    scores = image_metrics(study.images[key], fakes[arm], study.mask)
                    rows.append({"subject": subject.name, "contrast": key, "precision": precision, "arm": arm,
                                 **{m: float(scores[m]) for m in METRICS}})
                    print(f"  {arm}: brain SSIM {scores['ssim_brain']:.4f}, PSNR {scores['psnr_brain']:.2f} dB", flush=True)

    means = {precision: {arm: {key: {m: float(np.mean([r[m] for r in rows if (r["precision"], r["arm"], r["contrast"]) ==
                                                        (precision, arm, key)])) for m in METRICS}
                               for key in served} for arm in ARMS} for precision in ("fp32", "bf16")}
    report = {"model": model.name, "companion": model.companion.name, "subjects": names, "normalisation": NORMALISATION,
              "rule": "docs/validation_rule.md, 'The pair's two imputations averaged'", "rows": rows, "mean": means}
    args.out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(args.out / "pair_average.json", json.dumps(report, indent=1) + "\n")
    lines = ["| precision | arm | " + " | ".join(display_name(k) for k in served) + " | mean SSIM |", "|---" * (len(served) + 3) + "|"]
    for precision, by_arm in means.items():
        for arm, by_key in by_arm.items():
            cells = [f"{by_key[k]['ssim_brain']:.4f} / {by_key[k]['psnr_brain']:.2f}" for k in served]
            lines.append(f"| {precision} | {arm} | " + " | ".join(cells) + f" | {np.mean([by_key[k]['ssim_brain'] for k in served]):.4f} |")
    write_text_atomic(args.out / "pair_average.md", "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
