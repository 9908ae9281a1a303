"""How far does the phase-1 recipe's validation score move with the seed alone? (issue 18)

The learning curve's 22-subject run (seed 0) and the runs named by --seed-run (the same recipe with another --seed, trained
by recipe_experiments.py), each scored as a recipe variant is (the exported model on the validation subjects' whole volumes):
per contrast the mean brain SSIM and PSNR of each run, their standard deviation over the seeds, and the smallest change
between two arms' means that a test with K seeds an arm resolves at two standard errors, 2 x SD x sqrt(2 / K). A recipe
change smaller than that for the K planned cannot be told from the seed, whatever the rule.

    python benchmarks/seed_noise.py --runs runs/recipes --seed-run reference_seed1="--seed 1" --seed-run reference_seed2="--seed 2"
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "CollaGANImpute"))

from CollaGANImputeLib.core.contrasts import display_name  # noqa: E402
from CollaGANImputeLib.core.metrics import NORMALISATION  # noqa: E402
from learning_curve import CONTRASTS, VALIDATION, pair  # noqa: E402
from recipe_experiments import STEPS, reference_run  # noqa: E402
from seed_pairs import METRICS, curve_row, scored_runs, write_report  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SEEDS_AN_ARM = (1, 2, 3, 4, 6)


def spread(rows: list[dict]) -> dict:
    """Per contrast and metric: the standard deviation over the runs (n - 1) and the resolvable change for K seeds an arm."""
    result = {}
    for key in CONTRASTS:
        result[key] = {}
        for metric in METRICS:
            values = [row["mean"][key][metric] for row in rows]
            sd = float(np.std(values, ddof=1))
            result[key][metric] = {"sd": sd, "range": float(np.ptp(values)),
                                   "resolvable_change": {k: 2 * sd * float(np.sqrt(2 / k)) for k in SEEDS_AN_ARM}}
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "training.json")
    parser.add_argument("--runs", type=Path, required=True, help="the run folders recipe_experiments.py trained")
    parser.add_argument("--seed-run", action="append", required=True, metavar='NAME="--seed S"', help="the recipe run again with another seed")
    parser.add_argument("--curve", type=Path, default=REPO / "benchmarks" / "results" / "learning_curve.json")
    parser.add_argument("--stem", default="seed_noise", help="the report's file names")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    args = parser.parse_args(argv)
    seeds = [0]  # the learning curve's run
    for item in args.seed_run:
        options = item.partition("=")[2].split()
        if len(options) != 2 or options[0] != "--seed":
            parser.error(f"--seed-run {item}: only the seed may differ from the recipe (NAME=\"--seed S\")")
        seeds.append(int(options[1]))

    largest = reference_run(args.curve)
    runs = [curve_row(largest), *scored_runs(args.runs, args.seed_run, largest["train_subjects"], args.data.resolve())]
    rows = [{**row, "seed": seed} for row, seed in zip(runs, seeds)]
    noise = spread(rows)
    report = {"steps": STEPS, "validation_subjects": VALIDATION, "normalisation": NORMALISATION, "runs": rows, "spread": noise,
              "resolvable_change": "2 x SD x sqrt(2 / K): two standard errors of the difference of two arms' means of K seeds each"}

    names = [display_name(k) for k in CONTRASTS]
    lines = [f"The phase-1 recipe ({STEPS} steps, 22 training subjects) with {len(rows)} seeds, scored on the validation subjects "
             f"({', '.join(VALIDATION)}), whole volumes, brain SSIM / PSNR (dB). {NORMALISATION}.", "",
             "| run | seed | " + " | ".join(names) + " |", "|---|---|" + "---|" * len(names)]
    for row in rows:
        lines.append(f"| {row['name']} | {row['seed']} | " + " | ".join(pair(row["mean"][k]) for k in CONTRASTS) + " |")
    lines.append("| **SD over seeds** | | " + " | ".join(
        f"**{noise[k]['ssim_brain']['sd']:.3f} / {noise[k]['psnr_brain']['sd']:.2f}**" for k in CONTRASTS) + " |")
    lines += ["", "Smallest change of the mean brain SSIM between two arms that K seeds an arm resolve (2 x SD x sqrt(2 / K)):", "",
              "| seeds an arm | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for k in SEEDS_AN_ARM:
        lines.append(f"| {k} | " + " | ".join(f"{noise[key]['ssim_brain']['resolvable_change'][k]:.3f}" for key in CONTRASTS) + " |")
    write_report(args.out, args.stem, report, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
