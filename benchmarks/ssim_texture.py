"""What limits brain SSIM: how much of each real volume's score lies in detail finer than an imputation carries.

For each contrast of each validation subject, the bundled pair's imputation (the default path) is scored over the
brain and over bands of depth below the brain's surface; the real volume is then scored against itself blurred by a
Gaussian of 0.5, 1 and 1.5 voxels, the score an imputation would get were it exact but as smooth as that (its
"blur ceiling"). A contrast whose real volumes lose much SSIM to a 1-voxel blur holds much fine texture (noise,
thin sulci) that no network can predict from other contrasts, and its imputations' SSIM is held down by it.

Each imputation's SSIM is also split into its three factors (metrics.ssim_components): the score it would get were
its local brightness exact (the mean of contrast x structure), or its local brightness and contrast (the mean of
structure): what any intensity mapping or sharpening could at most recover. And it is scored moved by one voxel
along each axis: an imputation that fits the real volume better moved has inputs that sit off the real volume.

    python benchmarks/ssim_texture.py --data ../shared/data/training.json [--subjects training] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "CollaGANImpute"))

from CollaGANImputeLib.core.contrasts import display_name
from CollaGANImputeLib.core.metrics import NORMALISATION, brasyn_normalise, image_metrics, region_metrics, ssim_components
from CollaGANImputeLib.inference.synthesis import ServedInputs
from CollaGANImputeLib.io.atomic import write_text_atomic
from CollaGANImputeLib.model.weights import load_model
from CollaGANImputeLib.preparation.data import discover_subjects, only_subjects, prepare_subject

BANDS_MM = ((0, 3), (3, 6), (6, 10), (10, None))  # depth below the brain's surface
BLURS = (0.5, 1.0, 1.5)  # Gaussian sigma, voxels
AXES = ("slices", "rows", "columns")  # of the canonical grid the imputation is scored on


def band_name(low: float, high: float | None) -> str:
    return f"{low}-{high} mm" if high is not None else f"over {low} mm"


def subject_rows(model, subject) -> list[dict]:
    study = prepare_subject(subject, model.contrasts)
    mask = study.mask.astype(bool)
    depth = ndimage.distance_transform_edt(mask, sampling=study.canonical_spacing)
    bands = {band_name(lo, hi): mask & (depth > lo) & (depth <= (np.inf if hi is None else hi)) for lo, hi in BANDS_MM}
    inputs, rows = ServedInputs(study), []
    for key in model.contrasts:
        server, fake = inputs.impute(model, key)
        real = study.images[key]
        scores = region_metrics(real, fake, mask, bands)
        row = {"subject": subject.name, "contrast": key, "by": server.name, "ssim_brain": scores["ssim_brain"],
               "bands": {name: {"ssim": region["ssim_brain"], "share_of_brain": region["voxels"] / int(mask.sum())}
                         for name, region in scores["regions"].items()},
               "blur_ceiling": {str(s): image_metrics(real, ndimage.gaussian_filter(real, s), mask)["ssim_brain"] for s in BLURS},
               "factors": factor_means(real, fake, mask), "moved": moved_scores(real, fake, mask, scores["ssim_brain"])}
        rows.append(row)
        print(f"{subject.name} {display_name(key)}: {row['ssim_brain']:.3f}, blur ceiling {row['blur_ceiling']}", flush=True)
    return rows


def factor_means(real: np.ndarray, fake: np.ndarray, mask: np.ndarray) -> dict:
    """Brain means of SSIM's factors, and of the two products an exact local brightness, or brightness and contrast,
    would leave."""
    parts = ssim_components(brasyn_normalise(real, mask), brasyn_normalise(fake, mask))
    means = {name: float(part[mask].mean()) for name, part in parts.items()}
    means["brightness exact"] = float((parts["contrast"] * parts["structure"])[mask].mean())
    means["brightness and contrast exact"] = means["structure"]
    return means


def moved_scores(real: np.ndarray, fake: np.ndarray, mask: np.ndarray, ssim: float) -> dict:
    """Change of brain SSIM with the imputation moved one voxel either way along each axis (the mask stays)."""
    return {f"{axis} {step:+d}": image_metrics(real, np.where(mask, np.roll(fake, step, axis=number), 0.0), mask)["ssim_brain"] - ssim
            for number, axis in enumerate(AXES) for step in (-1, 1)}


def mean_of(rows: list[dict], key: str, pick) -> float:
    return float(np.mean([pick(r) for r in rows if r["contrast"] == key]))


def report(rows: list[dict], contrasts: list[str], which: str) -> str:
    names = [band_name(lo, hi) for lo, hi in BANDS_MM]
    lines = [f"Brain SSIM (3-D, 7-voxel window, BraSyn normalisation), mean over the bundled model's {which} subjects. Bands: depth below "
             "the brain's surface (share of the brain's voxels). Blur ceiling: the real volume scored against itself blurred "
             "by a Gaussian of that sigma (voxels).", "",
             "| contrast | imputation | " + " | ".join(names) + " | " + " | ".join(f"blur ceiling {s}" for s in BLURS) + " |",
             "|---" * (2 + len(names) + len(BLURS)) + "|"]
    for key in contrasts:
        cells = [f"{mean_of(rows, key, lambda r: r['ssim_brain']):.3f}"]
        for n in names:
            share = mean_of(rows, key, lambda r, n=n: r["bands"][n]["share_of_brain"])
            cells.append(f"{mean_of(rows, key, lambda r, n=n: r['bands'][n]['ssim']):.3f} ({share:.2f})")
        cells += [f"{mean_of(rows, key, lambda r, s=s: r['blur_ceiling'][str(s)]):.3f}" for s in BLURS]
        lines.append(f"| {display_name(key)} | " + " | ".join(cells) + " |")
    factors = ("luminance", "contrast", "structure", "brightness exact", "brightness and contrast exact")
    lines += ["", "SSIM's factors (brain means; the last two: the brain SSIM were the imputation's local brightness, or brightness "
              "and contrast, exact), and the largest change of brain SSIM with the imputation moved one voxel along an axis:", "",
              "| contrast | SSIM | " + " | ".join(factors) + " | best one-voxel move |", "|---" * (3 + len(factors)) + "|"]
    for key in contrasts:
        cells = [f"{mean_of(rows, key, lambda r: r['ssim_brain']):.3f}"]
        cells += [f"{mean_of(rows, key, lambda r, f=f: r['factors'][f]):.3f}" for f in factors]
        lines.append(f"| {display_name(key)} | " + " | ".join(cells) + f" | {best_moves(rows, key)} |")
    return "\n".join(lines) + "\n"


def best_moves(rows: list[dict], key: str) -> str:
    """Each subject's best one-voxel move of `key`'s imputation, where it raises brain SSIM by more than 0.01."""
    found = []
    for row in (r for r in rows if r["contrast"] == key):
        move, gain = max(row["moved"].items(), key=lambda item: item[1])
        if gain > 0.01:
            found.append(f"{row['subject']} {move}: +{gain:.3f}")
    return "; ".join(found) or "none above +0.01"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="manifest holding the validation subjects (training.json)")
    parser.add_argument("--subjects", choices=("validation", "training"), default="validation",
                        help="the bundled model's validation subjects, or those it was trained on (in-sample)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/ssim_texture"))
    args = parser.parse_args(argv)
    torch.set_num_threads(2)
    model = load_model()
    names = model.card["training"]["validation_subjects" if args.subjects == "validation" else "train_subjects"]
    subjects = only_subjects(discover_subjects(args.data, model.contrasts), names, args.data)
    rows = [row for subject in subjects for row in subject_rows(model, subject)]
    args.out.mkdir(parents=True, exist_ok=True)
    table = report(rows, model.contrasts, args.subjects)
    write_text_atomic(args.out / "ssim_texture.json", json.dumps({"subjects": args.subjects, "normalisation": NORMALISATION, "bands_mm": BANDS_MM,
                                                                   "blur_sigmas_voxels": BLURS, "rows": rows}, indent=1) + "\n")
    write_text_atomic(args.out / "ssim_texture.md", table)
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
