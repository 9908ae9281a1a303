"""Several trained models side by side on held-out subjects: does a training choice help?

Each model imputes each contrast of each held-out subject from the other three, with its own card's
inference settings and input preprocessing (synthesis.model_inputs: N4 first for a model trained with
`--bias-correct`), scored over the brain (metrics.py, BraSyn normalisation) against the real volume as
acquired and against it after N4 (bias_field.py), whose coil shading no imputation carries. This is
`collagan-impute evaluate` for a list of models, with one table; quality.py holds the baselines.

    python benchmarks/compare_models.py --data ../shared/data/manifest.json \
        --model shipped=CollaGANImpute/Resources/Models/collagan_brats.safetensors --model n4=runs/n4/model.safetensors \
        [--held-out NAME] [--contrast KEY ...] [--as-acquired-only] [--alone] [--landmarks-from LABEL] [--stem compare_models]

Each model imputes by the default path (three slice orientations, bf16 where the CPU computes it natively).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "CollaGANImpute"))

from CollaGANImputeLib.analysis.evaluation import evaluate_subjects
from CollaGANImputeLib.core.contrasts import display_name
from CollaGANImputeLib.core.metrics import NORMALISATION
from CollaGANImputeLib.io.atomic import write_text_atomic
from CollaGANImputeLib.model.weights import load_model
from CollaGANImputeLib.preparation.bias_field import METHOD as BIAS_METHOD
from CollaGANImputeLib.preparation.data import discover_subjects, only_subjects

REFERENCES = {"as acquired": False, "N4 real": True}


def labelled(text: str) -> tuple[str, Path]:
    label, separator, path = text.partition("=")
    if not separator or not label or not path:
        raise argparse.ArgumentTypeError(f"--model {text!r}: expected LABEL=WEIGHTS")
    return label, Path(path)


def markdown_table(report: dict) -> str:
    labels = list(report["models"])
    header = "| contrast | reference | " + " | ".join(f"{label}: SSIM / PSNR (dB)" for label in labels) + " |"
    lines = [header, "|---|---|" + "---|" * len(labels)]
    for key in report["contrasts"]:
        for reference in report["references"]:
            cells = [report["models"][label][reference][key] for label in labels]
            lines.append(f"| {display_name(key)} | {reference} | "
                         + " | ".join(f"{c['ssim_brain']:.3f} / {c['psnr_brain']:.2f}" for c in cells) + " |")
    for reference in report["references"]:
        means = [sum(report["models"][label][reference][key]["ssim_brain"] for key in report["contrasts"]) / len(report["contrasts"])
                 for label in labels]
        lines.append(f"| mean brain SSIM | {reference} | " + " | ".join(f"{mean:.4f}" for mean in means) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--model", type=labelled, action="append", required=True, metavar="LABEL=WEIGHTS", help="repeatable")
    parser.add_argument("--held-out", action="append", default=[], help="default: the first model's validation subjects")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--stem", default="compare_models", help="output file names: STEM.json and STEM.md")
    parser.add_argument("--contrast", action="append", default=[], help="repeatable; the contrasts imputed (default: all)")
    parser.add_argument("--as-acquired-only", action="store_true", help="score against the real volume as acquired only (half the time)")
    parser.add_argument("--alone", action="store_true", help="each model imputes alone, its companion set aside")
    parser.add_argument("--landmarks-from", metavar="LABEL",
                        help="every model gets this model's landmark mapping (for a rule that keeps a mapping as it is)")
    args = parser.parse_args(argv)
    references = {"as acquired": False} if args.as_acquired_only else REFERENCES

    paths = dict(args.model)
    if args.landmarks_from and args.landmarks_from not in paths:
        parser.error(f"--landmarks-from {args.landmarks_from}: no --model has that label ({', '.join(paths)})")
    models = {label: load_model(path) for label, path in paths.items()}
    for model in models.values():
        if args.alone:
            model.companion = None
        if args.landmarks_from:
            model.card["intensity_landmarks"] = models[args.landmarks_from].card["intensity_landmarks"]
    first = next(iter(models.values()))
    held_out = args.held_out or first.card["training"]["validation_subjects"]
    subjects = only_subjects(discover_subjects(args.data, first.contrasts), held_out, args.data)
    contrasts = args.contrast or first.contrasts
    described = {"as acquired": "the real volume as acquired", "N4 real": f"the real volume after {BIAS_METHOD}"}
    report = {"held_out": held_out, "contrasts": contrasts, "normalisation": NORMALISATION,
              "references": {name: described[name] for name in references}, "models": {}}
    for label, model in models.items():
        entry = {"weights": str(paths[label]), "sha256": model.card["sha256"], "alone": args.alone, "landmarks_from": args.landmarks_from,
                 "bias_corrected_inputs": model.bias_corrected, "training_commands": model.card.get("training", {}).get("commands", [])}
        for reference, corrected in references.items():
            print(f"{label}: against the real volume {reference}", file=sys.stderr, flush=True)
            evaluated = evaluate_subjects(model, subjects, contrasts, bias_corrected=corrected)
            entry[reference], entry[f"{reference}, per subject"] = evaluated["mean"], evaluated["results"]
            entry["planes"], entry["precision"] = evaluated["planes"], evaluated["precision"]
        report["models"][label] = entry

    args.out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(args.out / f"{args.stem}.json", json.dumps(report, indent=2) + "\n")
    table = markdown_table(report)
    write_text_atomic(args.out / f"{args.stem}.md", f"Held-out subject(s): {', '.join(held_out)}. Brain SSIM / PSNR; {NORMALISATION}.\n\n"
                      + table)
    print(table)
    print(f"wrote {args.out / (args.stem + '.json')} and {args.stem}.md", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
