"""The metrics' intensity space as the network's: a model trained with `--brasyn-scale` reads and writes
every contrast clipped to the 0.5-99.5 percentiles of its brain voxels and scaled to [0, 1].

METHOD.md divides each volume by its brain standard deviation. Every figure the project reports is taken
after the BraSyn normalisation instead (core/metrics.py), and on the 26 subjects of training.json the two
disagree by subject: a volume's 0.5-99.5 percentile range spans 4.9-6.7 brain standard deviations on average
(by contrast), varying by 10-15 % between subjects, and its 0.5th percentile lies anywhere from 0 to 59 % of
that range (benchmarks/results/normalisation_spread.json). A network trained in standard deviations must guess
that per-subject stretch and shift, and every mistake is scored; one trained in the metrics' space has nothing
to guess. Its card says so, and its inputs are scaled the same way before every imputation
(synthesis.model_inputs).
"""

from __future__ import annotations

from ..core.metrics import NORMALISATION, brasyn_normalise
from .study import PreparedStudy

METHOD = f"each input, after the standard-deviation normalisation, {NORMALISATION.removeprefix('each volume ')}"


def brasyn_scaled_study(study: PreparedStudy) -> PreparedStudy:
    """A copy of `study` with every image in the BraSyn normalisation over the study's brain mask.
    The study given is only read."""
    images = {key: brasyn_normalise(image, study.mask) for key, image in study.images.items()}
    return PreparedStudy(study.reference, study.reference_contrast, images, study.mask, dict(study.brain_std), list(study.notes),
                         dict(study.input_grids))
