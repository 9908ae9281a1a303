"""Quality for every pattern of missing inputs (14 for four contrasts) on held-out subjects.

For each non-empty proper subset of present contrasts and each absent contrast: the any-subset model
imputes it from the present inputs alone (joint), and the one-missing model chains its imputations
(the absent contrasts one after another in model order, each from the inputs and those imputed
before it; with one absent contrast this is its ordinary imputation). The one-missing rows compare
the any-subset model with the one-missing model where both are used as trained. Metrics as
benchmarks/quality.py (metrics.py, BraSyn normalisation; the brain mask of the complete study, so
every pattern is scored on the same voxels). Both models' imputations get the any-subset model's smoothing
(its card's "inference"), so they differ only in the network.

    python benchmarks/missing_patterns.py --data ../shared/data/manifest.json \
        --any-weights CollaGANImpute/Resources/Models/collagan_brats.safetensors --one-weights runs/one/model.safetensors
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "CollaGANImpute"))

from CollaGANImputeLib.core.contrasts import display_name
from CollaGANImputeLib.core.metrics import NORMALISATION, image_metrics
from CollaGANImputeLib.inference.imputation import synthesise_missing
from CollaGANImputeLib.inference.synthesis import model_inputs, model_smoothing
from CollaGANImputeLib.io.atomic import write_text_atomic
from CollaGANImputeLib.model.weights import load_model
from CollaGANImputeLib.preparation.data import discover_subjects, only_subjects, prepare_subject

METRICS = ("ssim_brain", "psnr_brain", "nmse_brain", "ssim_volume")


def patterns(contrasts: list[str]) -> list[tuple[list[str], list[str]]]:
    """(present, absent) for every non-empty proper subset of present contrasts, fewest absent first."""
    found = []
    for absent_count in range(1, len(contrasts)):
        for absent in itertools.combinations(contrasts, absent_count):
            found.append(([k for k in contrasts if k not in absent], list(absent)))
    return found


def evaluate_pattern(study, contrasts: list[str], present: list[str], absent: list[str], methods: dict, inputs: dict,
                     smoothed_as) -> list[dict]:
    """`inputs`: each method's model_inputs of the whole study; the absent channels are zeroed here."""
    targets = [contrasts.index(k) for k in absent]
    rows = []
    for method, (model, strategy) in methods.items():
        stack = inputs[method].copy()
        stack[targets] = 0.0
        started = time.monotonic()
        fakes = synthesise_missing(model.generator, stack, targets, study.mask, strategy=strategy, absent=targets,
                                   smoothing={contrasts.index(k): model_smoothing(smoothed_as, k, study.slice_spacing) for k in absent})
        seconds = time.monotonic() - started
        for key in absent:
            scores = image_metrics(study.images[key], fakes[contrasts.index(key)], study.mask)
            rows.append({"present": present, "absent": absent, "contrast": key, "method": method,
                         "seconds": round(seconds / len(absent), 2), **{m: scores[m] for m in METRICS}})
    return rows


def _mean_over_subjects(rows: list[dict], method: str, absent: list[str], key: str, metric: str) -> float:
    """One pattern's figure for one imputed contrast, averaged over the held-out subjects."""
    return float(np.mean([r[metric] for r in rows if r["method"] == method and r["absent"] == absent and r["contrast"] == key]))


def markdown_table(rows: list[dict], pattern_list: list, methods: list[str]) -> str:
    """One row per missing pattern: brain SSIM and PSNR of each imputed contrast, per method (subjects averaged)."""
    lines = ["| # | inputs | imputed | " + " | ".join(f"SSIM brain, {m}" for m in methods) + " | "
             + " | ".join(f"PSNR brain (dB), {m}" for m in methods) + " |",
             "|---|---|---|" + "---|" * (2 * len(methods))]
    for number, (present, absent) in enumerate(pattern_list, 1):
        cells = []
        for metric, digits in (("ssim_brain", 3), ("psnr_brain", 2)):
            for method in methods:
                cells.append(" / ".join(f"{_mean_over_subjects(rows, method, absent, k, metric):.{digits}f}" for k in absent))
        lines.append(f"| {number} | {', '.join(display_name(k) for k in present)} | {' / '.join(display_name(k) for k in absent)} | "
                     + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def summary(rows: list[dict], methods: list[str], contrasts: list[str]) -> dict:
    """Mean brain SSIM and PSNR per method, by number of absent contrasts, and the one-missing comparison."""
    out: dict = {"by_absent_count": {}, "one_missing": {}}
    for count in range(1, len(contrasts)):
        out["by_absent_count"][count] = {
            method: {m: float(np.mean([r[m] for r in rows if r["method"] == method and len(r["absent"]) == count]))
                     for m in ("ssim_brain", "psnr_brain")} for method in methods}
    for key in contrasts:
        out["one_missing"][key] = {
            method: {m: _mean_over_subjects(rows, method, [key], key, m) for m in ("ssim_brain", "psnr_brain")}
            for method in methods}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--any-weights", type=Path, required=True, help="model trained for any subset (card missing_inputs max N-1)")
    parser.add_argument("--one-weights", type=Path, required=True, help="model trained with one contrast missing")
    parser.add_argument("--held-out", action="append", default=[], help="default: the any-subset model's validation subjects")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args(argv)

    any_model, one_model = load_model(args.any_weights), load_model(args.one_weights)
    contrasts = any_model.contrasts
    if one_model.contrasts != contrasts:
        raise SystemExit("the two models must impute the same contrasts in the same order")
    if any_model.most_missing < len(contrasts) - 1:
        raise SystemExit(f"--any-weights '{args.any_weights}' was trained for at most {any_model.most_missing} absent contrast(s)")
    held_out = args.held_out or any_model.card["training"]["validation_subjects"]
    methods = {"any-subset model": (any_model, "joint"), "chained one-missing model": (one_model, "chain")}
    subjects = {s.name: s for s in only_subjects(discover_subjects(args.data, contrasts), held_out, args.data)}
    pattern_list = patterns(contrasts)
    rows = []
    for name in held_out:
        study = prepare_subject(subjects[name], contrasts)
        inputs = {method: model_inputs(model, study) for method, (model, _) in methods.items()}
        for present, absent in pattern_list:
            print(f"{name}: {', '.join(present)} -> {', '.join(absent)}", file=sys.stderr)
            rows += [{"subject": name, **r} for r in evaluate_pattern(study, contrasts, present, absent, methods, inputs, any_model)]

    args.out.mkdir(parents=True, exist_ok=True)
    report = {
        "held_out": held_out, "normalisation": NORMALISATION,
        "models": {method: {"name": m.name, "sha256": m.card["sha256"], "strategy": s} for method, (m, s) in methods.items()},
        "smoothing": {key: dict(zip(("through_plane_sigma_mm", "in_plane_sigma_voxels"), any_model.smoothing(key))) for key in contrasts},
        "ssim": "3-D SSIM (7-voxel window) averaged over the brain (ssim_brain) and over the whole volume (ssim_volume)",
        "summary": summary(rows, list(methods), contrasts),
        "results": rows,
    }
    write_text_atomic(args.out / "missing_patterns.json", json.dumps(report, indent=2) + "\n")
    table = markdown_table(rows, pattern_list, list(methods))
    write_text_atomic(args.out / "missing_patterns.md",
                      f"Held-out subject(s): {', '.join(held_out)}. {NORMALISATION}. Cells list the imputed contrasts in order.\n\n" + table)
    print(table)
    print(f"wrote {args.out / 'missing_patterns.json'} and missing_patterns.md", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
