"""A reliability map in units of expected error, learnt from the errors a model actually makes.

The spread of several predictions (reliability.py) sees where the prediction is unstable, but on a
subject from another scanner much of the error is systematic: the imputed contrast is off where it is
bright and where it has fine detail, the same way on every prediction. A per-contrast linear model of
the absolute error on three voxel features, fitted on subjects that have every contrast
(`reliability.calibrate`, `collagan-impute calibrate`), catches both:

- spread: the spread of predictions (the card's "spread" method);
- intensity: the imputed value itself;
- local contrast: the standard deviation of the imputed values in a small in-plane window.

Each feature is turned into its percentile rank over the brain of the study at hand, so it means the same
on every scanner and intensity scale; the model predicts the absolute error after BraSyn normalisation
(metrics.py), so the map reads as the expected |error| as a fraction of the contrast's intensity range.
The three features were chosen by cross-validation over the training subjects (leave one out) among
sets of the spread, the intensity, the local contrast, the distance to the brain's edge and the inputs
(benchmarks/results/reliability.md). Nothing here needs PyTorch.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from scipy import ndimage
from scipy.stats import rankdata

from ..core.errors import ModelError

FEATURES = ("spread", "intensity", "local_contrast")
WINDOW = 5  # voxels, in-plane: the local-contrast window
UNIT = "expected |error| after BraSyn normalisation (fraction of the contrast's 0.5-99.5 percentile range in the brain)"


def local_contrast(volume: np.ndarray, window: int = WINDOW) -> np.ndarray:
    """Standard deviation over a `window` x `window` in-plane window of each voxel."""
    volume = volume.astype(np.float64)
    mean = ndimage.uniform_filter(volume, (1, window, window))
    square = ndimage.uniform_filter(volume**2, (1, window, window))
    return np.sqrt(np.clip(square - mean**2, 0.0, None))


def feature_matrix(central: np.ndarray, spread: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """(brain voxels, 1 + FEATURES): a constant, then each feature's percentile rank in (0, 1] over the brain."""
    columns = [spread[mask], central[mask], local_contrast(central)[mask]]
    ranks = [rankdata(column) / column.size for column in columns]
    return np.stack([np.ones(mask.sum()), *ranks], axis=1)


def fit(matrices: Sequence[np.ndarray], errors: Sequence[np.ndarray]) -> list[float]:
    """Least-squares coefficients of |error| on the features, pooled over studies (one matrix and error each)."""
    coefficients, *_ = np.linalg.lstsq(np.concatenate(matrices), np.concatenate(errors), rcond=None)
    return [float(c) for c in coefficients]


def expected_error(coefficients: Sequence[float], central: np.ndarray, spread: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The map, (S, H, W) float32: the fitted model's expected |error| in the brain (never negative), 0 outside."""
    if len(coefficients) != len(FEATURES) + 1:
        raise ModelError(f"an error model needs {len(FEATURES) + 1} coefficients (constant, {', '.join(FEATURES)}); got {len(coefficients)}")
    out = np.zeros(mask.shape, dtype=np.float32)
    if mask.any():
        out[mask] = np.clip(feature_matrix(central, spread, mask) @ np.asarray(coefficients), 0.0, None)
    return out


def card_block(spread_method: str, coefficients: Mapping[str, Sequence[float]], fitted_on: Sequence[str], every: int,
               spearman: Mapping[str, float]) -> dict:
    """The model card's "error_model" entry: what `expected_error` needs, and where its numbers came from."""
    return {"spread": spread_method, "features": list(FEATURES), "window": WINDOW, "unit": UNIT,
            "coefficients": {key: list(values) for key, values in coefficients.items()},
            "fitted_on": list(fitted_on), "slices": f"every {every} axial brain slice(s)" if every > 1 else "all brain slices",
            "spearman_on_fitted_subjects": dict(spearman)}


def coefficients_for(card: dict, contrast: str) -> list[float]:
    """The card's error-model coefficients for one contrast, refusing a card whose model is not this one."""
    block = card.get("error_model")
    if block is None or contrast not in block.get("coefficients", {}):
        raise ModelError(f"model '{card.get('name', '?')}' has no error model for {contrast}; run collagan-impute calibrate")
    if list(block.get("features", [])) != list(FEATURES) or block.get("window") != WINDOW:
        raise ModelError(f"model '{card.get('name', '?')}' has an error model on other features ({block.get('features')}); "
                         "run collagan-impute calibrate again")
    return list(block["coefficients"][contrast])
