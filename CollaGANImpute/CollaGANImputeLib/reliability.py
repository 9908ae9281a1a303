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
predictions), so asking for the map never changes the imputed volume. A spread sees where the prediction
is unstable, not where it is consistently wrong (a lesion the model confidently paints over): how far it
ranks the actual error is measured by benchmarks/reliability.py (Spearman correlation over the brain).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .errors import InputError
from .inference import CancelCheck, Progress, synthesise
from .networks import Generator
from .study import brain_slices, padded_bounds

METHODS = ("flips", "subsets")
# Canvases of the "flips" method: (margin added on every side of the brain's box, row shift, column shift) in
# voxels, each used as it is and mirrored; (0, 0, 0) is the plain imputation's. Chosen on two training
# subjects with the one-missing interim model: the mean Spearman correlation of spread and |error| over
# contrasts was 0.13 with the mirror alone, 0.25 with the first four canvases and 0.29 with all twelve.
CANVASES = ((0, 0, 0), (8, 0, 0), (16, 0, 0), (32, 0, 0), (8, 3, 5), (8, -5, -3), (16, 7, -2), (16, -2, 7),
            (24, 5, 5), (24, -6, -6), (32, 9, -11), (32, -11, 9))
PLAIN = (0, 0, 0)


def available_methods(card: dict, present: int | None = None) -> tuple[str, ...]:
    """The methods a model card allows for a request with `present` acquired inputs (default: all but the
    missing one): "subsets" needs two, and a model trained with one more contrast absent than the request
    has (card field missing_inputs, absent contrasts counting the one imputed)."""
    count = len(card["contrasts"])
    present = count - 1 if present is None else present
    most_absent = card.get("missing_inputs", {}).get("max", 1)
    return METHODS if present >= 2 and count - present + 1 <= most_absent else ("flips",)


def _on_canvas(generator: Generator, stack: np.ndarray, target: int, mask: np.ndarray, canvas: tuple[int, int, int], mirror: bool,
               **options) -> np.ndarray:
    """One prediction with the slices (mirrored left-right if asked) on the brain's box widened and shifted."""
    if mirror:
        stack, mask = stack[..., ::-1], mask[..., ::-1]
    margin, down, right = canvas
    rows, cols, _ = padded_bounds(mask, generator.config.size_multiple)
    rows = slice(max(rows.start - margin + down, 0), min(rows.stop + margin + down, mask.shape[1]))
    cols = slice(max(cols.start - margin + right, 0), min(cols.stop + margin + right, mask.shape[2]))
    output = np.zeros(mask.shape, dtype=np.float32)
    output[:, rows, cols] = synthesise(
        generator, np.ascontiguousarray(stack[:, :, rows, cols]), target, np.ascontiguousarray(mask[:, rows, cols]),
        crop=False, **options,
    )
    return np.ascontiguousarray(output[..., ::-1]) if mirror else output


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
    bf16: bool = False,
    progress: Progress | None = None,
    cancel: CancelCheck | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The plain imputation of contrast `target` and its uncertainty, both (S, H, W), zero outside `mask`.

    stack, target, mask, batch_size, bf16 and cancel as for `inference.synthesise`. `present`: the
    channels of `stack` that hold an acquired input (default: every channel but `target`; the others are
    zero-filled); "subsets" drops each in turn and needs at least two. `canvases` ("flips"; no shift
    larger than its margin): fewer is faster (each costs about one plain imputation per mirror image,
    more for wide margins) but ranked the error less well. `progress` counts slices over all predictions.
    """
    if method not in METHODS:
        raise InputError(f"unknown uncertainty method {method!r}; expected {' or '.join(METHODS)}")
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
        return _on_canvas(generator, inputs, target, mask, canvas, mirror, batch_size=batch_size, bf16=bf16, progress=counted, cancel=cancel)

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
