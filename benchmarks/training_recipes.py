"""The old training recipe against the CPU recipe, in one run: samples per second, and validation brain
SSIM against CPU minutes, for the bundled architecture on the same data.

- old: the interim model's recipe (its card): whole 192x160 canvas, batch 1, Adam 2e-4, METHOD.md's losses
  (multiple-cycle L1 and SSIM, LSGAN, classification): N generator passes and a discriminator a step.
- cpu: random 128x128 crops of the brain-centred canvas, batch 8, AdamW 1e-3 with a staircase decay, and
  the direct L1 + SSIM losses alone (one generator pass a step, no discriminator): the first phase. Its
  final phase returns to METHOD.md's losses (README, The bundled model).

Both draw any subset of missing contrasts (MM-GAN, 1-3 absent). Each trains for the same budget of this
process's CPU time (both threads counted), validating every --validate-minutes on evenly spaced slices of
the validation subjects (docs/validation_rule.md). Validation time is not counted. Writes JSON, a Markdown
table and a PNG plot.

    python benchmarks/training_recipes.py --minutes 30 --out benchmarks/results
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "CollaGANImpute"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
from _measure import machine, peak_host_memory_mb  # noqa: E402
from CollaGANImputeLib.core.contrasts import DEFAULT_CONTRASTS
from CollaGANImputeLib.io.atomic import atomic_path, write_text_atomic
from CollaGANImputeLib.model.networks import DiscriminatorConfig, GeneratorConfig
from CollaGANImputeLib.preparation.data import build_slice_set, canvas_for, discover_subjects, prepare_subject
from CollaGANImputeLib.training.config import TrainConfig
from CollaGANImputeLib.training.losses import LossWeights
from CollaGANImputeLib.training.trainer import Trainer

VALIDATION = ["BraTS-GLI-00001-000", "TCGA-DU-7294", "Brats18_2013_11_1", "OpenMS-patient07"]  # docs/validation_rule.md
ARCHITECTURE = GeneratorConfig(4, 8, 32)  # the bundled model's


def recipes() -> dict[str, TrainConfig]:
    common = dict(generator=ARCHITECTURE, discriminator=DiscriminatorConfig(4), missing_max=3, steps=10**9,
                  validate_every=10**9, checkpoint_every=10**9)
    return {
        "old": TrainConfig(batch_size=1, lr=2e-4, lr_discriminator=2e-4, **common),
        "cpu": TrainConfig(batch_size=8, crop=128, optimizer="adamw", lr=1e-3, decay_every=500, decay_rate=0.7,
                           weights=LossWeights(cycle_l1=0, cycle_ssim=0, adversarial=0, generator_classification=0,
                                               direct_l1=1, direct_ssim=1), **common),
    }


def mean_ssim(rows: list[dict]) -> dict[str, float]:
    by_contrast = {key: statistics.mean(r["ssim_brain"] for r in rows if r["contrast"] == key) for key in DEFAULT_CONTRASTS}
    return {**{k: round(v, 4) for k, v in by_contrast.items()}, "mean": round(statistics.mean(by_contrast.values()), 4)}


def train_for(name: str, config: TrainConfig, train_set, validation_set, minutes: float, every: float) -> dict:
    """Train until `minutes` of CPU time; validate every `every` CPU minutes (and at 0)."""
    trainer = Trainer(config, train_set, tempfile.mkdtemp(prefix=f"collagan-recipe-{name}-"), validation_set=validation_set)
    curve = [{"cpu_min": 0.0, "step": 0, **mean_ssim(trainer.validate())}]
    cpu = wall = 0.0
    while cpu < minutes * 60:
        cpu_start, wall_start = time.process_time(), time.perf_counter()
        trainer.train_step()
        cpu += time.process_time() - cpu_start
        wall += time.perf_counter() - wall_start
        if cpu >= (len(curve)) * every * 60 or cpu >= minutes * 60:
            curve.append({"cpu_min": round(cpu / 60, 2), "step": trainer.step, **mean_ssim(trainer.validate())})
            print(f"{name}: {curve[-1]}", flush=True)
    samples = trainer.step * config.batch_size
    return {"config": config.to_dict(), "steps": trainer.step, "samples": samples,
            "samples_per_s": round(samples / wall, 3), "samples_per_cpu_s": round(samples / cpu, 3), "curve": curve}


def minutes_to_reach(curve: list[dict], level: float) -> float | None:
    return next((point["cpu_min"] for point in curve if point["mean"] >= level), None)


def markdown(result: dict) -> str:
    old, cpu = result["recipes"]["old"], result["recipes"]["cpu"]
    lines = [f"Training recipes on {result['train_subjects']} subjects, {result['minutes']} CPU minutes each; "
             f"validation brain SSIM (2-D, {result['validation_slices']} slices per subject) on {', '.join(result['validation'])}.", "",
             "| recipe | samples/s | samples per CPU s | steps | final T1 | T1Gd | T2 | FLAIR | mean |", "|---|---|---|---|---|---|---|---|---|"]
    for name, run in result["recipes"].items():
        final = run["curve"][-1]
        lines.append(f"| {name} | {run['samples_per_s']} | {run['samples_per_cpu_s']} | {run['steps']} | "
                     + " | ".join(f"{final[k]:.3f}" for k in (*DEFAULT_CONTRASTS, "mean")) + " |")
    reach = result["cpu_minutes_to_old_final"]
    lines += ["", f"Samples per second: {cpu['samples_per_s'] / old['samples_per_s']:.1f}x the old recipe. The CPU recipe reached the "
              f"old recipe's final mean SSIM ({old['curve'][-1]['mean']:.3f}) after "
              + (f"{reach} CPU minutes ({reach / result['minutes']:.2f} of the budget)." if reach is not None else "never, within the budget.")]
    return "\n".join(lines) + "\n"


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(6, 4))
    for name, run in result["recipes"].items():
        axis.plot([p["cpu_min"] for p in run["curve"]], [p["mean"] for p in run["curve"]], marker="o", label=f"{name} ({run['samples_per_s']} samples/s)")
    axis.set_xlabel("CPU minutes (both threads)")
    axis.set_ylabel("validation brain SSIM, mean of 4 contrasts")
    axis.grid(alpha=0.3)
    axis.legend()
    figure.tight_layout()
    with atomic_path(path) as temp:
        figure.savefig(temp, dpi=120, format="png")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "training.json")
    parser.add_argument("--minutes", type=float, default=30.0, help="CPU minutes per recipe")
    parser.add_argument("--validate-minutes", type=float, default=5.0)
    parser.add_argument("--validation-slices", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    contrasts = list(DEFAULT_CONTRASTS)
    subjects = discover_subjects(args.data, contrasts, incomplete=True)
    studies = {s.name: prepare_subject(s, contrasts) for s in subjects}
    canvas = canvas_for(studies, ARCHITECTURE.size_multiple)
    every = build_slice_set(studies, contrasts, canvas)
    del studies
    train_set, validation_set = every.split(VALIDATION, max_validation_slices=args.validation_slices)
    del every
    result = {"benchmark": "training_recipes", "machine": machine(), "threads": args.threads, "minutes": args.minutes,
              "train_subjects": len(train_set.subjects), "train_slices": len(train_set), "canvas": list(canvas), "validation": VALIDATION,
              "validation_slices": args.validation_slices, "recipes": {}}
    for name, config in recipes().items():
        result["recipes"][name] = train_for(name, config, train_set, validation_set, args.minutes, args.validate_minutes)
    result["cpu_minutes_to_old_final"] = minutes_to_reach(result["recipes"]["cpu"]["curve"], result["recipes"]["old"]["curve"][-1]["mean"])
    result["samples_per_s_ratio"] = round(result["recipes"]["cpu"]["samples_per_s"] / result["recipes"]["old"]["samples_per_s"], 2)
    result["peak_host_mb"] = round(peak_host_memory_mb())
    args.out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(args.out / "training_recipes.json", json.dumps(result, indent=2) + "\n")
    write_text_atomic(args.out / "training_recipes.md", markdown(result))
    plot(result, args.out / "training_recipes.png")
    print(markdown(result))


if __name__ == "__main__":
    main()
