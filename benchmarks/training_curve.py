"""The validation curve of a training run made of phases (one run folder each, the later initialised from the
earlier), as one table and one plot: mean brain SSIM and PSNR per contrast over the validation subjects,
against the step counted from the first phase.

    python benchmarks/training_curve.py --phase phase1=runs/p1 --phase phase2=runs/p2 --out benchmarks/results/training_run
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "CollaGANImpute"))

from CollaGANImputeLib.core.contrasts import display_name  # noqa: E402
from CollaGANImputeLib.io.atomic import write_text_atomic  # noqa: E402


def read_phase(folder: Path) -> dict[int, dict[str, dict[str, float]]]:
    """step -> contrast -> mean brain SSIM and PSNR over the validation subjects of that step."""
    rows = defaultdict(lambda: defaultdict(list))
    with open(folder / "validation.csv", newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            rows[int(row["step"])][row["contrast"]].append((float(row["ssim_brain"]), float(row["psnr_brain"])))
    return {step: {key: {"ssim_brain": float(np.mean([v[0] for v in values])), "psnr_brain": float(np.mean([v[1] for v in values])),
                         "subjects": len(values)} for key, values in by_contrast.items()}
            for step, by_contrast in sorted(rows.items())}


def last_step(folder: Path) -> int:
    """The last step the phase trained (its train_log.csv), where the next phase starts counting."""
    with open(folder / "train_log.csv", newline="", encoding="utf-8") as handle:
        return max(int(row["step"]) for row in csv.DictReader(handle))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--phase", action="append", required=True, metavar="NAME=FOLDER", help="run folders, in training order")
    parser.add_argument("--out", type=Path, required=True, help="folder for training_curve.json, .md and .png")
    args = parser.parse_args()
    phases, offset = [], 0
    for spec in args.phase:
        name, _, folder = spec.partition("=")
        folder = Path(folder)
        curve = read_phase(folder)
        phases.append({"name": name, "folder": str(folder), "first_step": offset,
                       "points": [{"step": offset + step, **({"contrasts": values})} for step, values in curve.items()]})
        offset += last_step(folder)
    contrasts = list(phases[0]["points"][0]["contrasts"])
    report = {"metric": "mean over the validation subjects of 2-D brain SSIM and PSNR on evenly spaced slices (the training's "
                        "own validation, raw network output)", "phases": phases, "total_steps": offset}
    args.out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(args.out / "training_curve.json", json.dumps(report, indent=2) + "\n")
    lines = ["| phase | step | " + " | ".join(display_name(k) for k in contrasts) + " |", "|---|---:|" + "---|" * len(contrasts)]
    for phase in phases:
        for point in phase["points"]:
            cells = [f"{point['contrasts'][k]['ssim_brain']:.3f} / {point['contrasts'][k]['psnr_brain']:.1f}" for k in contrasts]
            lines.append(f"| {phase['name']} | {point['step']} | " + " | ".join(cells) + " |")
    table = "\n".join(lines)
    write_text_atomic(args.out / "training_curve.md", "Validation brain SSIM / PSNR (dB), " + report["metric"] + "\n\n" + table + "\n")
    print(table)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(11, 4))
    for key in contrasts:
        steps = [p["step"] for phase in phases for p in phase["points"]]
        for axis, metric in zip(axes, ("ssim_brain", "psnr_brain")):
            axis.plot(steps, [p["contrasts"][key][metric] for phase in phases for p in phase["points"]], marker=".", label=display_name(key))
    for axis, label in zip(axes, ("brain SSIM", "brain PSNR (dB)")):
        for phase in phases[1:]:
            axis.axvline(phase["first_step"], color="grey", linestyle="--", linewidth=0.8)
        axis.set_xlabel("step (batches of the first phase onward)")
        axis.set_ylabel(label)
        axis.grid(alpha=0.3)
    axes[0].legend()
    figure.suptitle("Validation during training (" + ", then ".join(p["name"] for p in phases) + ")")
    figure.tight_layout()
    figure.savefig(args.out / "training_curve.png", dpi=110)
    print(f"wrote {args.out / 'training_curve.json'}, .md and .png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
