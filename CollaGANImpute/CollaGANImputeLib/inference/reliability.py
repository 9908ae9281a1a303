"""Where a synthetic contrast should not be trusted: a voxel-wise uncertainty beside an imputation.

A generator fills a missing contrast with plausible tissue even where its inputs do not determine it (an
enhancing lesion that only T1Gd shows, anatomy unlike its training data). The reader cannot tell such
places from the image itself, so beside the imputation this module computes the spread (per-voxel
standard deviation, in the imputation's units: brain standard deviations) of several predictions of the
same contrast that a reliable prediction would not tell apart:

- "flips" (test-time augmentation; any model): the slices and their left-right mirror (training flips
  them too), each on several canvases: the brain's box widened by a margin and shifted by a few voxels.
  The canvas is a nuisance the output should not depend on, yet instance normalisation and CCAM average
  over it and stride-2 downsampling depends on the position; where the prediction follows such details,
  it was not determined by the inputs.
- "subsets" (models trained for any subset of missing inputs, model card "missing_inputs" max >= 2):
  the full input set and each set with one present input dropped (zero-filled). Where the inputs agree
  on the missing contrast the predictions do too; where one input alone drives it they part.

The central prediction returned is the plain imputation (`synthesise` with its defaults, one of the
predictions) with the card's landmark offsets (intensity_landmarks.py), so asking for the map never changes
the imputed volume. A spread sees where the prediction
is unstable, not where it is consistently wrong (a lesion the model confidently paints over). The
"calibrated" map (error_model.py) adds what the spread misses: a model of the actual error fitted on
subjects with every contrast (`calibrate`), kept in the model card. How far each map ranks the actual
error is measured by benchmarks/reliability.py (Spearman correlation over the brain).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from scipy.stats import spearmanr

from ..core.errors import InputError
from ..core.metrics import brasyn_normalise
from ..model.model_card import most_missing
from ..model.networks import Generator
from ..model.weights import Model
from ..preparation.study import PreparedStudy, brain_slices
from . import error_model
from .intensity_landmarks import model_landmarks
from .synthesis import PLAIN, CancelCheck, Progress, model_inputs, model_smoothing, synthesise_on_canvas

SPREADS = ("flips", "subsets")  # what `uncertainty_map` computes
METHODS = ("calibrated", "subsets", "flips")  # the maps `reliability_map` offers, most informative first
# Canvases of the "flips" method: (margin added on every side of the brain's box, row shift, column shift) in
# voxels, each used as it is and mirrored; (0, 0, 0) is the plain imputation's. Chosen on two training
# subjects with the one-missing interim model: the mean Spearman correlation of spread and |error| over
# contrasts was 0.13 with the mirror alone, 0.25 with the first four canvases and 0.29 with all twelve.
CANVASES = ((0, 0, 0), (8, 0, 0), (16, 0, 0), (32, 0, 0), (8, 3, 5), (8, -5, -3), (16, 7, -2), (16, -2, 7),
            (24, 5, 5), (24, -6, -6), (32, 9, -11), (32, -11, 9))


def available_methods(card: dict, present: int | None = None) -> tuple[str, ...]:
    """The methods a model card allows for a request with `present` acquired inputs (default: all but the
    missing one), most informative first: "subsets" needs two, and a model trained with one more contrast
    absent than the request has (card field missing_inputs, absent contrasts counting the one imputed);
    "calibrated" needs the card's error model and the spread it was fitted with."""
    count = len(card["contrasts"])
    present = count - 1 if present is None else present
    spreads = SPREADS if present >= 2 and count - present + 1 <= most_missing(card) else ("flips",)
    calibrated = card.get("error_model", {}).get("spread") in spreads
    return tuple(m for m in METHODS if m in spreads or (m == "calibrated" and calibrated))


def uncertainty_map(
    generator: Generator,
    stack: np.ndarray,
    target: int,
    mask: np.ndarray,
    *,
    method: str = "flips",
    present: Sequence[int] | None = None,
    canvases: Sequence[tuple[int, int, int]] = CANVASES,
    batch_size: int = 8,
    bf16: bool | None = None,
    smoothing: tuple[float, float] = (0.0, 0.0),
    progress: Progress | None = None,
    cancel: CancelCheck | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The plain imputation of contrast `target` and its uncertainty, both (S, H, W), zero outside `mask`.

    stack, target, mask, batch_size, bf16, smoothing and cancel as for `synthesis.synthesise`. `present`: the
    channels of `stack` that hold an acquired input (default: every channel but `target`; the others are
    zero-filled); "subsets" drops each in turn and needs at least two. `canvases` ("flips"; no shift
    larger than its margin): fewer is faster (each costs about one plain imputation per mirror image,
    more for wide margins) but ranked the error less well. `progress` counts slices over all predictions.
    """
    if method not in SPREADS:
        raise InputError(f"unknown uncertainty method {method!r}; expected {' or '.join(SPREADS)}")
    present = [c for c in range(stack.shape[0]) if c != target] if present is None else list(present)
    if target in present:
        raise InputError("the contrast to impute cannot also be a present input")
    if any(abs(down) > margin or abs(right) > margin for margin, down, right in canvases):
        raise ValueError("a canvas shift larger than its margin would cut off part of the brain")
    absent = [c for c in range(stack.shape[0]) if c != target and c not in present]
    if absent:
        stack = stack.copy()
        stack[absent] = 0.0
    members = [(PLAIN, False, None)]
    if method == "flips":
        members += [(tuple(c), mirror, None) for c in canvases for mirror in (False, True) if (tuple(c), mirror) != (PLAIN, False)]
    else:
        if len(present) < 2:
            raise InputError("the 'subsets' uncertainty needs at least two present inputs: with one there is nothing to drop")
        members += [(PLAIN, False, c) for c in present]
    per_member = len(brain_slices(mask))
    total = per_member * len(members)

    def predict(number: int, canvas: tuple[int, int, int], mirror: bool, dropped: int | None) -> np.ndarray:
        inputs = stack
        if dropped is not None:
            inputs = stack.copy()
            inputs[dropped] = 0.0
        counted = None if progress is None else lambda done, _: progress(number * per_member + done, total)
        return synthesise_on_canvas(generator, inputs, target, mask, canvas, mirror, batch_size=batch_size, bf16=bf16, smoothing=smoothing,
                          progress=counted, cancel=cancel)

    central = predict(0, *members[0])
    mean, square = central.astype(np.float64), central.astype(np.float64) ** 2
    for number, member in enumerate(members[1:], start=1):
        prediction = predict(number, *member)
        mean += prediction
        square += prediction.astype(np.float64) ** 2
    mean /= len(members)
    spread = np.sqrt(np.clip(square / len(members) - mean**2, 0.0, None)).astype(np.float32)
    spread[~mask] = 0.0
    return central, spread


def reliability_map(
    model: Model,
    stack: np.ndarray,
    target: int,
    mask: np.ndarray,
    *,
    method: str | None = None,
    present: Sequence[int] | None = None,
    **options,
) -> tuple[np.ndarray, np.ndarray]:
    """The imputation (the plain one with the card's landmark offsets) and its reliability map, by `method`
    (default: the first `available_methods` allows): "calibrated" is the card's error model on its spread, in
    error_model.UNIT; "subsets" and "flips" are the spread itself (`uncertainty_map`, same options), in brain
    standard deviations."""
    present = [c for c in range(stack.shape[0]) if c != target] if present is None else list(present)
    allowed = available_methods(model.card, len(present))
    method = method or allowed[0]
    if method not in allowed:
        raise InputError(f"model '{model.name}' cannot give a {method!r} reliability map for {len(present)} present input(s); "
                         f"it offers {', '.join(allowed)}")
    spread_method = model.card["error_model"]["spread"] if method == "calibrated" else method
    central, spread = uncertainty_map(model.generator, stack, target, mask, method=spread_method, present=present, **options)
    central = model_landmarks(model, model.contrasts[target], central, mask)  # the imputation the user gets, and whose error is mapped
    if method == "calibrated":
        coefficients = error_model.coefficients_for(model.card, model.contrasts[target])
        return central, error_model.expected_error(coefficients, central, spread, mask)
    return central, spread


def describe(method: str) -> str:
    """What the values of a reliability map by `method` mean, for the user."""
    if method == "calibrated":
        return error_model.UNIT
    return f"spread of the model's predictions over {'input subsets' if method == 'subsets' else 'flipped and shifted canvases'} (brain standard deviations)"


def calibrate(
    model: Model,
    studies: Mapping[str, PreparedStudy],
    *,
    spread_method: str | None = None,
    every: int = 3,
    progress: Progress | None = None,
    cancel: CancelCheck | None = None,
) -> dict:
    """Fit the error model (error_model.py) of every contrast on `studies` (name -> study with every contrast):
    each contrast imputed from the others, its spread by `spread_method` (default "subsets" where the model
    allows it, else "flips"), its |error| after BraSyn normalisation. The maps are those of the whole volume,
    as at inference; `every` keeps every K-th brain slice of them for the fit (it needs many voxels, not all).
    Returns the model card's "error_model" entry, with the Spearman correlation of map and error on the
    fitted subjects (an optimistic figure: report held-out ones).
    """
    contrasts = model.contrasts
    offered = available_methods(model.card)
    spread_method = spread_method or next(m for m in offered if m in SPREADS)
    if spread_method not in offered:
        raise InputError(f"model '{model.name}' cannot give a {spread_method!r} spread with one contrast missing")
    if not studies:
        raise InputError("calibration needs at least one subject with every contrast")
    samples: dict[str, list] = {key: [] for key in contrasts}
    done, total = 0, len(studies) * len(contrasts)
    for name, study in studies.items():
        lacking = [k for k in contrasts if k not in study.images]
        if lacking:
            raise InputError(f"subject '{name}' lacks {', '.join(lacking)}: calibration compares each imputation with the real contrast")
        kept, stack = brain_slices(study.mask)[::every], model_inputs(model, study)
        for target, key in enumerate(contrasts):
            central, spread = uncertainty_map(model.generator, stack, target, study.mask, method=spread_method,
                                              smoothing=model_smoothing(model, key, study.slice_spacing), cancel=cancel)
            central = model_landmarks(model, key, central, study.mask)  # the error of the imputation as delivered
            central, spread, mask = central[kept], spread[kept], study.mask[kept]
            error = np.abs(brasyn_normalise(central, mask) - brasyn_normalise(study.images[key][kept], mask))[mask]
            samples[key].append((error_model.feature_matrix(central, spread, mask), error))
            done += 1
            if progress is not None:
                progress(done, total)
    coefficients, spearman = {}, {}
    for key, pairs in samples.items():
        coefficients[key] = error_model.fit([m for m, _ in pairs], [e for _, e in pairs])
        spearman[key] = round(float(np.mean([spearmanr(m @ np.asarray(coefficients[key]), e)[0] for m, e in pairs])), 3)
    return error_model.card_block(spread_method, coefficients, list(studies), every, spearman)
