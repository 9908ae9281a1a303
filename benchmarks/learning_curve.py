"""Is the quality limited by the data? Held-out quality against the number of training subjects (3, 6, 12
and all) at equal compute (issue 18).

Every configuration trains with the same command, the phase-1 recipe of the bundled model's training
(RECIPE), for the same number of steps from the same seed, validating on the same subjects (the four of
docs/validation_rule.md, or a card's validation_subjects); it differs only in its training subjects: the
first K of the training list, in its order (a card's train_subjects, by default the data's subjects
without the validation ones, the order the train command itself keeps). The train command trains on every
subject of its data that is not a validation subject, so each configuration gets its own manifest of its K
training and the validation subjects, written into its run folder.

Equal compute without a time budget in the train command: a step is one generator pass over a batch of 8
random 128 x 128 crops whatever K is, and validation is the same subjects and slices every 250 steps, so
equal steps are equal CPU time (only reading the K subjects before the first step differs). Each run's
own training time (its card's time_s) is reported beside its figures to show it.

Quality is measured twice. The exported model of each configuration is evaluated on the validation
subjects' whole volumes (evaluation.evaluate_subjects: 3-D SSIM, the protocol of quality.py's CollaGAN
row); that is the curve. The training's own validation (validation.csv: 2-D, evenly spaced slices, every
250 steps) is the curve over steps; its slices sit on the run's canvas, which is the brain box of every
subject the run read, so it can differ slightly between configurations (instance normalisation sees the
background), which the whole-volume evaluation does not.

A configuration whose run folder already holds its exported model is read, not trained again; an
interrupted one resumes from its checkpoint. `--reuse NAME=DIR` reads a run made elsewhere (the bundled
model's own run for the largest configuration, say), after checking its card: the same subjects in the
same order, the same validation subjects, the same number of steps, and every option of RECIPE.

    python benchmarks/learning_curve.py --runs runs/curve --steps S [--reuse subjects22=RUN]
"""

from __future__ import annotations

import argparse
import csv
import json
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "CollaGANImpute"))

from CollaGANImputeLib.analysis.evaluation import METRIC_NAMES, evaluate_subjects
from CollaGANImputeLib.core.contrasts import DEFAULT_CONTRASTS, display_name
from CollaGANImputeLib.core.metrics import NORMALISATION
from CollaGANImputeLib.io.atomic import atomic_path, write_text_atomic
from CollaGANImputeLib.model.weights import Model, load_model
from CollaGANImputeLib.preparation.data import discover_subjects, only_subjects

REPO = Path(__file__).resolve().parents[1]
# docs/validation_rule.md: the bundled model's validation subjects, fixed before any training on training.json.
VALIDATION = ["BraTS-GLI-00001-000", "TCGA-DU-7294", "Brats18_2013_11_1", "OpenMS-patient07"]
# The phase-1 recipe (direct losses, any subset missing), without data, output, steps and subjects.
RECIPE = ["--branch-width", "8", "--decoder-width", "32", "--batch-size", "8", "--crop", "128", "--optimizer", "adamw",
          "--lr", "1e-3", "--weight-decay", "0.01", "--decay-every", "500", "--decay-rate", "0.7", "--cycle-l1", "0",
          "--cycle-ssim", "0", "--adversarial", "0", "--direct-l1", "1", "--direct-ssim", "1", "--missing-max", "3",
          "--validate-every", "250", "--checkpoint-every", "50", "--val-slices", "16"]
SIZES = "3,6,12,all"
CURVE_METRICS = ("ssim_brain", "psnr_brain")
CONTRASTS = list(DEFAULT_CONTRASTS)  # the train command's default


def command_options(command: str) -> dict[str, str]:
    """A recorded command line's options, --flag -> value (the last one given; '' for a bare flag)."""
    words, options = shlex.split(command), {}
    for i, word in enumerate(words):
        if word.startswith("--"):
            options[word] = words[i + 1] if i + 1 < len(words) and not words[i + 1].startswith("--") else ""
    return options


def differing_options(command: str, expected: list[str]) -> list[str]:
    """'FLAG VALUE, not EXPECTED' for each option of `expected` (flag, value, ...) that `command` sets otherwise."""
    recorded = command_options(command)
    return [f"{flag} {recorded.get(flag, '(absent)')}, not {value}"
            for flag, value in command_options(shlex.join(expected)).items() if recorded.get(flag) != value]


def check_reused(run: Path, name: str, train_subjects: list[str], validation: list[str], steps: int) -> Path:
    """A reused run must be this configuration's command on its subjects, or its figures compare nothing.
    Returns its exported weights."""
    cards = [p for p in run.glob("*.json") if p.name != "validation.json" and p.with_suffix(".safetensors").exists()]
    if len(cards) != 1:
        raise SystemExit(f"--reuse {name}={run}: expected one exported model (NAME.safetensors with NAME.json), found {len(cards)}")
    training = json.loads(cards[0].read_text(encoding="utf-8"))["training"]
    problems = []
    if training.get("train_subjects") != train_subjects:
        problems.append(f"trained on {training.get('train_subjects')}, not {train_subjects} (in that order)")
    if sorted(training.get("validation_subjects", [])) != sorted(validation):
        problems.append(f"validated on {training.get('validation_subjects')}, not {validation}")
    if training.get("steps") != steps:
        problems.append(f"{training.get('steps')} steps, not {steps} (equal steps are the equal compute)")
    commands = training.get("commands") or [""]
    if training.get("initialised_from") or any("--resume" not in command_options(c) for c in commands[1:]):
        problems.append("it started from another run's networks or was continued by a command other than --resume")
    problems += [f"its command has {difference}"  # a --resume keeps the first command's settings
                 for difference in differing_options(commands[0], RECIPE)]
    if problems:
        raise SystemExit(f"--reuse {name}={run}: " + "; ".join(problems))
    return cards[0].with_suffix(".safetensors")


def write_manifest(run: Path, data: Path, names: list[str]) -> Path:
    """The data's manifest cut to `names` (training subjects first, in order), folders made absolute so that
    it works from the run folder. A run folder holding another configuration's manifest is refused."""
    entries = json.loads(data.read_text(encoding="utf-8"))["subjects"]
    subjects = {n: {**entries[n], "dir": str((data.parent / entries[n].get("dir", n)).resolve())} for n in names}
    text = json.dumps({"description": f"learning-curve subset of {data}", "subjects": subjects}, indent=2) + "\n"
    path = run / "manifest.json"
    if path.exists() and path.read_text(encoding="utf-8") != text:
        raise SystemExit(f"{path} lists other subjects than this configuration's: a run folder from another configuration")
    run.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, text)
    return path


def train(run: Path, name: str, data: Path, validation: list[str], steps: int, options: list[str], description: str, code: Path) -> None:
    """The train command with `options` (the recipe) on `data`, run from `code` (a folder holding
    CollaGANImputeLib); a run folder holding a checkpoint is resumed with its saved settings."""
    command = [sys.executable, "-m", "CollaGANImputeLib", "train", "--data", str(data), "--out", str(run), "--steps", str(steps),
               "--progress", "lines"]
    if (run / "checkpoint.safetensors").exists():
        command.append("--resume")  # the run's saved settings apply
    else:
        command += [*[a for v in validation for a in ("--validation", v)], *options, "--name", name, "--description", description]
    print(" ".join(shlex.quote(c) for c in command), file=sys.stderr)
    subprocess.run(command, check=True, cwd=code)


def curve_over_steps(run: Path, validation: list[str], steps: int) -> dict:
    """validation.csv up to `steps`: per step, per contrast, the mean over the validation subjects (and each subject's)."""
    with open(run / "validation.csv", newline="", encoding="utf-8") as handle:
        rows = [r for r in csv.DictReader(handle) if r["subject"] in validation and int(r["step"]) <= steps]
    out = {}
    for step in sorted({int(r["step"]) for r in rows}):
        out[str(step)] = {}
        for key in CONTRASTS:
            chosen = [r for r in rows if int(r["step"]) == step and r["contrast"] == key]
            out[str(step)][key] = {**{m: float(np.mean([float(r[m]) for r in chosen])) for m in CURVE_METRICS},
                                   "by_subject": {r["subject"]: {m: float(r[m]) for m in CURVE_METRICS} for r in chosen}}
    return out


def evaluate(model: Model, data: Path, validation: list[str], cache: Path) -> dict:
    """The exported model evaluated on the validation subjects' whole volumes; kept in `cache` (by the
    weights' sha256 and the subjects) so that adding a configuration does not evaluate the others again."""
    key = {"weights_sha256": model.card["sha256"], "validation": validation}
    if cache.exists():
        kept = json.loads(cache.read_text(encoding="utf-8"))
        if kept["key"] == key:
            return kept["evaluation"]
    print(f"evaluating {model.weights_path} on {', '.join(validation)}", file=sys.stderr)
    result = evaluate_subjects(model, only_subjects(discover_subjects(data, model.contrasts), validation, data))
    evaluation = {"mean": result["mean"], "results": result["results"]}
    cache.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(cache, json.dumps({"key": key, "evaluation": evaluation}, indent=2) + "\n")
    return evaluation


def pair(entry: dict) -> str:
    return f"{entry['ssim_brain']:.3f} / {entry['psnr_brain']:.2f}"


def final_table(results: list[dict]) -> str:
    lines = ["| training subjects | training time (s) | " + " | ".join(f"{display_name(k)} SSIM / PSNR" for k in CONTRASTS) + " |",
             "|---|---|" + "---|" * len(CONTRASTS)]
    lines += [f"| {r['subjects']} | {r['time_s']:.0f} | " + " | ".join(pair(r["final"]["mean"][k]) for k in CONTRASTS) + " |" for r in results]
    return "\n".join(lines) + "\n"


def steps_table(results: list[dict]) -> str:
    lines = ["| training subjects | step | " + " | ".join(f"{display_name(k)} SSIM / PSNR" for k in CONTRASTS) + " |",
             "|---|---|" + "---|" * len(CONTRASTS)]
    for r in results:
        for step, by_contrast in r["by_step"].items():
            lines.append(f"| {r['subjects']} | {step} | " + " | ".join(pair(by_contrast[k]) for k in CONTRASTS) + " |")
    return "\n".join(lines) + "\n"


def pyplot():
    """matplotlib's pyplot drawing off screen (the "bench" extra)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_png(fig, path: Path, dpi: int) -> None:
    """Write the figure atomically and free it."""
    with atomic_path(path) as temp:
        fig.savefig(temp, format="png", dpi=dpi)
    pyplot().close(fig)


def figure(results: list[dict], steps: int, path: Path) -> None:
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
    sizes = [r["subjects"] for r in results]
    for axis, metric, label in zip(axes, CURVE_METRICS, ("brain SSIM", "brain PSNR (dB)")):
        for key in CONTRASTS:
            axis.plot(sizes, [r["final"]["mean"][key][metric] for r in results], "o-", label=display_name(key))
        axis.set_xscale("log", base=2)
        axis.set_xticks(sizes, [str(s) for s in sizes])
        axis.set_xlabel("training subjects")
        axis.set_ylabel(label)
    axes[0].legend(fontsize=8)
    fig.suptitle(f"validation subjects, whole volumes, after {steps} steps (equal compute)", fontsize=10)
    fig.tight_layout()
    save_png(fig, path, 110)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "training.json")
    parser.add_argument("--runs", type=Path, required=True, help="one run folder per configuration is made (or resumed) here")
    parser.add_argument("--steps", type=int, required=True, help="steps of every configuration (equal steps: equal compute)")
    parser.add_argument("--sizes", default=SIZES, help=f"training-set sizes, comma-separated; 'all' for every training subject (default {SIZES})")
    parser.add_argument("--card", type=Path, help="a model card whose training.train_subjects (order) and validation_subjects are used")
    parser.add_argument("--validation", action="append", default=[],
                        help="validation subjects (default: the card's, else docs/validation_rule.md's four); fewer only for smoke runs")
    parser.add_argument("--reuse", action="append", default=[], metavar="NAME=DIR", help="read configuration NAME (e.g. subjects22) from DIR")
    parser.add_argument("--code", type=Path, default=REPO / "CollaGANImpute",
                        help="folder whose CollaGANImputeLib trains (a frozen copy keeps every configuration on the same code "
                             "while the checkout changes; default: this checkout)")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    args = parser.parse_args(argv)
    data = args.data.resolve()
    if not (args.code / "CollaGANImputeLib" / "__main__.py").is_file():
        raise SystemExit(f"--code {args.code}: no CollaGANImputeLib package there")

    card = json.loads(args.card.read_text(encoding="utf-8"))["training"] if args.card else {}
    validation = args.validation or card.get("validation_subjects") or VALIDATION
    subjects = discover_subjects(data, CONTRASTS, incomplete=True)  # what the train command reads
    only_subjects(subjects, validation, data)
    names = [s.name for s in subjects]
    pool = card.get("train_subjects") or [n for n in names if n not in validation]
    absent = [n for n in pool if n not in names]
    if absent or set(pool) & set(validation):
        raise SystemExit(f"training list: {', '.join(absent)} not in {data}" if absent else "a validation subject is in the training list")
    sizes = sorted({len(pool) if s.strip() == "all" else int(s) for s in args.sizes.split(",")})
    if sizes[0] < 1 or sizes[-1] > len(pool):
        raise SystemExit(f"--sizes {args.sizes}: between 1 and {len(pool)} training subjects")
    reused = dict(item.split("=", 1) for item in args.reuse)
    unknown = sorted(set(reused) - {f"subjects{k}" for k in sizes})
    if unknown:
        raise SystemExit(f"--reuse {', '.join(unknown)}: no such configuration (subjects{', subjects'.join(map(str, sizes))})")

    results = []
    for k in sizes:
        name, train_subjects = f"subjects{k}", pool[:k]
        if name in reused:
            run = Path(reused[name])
            weights = check_reused(run, name, train_subjects, validation, args.steps)
        else:
            run = (args.runs / name).resolve()
            weights = run / f"curve_{name}.safetensors"
            if not weights.exists():
                manifest = write_manifest(run, data, train_subjects + validation)
                train(run, f"curve_{name}", manifest, validation, args.steps, RECIPE,
                      f"learning-curve evidence: the first {k} training subject(s), {args.steps} steps", args.code.resolve())
        model = load_model(weights)
        card, training = model.card, model.card["training"]
        if training["train_subjects"] != train_subjects or training["steps"] != args.steps:
            raise SystemExit(f"{weights}: trained on {training['train_subjects']} for {training['steps']} steps, not the first "
                             f"{k} for {args.steps}")
        final = evaluate(model, data, validation, args.runs.resolve() / name / "evaluation.json")
        results.append({"configuration": name, "subjects": k, "train_subjects": train_subjects, "run": str(run), "weights": str(weights),
                        "weights_sha256": card["sha256"], "time_s": training["time_s"], "canvas": training.get("canvas"),
                        "final": final, "by_step": curve_over_steps(run, validation, args.steps)})

    args.out.mkdir(parents=True, exist_ok=True)
    report = {"validation_subjects": validation, "steps": args.steps, "train_list": pool, "sizes": sizes,
              "normalisation": NORMALISATION, "train_command": ["collagan-impute", "train", *RECIPE], "code": str(args.code.resolve()),
              "equal_compute": "equal steps at batch 8 of 128 x 128 crops; time_s is each run's own training time",
              "final": "the exported model on the validation subjects' whole volumes (evaluation.evaluate_subjects: 3-D SSIM, "
                       f"{', '.join(METRIC_NAMES)}, the model's smoothing), mean over the subjects",
              "by_step": "the training's validation (validation.csv): 2-D SSIM on evenly spaced slices on the run's canvas",
              "results": results}
    write_text_atomic(args.out / "learning_curve.json", json.dumps(report, indent=2) + "\n")
    text = (f"Mean over the validation subjects ({', '.join(validation)}) after {args.steps} steps of the same recipe (equal compute), "
            f"whole volumes, brain SSIM / PSNR (dB). {NORMALISATION}.\n\n" + final_table(results)
            + "\nThe training's own validation (2-D, evenly spaced slices, mean over the same subjects) over steps:\n\n" + steps_table(results))
    write_text_atomic(args.out / "learning_curve.md", text)
    figure(results, args.steps, args.out / "learning_curve.png")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
