"""Is the quality limited by the data? Held-out quality against the number of training subjects, and with
augmentation on and off.

With four subjects the bundled model cannot reach the published quality; this benchmark shows why rather
than tuning to the held-out subject. Every configuration trains the same small generator with the same
command (that of the bundled model's first stage) for the same number of steps, from the same seed, and
differs only in the training subjects (the first K non-held-out subjects of the data, in its order) or in
`--no-augment`. Quality is the training's own validation on the held-out subject (metrics.py, BraSyn
normalisation, evenly spaced brain slices) at every validation step, read from each run's
validation.csv. Subjects left out of a smaller training set are passed as extra validation subjects, so
the command and its validation of the held-out subject stay identical.

A configuration whose run folder already holds the steps asked for is read, not trained again; an
interrupted one resumes from its checkpoint. `--reuse NAME=DIR` reads a run made elsewhere with the same
command (checked against its model card), such as the bundled model's first stage for "3 subjects".

    python benchmarks/learning_curve.py --runs runs/evidence --steps 1000 [--reuse subjects3=runs/bundled]
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "CollaGANImpute"))

from CollaGANImputeLib.atomic import atomic_path, write_text_atomic  # noqa: E402
from CollaGANImputeLib.contrasts import DEFAULT_CONTRASTS, display_name  # noqa: E402
from CollaGANImputeLib.data import discover_subjects  # noqa: E402
from CollaGANImputeLib.metrics import NORMALISATION  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
# The bundled model's first stage (its model card's command), without data, output, steps and subjects.
TRAIN_ARGS = ["--branch-width", "8", "--decoder-width", "32", "--lr", "2e-4", "--lr-discriminator", "2e-4",
              "--validate-every", "500", "--checkpoint-every", "100", "--progress", "lines"]
METRICS = ("ssim_brain", "psnr_brain")
CONTRASTS = list(DEFAULT_CONTRASTS)  # the train command's default


@dataclass(frozen=True)
class Configuration:
    name: str
    subjects: int  # the first this many non-held-out subjects train
    augment: bool


def configurations(available: int) -> list[Configuration]:
    """Every training-set size with augmentation, and the largest without."""
    return [Configuration(f"subjects{k}", k, True) for k in range(1, available + 1)] + [Configuration("noaug", available, False)]


def validation_rows(run: Path, held_out: str) -> list[dict]:
    path = run / "validation.csv"
    if not path.exists():
        return []
    with open(path, newline="", encoding="utf-8") as handle:
        return [r for r in csv.DictReader(handle) if r["subject"] == held_out]


def check_reused(run: Path, config: Configuration, train_subjects: list[str]) -> None:
    """A reused run must be the same command on the same subjects, or its figures compare nothing."""
    cards = [p for p in run.glob("*.json") if p.name != "validation.json"]
    if not cards:
        raise SystemExit(f"--reuse {config.name}={run}: no model card (*.json) to check the run against")
    training = json.loads(cards[0].read_text(encoding="utf-8"))["training"]
    command = training.get("command") or training.get("commands", [""])[0]
    problems = []
    if sorted(training["train_subjects"]) != sorted(train_subjects):
        problems.append(f"trained on {training['train_subjects']}, not {train_subjects}")
    if training["config"]["augment"] != config.augment:
        problems.append(f"augment {training['config']['augment']}, not {config.augment}")
    problems += [f"its command lacks {a} {b}" for a, b in zip(TRAIN_ARGS[:-2:2], TRAIN_ARGS[1:-2:2]) if f"{a} {b}" not in command]
    if problems:
        raise SystemExit(f"--reuse {config.name}={run}: " + "; ".join(problems))


def train(run: Path, config: Configuration, data: Path, held_out: str, left_out: list[str], steps: int) -> None:
    command = [sys.executable, "-m", "CollaGANImputeLib", "train", "--data", str(data), "--out", str(run), "--steps", str(steps),
               "--validation", held_out, *[a for name in left_out for a in ("--validation", name)], *TRAIN_ARGS,
               "--name", f"evidence_{config.name}",
               "--description", f"learning-curve evidence: {config.subjects} training subject(s), augmentation {'on' if config.augment else 'off'}"]
    if not config.augment:
        command.append("--no-augment")
    if (run / "checkpoint.safetensors").exists():
        command.append("--resume")
    print(" ".join(command), file=sys.stderr)
    subprocess.run(command, check=True, cwd=REPO / "CollaGANImpute")


def markdown_table(results: list[dict], contrasts: list[str]) -> str:
    lines = ["| training subjects | augmentation | step | " + " | ".join(f"{display_name(k)} SSIM / PSNR" for k in contrasts) + " |",
             "|---|---|---|" + "---|" * len(contrasts)]
    for result in results:
        for step, by_contrast in sorted(result["by_step"].items(), key=lambda item: int(item[0])):
            cells = [f"{by_contrast[k]['ssim_brain']:.3f} / {by_contrast[k]['psnr_brain']:.2f}" for k in contrasts]
            lines.append(f"| {result['subjects']} | {'on' if result['augment'] else 'off'} | {step} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def figure(results: list[dict], contrasts: list[str], step: int, path: Path) -> None:
    import matplotlib  # the "bench" extra

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
    with_aug = [r for r in results if r["augment"]]
    without = [r for r in results if not r["augment"]]
    for axis, metric, label in zip(axes, METRICS, ("brain SSIM", "brain PSNR (dB)")):
        for key in contrasts:
            line, = axis.plot([r["subjects"] for r in with_aug], [r["by_step"][str(step)][key][metric] for r in with_aug], "o-",
                              label=display_name(key))
            axis.plot([r["subjects"] for r in without], [r["by_step"][str(step)][key][metric] for r in without], "x",
                      color=line.get_color(), markersize=9)
        axis.set_xlabel("training subjects (x: augmentation off)")
        axis.set_ylabel(label)
        axis.set_xticks([r["subjects"] for r in with_aug])
    axes[0].legend(fontsize=8)
    fig.suptitle(f"held-out quality after {step} steps", fontsize=10)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    with atomic_path(path) as temp:
        temp.write_bytes(buffer.getvalue())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "manifest.json")
    parser.add_argument("--runs", type=Path, required=True, help="one run folder per configuration is made (or resumed) here")
    parser.add_argument("--held-out", default="BraTS-GLI-00001-000")
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--reuse", action="append", default=[], metavar="NAME=DIR", help="read configuration NAME from an existing run")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    args = parser.parse_args(argv)
    data = args.data.resolve()

    names = [s.name for s in discover_subjects(data, CONTRASTS)]
    if args.held_out not in names:
        raise SystemExit(f"held-out subject {args.held_out!r} is not in {data}")
    pool = [n for n in names if n != args.held_out]
    reused = dict(item.split("=", 1) for item in args.reuse)
    results = []
    for config in configurations(len(pool)):
        train_subjects, left_out = pool[: config.subjects], pool[config.subjects:]
        run = Path(reused[config.name]) if config.name in reused else args.runs / config.name
        if config.name in reused:
            check_reused(run, config, train_subjects)
        elif not any(int(r["step"]) >= args.steps for r in validation_rows(run, args.held_out)):
            train(run.resolve(), config, data, args.held_out, left_out, args.steps)
        rows = [r for r in validation_rows(run, args.held_out) if int(r["step"]) <= args.steps]
        if not rows:
            raise SystemExit(f"{run}: no validation of {args.held_out} up to step {args.steps}")
        by_step = {str(step): {k: {m: float(np.mean([float(r[m]) for r in rows if int(r["step"]) == step and r["contrast"] == k]))
                                   for m in METRICS} for k in CONTRASTS}
                   for step in sorted({int(r["step"]) for r in rows})}
        results.append({"configuration": config.name, "subjects": config.subjects, "train_subjects": train_subjects,
                        "augment": config.augment, "run": str(run), "by_step": by_step})

    args.out.mkdir(parents=True, exist_ok=True)
    report = {"held_out": args.held_out, "steps": args.steps, "normalisation": NORMALISATION,
              "train_command": ["collagan-impute", "train", *TRAIN_ARGS], "results": results}
    write_text_atomic(args.out / "learning_curve.json", json.dumps(report, indent=2) + "\n")
    table = markdown_table(results, CONTRASTS)
    write_text_atomic(args.out / "learning_curve.md",
                      f"Held-out subject {args.held_out}, brain SSIM / PSNR (dB) of the training's validation slices. {NORMALISATION}.\n\n" + table)
    figure(results, CONTRASTS, args.steps, args.out / "learning_curve.png")
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
