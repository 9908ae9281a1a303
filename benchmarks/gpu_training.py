"""One prepared command that trains the bundled recipe on a lent GPU within a fixed wall-clock budget (issue 18).

The device machine is lent for 15 minutes, takes a 64 MiB working tree and returns at most 8 files of 16 MiB, so the
run is planned around them: the subjects travel as a slice cache (`collagan-impute cache --stride 3`: 40.6 MiB for training.json),
three runs share the GPU side by side (the model on the card's training subjects, and the two half-data folds that
`benchmarks/out_of_fold.py` defines, whose out-of-fold imputations fit the landmark offsets), and everything they
export comes back as one archive cut into parts. A short probe measures the steps per second of the three together,
and each phase's length and learning-rate schedule are set from it, so that the same recipe fills the budget on
whatever GPU runs it; a phase that still overruns is stopped at its deadline, and every run is brought to the same
step (runs stopped with Ctrl+C resume exactly), so the folds stay trained as long as the model.

    python3 benchmarks/gpu_training.py --cache .gpu/slices.npz --out "$OUT" --budget 470

Back here: `cat OUT/gpu_runs.tar.gz.part-* | tar xz`. The recipe is the bundled one's (phase 1: direct L1 and SSIM on
128x128 crops, any subset of 1-3 contrasts missing; phase 2: METHOD.md's multiple-cycle L1 and SSIM, LSGAN and
classification) with batches 4x larger, bf16 autocast, and lengths measured in seconds instead of steps.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import threading
import time
from importlib.util import find_spec
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "CollaGANImpute"))

from CollaGANImputeLib.core.errors import EXIT_CANCELLED  # noqa: E402
from CollaGANImputeLib.core.progress import parse_progress_line  # noqa: E402
from CollaGANImputeLib.training.config import WEIGHTS_DTYPES  # noqa: E402
from folds import fold_subjects  # noqa: E402

CARD = REPO / "CollaGANImpute" / "Resources" / "Models" / "collagan_brats.json"
PHASE1 = ["--batch-size", "32", "--crop", "128", "--optimizer", "adamw", "--lr", "1e-3", "--weight-decay", "0.01",
          "--decay-rate", "0.7", "--cycle-l1", "0", "--cycle-ssim", "0", "--adversarial", "0", "--direct-l1", "1", "--direct-ssim", "1",
          "--missing-max", "3", "--bf16"]
PHASE2 = ["--batch-size", "16", "--crop", "128", "--optimizer", "adamw", "--lr", "1e-4", "--lr-discriminator", "1e-4",
          "--weight-decay", "0.01", "--decay-rate", "0.7", "--cycle-l1", "10", "--cycle-ssim", "1", "--adversarial", "1",
          "--direct-l1", "10", "--missing-max", "3", "--bf16"]
PHASE1_DECAYS, PHASE2_DECAYS = 7, 5  # the bundled phases' staircase steps over their length (3522 / 500, 1000 / 200)
# A phase-2 step (batch 16, N-1 cycle passes, the discriminator) against a phase-1 step of batch 32: about 3 on the
# H200 (15.1 and 5 steps a second, three runs side by side, 2026-12-04); 4.5 was assumed before that was measured.
PHASE2_COST = 3.0


def simpleitk_stand_in() -> dict[str, str]:
    """The environment for the training processes. The device image has no SimpleITK and installs nothing; a run
    from a slice cache never reads a volume, so a stand-in that fails on first use lets the library import."""
    if find_spec("SimpleITK") is not None:
        return {}
    folder = Path(tempfile.mkdtemp(prefix="sitk_stand_in_"))
    (folder / "SimpleITK.py").write_text(
        "class Absent:\n    def __init__(self, *args, **kwargs):\n        raise ImportError('SimpleITK is not installed here')\n\n\n"
        "def __getattr__(name):\n    if name.startswith('__'):\n        raise AttributeError(name)\n    return Absent\n", encoding="utf-8")
    return {"PYTHONPATH": os.pathsep.join(filter(None, [str(folder), os.environ.get("PYTHONPATH")]))}


class Run:
    """One `collagan-impute train` process whose progress lines are timed as they arrive."""

    def __init__(self, name: str, argv: list[str], log: Path, env: dict[str, str]) -> None:
        self.name, self.times, self.step = name, {}, 0
        self.log = open(log, "a", encoding="utf-8")
        command = [sys.executable, "-m", "CollaGANImputeLib", "train", *argv, "--progress", "lines"]
        self.log.write("$ " + " ".join(command) + "\n")
        self.log.flush()
        self.process = subprocess.Popen(command, cwd=REPO / "CollaGANImpute", stdout=subprocess.PIPE, stderr=self.log, text=True,
                                        env={**os.environ, **env, "PYTHONUNBUFFERED": "1"})
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        for line in self.process.stdout:
            self.log.write(line)
            record = parse_progress_line(line)
            if record is not None and record.get("stage") == "training":
                self.step = int(record["done"])
                self.times[self.step] = time.monotonic()

    def wait(self, deadline: float) -> int | None:
        """The exit code, or None when the process still runs at `deadline`."""
        try:
            return self.process.wait(timeout=max(deadline - time.monotonic(), 0.0))
        except subprocess.TimeoutExpired:
            return None

    def stop(self) -> int:
        """Ctrl+C: the run saves a whole checkpoint at the step it reached and exits. Not before its first step: until
        then it is still loading, and Ctrl+C there would end it with nothing saved."""
        waited = time.monotonic() + 120
        while self.step == 0 and self.process.poll() is None and time.monotonic() < waited:
            time.sleep(0.5)
        self.process.send_signal(signal.SIGINT)
        code = self.process.wait(timeout=120)
        self.reader.join(timeout=10)
        return code

    def close(self) -> None:
        self.reader.join(timeout=10)
        self.log.close()


def option(argv: list[str], flag: str) -> str:
    return argv[argv.index(flag) + 1]


def run_phase(runs: dict[str, list[str]], folder: Path, deadline: float, env: dict[str, str]) -> dict[str, int]:
    """Start every run, wait until `deadline`, stop what still runs, and bring all to the furthest step reached."""
    started = {name: Run(name, argv, folder / f"{name}.log", env) for name, argv in runs.items()}
    codes = {name: run.wait(deadline) for name, run in started.items()}
    stopped = {name for name, code in codes.items() if code is None}
    for name in stopped:
        codes[name] = started[name].stop()
    for name, run in started.items():
        run.close()
        if codes[name] not in (0, EXIT_CANCELLED):
            raise RuntimeError(f"{name} failed with exit code {codes[name]}; see {folder / (name + '.log')}")
    reached = {name: run.step for name, run in started.items()}
    if stopped:
        target = max(reached.values())
        for name in stopped:
            kept = [word for flag in ("--data", "--out", "--name", "--description") for word in (flag, option(runs[name], flag))]
            resumed = Run(name, [*kept, "--resume", "--steps", str(target)], folder / f"{name}.log", env)
            if resumed.wait(time.monotonic() + 300) != 0:
                raise RuntimeError(f"{name} could not be brought to step {target}; see {folder / (name + '.log')}")
            resumed.close()
            reached[name] = target
    return reached


def steps_per_second(runs: dict[str, list[str]], folder: Path, env: dict[str, str], steps: int = 40) -> float:
    """The slowest of the runs' rates while they all train side by side (steps 10 to steps-5: warm-up and the last
    step's validation and export left out)."""
    started = {name: Run(name, [*argv, "--steps", str(steps)], folder / f"probe_{name}.log", env) for name, argv in runs.items()}
    for name, run in started.items():
        if run.wait(time.monotonic() + 300) != 0:
            raise RuntimeError(f"the probe of {name} failed; see {folder / ('probe_' + name + '.log')}")
        run.close()
    first, last = 10, steps - 5
    return min((last - first) / (run.times[last] - run.times[first]) for run in started.values())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, required=True, help="the slice cache (collagan-impute cache)")
    parser.add_argument("--out", type=Path, required=True, help="where the archive parts and the summary are written")
    parser.add_argument("--budget", type=float, default=470.0, help="seconds for everything, probe and packing included")
    parser.add_argument("--phase2-share", type=float, default=0.3, help="share of the training time for phase 2")
    parser.add_argument("--card", type=Path, default=CARD, help="the card whose training subjects and validation split are used")
    parser.add_argument("--branch-width", type=int, default=8, help="the generator's widths (the bundled model's: 8 and 32)")
    parser.add_argument("--decoder-width", type=int, default=32)
    parser.add_argument("--weights-dtype", default="float32", choices=WEIGHTS_DTYPES,
                        help="of the exports: float16 lets three wider networks come back within the 64 MiB the device returns")
    parser.add_argument("--train-options", default="", metavar='"OPTIONS"',
                        help='train options added to both phases of every run, such as "--direct-gradient 1" (a candidate of docs/training.md)')
    parser.add_argument("--smoke", action="store_true", help="batches of 2 on 64x64 crops: a check of this script on a CPU")
    args = parser.parse_args(argv)
    shared = ["--batch-size", "2", "--crop", "64", "--device", "cpu"] if args.smoke else ["--device", "cuda"]
    shared += ["--branch-width", str(args.branch_width), "--decoder-width", str(args.decoder_width), "--depth", "4",
              "--weights-dtype", args.weights_dtype, *shlex.split(args.train_options)]
    begun = time.monotonic()
    cache = args.cache.resolve()
    work = Path(tempfile.mkdtemp(prefix="gpu_runs_"))
    logs = work / "logs"
    logs.mkdir()
    env = simpleitk_stand_in()
    training = json.loads(args.card.read_text(encoding="utf-8"))["training"]
    validation = [word for name in training["validation_subjects"] for word in ("--validation", name)]
    subjects = {"model": training["train_subjects"], "fold_a": fold_subjects(training["train_subjects"], "a"),
                "fold_b": fold_subjects(training["train_subjects"], "b")}

    def argv_of(name: str, phase: str, options: list[str], extra: list[str]) -> list[str]:
        chosen = [word for subject in subjects[name] for word in ("--subject", subject)]
        return ["--data", str(cache), "--out", str(work / name / phase), *validation, *chosen, *options, *extra]

    probe = {name: argv_of(name, "probe", [*PHASE1, *shared], ["--validate-every", "1000", "--checkpoint-every", "1000", "--decay-every", "1000"])
             for name in subjects}
    summary: dict = {"gpu": gpu_name()}
    try:  # whatever was trained comes back, also when a phase fails
        rate = steps_per_second(probe, logs, env)
        left = args.budget - (time.monotonic() - begun) - 60.0  # packing, and each phase's start (CUDA, cache, networks)
        phase1_s, phase2_s = left * (1 - args.phase2_share), left * args.phase2_share
        steps1 = max(int(rate * (phase1_s - 20.0)), 100)
        steps2 = max(int(rate / PHASE2_COST * (phase2_s - 20.0)), 20)
        summary.update(rate_phase1_steps_per_s=round(rate, 2), planned={"phase1": steps1, "phase2": steps2})
        print(json.dumps(summary), flush=True)

        cadence = lambda steps, decays: ["--steps", str(steps), "--decay-every", str(max(steps // decays, 1)),  # noqa: E731
                                         "--validate-every", str(max(steps // 2, 1)), "--checkpoint-every", str(max(steps // 4, 1))]
        first = {name: argv_of(name, "phase1", [*PHASE1, *shared], [*cadence(steps1, PHASE1_DECAYS), "--name", "phase1",
                                                      "--description", "phase 1 on a GPU: direct losses"]) for name in subjects}
        phase1_began = time.monotonic()
        summary["phase1_steps"] = run_phase(first, logs, phase1_began + phase1_s * 1.1, env)
        summary["phase1_s"] = round(time.monotonic() - phase1_began, 1)
        description = (f"CollaGAN for any subset of missing contrasts, trained on one GPU ({summary['gpu']}) on "
                       f"{len(subjects['model'])} subjects from a slice cache (one brain slice in {stride_of(cache)}): "
                       f"{summary['phase1_steps']['model']} steps of the direct losses on 128x128 crops (batch 32), then METHOD.md's "
                       "multiple-cycle, adversarial and classification losses (batch 16)")
        names = {"model": "collagan_brats", "fold_a": "collagan_brats_oof_a", "fold_b": "collagan_brats_oof_b"}
        second = {name: argv_of(name, "phase2", [*PHASE2, *shared], [
            *cadence(steps2, PHASE2_DECAYS), "--init", str(work / name / "phase1" / "checkpoint.safetensors"),
            "--name", names[name], "--description", description]) for name in subjects}
        phase2_began = time.monotonic()
        deadline = max(phase2_began + phase2_s / 2, min(phase2_began + phase2_s * 1.15, begun + args.budget - 35.0))
        summary["phase2_steps"] = run_phase(second, logs, deadline, env)
        summary["phase2_s"] = round(time.monotonic() - phase2_began, 1)
    finally:
        summary["total_s"] = round(time.monotonic() - begun, 1)
        (work / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
        pack(work, args.out)
    print(json.dumps(summary), flush=True)
    return 0


def stride_of(cache: Path) -> int:
    import numpy as np

    with np.load(cache, allow_pickle=False) as data:
        return int(json.loads(str(data["header"]))["stride"])


def gpu_name() -> str:
    import torch

    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"


def pack(work: Path, out: Path) -> None:
    """The exports, logs and curves in one archive cut into 15 MiB parts; not the checkpoints (the optimisers' state) or the
    first phase's weights, which would not fit the 64 MiB that comes back."""
    out.mkdir(parents=True, exist_ok=True)
    archive = out / "gpu_runs.tar.gz"
    left_out = [f"--exclude={name}" for name in ("checkpoint.safetensors", "phase1.safetensors", "probe")]
    subprocess.run(["tar", "czf", str(archive), *left_out, "-C", str(work), "."], check=True)
    subprocess.run(["split", "-b", "15M", "-d", str(archive), str(archive) + ".part-"], check=True)
    archive.unlink()
    (out / "summary.json").write_text((work / "summary.json").read_text(encoding="utf-8"), encoding="utf-8")


if __name__ == "__main__":
    sys.exit(main())
