"""Giving an imputation the intensity distribution of a real volume of its contrast.

A generator trained with L1 predicts each voxel's typical value, so the brightest voxels of a real volume
(vessels, dura and enhancement on T1Gd; cerebrospinal fluid on T2) come out too dim: on the sample case the
imputed T1Gd's 99.5th brain percentile is 5.3 brain standard deviations where the real one's is 8.9. Any
display or score that sets its window from the volume's own percentiles then shows the whole brain too
bright, as the BraSyn normalisation does (metrics.py). The remedy is the landmark idea of Nyul and Udupa's
standardisation: the imputation's brain percentiles at LEVELS are moved by the offsets between real and
imputed percentiles measured on the model's training subjects (a property of the model, not of a study),
linearly in between, so every voxel keeps its rank. benchmarks/intensity_mapping.py fits the offsets and
writes them into the model card for the contrasts where, on the training subjects, they raised the scores.
Where one mean offset cannot serve every study (a FLAIR with a bright oedema and one without), the card may
instead give a contrast a straight line per level, target = slope x own landmark + offset, fitted on the same
imputations ("slopes"; slope 1 is the mean offset).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from ..model.weights import Model

LEVELS = (0.5, 1, 2, 5, 10, 20, 30, 40, 50, 60, 70, 80, 90, 95, 98, 99, 99.5)  # percentiles of the brain's voxels


def brain_landmarks(volume: np.ndarray, mask: np.ndarray, levels: Iterable[float] = LEVELS) -> np.ndarray:
    """The percentiles `levels` of the volume's brain voxels, in the volume's own unit."""
    return np.percentile(volume[mask], list(levels))


def move_landmarks(volume: np.ndarray, mask: np.ndarray, offsets: Iterable[float], levels: Iterable[float] = LEVELS,
                   slopes: Iterable[float] | None = None) -> np.ndarray:
    """A new volume whose brain landmarks at `levels` are the volume's own (times `slopes`, where given) plus `offsets`.

    Piecewise linear between landmarks (so the order of voxels is kept, ties stay ties), shifted by the end
    offsets below the first and above the last landmark (continuous, and the brightest voxels keep their
    detail instead of being flattened); never below zero, as a magnitude image is not (a negative offset at the
    first landmark would otherwise push the darkest voxels, CSF on FLAIR, below it); zero outside the mask. The
    input is not modified.
    """
    offsets = np.asarray(list(offsets), dtype=np.float64)
    own = brain_landmarks(volume, mask, levels)
    slopes = np.ones(len(own)) if slopes is None else np.asarray(list(slopes), dtype=np.float64)
    if not len(own) == len(offsets) == len(slopes):
        raise ValueError(f"{len(offsets)} offsets and {len(slopes)} slopes for {len(own)} landmark levels")
    own = np.maximum.accumulate(own + np.arange(len(own)) * 1e-6)  # strictly increasing, as np.interp needs
    target = np.maximum.accumulate(slopes * own + offsets)
    moved = np.interp(volume, own, target)
    moved = np.where(volume < own[0], volume + (target[0] - own[0]), moved)
    moved = np.where(volume > own[-1], volume + (target[-1] - own[-1]), moved)
    return np.where(mask, np.maximum(moved, 0.0), 0.0).astype(np.float32)


def model_landmarks(model: Model, key: str, volume: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The imputation of contrast `key` with its landmarks moved as the model card says (by its offsets, or along its
    lines where it gives slopes); as it is where the card has no offsets for `key`."""
    block = model.card.get("intensity_landmarks")
    if not block or key not in block["offsets"]:
        return volume
    return move_landmarks(volume, mask, block["offsets"][key], block["levels"], block.get("slopes", {}).get(key))
