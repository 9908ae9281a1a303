"""How much smoothing each contrast's imputations get (the card's "inference"), chosen out of fold per contrast.

A 2-D generator leaves two artefacts no real volume has: neighbouring slices differ more than a real
volume's (each slice is imputed on its own) and the decoder's stride-2 transposed convolutions leave a
faint checkerboard in plane. synthesis.smooth_in_brain removes both, but what it costs in detail differs by
contrast (one width for all raised T1 and T2 and lowered FLAIR, docs/validation_rule.md), so each contrast
gets its own pair of widths by the rule written there before any figure was seen (RULE): chosen on the
training subjects' out-of-fold imputations (out_of_fold_imputations.py), never on a held-out subject.

Writes STEM.json and STEM.md; `--write-card` stores the choice in the model card's inference block.

    python benchmarks/smoothing.py --data ../shared/data/training.json \
        --fold-weights FOLD_A --fold-weights FOLD_B [--cache DIR] [--write-card]
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "CollaGANImpute"))

from CollaGANImputeLib.core.contrasts import display_name  # noqa: E402
from CollaGANImputeLib.core.metrics import NORMALISATION, image_metrics  # noqa: E402
from CollaGANImputeLib.inference.synthesis import smooth_in_brain  # noqa: E402
from CollaGANImputeLib.io.atomic import write_text_atomic  # noqa: E402
from CollaGANImputeLib.model.model_card import update_card  # noqa: E402
from CollaGANImputeLib.model.weights import load_model  # noqa: E402
from CollaGANImputeLib.preparation.data import discover_subjects, only_subjects  # noqa: E402
from out_of_fold_imputations import Imputed, add_options, from_options  # noqa: E402

ACROSS_MM = (0.0, 0.5, 1.0, 1.5, 2.0)
IN_PLANE_VOXELS = (0.0, 0.5, 0.75, 1.0)
RULE = ("written 2026-12-05 before its figures were seen (docs/validation_rule.md): per contrast, among the pairs whose mean brain PSNR "
        "over the training subjects' out-of-fold imputations is no lower than the unsmoothed imputation's, the one with the highest "
        "mean brain SSIM; unsmoothed if that is (0, 0)")


def score_pairs(item: Imputed, pairs: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """(brain SSIM, brain PSNR) of the imputation smoothed by each (across mm, in-plane voxels) pair."""
    scores = []
    for across, within in pairs:
        sigma = (across / item.slice_spacing, within)
        volume = smooth_in_brain(item.imputed, item.mask, sigma) if any(sigma) else item.imputed
        metrics = image_metrics(item.real, volume, item.mask)
        scores.append((metrics["ssim_brain"], metrics["psnr_brain"]))
    return scores


def choose(means: dict[tuple[float, float], tuple[float, float]]) -> tuple[float, float]:
    """RULE on {(across mm, in-plane voxels): (mean brain SSIM, mean brain PSNR)}, which holds (0, 0)."""
    floor = means[(0.0, 0.0)][1]
    allowed = [pair for pair, (_, psnr) in means.items() if psnr >= floor]
    return max(allowed, key=lambda pair: (means[pair][0], -sum(pair)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--weights", type=Path, help="default: the bundled model")
    add_options(parser, folds_required=True)
    parser.add_argument("--workers", type=int, default=1, help="processes scoring the candidates")
    parser.add_argument("--write-card", action="store_true", help="store the choice in the model card's inference block")
    parser.add_argument("--stem", default="smoothing", help="output file names: STEM.json, STEM.md")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args(argv)
    started = time.monotonic()

    model = load_model(args.weights)
    contrasts = model.contrasts
    trained = list(model.card["training"]["train_subjects"])
    subjects = only_subjects(discover_subjects(args.data, contrasts), trained, args.data)
    by, volumes = from_options(parser, args, model, subjects)
    pairs = list(itertools.product(ACROSS_MM, IN_PLANE_VOXELS))
    keys = list(volumes)
    with ProcessPoolExecutor(max_workers=args.workers) as pool:
        scored = dict(zip(keys, pool.map(score_pairs, [volumes[k] for k in keys], itertools.repeat(pairs))))

    means = {key: {pair: tuple(float(np.mean([scored[(s.name, key)][i][m] for s in subjects])) for m in (0, 1))
                   for i, pair in enumerate(pairs)} for key in contrasts}
    chosen = {key: choose(means[key]) for key in contrasts}
    report = {
        "model": model.name, "weights_sha256": model.card["sha256"], "normalisation": NORMALISATION, "rule": RULE,
        "subjects": [s.name for s in subjects],
        "imputed_by": {name: f"{imputer.name} (sha256 {imputer.card['sha256'][:12]})" for name, imputer in by.items()},
        "candidates": [list(pair) for pair in pairs],
        "mean_ssim_psnr_brain": {key: {f"{a}/{b}": [round(v, 4) for v in means[key][(a, b)]] for a, b in pairs} for key in contrasts},
        "per_subject": {f"{name}/{key}": [[round(v, 4) for v in score] for score in scores] for (name, key), scores in scored.items()},
        "chosen": {key: {"through_plane_sigma_mm": chosen[key][0], "in_plane_sigma_voxels": chosen[key][1]} for key in contrasts},
        "seconds": round(time.monotonic() - started, 1),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(args.out / f"{args.stem}.json", json.dumps(report, indent=2) + "\n")
    lines = [f"Model {model.name}: each contrast of its {len(subjects)} training subjects imputed out of fold from the other three. "
             f"{NORMALISATION}. Mean brain SSIM / PSNR (dB) with the smoothing across slices (rows, mm) and in plane (columns, voxels). "
             f"Rule: {RULE}.", ""]
    for key in contrasts:
        lines += [f"**{display_name(key)}** (chosen: {chosen[key][0]} mm, {chosen[key][1]} voxels)", "",
                  "| across \\ in plane | " + " | ".join(f"{b}" for b in IN_PLANE_VOXELS) + " |", "|---|" + "---|" * len(IN_PLANE_VOXELS)]
        lines += [f"| {a} | " + " | ".join(f"{'**' if (a, b) == chosen[key] else ''}{means[key][(a, b)][0]:.4f} / {means[key][(a, b)][1]:.2f}"
                                           f"{'**' if (a, b) == chosen[key] else ''}" for b in IN_PLANE_VOXELS) + " |" for a in ACROSS_MM]
        lines.append("")
    write_text_atomic(args.out / f"{args.stem}.md", "\n".join(lines))
    print("\n".join(lines))
    if args.write_card:
        inference = {key: value for key, value in model.card.get("inference", {}).items()
                     if key not in ("through_plane_sigma_mm", "in_plane_sigma_voxels")}
        inference.update({"by_contrast": report["chosen"], "chosen_on": report["subjects"], "rule": RULE,
                          "chosen_by": f"benchmarks/smoothing.py (benchmarks/results/{args.stem}.md)"})
        print(f"wrote the choice into {update_card(model.weights_path, {'inference': inference})}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
