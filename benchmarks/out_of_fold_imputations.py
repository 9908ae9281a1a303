"""Each subject's imputations by a model that never saw it: the data that post-hoc corrections are chosen on.

A correction of a model's output (landmark offsets, smoothing) must be chosen on imputations as biased as those
of a new subject, so a training subject is imputed by a fold model that was not trained on it
(benchmarks/out_of_fold.py trains them) and any other subject by the model under test. Every contrast is
imputed from the other three, unsmoothed and unmapped, and kept cropped to the brain's box with a margin wide
enough that smoothing and scoring inside the brain give what they give on the whole volume. A cache folder (the
benchmarks' `--cache`) keeps them on disk, one NumPy file per subject named by the imputing model's sha256, so a
second benchmark (or an interrupted one) does not impute again; empty it when the data or their preparation change.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "CollaGANImpute"))

from CollaGANImputeLib.inference.synthesis import model_inputs, synthesise  # noqa: E402
from CollaGANImputeLib.io.atomic import atomic_path  # noqa: E402
from CollaGANImputeLib.model.weights import Model, load_model  # noqa: E402
from CollaGANImputeLib.preparation.data import Subject, prepare_subject  # noqa: E402

# Voxels kept around the brain's box: more than the widest smoothing smoothing.py tries reaches (4 sigma of 2 voxels,
# 2 mm across 1 mm slices) and than SSIM's 3-voxel half-window, so results inside the brain are the whole volume's.
MARGIN = 12


@dataclass
class Imputed:
    """One contrast of one subject, real and imputed, on the brain's box of the study's grid."""

    real: np.ndarray
    imputed: np.ndarray
    mask: np.ndarray
    slice_spacing: float  # mm between slices (smoothing across slices is given in mm)


def brain_box(mask: np.ndarray, margin: int) -> tuple[slice, ...]:
    """The mask's bounding box widened by `margin` voxels on every side (within the array)."""
    spans = [np.nonzero(mask.any(axis=tuple(a for a in range(3) if a != axis)))[0] for axis in range(3)]
    return tuple(slice(max(int(s[0]) - margin, 0), int(s[-1]) + margin + 1) for s in spans)


def imputers(model: Model, folds: list[Model], subjects: list[Subject]) -> dict[str, Model]:
    """Subject name -> the model that imputes it: a fold model that never saw it for the model's training subjects,
    the model itself for the others (and for everyone when there are no folds)."""
    training = set(model.card["training"]["train_subjects"])
    for fold in folds:
        if fold.contrasts != model.contrasts:
            raise ValueError(f"fold model {fold.weights_path} imputes {fold.contrasts}, the model under test {model.contrasts}")
    chosen = {}
    for subject in subjects:
        if subject.name not in training or not folds:
            chosen[subject.name] = model
            continue
        unseen_by = [fold for fold in folds if subject.name not in fold.card["training"]["train_subjects"]]
        if not unseen_by:
            raise ValueError(f"every fold model was trained on {subject.name}: no out-of-fold imputation for it")
        chosen[subject.name] = unseen_by[0]
    return chosen


def impute_subject(by: Model, subject: Subject, cache: Path | None = None) -> dict[str, Imputed]:
    """Every contrast of `subject` imputed by `by` from the others (read from, or written to, `cache`)."""
    contrasts = by.contrasts
    stored = cache / f"{subject.name}.{by.card['sha256'][:16]}.npz" if cache else None
    if stored is not None and stored.exists():
        with np.load(stored, allow_pickle=False) as saved:
            return {key: Imputed(saved[f"{key}_real"], saved[f"{key}_imputed"], saved["mask"], float(saved["slice_spacing"]))
                    for key in contrasts}
    study = prepare_subject(subject, contrasts)
    box = brain_box(study.mask, MARGIN)
    stack = model_inputs(by, study)
    mask = study.mask[box].copy()
    result = {key: Imputed(study.images[key][box].copy(), synthesise(by.generator, stack, contrasts.index(key), study.mask)[box].copy(),
                           mask, float(study.slice_spacing)) for key in contrasts}
    if stored is not None:
        stored.parent.mkdir(parents=True, exist_ok=True)
        arrays = {"mask": mask, "slice_spacing": np.float64(study.slice_spacing)}
        for key, item in result.items():
            arrays[f"{key}_real"], arrays[f"{key}_imputed"] = item.real, item.imputed
        with atomic_path(stored) as partial, open(partial, "wb") as file:
            np.savez_compressed(file, **arrays)
    return result


def impute_all(by: dict[str, Model], subjects: list[Subject], cache: Path | None = None) -> dict[tuple[str, str], Imputed]:
    """(subject, contrast) -> Imputed for every subject, each by its model in `by` (`imputers`); progress on stderr."""
    started = time.monotonic()
    volumes = {}
    for number, subject in enumerate(subjects, 1):
        for key, item in impute_subject(by[subject.name], subject, cache).items():
            volumes[(subject.name, key)] = item
        print(f"{number}/{len(subjects)} {subject.name} imputed by {by[subject.name].name} ({time.monotonic() - started:.0f} s)",
              file=sys.stderr, flush=True)
    return volumes



def add_options(parser: argparse.ArgumentParser, *, folds_required: bool) -> None:
    """The options of a benchmark that reads out-of-fold imputations: the fold models and the cache."""
    parser.add_argument("--fold-weights", type=Path, action="append", default=[], required=folds_required,
                        help="a model trained on part of the training subjects (repeatable); each training subject is "
                             "imputed by one that never saw it")
    parser.add_argument("--cache", type=Path, help="keep the imputations here (out_of_fold_imputations.py)")


def from_options(parser: argparse.ArgumentParser, args: argparse.Namespace, model: Model,
                 subjects: list[Subject]) -> tuple[dict[str, Model], dict[tuple[str, str], Imputed]]:
    """`imputers` and `impute_all` as `add_options`'s options ask; a fold model that cannot serve ends with parser.error."""
    try:
        by = imputers(model, [load_model(weights) for weights in args.fold_weights], subjects)
    except ValueError as error:
        parser.error(str(error))
    return by, impute_all(by, subjects, args.cache)
