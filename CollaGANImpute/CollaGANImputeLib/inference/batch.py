"""Batch imputation of a folder of studies, in this process or in several worker processes (one per
GPU), with one progress report and a manifest of finished cases.

The manifest (OUTPUT/collagan_batch_<missing>.json, one per imputed contrast, so runs for different
contrasts into one folder keep theirs) is rewritten atomically after every case, so a run that was
cancelled or killed is taken up by rerunning the same command: cases whose output is listed as done
and still on disk are not imputed again. Each output file is itself written atomically. A done case
keeps the notes of its imputation (inputs resampled onto another grid, ...): in a batch nobody reads
them as they pass.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from pathlib import Path
from typing import TYPE_CHECKING

from ..core.contrasts import VOLUME_SUFFIXES, display_name
from ..core.errors import Cancelled, InputError, ModelError
from ..io.atomic import check_outputs, folder_lock, write_text_atomic
from ..io.series_recognition import find_study_files

if TYPE_CHECKING:  # torch is imported only when work starts
    from ..model.weights import Model

Progress = Callable[[int, int, str], None]  # (studies done, studies in all, stage)
MANIFEST_FORMAT = "collagan-impute-batch/1"


def study_folders(folder: str | Path) -> list[Path]:
    """The studies under `folder`: its sub-folders, or the folder itself when it holds volume files."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"'{folder}' is not a folder")
    if any(p.is_file() and p.name.lower().endswith(VOLUME_SUFFIXES) for p in folder.iterdir()):
        return [folder]
    studies = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not studies:
        raise InputError(f"'{folder}' holds neither volume files nor study folders")
    return studies


def output_path(output: str | Path, study: str, missing: str) -> Path:
    """Where a study's imputation of `missing` goes."""
    return Path(output) / f"{study}_{missing}_collagan.nii.gz"


def manifest_path(output: str | Path, missing: str) -> Path:
    """The record of the studies finished for `missing` in the output folder."""
    return Path(output) / f"collagan_batch_{missing}.json"


def impute_study(model: Model, folder: Path, output: str | Path, missing: str, *, progress: Callable[[int, int], None] | None = None,
                 cancel: Callable[[], bool] | None = None, **options) -> tuple[Path | str, list[str], str]:
    """One study: the file written, or 'skipped: <reason>' when its input is unusable, the notes of the imputation
    and how it was made (`Imputation.method`). `options` (batch_size, bf16, views, planes) go to `imputation.impute`."""
    from ..io.volumes import write_volume
    from .imputation import impute

    try:
        files = find_study_files(folder, [k for k in model.contrasts if k != missing])
        result = impute(files, missing, model, progress=progress, cancel=cancel, **options)
        return write_volume(result.image, output_path(output, folder.name, missing)), result.notes, result.method
    except InputError as error:
        return f"skipped: {error}", [], ""


def impute_folder(
    model: Model,
    studies: str | Path,
    output: str | Path,
    missing: str,
    *,
    workers: int = 1,
    overwrite: bool = False,
    progress: Progress | None = None,
    cancel: Callable[[], bool] | None = None,
    **options,
) -> dict[str, Path | str]:
    """Impute `missing` for every study under `studies`; write OUTPUT/<study>_<missing>_collagan.nii.gz.

    Returns, per study, the file (written now or by an earlier run) or the reason it was skipped (a
    study with bad input does not stop the others, and is tried again on a rerun). `workers` > 1 runs
    that many processes, each loading `model`'s weights file; on a CUDA model they share the GPUs in
    turn. Cancelling stops before the next slice batch and leaves no partial file. `options` (batch_size,
    bf16, views, planes, strict) go to `imputation.impute`. One run at a time imputes `missing` into a folder (a lock);
    an output this model has not recorded as finished is replaced only with `overwrite`, and no output may
    land inside `studies`; both are checked before any study is imputed.
    """
    if missing not in model.contrasts:
        raise ModelError(f"model '{model.name}' cannot impute {display_name(missing)}; it imputes {', '.join(model.contrasts)}")
    from ..core.orientations import DEFAULT_PLANES, check_planes
    from .synthesis import check_views

    check_views(options.get("views", 1))
    check_planes(options.get("planes", DEFAULT_PLANES))
    folders = study_folders(studies)
    with folder_lock(output, f"collagan_batch_{missing}"):
        return _impute_unlocked(model, folders, Path(studies), output, missing, workers, overwrite, progress, cancel, options)


def _impute_unlocked(model: Model, folders: list[Path], studies: Path, output: str | Path, missing: str, workers: int, overwrite: bool,
                     progress: Progress | None, cancel: Callable[[], bool] | None, options: dict) -> dict[str, Path | str]:
    """`impute_folder` once its output folder is locked."""
    manifest = _Manifest(manifest_path(output, missing), model, missing)
    report: dict[str, Path | str] = {}
    for folder in folders:
        if manifest.finished(folder.name, output_path(output, folder.name, missing)):
            report[folder.name] = output_path(output, folder.name, missing)
    pending = [f for f in folders if f.name not in report]
    # An output of a case the manifest lists was written by a run of this model (one killed before it could record
    # it as done); any other existing output is someone else's file.
    for ours in (True, False):
        check_outputs([output_path(output, f.name, missing) for f in pending if (f.name in manifest.cases) == ours],
                      {studies: "the folder of studies"}, overwrite=overwrite or ours)
    manifest.start([f.name for f in pending])

    def finish(name: str, outcome: Path | str, notes: list[str], method: str) -> None:
        report[name] = outcome
        manifest.record(name, outcome, notes, method)
        if progress is not None:
            progress(len(report), len(folders), f"{name}: {'done' if isinstance(outcome, Path) else 'skipped'}")

    if progress is not None:
        progress(len(report), len(folders), f"{len(report)} finished before, {len(pending)} to impute")
    if workers <= 1 or len(pending) <= 1:
        for folder in pending:
            def slice_progress(done: int, total: int, name: str = folder.name) -> None:
                if progress is not None:
                    progress(len(report), len(folders), f"{name}: slice batch {done}/{total}")

            finish(folder.name, *impute_study(model, folder, output, missing, progress=slice_progress, cancel=cancel, **options))
    else:
        _impute_in_processes(model, pending, output, missing, min(workers, len(pending)), options, finish, cancel)
    if progress is not None:
        progress(len(folders), len(folders), "done")
    return {folder.name: report[folder.name] for folder in folders}


class _Manifest:
    """The record of finished cases; one made by another model starts afresh."""

    def __init__(self, path: Path, model: Model, missing: str) -> None:
        self.path = path
        self.run = {"format": MANIFEST_FORMAT, "model": model.name, "sha256": model.card.get("sha256"), "missing": missing}
        try:
            saved = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            saved = {}
        same_run = all(saved.get(key) == value for key, value in self.run.items())
        self.cases: dict[str, dict] = dict(saved.get("cases", {})) if same_run else {}

    def start(self, names: list[str]) -> None:
        """List the cases about to be imputed (status "started"), so that a rerun knows their outputs as its own."""
        for name in names:
            self.cases[name] = {"status": "started", "finished": None}
        self._write()

    def finished(self, name: str, output: Path) -> bool:
        return self.cases.get(name, {}).get("status") == "done" and output.is_file()

    def record(self, name: str, outcome: Path | str, notes: list[str], method: str) -> None:
        if isinstance(outcome, Path):
            entry = {"status": "done", "output": outcome.name, "method": method, "notes": notes}
        else:
            entry = {"status": "skipped", "reason": outcome}
        self.cases[name] = {**entry, "finished": time.strftime("%Y-%m-%dT%H:%M:%S")}
        self._write()

    def _write(self) -> None:
        write_text_atomic(self.path, json.dumps({**self.run, "cases": self.cases}, indent=2) + "\n")


# ----- worker processes -------------------------------------------------------------------------------
_worker: dict = {}  # in a worker process: its model and the shared cancel event


def _start_worker(weights: str, devices, threads: int, cancel_event) -> None:
    import torch

    from ..model.weights import load_model

    torch.set_num_threads(threads)
    _worker.update(model=load_model(weights, devices.get()), cancel=cancel_event)


def _worker_study(folder: str, output: str, missing: str, options: dict) -> tuple[Path | str, list[str], str]:
    return impute_study(_worker["model"], Path(folder), output, missing, cancel=_worker["cancel"].is_set, **options)


def worker_devices(model: Model, workers: int) -> list[str]:
    """One device per worker: the GPUs in turn for a CUDA model, else the CPU."""
    import torch

    device = next(model.generator.parameters()).device
    if device.type != "cuda":
        return ["cpu"] * workers
    return [f"cuda:{index % torch.cuda.device_count()}" for index in range(workers)]


def _impute_in_processes(model: Model, pending: Sequence[Path], output, missing: str, workers: int, options: dict,
                         finish: Callable[[str, Path | str, list[str], str], None], cancel: Callable[[], bool] | None) -> None:
    """Spawned processes (safe with CUDA and threads); the CPU's cores are shared out between them."""
    context = multiprocessing.get_context("spawn")
    devices, cancel_event = context.Queue(), context.Event()
    for device in worker_devices(model, workers):
        devices.put(device)
    threads = max(1, (os.cpu_count() or 1) // workers)
    with ProcessPoolExecutor(workers, mp_context=context, initializer=_start_worker,
                             initargs=(str(model.weights_path), devices, threads, cancel_event)) as pool:
        running: dict[Future, str] = {
            pool.submit(_worker_study, str(folder), str(output), missing, options): folder.name for folder in pending
        }
        try:
            while running:
                done, _ = wait(running, timeout=0.2, return_when=FIRST_COMPLETED)
                for future in done:
                    finish(running.pop(future), *future.result())
                if cancel is not None and cancel():
                    raise Cancelled("batch imputation cancelled; rerun it to impute the remaining studies")
        except BaseException:
            cancel_event.set()  # running studies stop at their next slice batch and leave no partial file
            pool.shutdown(wait=True, cancel_futures=True)
            raise
