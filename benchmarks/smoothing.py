"""How much smoothing a model's imputations get (its card's "inference"), chosen on its training subjects.

A 2-D generator leaves two artefacts no real volume has: neighbouring slices differ more than a real
volume's (each slice is imputed on its own) and the decoder's stride-2 transposed convolutions leave a
faint checkerboard in plane. synthesis.smooth_in_brain removes both; this script picks its two widths by
two fixed rules on the model's training subjects (never the held-out one), each contrast imputed from the
other three over the whole volume (metrics.py, BraSyn normalisation, 3-D SSIM):

1. across slices (mm, no smoothing in plane): the smallest candidate at which the median over subjects of
   the neighbouring-slice difference of the imputed volume over the real volume's is within 1.2 for every
   contrast (issue 3's target);
2. in plane (voxels of the network's grid, with the width of rule 1): the smallest candidate whose mean
   brain SSIM over subjects and contrasts is within 0.001 of the best candidate's.

With `--views N` it also scores the opt-in average of N shifted and mirrored views (inference.VIEWS) with the
chosen smoothing, per contrast against one view: the evidence the option was built on, from the same subjects.

Writes JSON and a Markdown table; `--write-card` also stores the choice in the model card.

    python benchmarks/smoothing.py --data ../shared/data/manifest.json [--weights W] [--views 8] [--write-card]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "CollaGANImpute"))

from CollaGANImputeLib.core.contrasts import display_name
from CollaGANImputeLib.core.metrics import NORMALISATION, image_metrics
from CollaGANImputeLib.inference.synthesis import model_inputs, smooth_in_brain, synthesise
from CollaGANImputeLib.io.atomic import write_text_atomic
from CollaGANImputeLib.model.model_card import update_card
from CollaGANImputeLib.model.weights import load_model
from CollaGANImputeLib.preparation.data import discover_subjects, only_subjects, prepare_subject
from quality import slice_roughness  # noqa: E402

ROUGHNESS_LIMIT = 1.2
SSIM_TOLERANCE = 0.001


def across_slices_rule(ratios: dict[float, dict[str, list[float]]]) -> float:
    """Rule 1 on {sigma_mm: {contrast: [ratio per subject]}}; the largest candidate if none meets it."""
    for sigma in sorted(ratios):
        if all(np.median(r) <= ROUGHNESS_LIMIT for r in ratios[sigma].values()):
            return sigma
    return max(ratios)


def in_plane_rule(mean_ssim: dict[float, float]) -> float:
    """Rule 2 on {sigma_voxels: mean brain SSIM}."""
    best = max(mean_ssim.values())
    return min(sigma for sigma, value in mean_ssim.items() if value >= best - SSIM_TOLERANCE)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--weights", type=Path, help="default: the bundled model")
    parser.add_argument("--subject", action="append", default=[], help="default: the model card's training subjects")
    parser.add_argument("--across-mm", type=float, nargs="+", default=[0.5, 0.75, 1.0, 1.25])
    parser.add_argument("--in-plane-voxels", type=float, nargs="+", default=[0.0, 0.5, 0.6, 0.75, 0.9, 1.0])
    parser.add_argument("--views", type=int, default=1, help="also score the average of this many views (inference.VIEWS)")
    parser.add_argument("--write-card", action="store_true", help="store the choice in the model card's inference block")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args(argv)

    model = load_model(args.weights)
    contrasts = model.contrasts
    names = args.subject or model.card["training"]["train_subjects"]
    outside = sorted(set(names) - set(model.card.get("training", {}).get("train_subjects", [])))
    if args.write_card and outside:  # the card says its smoothing was chosen on the training subjects
        parser.error(f"--write-card: {', '.join(outside)} not among the model's training subjects; choose on those only")
    subjects = only_subjects(discover_subjects(args.data, contrasts), names, args.data)
    ratios: dict[float, dict[str, list[float]]] = {s: {k: [] for k in contrasts} for s in args.across_mm}
    imputed = []  # (study, contrast, raw imputation, stack): rule 2 smooths them again
    for subject in subjects:
        study = prepare_subject(subject, contrasts)
        stack = model_inputs(model, study)
        for key in contrasts:
            print(f"{subject.name}: {display_name(key)}", file=sys.stderr, flush=True)
            raw = synthesise(model.generator, stack, contrasts.index(key), study.mask)
            real_roughness = slice_roughness(study.images[key], study.mask)
            for sigma in args.across_mm:
                smoothed = smooth_in_brain(raw, study.mask, (sigma / study.slice_spacing, 0.0))
                ratios[sigma][key].append(slice_roughness(smoothed, study.mask) / real_roughness)
            imputed.append((study, key, raw, stack))
    across = across_slices_rule(ratios)

    scores: dict[float, list[dict]] = {s: [] for s in args.in_plane_voxels}
    for study, key, raw, _ in imputed:
        for sigma in args.in_plane_voxels:
            smoothed = smooth_in_brain(raw, study.mask, (across / study.slice_spacing, sigma))
            scores[sigma].append(image_metrics(study.images[key], smoothed, study.mask))
    mean_ssim = {s: float(np.mean([m["ssim_brain"] for m in scores[s]])) for s in scores}
    mean_psnr = {s: float(np.mean([m["psnr_brain"] for m in scores[s]])) for s in scores}
    in_plane = in_plane_rule(mean_ssim)

    by_views: dict[str, dict[str, list[float]]] = {}  # contrast -> {"one": [SSIM per subject], "averaged": [...]}
    if args.views > 1:
        for (study, key, _, stack), one in zip(imputed, scores[in_plane]):
            print(f"{key}: {args.views} views", file=sys.stderr, flush=True)
            averaged = synthesise(model.generator, stack, contrasts.index(key), study.mask, views=args.views,
                                  smoothing=(across / study.slice_spacing, in_plane))
            row = by_views.setdefault(key, {"one": [], "averaged": [], "one_psnr": [], "averaged_psnr": []})
            scored = image_metrics(study.images[key], averaged, study.mask)
            for name, source, metric in (("one", one, "ssim_brain"), ("averaged", scored, "ssim_brain"),
                                         ("one_psnr", one, "psnr_brain"), ("averaged_psnr", scored, "psnr_brain")):
                row[name].append(source[metric])

    report = {
        "model": model.name, "weights_sha256": model.card["sha256"], "subjects": names, "normalisation": NORMALISATION,
        "rules": {"across_slices": f"smallest sigma (mm) with median slice-difference ratio <= {ROUGHNESS_LIMIT} for every contrast",
                  "in_plane": f"smallest sigma (voxels) within {SSIM_TOLERANCE} of the best mean brain SSIM, with the chosen across-slices sigma"},
        "across_slices_ratios": {str(s): {k: [round(x, 3) for x in v] for k, v in r.items()} for s, r in ratios.items()},
        "in_plane_mean_ssim_brain": {str(s): round(v, 4) for s, v in mean_ssim.items()},
        "in_plane_mean_psnr_brain": {str(s): round(v, 3) for s, v in mean_psnr.items()},
        "chosen": {"through_plane_sigma_mm": across, "in_plane_sigma_voxels": in_plane},
        "views": {"count": args.views, "brain_ssim_and_psnr_per_subject": by_views} if by_views else None,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(args.out / "smoothing.json", json.dumps(report, indent=2) + "\n")
    lines = [f"Model {model.name}, training subjects {', '.join(names)}. {NORMALISATION}.", "",
             "| across slices (mm) | " + " | ".join(f"median ratio {display_name(k)}" for k in contrasts) + " |",
             "|---|" + "---|" * len(contrasts)]
    lines += [f"| {s}{' (chosen)' if s == across else ''} | " + " | ".join(f"{np.median(ratios[s][k]):.2f}" for k in contrasts) + " |"
              for s in args.across_mm]
    lines += ["", f"| in plane (voxels), across slices {across} mm | mean SSIM brain | mean PSNR brain (dB) |", "|---|---|---|"]
    lines += [f"| {s}{' (chosen)' if s == in_plane else ''} | {mean_ssim[s]:.4f} | {mean_psnr[s]:.2f} |" for s in args.in_plane_voxels]
    if by_views:
        lines += ["", f"| contrast | mean SSIM brain, 1 view | {args.views} views | mean PSNR brain (dB), 1 view | {args.views} views |",
                  "|---|---|---|---|---|"]
        lines += [f"| {display_name(k)} | {np.mean(r['one']):.4f} | {np.mean(r['averaged']):.4f} | {np.mean(r['one_psnr']):.2f} | "
                  f"{np.mean(r['averaged_psnr']):.2f} |" for k, r in by_views.items()]
    write_text_atomic(args.out / "smoothing.md", "\n".join(lines) + "\n")
    print("\n".join(lines))
    if args.write_card:
        inference = {**model.card.get("inference", {}), **report["chosen"], "chosen_on": [s.name for s in subjects],
                     "chosen_by": "benchmarks/smoothing.py (benchmarks/results/smoothing.md)"}
        print(f"wrote the choice into {update_card(model.weights_path, {'inference': inference})}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
