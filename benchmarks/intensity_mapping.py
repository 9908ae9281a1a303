"""Is the model's PSNR gap its intensity distribution? Histogram standardisation of its imputations, measured.

After BraSyn normalisation PSNR rewards every intensity being right, so an imputation with the right anatomy
but a distorted brain histogram loses decibels that a per-voxel regression keeps. This script maps each
imputation's brain histogram onto a target one (piecewise linear between percentile landmarks, as in Nyul and
Udupa's standardisation) and scores it again (metrics.py, 3-D SSIM), each contrast imputed from the others:

- "standard": the mean landmarks of the real volumes of that contrast on the model's training subjects (the
  scored subject left out): the only form an imputation could use, since it needs no answer;
- "oracle": the real volume's own landmarks. It needs the answer, so it is not a method: it shows what the
  right intensity distribution alone would give the imputation.

Whether "standard" would be worth shipping is decided on the training subjects alone (RULE); the held-out
subjects are reported beside it. Writes JSON and a Markdown table.

    python benchmarks/intensity_mapping.py --data ../shared/data/manifest.json [--weights W]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "CollaGANImpute"))

from CollaGANImputeLib.core.contrasts import display_name
from CollaGANImputeLib.core.metrics import NORMALISATION, brasyn_normalise, image_metrics
from CollaGANImputeLib.inference.synthesis import model_inputs, model_smoothing, synthesise
from CollaGANImputeLib.io.atomic import write_text_atomic
from CollaGANImputeLib.model.weights import load_model
from CollaGANImputeLib.preparation.data import discover_subjects, prepare_subject

LEVELS = (0.5, 1, 2, 5, 10, 20, 30, 40, 50, 60, 70, 80, 90, 95, 98, 99, 99.5)  # percentiles of the brain
MAPPINGS = ("as imputed", "standard", "oracle")
RULE = "ship 'standard' only if its mean brain SSIM and PSNR over the training subjects are no lower than the imputation's, for every contrast"


def landmarks(volume: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The brain's LEVELS percentiles after BraSyn normalisation (so volumes from any scanner compare)."""
    return np.percentile(brasyn_normalise(volume, mask)[mask], LEVELS)


def map_histogram(volume: np.ndarray, mask: np.ndarray, target: np.ndarray) -> np.ndarray:
    """`volume` with its brain landmarks moved onto `target` (linear in between, flat beyond); 0 outside."""
    own = np.percentile(volume[mask], LEVELS)
    own = np.maximum.accumulate(own + np.arange(len(own)) * 1e-9)  # strictly increasing for np.interp
    return np.where(mask, np.interp(volume, own, target), 0.0).astype(np.float32)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--weights", type=Path, help="default: the bundled model")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args(argv)

    model = load_model(args.weights)
    contrasts = model.contrasts
    training = list(model.card["training"]["train_subjects"])
    subjects = discover_subjects(args.data, contrasts)
    if len(set(training) & {s.name for s in subjects}) < 2:
        parser.error(f"{args.data} holds fewer than two of the model's training subjects ({', '.join(training)}): "
                     "the standard histogram needs two with the scored one left out")
    studies = {s.name: prepare_subject(s, contrasts) for s in subjects}
    reals = {(name, key): landmarks(study.images[key], study.mask) for name, study in studies.items() for key in contrasts}

    rows = []
    for name, study in studies.items():
        stack = model_inputs(model, study)
        for key in contrasts:
            print(f"{name}: {display_name(key)}", file=sys.stderr, flush=True)
            imputed = synthesise(model.generator, stack, contrasts.index(key), study.mask, smoothing=model_smoothing(model, study))
            standard = np.mean([reals[(other, key)] for other in training if other != name and other in studies], axis=0)
            versions = {"as imputed": imputed, "standard": map_histogram(imputed, study.mask, standard),
                        "oracle": map_histogram(imputed, study.mask, reals[(name, key)])}
            for mapping, volume in versions.items():
                scores = image_metrics(study.images[key], volume, study.mask)
                rows.append({"subject": name, "training_subject": name in training, "contrast": key, "mapping": mapping,
                             "ssim_brain": round(scores["ssim_brain"], 4), "psnr_brain": round(scores["psnr_brain"], 3)})

    def training_mean(key: str, mapping: str, metric: str) -> float:
        return float(np.mean([r[metric] for r in rows if r["contrast"] == key and r["mapping"] == mapping and r["training_subject"]]))

    gains = {key: {metric: training_mean(key, "standard", metric) - training_mean(key, "as imputed", metric)
                   for metric in ("ssim_brain", "psnr_brain")} for key in contrasts}
    ship = all(gain >= 0 for by_metric in gains.values() for gain in by_metric.values())
    report = {
        "model": model.name, "weights_sha256": model.card["sha256"], "normalisation": NORMALISATION,
        "landmarks": f"brain percentiles {list(LEVELS)} after BraSyn normalisation",
        "smoothing": "the model card's (as shipped)", "rule": RULE,
        "training_subjects": training, "mean_gain_of_standard_on_training_subjects": gains, "ship_standard": ship,
        "results": rows,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(args.out / "intensity_mapping.json", json.dumps(report, indent=2) + "\n")
    lines = [f"Model {model.name}. {NORMALISATION}. Brain SSIM / PSNR (dB), each contrast imputed from the others; "
             "* marks a training subject.", "",
             "| subject | contrast | " + " | ".join(MAPPINGS) + " |", "|---|---|" + "---|" * len(MAPPINGS)]
    for name in studies:
        for key in contrasts:
            cells = {r["mapping"]: f"{r['ssim_brain']:.3f} / {r['psnr_brain']:.2f}" for r in rows if r["subject"] == name and r["contrast"] == key}
            lines.append(f"| {name}{'*' if name in training else ''} | {display_name(key)} | " + " | ".join(cells[m] for m in MAPPINGS) + " |")
    lines += ["", "Mean change from 'standard' on the training subjects (SSIM / dB): "
              + ", ".join(f"{display_name(k)} {g['ssim_brain']:+.3f} / {g['psnr_brain']:+.2f}" for k, g in gains.items())
              + f". Rule: {RULE}: {'ship' if ship else 'do not ship'}."]
    write_text_atomic(args.out / "intensity_mapping.md", "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
