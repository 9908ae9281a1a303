"""Training speed: samples per second, peak memory, and the achieved TFLOP/s of the generator and
discriminator steps (FLOPs counted with torch.utils.flop_counter on one step of each kind), on real
slices of the training canvas, with the bundled model's architecture.

The Trainer updates G every step and D every second step, so a step without D is the generator step
and the difference to a step with D is the discriminator step, both in time and in FLOPs. On a GPU the
figures are also given as a share of the H200's dense bf16 peak.

    python benchmarks/training.py --json benchmarks/results/training_cpu.json
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
from _measure import machine, peak_gpu_memory_mb, peak_host_memory_mb  # noqa: E402
from CollaGANImputeLib.core.contrasts import DEFAULT_CONTRASTS
from CollaGANImputeLib.inference.synthesis import select_device
from CollaGANImputeLib.io.atomic import write_text_atomic
from CollaGANImputeLib.model.networks import DiscriminatorConfig, GeneratorConfig
from CollaGANImputeLib.preparation.data import build_slice_set, discover_subjects, only_subjects, prepare_subject
from CollaGANImputeLib.training.config import TrainConfig
from CollaGANImputeLib.training.trainer import Trainer
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

H200_DENSE_BF16_TFLOPS = 989.0  # NVIDIA lists 1,979 TFLOP/s bf16 for the H200 SXM with 2:4 sparsity; dense is half


def timed_step(trainer: Trainer) -> float:
    if trainer.device.type == "cuda":
        torch.cuda.synchronize(trainer.device)
    started = time.perf_counter()
    trainer.train_step()
    if trainer.device.type == "cuda":
        torch.cuda.synchronize(trainer.device)
    return time.perf_counter() - started


def counted_step(trainer: Trainer) -> int:
    with FlopCounterMode(display=False) as counter:
        trainer.train_step()
    return counter.get_total_flops()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "manifest.json")
    parser.add_argument("--subject", default="TCGA-DU-7294")
    parser.add_argument("--canvas", default="192,160", help="slice canvas (the bundled model's training canvas)")
    parser.add_argument("--branch-width", type=int, default=8)
    parser.add_argument("--decoder-width", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--pairs", type=int, default=3, help="timed (G step, G+D step) pairs after two warm-up steps")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast (CUDA, or a CPU with bf16 arithmetic)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = select_device(args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True

    canvas = tuple(int(v) for v in args.canvas.split(","))
    contrasts = list(DEFAULT_CONTRASTS)
    subject, = only_subjects(discover_subjects(args.data, contrasts), [args.subject], args.data)
    slices = build_slice_set({subject.name: prepare_subject(subject, contrasts)}, contrasts, canvas)
    config = TrainConfig(generator=GeneratorConfig(4, args.branch_width, args.decoder_width), discriminator=DiscriminatorConfig(4),
                         batch_size=args.batch_size, bf16=args.bf16)
    trainer = Trainer(config, slices, tempfile.mkdtemp(prefix="collagan-train-bench-"), device=device)
    timed_step(trainer), timed_step(trainer)  # warm-up: steps 0 (G+D) and 1 (G)
    gd_flops = counted_step(trainer)  # step 2 updates G and D
    g_flops = counted_step(trainer)  # step 3 updates G only
    with_d, without_d = [], []
    for _ in range(args.pairs):
        with_d.append(timed_step(trainer))  # even step: G and D
        without_d.append(timed_step(trainer))
    g_s, gd_s = statistics.median(without_d), statistics.median(with_d)
    d_s, d_flops = max(gd_s - g_s, 1e-9), gd_flops - g_flops
    step_s = (g_s + gd_s) / 2
    result = {
        "benchmark": "training", "device": str(device), "bf16": args.bf16, "threads": args.threads,
        "machine": machine(), "canvas": list(canvas), "batch_size": args.batch_size,
        "generator": config.generator.to_dict(), "train_slices": len(slices),
        "samples_per_s": round(args.batch_size / step_s, 3), "step_s": round(step_s, 3),
        "generator_step": {"s": round(g_s, 3), "gflop": round(g_flops / 1e9, 1), "tflops": round(g_flops / g_s / 1e12, 4)},
        "discriminator_step": {"s": round(d_s, 3), "gflop": round(d_flops / 1e9, 1), "tflops": round(d_flops / d_s / 1e12, 4)},
        "peak_host_mb": round(peak_host_memory_mb()), "peak_gpu_mb": peak_gpu_memory_mb(device),
    }
    if device.type == "cuda":
        for key in ("generator_step", "discriminator_step"):
            result[key]["percent_of_h200_bf16_peak"] = round(100 * result[key]["tflops"] / H200_DENSE_BF16_TFLOPS, 2)
    print(f"training on {device} ({args.threads} threads), batch {args.batch_size}, canvas {canvas[0]}x{canvas[1]}: "
          f"{result['samples_per_s']} samples/s, peak host {result['peak_host_mb']} MB"
          + (f", peak GPU {result['peak_gpu_mb']:.0f} MB" if result["peak_gpu_mb"] else ""))
    print(f"{'step':14} {'s':>8} {'GFLOP':>8} {'TFLOP/s':>9}")
    for key in ("generator_step", "discriminator_step"):
        part = result[key]
        share = f"  {part['percent_of_h200_bf16_peak']} % of H200 bf16 peak" if "percent_of_h200_bf16_peak" in part else ""
        print(f"{key:14} {part['s']:8.3f} {part['gflop']:8.1f} {part['tflops']:9.4f}{share}")
    if args.json:
        write_text_atomic(args.json, json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
