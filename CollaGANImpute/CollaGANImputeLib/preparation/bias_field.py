"""The coil shading of an acquired volume, removed with N4, to score an imputation against.

An acquired MR volume is its tissue contrast times a smooth shading from the receive coil (the bias
field), which differs between sequences of one session and is absent from an imputation built from
other contrasts. On the held-out subject N4 finds it spans a factor 1.5-2.2 over the brain (95th over
5th percentile; benchmarks/results/quality.json), so part of every method's difference to the real
volume is the shading, not the imputation. Scoring against the N4-corrected real volume as well
separates the two (`collagan-impute evaluate --bias-corrected`, benchmarks/quality.py). A model can also
be trained on corrected studies (`collagan-impute train --bias-correct`): its card says so, and its inputs
are then corrected the same way before every imputation (`corrected_study`).
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from ..core.contrasts import display_name
from ..core.errors import InputError
from .study import PreparedStudy, normalise_in_brain

SHRINK = 4  # N4 fits on a grid this many times coarser: the field is smooth (about 5 s for a 240 x 240 x 155 volume)
ITERATIONS = (50, 50, 50, 50)  # per fitting level, SimpleITK's default number of levels
METHOD = (f"N4 bias field correction (SimpleITK N4BiasFieldCorrectionImageFilter, brain mask, fitted on a grid shrunk "
          f"{SHRINK}x, less along an axis of under {4 * SHRINK} voxels, {len(ITERATIONS)} levels of {ITERATIONS[0]} iterations)")


def n4_bias_field(volume: np.ndarray, mask: np.ndarray, spacing: tuple[float, float, float] = (1.0, 1.0, 1.0), *,
                  what: str = "the volume") -> np.ndarray:
    """The multiplicative field of `volume` (a canonical [S, P, L] array; `spacing` in SimpleITK's x, y, z
    order), float32 on the same grid, scaled to geometric mean 1 over `mask` so that dividing by it keeps
    the volume's intensity scale. The volume is only read; `what` names it in errors."""
    mask = mask.astype(bool)
    if not mask.any():
        raise InputError(f"the brain mask of {what} holds no voxel: no bias field can be fitted")
    if min(volume.shape) < 2:
        raise InputError(f"{what} is {volume.shape[0]} x {volume.shape[1]} x {volume.shape[2]} voxels: N4 needs at least 2 along "
                         "every axis to fit a coil shading")
    shrink = [max(1, min(SHRINK, size // 4)) for size in reversed(volume.shape)]  # a thin volume is fitted on a finer grid
    image = sitk.GetImageFromArray(np.clip(volume, 0.0, None).astype(np.float32))
    image.SetSpacing(spacing)
    brain = sitk.GetImageFromArray(mask.astype(np.uint8))
    brain.CopyInformation(image)
    corrector = sitk.N4BiasFieldCorrectionImageFilter()
    corrector.SetMaximumNumberOfIterations(list(ITERATIONS))
    corrector.Execute(sitk.Shrink(image, shrink), sitk.Shrink(brain, shrink))
    log_field = sitk.GetArrayFromImage(corrector.GetLogBiasFieldAsImage(image))
    return np.exp(log_field - log_field[mask].mean()).astype(np.float32)


def remove_field(volume: np.ndarray, field: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """`volume` divided by `field` inside `mask`, 0 outside (a new array)."""
    return np.where(mask, volume / field, 0.0).astype(np.float32)


def bias_corrected(volume: np.ndarray, mask: np.ndarray, spacing: tuple[float, float, float] = (1.0, 1.0, 1.0), *,
                   what: str = "the volume") -> np.ndarray:
    """`volume` freed of its N4 bias field inside `mask`, 0 outside (a new array); `what` names it in errors."""
    return remove_field(volume, n4_bias_field(volume, mask, spacing, what=what), mask)


def corrected_study(study: PreparedStudy) -> PreparedStudy:
    """A copy of `study` with every image freed of its N4 bias field and normalised again, for a model
    trained on corrected studies (about 5 s per contrast). The study given is only read."""
    spacing = study.canonical_spacing
    images = {}
    for key, image in study.images.items():
        images[key] = bias_corrected(image, study.mask, spacing, what=f"the {display_name(key)} input")
        normalise_in_brain(images[key], study.mask)
    return PreparedStudy(study.reference, study.reference_contrast, images, study.mask, dict(study.brain_std), list(study.notes))
