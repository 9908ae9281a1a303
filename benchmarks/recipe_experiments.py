"""Which change to the phase-1 recipe moves the held-out quality? Variants at equal compute (issue 18).

Each variant is the learning curve's recipe (learning_curve.RECIPE) on all 22 training subjects for the same
1500 steps, with a few options changed (`--variant NAME="OPTIONS"`), and is compared with a reference: the
learning curve's 22-subject run (benchmarks/results/learning_curve.json) or another variant
(`--against NAME=REFERENCE`). Scored as the learning curve is: the exported model on the validation
subjects' whole volumes (evaluation.evaluate_subjects), plus the training's own 2-D validation over steps.

The rules of docs/training.md, each written before any variant it judges was scored. `--rule ssim` ("Recipe
experiments"): a change is carried into the next bundled training if its mean brain SSIM is higher than its
reference's for at least three of the four contrasts and lower by no more than 0.01 for any. `--rule psnr`
("The intensity distribution as a loss"), for changes aimed at the intensity distribution: mean brain PSNR
higher for at least three of the four contrasts, and mean brain SSIM lower by no more than 0.01 for any.
`--stem` names the report (default recipe_experiments), so that a later set of experiments keeps its own.

A variant whose run folder holds its exported model is read, not trained again; an interrupted one resumes.

    python benchmarks/recipe_experiments.py --runs runs/recipes \\
        --variant one_missing="--missing-max 1" --variant ema="--ema 0.995" \\
        --variant wide_ema="--branch-width 12 --decoder-width 40 --ema 0.995" --against wide_ema=ema
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "CollaGANImpute"))

from CollaGANImputeLib.core.contrasts import display_name
from CollaGANImputeLib.core.metrics import NORMALISATION
from CollaGANImputeLib.io.atomic import write_text_atomic
from CollaGANImputeLib.model.weights import load_model
from learning_curve import (  # noqa: E402
    CONTRASTS,
    RECIPE,
    VALIDATION,
    command_options,
    curve_over_steps,
    differing_options,
    evaluate,
    pair,
    pyplot,
    save_png,
    train,
)

REPO = Path(__file__).resolve().parents[1]
STEPS = 1500  # the learning curve's, so that its 22-subject run is the reference
REFERENCE = "reference"  # the learning curve's 22-subject run
TOLERANCE = 0.01  # the rule's largest allowed SSIM loss on any contrast


def recipe_with(options: list[str]) -> list[str]:
    """RECIPE with the variant's options replacing the recipe's own values, then any it lacks appended."""
    given = command_options(shlex.join(options))
    merged = []
    for flag, value in zip(RECIPE[::2], RECIPE[1::2]):
        merged += [flag, given.pop(flag, value)]
    for flag, value in given.items():
        merged += [flag] + ([value] if value else [])
    return merged


def check_run(weights: Path, options: list[str], train_subjects: list[str]) -> dict:
    """The card must record the recipe with exactly the variant's changes, on the reference's subjects."""
    card = load_model(weights).card
    training = card["training"]
    problems = differing_options(training["commands"][0], recipe_with(options))
    if training["steps"] != STEPS:
        problems.append(f"{training['steps']} steps, not {STEPS}")
    if training["train_subjects"] != train_subjects:
        problems.append("other training subjects than the reference's")
    if problems:
        raise SystemExit(f"{weights}: " + "; ".join(problems))
    return card


def reference_run(curve_path: Path) -> dict:
    """The learning curve's 22-subject run, every variant's reference; refused unless it ran STEPS steps on VALIDATION."""
    curve = json.loads(curve_path.read_text(encoding="utf-8"))
    if curve["steps"] != STEPS or curve["validation_subjects"] != VALIDATION:
        raise SystemExit(f"{curve_path}: not {STEPS} steps on {', '.join(VALIDATION)}")
    return curve["results"][-1]


def scored_variant(weights: Path, options: list[str], train_subjects: list[str], data: Path) -> tuple[dict, dict]:
    """A variant's exported model: its card, checked by check_run, and its whole-volume evaluation (cached beside it)."""
    card = check_run(weights, options, train_subjects)
    return card, evaluate(load_model(weights), data, VALIDATION, weights.parent / "evaluation.json")


RULES = {"ssim": f"carried if mean brain SSIM rises for >= 3 of 4 contrasts and falls by <= {TOLERANCE} for any",
         "psnr": f"carried if mean brain PSNR rises for >= 3 of 4 contrasts and mean brain SSIM falls by <= {TOLERANCE} for any"}


def verdict(variant: dict, reference: dict, rule: str = "ssim") -> dict:
    """The rule, per contrast: the changes in mean brain SSIM and PSNR, and whether the change is carried."""
    changes = {f"{m}_change": {k: variant[k][f"{m}_brain"] - reference[k][f"{m}_brain"] for k in CONTRASTS} for m in RULES}
    rising = changes[f"{rule}_change"].values()
    carried = sum(d > 0 for d in rising) >= 3 and min(changes["ssim_change"].values()) >= -TOLERANCE
    return {**changes, "carried": carried}


def figure(rows: list[dict], path: Path, metric: str) -> None:
    fig, axes = pyplot().subplots(1, len(CONTRASTS), figsize=(12, 3.2), sharey=True)
    for axis, key in zip(axes, CONTRASTS):
        for row in rows:
            steps = [int(s) for s in row["by_step"]]
            axis.plot(steps, [row["by_step"][str(s)][key][metric] for s in steps], "o-", ms=3, label=row["name"])
        axis.set_title(display_name(key), fontsize=10)
        axis.set_xlabel("step")
    axes[0].set_ylabel(f"2-D validation brain {'SSIM' if metric == 'ssim_brain' else 'PSNR (dB)'}")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    save_png(fig, path, 100)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "training.json")
    parser.add_argument("--runs", type=Path, required=True, help="one run folder per variant is made (or read) here")
    parser.add_argument("--variant", action="append", default=[], metavar='NAME="OPTIONS"', help="train options changed (repeatable)")
    parser.add_argument("--against", action="append", default=[], metavar="NAME=OTHER",
                        help=f"compare NAME with variant OTHER instead of the {REFERENCE} (learning curve, 22 subjects)")
    parser.add_argument("--curve", type=Path, default=REPO / "benchmarks" / "results" / "learning_curve.json")
    parser.add_argument("--rule", choices=sorted(RULES), default="ssim", help="which rule decides (see above)")
    parser.add_argument("--stem", default="recipe_experiments", help="the report's file names")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    args = parser.parse_args(argv)
    data = args.data.resolve()

    largest = reference_run(args.curve)
    rows = [{"name": REFERENCE, "options": [], "weights_sha256": largest["weights_sha256"], "time_s": largest["time_s"],
             "final": largest["final"], "by_step": largest["by_step"], "against": None}]
    against = dict(item.split("=", 1) for item in args.against)
    for item in args.variant:
        name, _, text = item.partition("=")
        options = shlex.split(text)
        run = (args.runs / name).resolve()
        weights = run / f"{name}.safetensors"
        if not weights.exists():
            train(run, name, data, VALIDATION, STEPS, recipe_with(options), f"recipe experiment: {' '.join(options)}, {STEPS} steps",
                  REPO / "CollaGANImpute")
        card, final = scored_variant(weights, options, largest["train_subjects"], data)
        rows.append({"name": name, "options": options, "weights_sha256": card["sha256"], "time_s": card["training"]["time_s"],
                     "final": final,
                     "by_step": curve_over_steps(run, VALIDATION, STEPS), "against": against.get(name, REFERENCE)})
    by_name = {row["name"]: row for row in rows}
    unknown = sorted({row["against"] for row in rows[1:]} - set(by_name))
    if unknown:
        raise SystemExit(f"--against: no variant {', '.join(unknown)}")
    for row in rows[1:]:
        row["verdict"] = verdict(row["final"]["mean"], by_name[row["against"]]["final"]["mean"], args.rule)

    args.out.mkdir(parents=True, exist_ok=True)
    report = {"steps": STEPS, "validation_subjects": VALIDATION, "recipe": RECIPE, "normalisation": NORMALISATION,
              "rule": RULES[args.rule], "variants": rows}
    write_text_atomic(args.out / f"{args.stem}.json", json.dumps(report, indent=2) + "\n")
    header = "| variant | changed options | compared with | " + " | ".join(f"{display_name(k)} SSIM / PSNR" for k in CONTRASTS) + " | carried |"
    lines = [f"Mean over the validation subjects ({', '.join(VALIDATION)}) after {STEPS} steps of the phase-1 recipe, whole volumes, "
             f"brain SSIM / PSNR (dB); in brackets the {args.rule.upper()} change against the variant compared with. {NORMALISATION}. "
             f"Rule: {RULES[args.rule]}.", "",
             header, "|---|---|---|" + "---|" * len(CONTRASTS) + "---|"]
    for row in rows:
        mean, change = row["final"]["mean"], row.get("verdict", {}).get(f"{args.rule}_change")
        cells = [pair(mean[k]) + (f" ({change[k]:+.{3 if args.rule == 'ssim' else 2}f})" if change else "") for k in CONTRASTS]
        carried = "" if "verdict" not in row else ("yes" if row["verdict"]["carried"] else "no")
        lines.append(f"| {row['name']} | {' '.join(row['options']) or '(learning curve, 22 subjects)'} | {row['against'] or ''} | "
                     + " | ".join(cells) + f" | {carried} |")
    lines += ["", "Per subject, brain SSIM:", "",
              "| variant | subject | " + " | ".join(display_name(k) for k in CONTRASTS) + " |", "|---|---|" + "---|" * len(CONTRASTS)]
    for row in rows:
        for subject in VALIDATION:
            scores = {r["contrast"]: r["ssim_brain"] for r in row["final"]["results"] if r["subject"] == subject}
            lines.append(f"| {row['name']} | {subject} | " + " | ".join(f"{scores[k]:.3f}" for k in CONTRASTS) + " |")
    text = "\n".join(lines) + "\n"
    write_text_atomic(args.out / f"{args.stem}.md", text)
    figure(rows, args.out / f"{args.stem}.png", f"{args.rule}_brain")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
