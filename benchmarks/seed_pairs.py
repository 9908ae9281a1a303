"""Is a recipe change more than one run's noise? The same rule on the mean of several seeds an arm (issue 18).

The reference arm is the learning curve's 22-subject run (seed 0) plus the runs named by --reference; the change arm
is the runs named by --change. Every run is the learning curve's recipe for its 1500 steps with the options given
(checked against its card, as recipe_experiments.py does), trained by recipe_experiments.py into --runs, and scored
the same way (the exported model on the validation subjects' whole volumes, read from the run's evaluation cache).
The rule (docs/training.md, "A second seed of the gradient loss") is recipe_experiments.verdict on the two arms'
means, contrast by contrast.

    python benchmarks/seed_pairs.py --runs runs/recipes --stem gradient_seeds --reference reference_seed1="--seed 1" \\
        --change gradient1="--direct-gradient 1" --change gradient1_seed1="--direct-gradient 1 --seed 1"
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "CollaGANImpute"))

from CollaGANImputeLib.core.contrasts import display_name  # noqa: E402
from CollaGANImputeLib.core.metrics import NORMALISATION  # noqa: E402
from CollaGANImputeLib.io.atomic import write_text_atomic  # noqa: E402
from learning_curve import CONTRASTS, VALIDATION, pair  # noqa: E402
from recipe_experiments import RULES, STEPS, reference_run, scored_variant, verdict  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
METRICS = ("ssim_brain", "psnr_brain")


def scored_runs(runs: Path, items: list[str], train_subjects: list[str], data: Path) -> list[dict]:
    """Each NAME="OPTIONS" run's card checked against the recipe with its options, and its whole-volume means."""
    rows = []
    for item in items:
        name, _, text = item.partition("=")
        options = shlex.split(text)
        weights = (runs / name / f"{name}.safetensors").resolve()
        if not weights.exists():
            raise SystemExit(f"{weights}: no exported model; train it first with recipe_experiments.py --variant {item}")
        card, final = scored_variant(weights, options, train_subjects, data)
        rows.append({"name": name, "options": options, "weights_sha256": card["sha256"], "mean": final["mean"]})
    return rows


def curve_row(largest: dict) -> dict:
    """The learning curve's 22-subject run (seed 0, no options changed) as a row like scored_runs' rows."""
    return {"name": "reference", "options": [], "weights_sha256": largest["weights_sha256"], "mean": largest["final"]["mean"]}


def write_report(out: Path, stem: str, report: dict, lines: list[str]) -> None:
    """The report as STEM.json and its tables as STEM.md under `out`, which are also printed."""
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / f"{stem}.json", json.dumps(report, indent=2) + "\n")
    text = "\n".join(lines) + "\n"
    write_text_atomic(out / f"{stem}.md", text)
    print(text)


def arm_mean(rows: list[dict]) -> dict:
    return {k: {m: float(np.mean([row["mean"][k][m] for row in rows])) for m in METRICS} for k in CONTRASTS}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "training.json")
    parser.add_argument("--runs", type=Path, required=True, help="the run folders recipe_experiments.py trained")
    parser.add_argument("--reference", action="append", default=[], metavar='NAME="OPTIONS"', help="more runs of the reference arm")
    parser.add_argument("--change", action="append", required=True, metavar='NAME="OPTIONS"', help="the runs of the change's arm")
    parser.add_argument("--curve", type=Path, default=REPO / "benchmarks" / "results" / "learning_curve.json")
    parser.add_argument("--rule", choices=sorted(RULES), default="ssim")
    parser.add_argument("--stem", required=True, help="the report's file names")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    args = parser.parse_args(argv)
    data = args.data.resolve()

    largest = reference_run(args.curve)
    arms = {"reference": [curve_row(largest), *scored_runs(args.runs, args.reference, largest["train_subjects"], data)],
            "change": scored_runs(args.runs, args.change, largest["train_subjects"], data)}
    means = {name: arm_mean(rows) for name, rows in arms.items()}
    decision = verdict(means["change"], means["reference"], args.rule)

    report = {"steps": STEPS, "validation_subjects": VALIDATION, "normalisation": NORMALISATION, "rule": RULES[args.rule] + ", on the arms' means",
              "arms": arms, "means": means, "verdict": decision}
    lines = [f"Mean over the validation subjects ({', '.join(VALIDATION)}) after {STEPS} steps of the phase-1 recipe, whole volumes, "
             f"brain SSIM / PSNR (dB). {NORMALISATION}. Rule: {report['rule']}.", "",
             "| arm | run | options | " + " | ".join(display_name(k) for k in CONTRASTS) + " |", "|---|---|---|" + "---|" * len(CONTRASTS)]
    for arm, rows in arms.items():
        for row in rows:
            lines.append(f"| {arm} | {row['name']} | {' '.join(row['options']) or '(learning curve, 22 subjects)'} | "
                         + " | ".join(pair(row["mean"][k]) for k in CONTRASTS) + " |")
        lines.append(f"| {arm} | **mean of {len(rows)}** | | " + " | ".join(f"**{pair(means[arm][k])}**" for k in CONTRASTS) + " |")
    change = decision[f"{args.rule}_change"]
    lines += ["", f"{args.rule.upper()} change of the means: " + ", ".join(f"{display_name(k)} {change[k]:+.3f}" for k in CONTRASTS)
              + f"; carried: {'yes' if decision['carried'] else 'no'}."]
    write_report(args.out, args.stem, report, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
