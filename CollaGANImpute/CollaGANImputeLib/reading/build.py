"""Building a blinded reading session (visual Turing test) from studies with the real contrast.

For each contrast, K real and K synthetic images are sampled: axial slices with enough brain, no two of
one study closer than `min_gap` slices (and never the real and the synthetic of one slice), or whole
volumes, one per study. Nothing a rater can see tells the class: both images of a study are cut from the
same canonical grid, zero outside the same brain mask, divided by their own brain standard deviation,
rounded to one lattice of values (`shared_value_step`), written by the same writer as uncompressed float32 NIfTI (equal file sizes, empty description fields,
unit direction, origin 0, the study's spacing), with neutral ids given in a shuffled order, equal file
times, and one display-window rule (1st-99th percentile of the item's non-zero voxels). The seed that
decides which picks are real and which id each item gets is fresh from the operating system unless the
organiser gives one: a known seed (such as a default) would let a rater rebuild the key from the ids.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import secrets
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import SimpleITK as sitk

from ..core.contrasts import KNOWN_CONTRASTS, display_name
from ..core.errors import InputError
from ..inference.batch import output_path, study_folders
from ..io.geometry import CANONICAL, resample_onto, same_grid, to_canonical_array
from ..io.series_recognition import find_study_files
from ..io.volumes import write_volume
from ..model.model_card import sha256_of
from ..preparation.data import manifest_studies
from ..preparation.study import brain_slices, load_volume, normalise_in_brain, prepare_study
from .session import ITEMS_DIR, KEY_FILE, SESSION_FILE, SESSION_FORMAT, Session, write_json

if TYPE_CHECKING:  # torch is imported only when a model is used
    from ..model.weights import Model

Progress = Callable[[int, int, str], None]  # (done, total, what)


@dataclass(frozen=True)
class ReadingStudy:
    """One study: its real volumes by contrast, and imputations already made (else made on the fly)."""

    name: str
    files: dict[str, Path]
    synthetic: dict[str, Path] = field(default_factory=dict)


@dataclass(frozen=True)
class SessionSettings:
    """What to sample; `seed` None draws a secret one (recorded in key.json, which raters must not have)."""

    contrasts: tuple[str, ...]
    per_class: int
    seed: int | None = None
    volumes: bool = False  # whole volumes instead of axial slices
    min_gap: int = 5  # slices of one study and contrast at least this far apart
    min_brain_fraction: float = 0.5  # a slice's brain area relative to the study's largest


def find_studies(source: str | Path, synthetic: str | Path | None = None) -> list[ReadingStudy]:
    """Studies from a manifest JSON (or a folder holding manifest.json), a folder of study folders or one
    study folder. `synthetic`: a folder of imputations named <study>_<contrast>_collagan.nii.gz (as the
    batch imputation writes them)."""
    source = Path(source)
    manifest = source / "manifest.json" if source.is_dir() else source
    if manifest.is_file():
        found = list(manifest_studies(manifest, list(KNOWN_CONTRASTS)).items())
    else:
        found = [(folder.name, find_study_files(folder, list(KNOWN_CONTRASTS))) for folder in study_folders(source)]
    studies = []
    for name, files in found:
        made = {}
        if synthetic is not None:
            made = {k: p for k in files if (p := output_path(synthetic, name, k)).is_file()}
        studies.append(ReadingStudy(name, files, made))
    return studies


def display_window(array: np.ndarray) -> tuple[float, float]:
    """The one window rule for every item: 1st and 99th percentiles of its non-zero voxels."""
    values = array[array != 0]
    if values.size == 0:
        return (0.0, 1.0)
    low, high = (float(v) for v in np.percentile(values, [1.0, 99.0]))
    return (low, high if high > low else low + 1.0)


@dataclass
class _Pair:
    real: np.ndarray  # canonical [S, P, L], brain-std units, zero outside mask
    synthetic: np.ndarray
    mask: np.ndarray
    spacing: tuple[float, float, float]  # of the canonical array, (L, P, S) order as ITK gives it


def _model_inputs(study: ReadingStudy, contrast: str, model) -> dict[str, Path]:
    """The inputs the model needs to impute `contrast` of `study`, or an InputError saying what lacks."""
    if model is None:
        raise InputError(f"study '{study.name}': no imputed {display_name(contrast)} was given and no model to make one")
    absent = [display_name(k) for k in model.contrasts if k != contrast and k not in study.files]
    if absent:
        raise InputError(f"study '{study.name}' has no {', '.join(absent)}: the model needs it to impute {display_name(contrast)}")
    return {k: study.files[k] for k in model.contrasts if k != contrast}


def _brain_mask(study: ReadingStudy, contrast: str, model) -> np.ndarray:
    """The mask `_pair` will use, without imputing (the same prepare_study call `impute` makes)."""
    if contrast in study.synthetic:
        return _pair(study, contrast, model).mask
    return prepare_study(_model_inputs(study, contrast, model), model.contrasts).mask


def _pair(study: ReadingStudy, contrast: str, model) -> _Pair:
    """The real and the synthetic volume of one contrast on one grid, masked and normalised alike."""
    from ..analysis.evaluation import real_on_grid
    from ..inference.imputation import impute

    if contrast in study.synthetic:
        real_image = load_volume(study.files[contrast], contrast)
        fake_image = load_volume(study.synthetic[contrast], contrast)
        if not same_grid(fake_image, real_image):
            fake_image = resample_onto(fake_image, real_image)
        real = np.clip(to_canonical_array(real_image), 0.0, None)
        fake = np.clip(to_canonical_array(fake_image), 0.0, None)
        mask = (real > 0) | (fake > 0)
        reference = real_image
    else:
        imputation = impute(_model_inputs(study, contrast, model), contrast, model)
        fake = to_canonical_array(imputation.image)
        real = real_on_grid(imputation, study.files[contrast])  # still the scan's integers: its lattice is decided below
        mask = imputation.study.mask
        reference = imputation.study.reference
    stores_integers = bool(np.array_equal(real, np.round(real)))  # not so once resampled onto another grid
    real_sd, fake_sd = (normalise_in_brain(array, mask) for array in (real, fake))
    if real_sd <= 0 or fake_sd <= 0:
        raise InputError(f"study '{study.name}': the real or imputed {display_name(contrast)} is constant in the brain")
    real, fake = shared_value_step(real, fake, real_sd if stores_integers else 1 / FINEST_STEP)
    return _Pair(real, fake, mask, tuple(sitk.DICOMOrient(reference, CANONICAL).GetSpacing()))


FINEST_STEP = 1e-3  # brain SDs: the lattice both classes get when the real image stores no integers


def shared_value_step(real: np.ndarray, synthetic: np.ndarray, levels: float) -> tuple[np.ndarray, np.ndarray]:
    """Both images rounded to multiples of 1/`levels`, computed alike. A real scan stores integers, so once
    divided by its brain SD (`levels`) it takes only multiples of one step, while a network's output is
    continuous: a rater who opened the files could tell them apart by counting distinct values. With the
    real image's own step the real image keeps its values (to the last bit or so)."""
    return tuple((np.round(array.astype(np.float64) * levels) / levels).astype(np.float32) for array in (real, synthetic))


def _candidates(mask: np.ndarray, fraction: float) -> np.ndarray:
    areas = mask.reshape(mask.shape[0], -1).sum(axis=1)
    return brain_slices(mask, max(1, math.ceil(fraction * int(areas.max()))))


def _sample(candidates: dict[str, np.ndarray], settings: SessionSettings, rng: np.random.Generator, contrast: str) -> list[tuple[str, int]]:
    """2K (study, slice) picks in random order, no two of one study closer than min_gap slices; -1 is the whole volume."""
    needed = 2 * settings.per_class
    if settings.volumes:
        pool = [(name, -1) for name in candidates]
        rng.shuffle(pool)
        if len(pool) < needed:
            raise InputError(f"{display_name(contrast)}: {len(pool)} studies have it, but {needed} whole volumes are needed "
                             f"({settings.per_class} per class, one per study); lower --per-class or add studies")
        return pool[:needed]
    pool = [(name, int(z)) for name, slices in candidates.items() for z in slices]
    order = rng.permutation(len(pool))
    picked: dict[str, list[int]] = {name: [] for name in candidates}
    chosen = []
    for index in order:
        name, z = pool[index]
        if all(abs(z - other) >= settings.min_gap for other in picked[name]):
            picked[name].append(z)
            chosen.append((name, z))
            if len(chosen) == needed:
                return chosen
    raise InputError(f"{display_name(contrast)}: only {len(chosen)} slices with enough brain lie {settings.min_gap} or more slices apart, "
                     f"but {needed} are needed; lower --per-class or --min-gap, or add studies")


def _item_image(array: np.ndarray, spacing: tuple[float, float, float]) -> sitk.Image:
    """One geometry convention for every item: unit direction, origin 0, the study's spacing."""
    image = sitk.GetImageFromArray(np.ascontiguousarray(array if array.ndim == 3 else array[None], dtype=np.float32))
    image.SetSpacing(spacing)
    image.SetOrigin((0.0, 0.0, 0.0))
    image.SetDirection((1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0))
    return image


def create_session(
    studies: Sequence[ReadingStudy],
    settings: SessionSettings,
    out: str | Path,
    model: Model | None = None,
    progress: Progress | None = None,
) -> Session:
    """Sample, blind and write a session to `out` (a new or empty folder); the same seed, studies and
    model give the same session, id included (without a seed, a secret one is drawn and recorded in
    key.json). Built in a temporary sibling folder, renamed when whole."""
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise InputError(f"'{out}' already exists and is not an empty folder; a new session needs a new folder")
    if settings.per_class < 1 or settings.min_gap < 1:
        raise InputError("--per-class and --min-gap must be at least 1")
    if not studies:
        raise InputError("no studies were given")
    for contrast in settings.contrasts:
        lacking = [s.name for s in studies if contrast not in s.files]
        if lacking:
            raise InputError(f"study '{lacking[0]}' has no real {display_name(contrast)} ({len(lacking)} of {len(studies)} studies lack it): "
                             "a reading session needs the real image of every contrast it shows")
    report = progress or (lambda done, total, what: None)
    if settings.seed is None:
        settings = replace(settings, seed=secrets.randbits(63))
    rng = np.random.default_rng(settings.seed)
    steps = len(studies) * len(settings.contrasts) * 2
    picks: dict[str, list[tuple[str, int]]] = {}
    for c_index, contrast in enumerate(settings.contrasts):
        candidates = {}
        for s_index, study in enumerate(studies):
            report(c_index * len(studies) + s_index, steps, f"{study.name}: brain mask for {display_name(contrast)}")
            candidates[study.name] = [] if settings.volumes else _candidates(_brain_mask(study, contrast, model), settings.min_brain_fraction)
        picks[contrast] = _sample(candidates, settings, rng, contrast)

    entries = [(contrast, name, z, "real" if i % 2 == 0 else "synthetic")
               for contrast, chosen in picks.items() for i, (name, z) in enumerate(chosen)]
    ids = [f"item_{n + 1:04d}" for n in rng.permutation(len(entries))]
    out.parent.mkdir(parents=True, exist_ok=True)
    build = out.parent / f".{out.name}.partial"  # what a build stopped earlier left is removed first
    shutil.rmtree(build, ignore_errors=True)
    build.mkdir()
    try:
        key, windows = {}, {}
        done = len(studies) * len(settings.contrasts)
        for contrast in settings.contrasts:
            for study in studies:
                mine = [(item_id, z, cls) for item_id, (c, name, z, cls) in zip(ids, entries) if c == contrast and name == study.name]
                report(done, steps, f"{study.name}: real and imputed {display_name(contrast)}")
                done += 1
                if not mine:
                    continue
                pair = _pair(study, contrast, model)
                for item_id, z, cls in mine:
                    volume = pair.real if cls == "real" else pair.synthetic
                    array = volume if z < 0 else volume[z]
                    path = write_volume(_item_image(array, pair.spacing), build / ITEMS_DIR / f"{item_id}.nii")
                    windows[item_id] = list(display_window(array))
                    key[item_id] = {"class": cls, "contrast": contrast, "study": study.name, "slice": None if z < 0 else z,
                                    "sha256": sha256_of(path)}
        key = dict(sorted(key.items()))
        stamp = time.time()
        for item_id in key:
            os.utime(build / ITEMS_DIR / f"{item_id}.nii", (stamp, stamp))
        recipe = {"settings": {**asdict(settings), "contrasts": list(settings.contrasts)},
                  "studies": {s.name: {"real": {k: str(p) for k, p in s.files.items()},
                                       "synthetic": {k: str(p) for k, p in s.synthetic.items()}} for s in studies},
                  "model": None if model is None else {"name": model.name, "sha256": model.card.get("sha256")}}
        session_id = hashlib.sha256(json.dumps({**recipe, "items": key}, sort_keys=True).encode()).hexdigest()[:16]
        write_json(build / KEY_FILE, {"format": SESSION_FORMAT, "session_id": session_id, **recipe, "items": key})
        write_json(build / SESSION_FILE, {
            "format": SESSION_FORMAT, "session_id": session_id, "mode": "volumes" if settings.volumes else "axial slices",
            "instructions": "For each image, answer whether it is a real acquisition or synthetic (made by a network).",
            "items": [{"id": i, "file": f"{ITEMS_DIR}/{i}.nii", "contrast": t["contrast"], "window": windows[i]} for i, t in key.items()],
        })
        if out.exists():
            out.rmdir()
        os.replace(build, out)
    except BaseException:
        shutil.rmtree(build, ignore_errors=True)
        raise
    report(steps, steps, "done")
    return Session(out)
