"""How far METHOD.md's normalisation (brain standard deviations) is from the metrics' (BraSyn: brain 0.5-99.5
percentiles to [0, 1]) on the training data: per subject and contrast, the two percentiles in brain standard
deviations; per contrast, the mean range, its coefficient of variation between subjects and where the 0.5th
percentile lies in the range. Why `--brasyn-scale` exists (preparation/brasyn_scale.py).

`--write-card WEIGHTS` writes into the card of a model trained with `--brasyn-scale` the landmark lines that bring
its output back to brain standard deviations, fitted on the card's training subjects only (`--reuse`: from the
percentiles this script wrote before, instead of reading the data again).

    python benchmarks/normalisation_spread.py --data ../shared/data/training.json
    python benchmarks/normalisation_spread.py --reuse --write-card CollaGANImpute/Resources/Models/collagan_brats_one_missing.safetensors
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "CollaGANImpute"))

from CollaGANImputeLib.core.contrasts import DEFAULT_CONTRASTS
from CollaGANImputeLib.io.atomic import write_text_atomic
from CollaGANImputeLib.model.model_card import read_card, update_card
from CollaGANImputeLib.model.weights import back_to_sd_card_fields
from CollaGANImputeLib.preparation.brasyn_scale import sd_percentiles
from CollaGANImputeLib.preparation.data import discover_subjects, prepare_subject

REPO = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "training.json")
    parser.add_argument("--json", type=Path, default=REPO / "benchmarks" / "results" / "normalisation_spread.json")
    parser.add_argument("--write-card", type=Path, metavar="WEIGHTS", help="a --brasyn-scale model: write its way back to brain SDs")
    parser.add_argument("--reuse", action="store_true", help="with --write-card: take the percentiles from --json")
    args = parser.parse_args(argv)
    if args.reuse and not args.write_card:
        parser.error("--reuse only serves --write-card")
    if args.reuse:
        return write_card(args.write_card, json.loads(args.json.read_text())["by_subject"])

    by_subject = {}
    for subject in discover_subjects(args.data, DEFAULT_CONTRASTS, incomplete=True):
        study = prepare_subject(subject, DEFAULT_CONTRASTS)
        by_subject[subject.name] = sd_percentiles(study)
        print(subject.name, {key: f"{low:.2f}-{high:.2f}" for key, (low, high) in by_subject[subject.name].items()}, flush=True)
    summary = {}
    for key in DEFAULT_CONTRASTS:
        low, high = np.array([row[key] for row in by_subject.values() if key in row]).T
        spread, start = high - low, low / (high - low)
        summary[key] = {"subjects": len(low), "range_mean_sd": float(spread.mean()), "range_cv": float(spread.std() / spread.mean()),
                        "low_share_min": float(start.min()), "low_share_max": float(start.max())}
        print(f"{key}: 0.5-99.5 percentile range {spread.mean():.2f} brain SDs (cv {spread.std() / spread.mean():.3f}); "
              f"0.5th percentile at {start.min():.3f}-{start.max():.3f} of the range")
    report = {"data": str(args.data), "unit": "brain standard deviations (METHOD.md normalisation)",
              "percentiles": [0.5, 99.5], "by_subject": by_subject, "by_contrast": summary}
    write_text_atomic(args.json, json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.json}")
    return write_card(args.write_card, by_subject) if args.write_card else 0


def write_card(weights: Path, by_subject: dict) -> int:
    """The card's training subjects' percentiles, as landmark lines back to brain SDs, into the card."""
    card = read_card(weights)
    if "brasyn" not in card.get("normalisation", {}):  # weights.Model.brasyn_scaled
        raise SystemExit(f"{weights}: the model was not trained with --brasyn-scale; its output is already in brain SDs")
    fields = back_to_sd_card_fields({name: by_subject[name] for name in card["training"]["train_subjects"]}, card["contrasts"],
                                    "benchmarks/normalisation_spread.py --write-card (benchmarks/results/normalisation_spread.json)")
    update_card(weights, fields)
    block = fields["intensity_landmarks"]
    print(f"wrote the way back to brain SDs into the card of {weights}: " + ", ".join(
        f"{key} {block['offsets'][key][0]:.2f} + {block['slopes'][key][0]:.2f} x own" for key in block["offsets"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
