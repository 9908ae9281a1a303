"""Inference speed: one BraTS-sized study (240x240x155, three inputs) through the bundled model (or its
companion, where the card has one for the contrast imputed), the engine's fast path beside the naive one
(every full-size slice, one at a time, fp32), on the CPU and, when there is one, on a GPU.

Every path runs in a fresh process, so that its peak memory is its own. Reported per path: wall time
per study (reading, preparing, synthesising, back onto the reference grid; not loading the model),
synthesis time, slices per second, peak memory, the speed-up over the naive path, the largest voxel
difference to the naive output inside the brain (in brain standard deviations, the unit of the output),
and apart from the study time, the time of the smoothing `impute` adds to any path (the card's "inference").

    python benchmarks/inference.py --json benchmarks/results/inference_cpu.json
    python benchmarks/inference.py --path fast --path "fast, axial, fp32" --json some.json   # some paths only
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "CollaGANImpute"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _measure import machine, peak_gpu_memory_mb, peak_host_memory_mb  # noqa: E402

# name -> keyword arguments of synthesis.synthesise (None: the naive path, every full-size axial slice one at a time in
# fp32); "fast" is the default path (three slice orientations, bf16 where the CPU computes it natively); which run where
PATHS = {
    "naive": None,
    "fast": {},
    "fast, fp32": {"bf16": False},
    "fast, bf16": {"bf16": True},
    "fast, compiled": {"compiled": True},
    "fast, axial": {"planes": 1},
    "fast, axial, fp32": {"planes": 1, "bf16": False},  # the default path until session 28
    "fast, axial, fp32, channels-last": {"planes": 1, "bf16": False, "channels_last": True},
    "fast, axial, fp32, no crop": {"planes": 1, "bf16": False, "crop": False},
    "fast, axial, 8 views": {"planes": 1, "views": 8},
}
DEVICE_PATHS = {"cpu": ["naive", "fast", "fast, fp32", "fast, axial", "fast, axial, fp32", "fast, axial, fp32, channels-last",
                        "fast, axial, fp32, no crop", "fast, axial, 8 views"],
                "cuda": ["naive", "fast", "fast, bf16", "fast, compiled", "fast, axial", "fast, axial, fp32, no crop", "fast, axial, 8 views"]}
TARGETS = {"cpu_fast_study_s": 15.0, "cpu_fast_peak_mb": 4096.0, "cpu_speedup_over_naive": 3.0}


def run_path(args: argparse.Namespace) -> None:
    """In the worker process: one study through one path; writes the output array and prints JSON."""
    import torch
    from CollaGANImputeLib.inference.synthesis import model_inputs, model_smoothing, precision_of, smooth_in_brain, synthesise, synthesise_naive
    from CollaGANImputeLib.model.weights import load_model
    from CollaGANImputeLib.preparation.data import discover_subjects, only_subjects
    from CollaGANImputeLib.preparation.study import prepare_study

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    model = load_model(args.weights, device)
    subject, = only_subjects(discover_subjects(args.data, model.contrasts), [args.subject], args.data)
    inputs = {k: v for k, v in subject.files.items() if k != args.missing}
    model = model.serving([args.missing], inputs)  # the card's companion where this request is the one it serves
    options = PATHS[args.worker]
    times, totals = [], []  # totals: the slices through the network, as the engine's progress counts them
    for _ in range(args.repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        started = time.perf_counter()
        study = prepare_study(inputs, model.contrasts)
        stack, target = model_inputs(model, study), model.contrasts.index(args.missing)
        synth_started = time.perf_counter()
        if options is None:
            volume = synthesise_naive(model.generator, stack, target, study.mask)
        else:
            volume = synthesise(model.generator, stack, target, study.mask, batch_size=args.batch_size,
                                progress=lambda done, total: totals.append(total), **options)
        synth_s = time.perf_counter() - synth_started
        study.to_reference_image(volume)
        times.append((time.perf_counter() - started, synth_s))
    np.save(args.array, volume)
    np.save(args.array.with_suffix(".mask.npy"), study.mask)
    smoothing = model_smoothing(model, args.missing, study.slice_spacing)
    smoothing_started = time.perf_counter()
    smooth_in_brain(volume, study.mask, smoothing)  # what `impute` adds after any path (the card's "inference")
    smoothing_s = time.perf_counter() - smoothing_started
    study_s, synth_s = times[-1]  # the last repeat: warm on a GPU (cuDNN autotuning and compiling are done)
    slices = study.mask.shape[0] if options is None else totals[-1]
    print(json.dumps({
        "path": args.worker, "model": model.name, "device": args.device, "threads": args.threads,
        "precision": "fp32" if options is None else precision_of(model.generator, options.get("bf16")),
        "batch_size": None if options is None else args.batch_size,
        "study_s": round(study_s, 2), "synthesis_s": round(synth_s, 2), "first_study_s": round(times[0][0], 2),
        "slices_through_network": slices, "slices_per_s": round(slices / synth_s, 2),
        "study_slices_per_s": round(study.mask.shape[0] / study_s, 2),
        "peak_host_mb": round(peak_host_memory_mb()), "peak_gpu_mb": peak_gpu_memory_mb(device),
        "card_smoothing": list(smoothing), "card_smoothing_s": round(smoothing_s, 2),
    }))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "manifest.json")
    parser.add_argument("--subject", default="BraTS-GLI-00001-000")
    parser.add_argument("--missing", default="t1gd")
    parser.add_argument("--weights", type=Path, help="default: the bundled model")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads (torch.set_num_threads)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--devices", default="cpu,cuda", help="devices to measure, where present")
    parser.add_argument("--path", action="append", choices=list(PATHS), help="a path to measure, repeatable (default: every path of each device)")
    parser.add_argument("--repeats", type=int, default=0, help="studies per path; the last is reported (default: 1 on CPU, 2 on GPU)")
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--worker", choices=list(PATHS), help=argparse.SUPPRESS)
    parser.add_argument("--device", default="cpu", help=argparse.SUPPRESS)
    parser.add_argument("--array", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return run_path(args)

    import torch

    devices = [d for d in args.devices.split(",") if d == "cpu" or (d == "cuda" and torch.cuda.is_available())]
    results: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="collagan-bench-") as scratch:  # each path's output: compared, then removed
        for device in devices:
            for name in [p for p in DEVICE_PATHS[device] if not args.path or p in args.path]:
                results.append(measure_path(args, device, name, Path(scratch) / f"{device}-{len(results)}.npy"))
            compare(results, device)
    report = {"benchmark": "inference", "subject": args.subject, "missing": args.missing,
              "machine": machine(), "targets": TARGETS, "results": [{k: v for k, v in r.items() if k != "array"} for r in results]}
    report["targets_met"] = targets_met(results)
    print_table(report)
    if args.json:
        from CollaGANImputeLib.io.atomic import write_text_atomic

        write_text_atomic(args.json, json.dumps(report, indent=2) + "\n")
        print(f"wrote {args.json}")


def measure_path(args: argparse.Namespace, device: str, name: str, array: Path) -> dict:
    """One path in a fresh process (so its peak memory is its own); its output is saved to `array`."""
    command = [sys.executable, __file__, "--worker", name, "--device", device, "--array", str(array),
               "--data", str(args.data), "--subject", args.subject, "--missing", args.missing,
               "--threads", str(args.threads), "--batch-size", str(args.batch_size),
               "--repeats", str(args.repeats or (2 if device == "cuda" else 1))]
    if args.weights:
        command += ["--weights", str(args.weights)]
    print(f"{device}: {name} ...", file=sys.stderr, flush=True)
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        print(done.stderr[-2000:], file=sys.stderr)
        return {"path": name, "device": device, "error": done.stderr.strip().splitlines()[-1]}
    return {**json.loads(done.stdout.strip().splitlines()[-1]), "array": array}


def compare(results: list[dict], device: str) -> None:
    """Speed-up over, and voxel differences inside the brain to, the same device's naive and fast outputs."""
    here = [r for r in results if r["device"] == device and "error" not in r]
    naive = next((r for r in here if r["path"] == "naive"), None)
    if naive is None:
        return
    reference, mask = np.load(naive["array"]), np.load(naive["array"].with_suffix(".mask.npy"))
    fast = next((np.load(r["array"]) for r in here if r["path"] == "fast"), None)
    for result in here:
        output = np.load(result["array"])
        difference = np.abs(output - reference)[mask]
        result["speedup_over_naive"] = round(naive["study_s"] / result["study_s"], 2)
        result["max_abs_diff_vs_naive"] = float(difference.max())
        result["mean_abs_diff_vs_naive"] = float(difference.mean())
        result["naive_brain_mean"] = float(np.abs(reference[mask]).mean())
        if fast is not None:  # what another path (fp32, the axial pass, views) changes in the default output
            result["max_abs_diff_vs_fast"] = float(np.abs(output - fast)[mask].max())
            result["mean_abs_diff_vs_fast"] = float(np.abs(output - fast)[mask].mean())
            result["fast_brain_max"] = float(np.abs(fast[mask]).max())


def targets_met(results: list[dict]) -> dict:
    fast = next((r for r in results if r["device"] == "cpu" and r["path"] == "fast" and "error" not in r), None)
    if fast is None:
        return {}
    return {"cpu_fast_study_s": fast["study_s"] <= TARGETS["cpu_fast_study_s"],
            "cpu_fast_peak_mb": fast["peak_host_mb"] <= TARGETS["cpu_fast_peak_mb"],
            "cpu_speedup_over_naive": fast.get("speedup_over_naive", 0) >= TARGETS["cpu_speedup_over_naive"]}


def print_table(report: dict) -> None:
    print(f"\n{report['subject']}, {report['missing']} missing; {report['machine']}")
    print(f"{'device':6} {'path':33} {'study s':>8} {'synth s':>8} {'slices/s':>9} {'peak MB':>8} {'GPU MB':>7} "
          f"{'x naive':>8} {'max|diff|':>10} {'mean|diff|':>10} {'smooth s':>8}")
    for r in report["results"]:
        if "error" in r:
            print(f"{r['device']:6} {r['path']:33} failed: {r['error']}")
            continue
        gpu = f"{r['peak_gpu_mb']:.0f}" if r["peak_gpu_mb"] is not None else "-"
        print(f"{r['device']:6} {r['path']:33} {r['study_s']:8.2f} {r['synthesis_s']:8.2f} {r['slices_per_s']:9.2f} "
              f"{r['peak_host_mb']:8.0f} {gpu:>7} {r.get('speedup_over_naive', 0):8.2f} "
              f"{r.get('max_abs_diff_vs_naive', float('nan')):10.4f} {r.get('mean_abs_diff_vs_naive', float('nan')):10.4f} "
              f"{r['card_smoothing_s']:8.2f}")
    print(f"targets met: {report['targets_met']}  (differences in brain standard deviations; naive brain mean "
          f"{next((r['naive_brain_mean'] for r in report['results'] if 'naive_brain_mean' in r), float('nan')):.3f})")


if __name__ == "__main__":
    main()
