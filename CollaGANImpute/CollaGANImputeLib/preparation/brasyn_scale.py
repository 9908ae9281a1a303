"""The metrics' intensity space as the network's: a model trained with `--brasyn-scale` reads and writes
every contrast clipped to the 0.5-99.5 percentiles of its brain voxels and scaled to [0, 1].

METHOD.md divides each volume by its brain standard deviation. Every figure the project reports is taken
after the BraSyn normalisation instead (core/metrics.py), and on the 26 subjects of training.json the two
disagree by subject: a volume's 0.5-99.5 percentile range spans 4.9-6.7 brain standard deviations on average
(by contrast), varying by 10-15 % between subjects, and its 0.5th percentile lies anywhere from 0 to 59 % of
that range (benchmarks/results/normalisation_spread.json). A network trained in standard deviations must guess
that per-subject stretch and shift, and every mistake is scored; one trained in the metrics' space has nothing
to guess. Its card says so, and its inputs are scaled the same way before every imputation
(synthesis.model_inputs). Its output is brought back to brain standard deviations, the unit every other model
delivers, by the card's landmark lines that `landmarks_back_to_sd` builds: affine between the 0.5th and 99.5th
percentiles, so every figure taken after the BraSyn normalisation is unchanged. `collagan-impute train` writes them
into the card of every model it trains so (weights.back_to_sd_card_fields), from the training subjects' `sd_percentiles`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from ..core.metrics import NORMALISATION, brasyn_normalise
from .study import PreparedStudy

METHOD = f"each input, after the standard-deviation normalisation, {NORMALISATION.removeprefix('each volume ')}"


def brasyn_scaled_study(study: PreparedStudy) -> PreparedStudy:
    """A copy of `study` with every image in the BraSyn normalisation over the study's brain mask.
    The study given is only read."""
    images = {key: brasyn_normalise(image, study.mask) for key, image in study.images.items()}
    return PreparedStudy(study.reference, study.reference_contrast, images, study.mask, dict(study.brain_std), list(study.notes),
                         dict(study.input_grids))


def sd_percentiles(study: PreparedStudy) -> dict[str, list[float]]:
    """Each contrast's 0.5th and 99.5th brain percentiles in brain standard deviations (the study as METHOD.md
    normalises it, before any BraSyn scaling): what `landmarks_back_to_sd` averages over the training subjects."""
    return {key: [float(v) for v in np.percentile(image[study.mask], [0.5, 99.5])] for key, image in study.images.items()}


def landmarks_back_to_sd(percentiles: Mapping[str, Mapping[str, Sequence[float]]], contrasts: Sequence[str]) -> dict:
    """A card's `intensity_landmarks` block (intensity_landmarks.move_landmarks) that undoes the BraSyn scaling of an
    imputation: its 0.5th and 99.5th brain percentiles go to the mean, over the subjects of `percentiles` (subject ->
    contrast -> [0.5th, 99.5th] percentile in brain standard deviations: the training subjects, never a validation
    one), of a real volume's, by the line target = range x own + low at both landmarks. A study's own percentiles of
    the missing contrast are unknown, so the mean is what a real volume of that contrast would typically span."""
    offsets, slopes = {}, {}
    for key in contrasts:
        low, high = np.array([row[key] for row in percentiles.values() if key in row], dtype=np.float64).T
        offsets[key] = [round(float(low.mean()), 4)] * 2
        slopes[key] = [round(float((high - low).mean()), 4)] * 2
    return {"levels": [0.5, 99.5], "offsets": offsets, "slopes": slopes,
            "unit": "brain standard deviations: the imputation's 0.5th and 99.5th brain percentiles (about 0 and 1 in the "
                    "BraSyn scaling it is made in) moved onto slope x own + offset, linearly in between",
            "fitted_on": sorted(percentiles),
            "rule": "the inverse of the BraSyn scaling at the training subjects' mean percentiles (preparation/brasyn_scale.py); "
                    "affine in the brain's 0.5-99.5 percentile range, so figures after the BraSyn normalisation do not change"}
