"""Is the model's PSNR gap its intensity distribution? Landmark offsets for its imputations, fitted and measured.

After BraSyn normalisation PSNR rewards every intensity being right, so an imputation with the right anatomy
but too dim a bright tail loses decibels and SSIM (intensity_landmarks.py says why a generator trained with
L1 has one). Each contrast of every subject of --data is imputed from the others (out_of_fold_imputations.py),
given the smoothing of the card under test and no offsets, and scored (metrics.py, 3-D SSIM) three ways:

- "as imputed": the network's output;
- "offsets": its brain landmarks moved by the mean (real - imputed) landmark offsets of the model's training
  subjects, the scored subject left out: what the card would give an imputation, needing no answer;
- "conditioned": its brain landmarks moved onto those predicted from its own by a per-level straight line
  (real = a + b * imputed) fitted on the same training subjects: offsets that follow the study (a tumour's bright
  tail, an atrophied brain's dark one) instead of one mean; CONDITIONED_RULE says when it would replace "offsets";
- "oracle": its landmarks moved onto the real volume's own. It needs the answer, so it is not a method: it
  shows what the right intensity distribution alone would give the imputation.

RULE decides per contrast, on the training subjects alone, whether the offsets earn a place in the card; the
held-out subjects are reported beside them. With --write-card the card gains "intensity_landmarks": fitted on
all training subjects, the lines ("slopes" and "offsets") of the contrasts that passed CONDITIONED_RULE and the mean
offsets of the others that passed RULE. Writes JSON and a Markdown table.

A training subject's imputation by the model that was trained on it is closer to the real volume than a new
subject's will be, so offsets fitted on it are too small. `--fold-weights` (repeatable) names models trained
on parts of the training subjects (learning_curve.RECIPE on each fold; their cards list the subjects): each
training subject is then imputed by a fold model that never saw it, and the offsets are fitted and decided on
those out-of-fold imputations; the held-out subjects are still imputed by the model under test.

    python benchmarks/intensity_mapping.py --data ../shared/data/training.json [--weights W] [--write-card]
    python benchmarks/intensity_mapping.py --data ../shared/data/training.json --fold-weights A --fold-weights B \
        --stem intensity_mapping_out_of_fold [--write-card]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "CollaGANImpute"))

from CollaGANImputeLib.core.contrasts import display_name
from CollaGANImputeLib.core.metrics import NORMALISATION, image_metrics
from CollaGANImputeLib.inference.intensity_landmarks import LEVELS, brain_landmarks, move_landmarks
from CollaGANImputeLib.inference.synthesis import model_smoothing, smooth_in_brain
from CollaGANImputeLib.io.atomic import write_text_atomic
from CollaGANImputeLib.model.model_card import update_card
from CollaGANImputeLib.model.weights import load_model
from CollaGANImputeLib.preparation.data import discover_subjects
from out_of_fold_imputations import add_options, from_options  # noqa: E402

MAPPINGS = ("as imputed", "offsets", "conditioned", "oracle")
RULE = ("a contrast's imputations get the offsets only if, over the training subjects (each scored with offsets fitted "
        "on the others), mean brain SSIM and mean brain PSNR are both no lower than the imputations' own")
CONDITIONED_RULE = ("written 2026-12-04 before the fold models of the bundled recipe finished: a contrast's conditioned "
                    "offsets would replace its mean ones only if, over the training subjects (each scored with lines fitted on the "
                    "others), mean brain SSIM and mean brain PSNR are both no lower than with the mean offsets and than as imputed")


def conditioned_lines(imputed: np.ndarray, real: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per level, the least-squares line real = slope x imputed + offset through the landmarks of the fitting
    subjects (rows of `imputed` and `real`): the card's "slopes" and "offsets" (intensity_landmarks.move_landmarks)."""
    lines = np.array([np.polyfit(imputed[:, level], real[:, level], 1) for level in range(imputed.shape[1])])
    return lines[:, 0], lines[:, 1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--weights", type=Path, help="default: the bundled model")
    parser.add_argument("--write-card", action="store_true", help="write the offsets of the contrasts that passed into the card")
    add_options(parser, folds_required=False)
    parser.add_argument("--stem", default="intensity_mapping", help="output file names: STEM.json, STEM.md")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args(argv)
    started = time.monotonic()

    model = load_model(args.weights)
    contrasts = model.contrasts
    training = list(model.card["training"]["train_subjects"])
    subjects = discover_subjects(args.data, contrasts)
    trained = [s.name for s in subjects if s.name in training]
    if len(trained) < 3:
        parser.error(f"{args.data} holds {len(trained)} of the model's training subjects ({', '.join(training)}): "
                     "fitting offsets with the scored one left out needs at least three")
    imputer, imputed = from_options(parser, args, model, subjects)
    volumes = {}  # (subject, contrast) -> (real, imputed with the card's smoothing of the model under test, mask), brain's box
    for (name, key), item in imputed.items():
        sigma = model_smoothing(model, key, item.slice_spacing)
        volumes[(name, key)] = (item.real, smooth_in_brain(item.imputed, item.mask, sigma) if any(sigma) else item.imputed, item.mask)
    del imputed
    real_landmarks = {pair: brain_landmarks(real, mask) for pair, (real, _, mask) in volumes.items()}
    imputed_landmarks = {pair: brain_landmarks(fake, mask) for pair, (_, fake, mask) in volumes.items()}
    offsets = {pair: real_landmarks[pair] - imputed_landmarks[pair] for pair in volumes}

    rows = []
    for (name, key), (real, fake, mask) in volumes.items():
        others = [other for other in trained if other != name]
        fitted = np.mean([offsets[(other, key)] for other in others], axis=0)
        slopes, intercepts = conditioned_lines(np.array([imputed_landmarks[(o, key)] for o in others]),
                                               np.array([real_landmarks[(o, key)] for o in others]))
        versions = {"as imputed": fake, "offsets": move_landmarks(fake, mask, fitted),
                    "conditioned": move_landmarks(fake, mask, intercepts, slopes=slopes),
                    "oracle": move_landmarks(fake, mask, offsets[(name, key)])}
        for mapping, volume in versions.items():
            scores = image_metrics(real, volume, mask)
            rows.append({"subject": name, "training_subject": name in training, "contrast": key, "mapping": mapping,
                         "ssim_brain": round(scores["ssim_brain"], 4), "psnr_brain": round(scores["psnr_brain"], 3)})

    def mean(key: str, mapping: str, metric: str, trained_on: bool) -> float:
        return float(np.mean([r[metric] for r in rows if r["contrast"] == key and r["mapping"] == mapping and r["training_subject"] == trained_on]))

    gains = {key: {metric: mean(key, "offsets", metric, True) - mean(key, "as imputed", metric, True) for metric in ("ssim_brain", "psnr_brain")}
             for key in contrasts}
    chosen = [key for key in contrasts if all(gain >= 0 for gain in gains[key].values())]
    conditioned_passes = [key for key in contrasts
                          if all(mean(key, "conditioned", metric, True) >= max(mean(key, other, metric, True) for other in ("as imputed", "offsets"))
                                 for metric in ("ssim_brain", "psnr_brain"))]
    held_out = [s.name for s in subjects if s.name not in training]
    report = {
        "model": model.name, "weights_sha256": model.card["sha256"], "normalisation": NORMALISATION,
        "levels": list(LEVELS), "unit": model.card.get("output_intensity", ""), "rule": RULE, "training_subjects": trained,
        "training_subjects_imputed_by": {name: f"{imputer[name].name} (sha256 {imputer[name].card['sha256'][:12]})" for name in trained},
        "held_out_subjects": held_out, "mean_gain_of_offsets_on_training_subjects": gains, "chosen": chosen,
        "conditioned_rule": CONDITIONED_RULE, "conditioned_passes": conditioned_passes,
        "offsets_on_all_training_subjects": {key: np.mean([offsets[(n, key)] for n in trained], axis=0).round(4).tolist() for key in contrasts},
        "lines_on_all_training_subjects": {key: dict(zip(("slopes", "offsets"), (part.round(4).tolist() for part in conditioned_lines(
            np.array([imputed_landmarks[(n, key)] for n in trained]), np.array([real_landmarks[(n, key)] for n in trained]))))) for key in contrasts},
        "seconds": round(time.monotonic() - started, 1), "results": rows,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(args.out / f"{args.stem}.json", json.dumps(report, indent=2) + "\n")

    def cells(names: list[str], key: str) -> str:
        return " | ".join(f"{np.mean([r['ssim_brain'] for r in rows if r['subject'] in names and r['contrast'] == key and r['mapping'] == m]):.3f} / "
                          f"{np.mean([r['psnr_brain'] for r in rows if r['subject'] in names and r['contrast'] == key and r['mapping'] == m]):.2f}"
                          for m in MAPPINGS)

    out_of_fold = (f" Training subjects imputed out of fold, by {', '.join(sorted({imputer[n].name for n in trained}))}; held-out ones by "
                   f"{model.name}." if args.fold_weights else "")
    lines = [f"Model {model.name}. {NORMALISATION}. Brain SSIM / PSNR (dB), each contrast imputed from the others; offsets fitted on "
             f"the training subjects with the scored one left out.{out_of_fold} Rule: {RULE}. Conditioned offsets ({CONDITIONED_RULE}): "
             f"{', '.join(display_name(k) for k in conditioned_passes) or 'no contrast'} passes.", "",
             "| subjects | contrast | " + " | ".join(MAPPINGS) + " | offsets carried |", "|---|---|" + "---|" * (len(MAPPINGS) + 1)]
    for label, names in ((f"{len(trained)} training", trained), (f"{len(held_out)} held out", held_out)):
        lines += [f"| {label} | {display_name(key)} | {cells(names, key)} | {'yes' if key in chosen else 'no'} |" for key in contrasts if names]
    lines += ["", "Per held-out subject:", "", "| subject | contrast | " + " | ".join(MAPPINGS) + " |", "|---|---|" + "---|" * len(MAPPINGS)]
    lines += [f"| {name} | {display_name(key)} | {cells([name], key)} |" for name in held_out for key in contrasts]
    write_text_atomic(args.out / f"{args.stem}.md", "\n".join(lines) + "\n")
    print("\n".join(lines))

    if args.write_card:
        # A contrast whose lines passed CONDITIONED_RULE carries them; the others that passed RULE, their mean offsets.
        lines = report["lines_on_all_training_subjects"]
        block = {"levels": list(LEVELS), "offsets": {key: (lines[key]["offsets"] if key in conditioned_passes else
                                                            report["offsets_on_all_training_subjects"][key])
                                                      for key in contrasts if key in chosen or key in conditioned_passes},
                 "slopes": {key: lines[key]["slopes"] for key in conditioned_passes},
                 "unit": "brain standard deviations, added to the imputation's own brain percentiles at 'levels'",
                 "fitted_on": trained, "imputed_by": report["training_subjects_imputed_by"], "rule": RULE,
                 "chosen_by": f"benchmarks/intensity_mapping.py (benchmarks/results/{args.stem}.md)",
                 "gain_on_training_subjects": {key: {m: round(g, 4) for m, g in gains[key].items()} for key in contrasts}}
        print(f"card: {update_card(model.weights_path, {'intensity_landmarks': block})}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
