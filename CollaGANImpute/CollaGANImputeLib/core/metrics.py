"""Image-quality metrics inside the brain, after the BraSyn challenge's intensity normalisation.

Published numbers are only comparable when the normalisation is stated, so every result carries it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from scipy import ndimage
from skimage.metrics import structural_similarity

from .errors import InputError

SSIM_WINDOW = 7  # voxels along each axis of the 3-D SSIM window
NORMALISATION = "each volume clipped to the 0.5-99.5 percentiles of its brain voxels and scaled to [0, 1] (BraSyn)"


def brasyn_normalise(volume: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Clip to the 0.5-99.5 percentiles of the brain voxels, scale to [0, 1]; zero outside the brain."""
    low, high = np.percentile(volume[mask], [0.5, 99.5])
    scaled = (np.clip(volume, low, high) - low) / max(high - low, 1e-8)
    return np.where(mask, scaled, 0.0).astype(np.float32)


def require_scorable(shape: Sequence[int], what: str) -> None:
    """Refuse, naming `what`, a volume too small for the SSIM window before any imputation is spent on it."""
    if min(shape) < SSIM_WINDOW:
        raise InputError(f"{what}: {' x '.join(str(n) for n in shape)} voxels; SSIM's {SSIM_WINDOW}-voxel window needs at least "
                         f"{SSIM_WINDOW} along every axis, so the imputation cannot be scored")


def image_metrics(real: np.ndarray, fake: np.ndarray, mask: np.ndarray, *, slices_2d: bool = False,
                  region: np.ndarray | None = None) -> dict:
    """NMSE, PSNR (dB) and SSIM inside `mask`, plus SSIM over the whole array (the figure papers report).

    Inputs are arrays on one grid; both are normalised here over `mask`. With `region` (a part of the
    brain, such as the enhancing tumour) the brain figures are computed over the region instead. With
    `slices_2d`, axis 0 indexes unrelated 2-D slices and SSIM is computed per slice; otherwise SSIM is
    3-D (SSIM_WINDOW voxels; `require_scorable` says why a smaller volume cannot be scored).
    """
    mask = mask.astype(bool)
    region = mask if region is None else region.astype(bool) & mask
    if not region.any():
        raise ValueError("the mask (or the region within it) holds no voxel")
    real_n, fake_n, ssim_full = _normalised_ssim(real, fake, mask, slices_2d)
    return _with_volume(_scores(real_n, fake_n, ssim_full, region), ssim_full)


def region_metrics(real: np.ndarray, fake: np.ndarray, mask: np.ndarray, regions: Mapping[str, np.ndarray]) -> dict:
    """`image_metrics` over the brain and, from the same normalisation and SSIM map, over each region.

    Returns the brain's figures with "regions": {name: {"voxels", "ssim_brain", "psnr_brain",
    "nmse_brain"} computed over the region's brain voxels, or None where it has none}. It exists because
    the 3-D SSIM map is most of the cost: scoring the brain and three tumour regions one `image_metrics`
    call at a time computes it four times, with identical results.
    """
    mask = mask.astype(bool)
    if not mask.any():
        raise ValueError("the mask holds no voxel")
    real_n, fake_n, ssim_full = _normalised_ssim(real, fake, mask, False)
    scores = _with_volume(_scores(real_n, fake_n, ssim_full, mask), ssim_full)
    scores["regions"] = {}
    for name, region in regions.items():
        inside = region.astype(bool) & mask
        count = int(inside.sum())
        scores["regions"][name] = {"voxels": count, **_scores(real_n, fake_n, ssim_full, inside)} if count else None
    return scores


def _normalised_ssim(real: np.ndarray, fake: np.ndarray, mask: np.ndarray, slices_2d: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Both volumes BraSyn-normalised over `mask`, and their SSIM map."""
    real_n, fake_n = brasyn_normalise(real, mask), brasyn_normalise(fake, mask)
    _, ssim_full = structural_similarity(
        real_n, fake_n, data_range=1.0, win_size=SSIM_WINDOW, full=True, channel_axis=0 if slices_2d else None
    )
    return real_n, fake_n, ssim_full


def ssim_components(real_n: np.ndarray, fake_n: np.ndarray) -> dict[str, np.ndarray]:
    """SSIM's three factors, voxel by voxel, for two normalised volumes (data range 1): "luminance" (local means
    alike), "contrast" (local standard deviations alike) and "structure" (the local correlation). Their product is
    `structural_similarity`'s map (same window, constants, sample covariance and edge mode), so the means of
    contrast x structure and of structure alone say what an imputation would score were its local brightness, or its
    local brightness and contrast, exact: the part of a shortfall no intensity mapping or sharpening can recover."""
    count = SSIM_WINDOW**real_n.ndim

    def local_mean(volume: np.ndarray) -> np.ndarray:
        return ndimage.uniform_filter(volume.astype(np.float64), size=SSIM_WINDOW)

    mean_x, mean_y = local_mean(real_n), local_mean(fake_n)
    scale = count / (count - 1)
    var_x = np.maximum(local_mean(real_n * real_n) - mean_x**2, 0.0) * scale
    var_y = np.maximum(local_mean(fake_n * fake_n) - mean_y**2, 0.0) * scale
    covariance = (local_mean(real_n * fake_n) - mean_x * mean_y) * scale
    c1, c2 = 0.01**2, 0.03**2
    deviations = np.sqrt(var_x * var_y)
    return {"luminance": (2 * mean_x * mean_y + c1) / (mean_x**2 + mean_y**2 + c1),
            "contrast": (2 * deviations + c2) / (var_x + var_y + c2),
            "structure": (covariance + c2 / 2) / (deviations + c2 / 2)}


def _scores(real_n: np.ndarray, fake_n: np.ndarray, ssim_full: np.ndarray, region: np.ndarray) -> dict:
    """Mean SSIM, PSNR (dB) and NMSE over the voxels of `region` (keys named for the brain, their usual region)."""
    error = (real_n - fake_n)[region]
    mse = float(np.mean(error**2))
    nmse = mse / max(float(np.mean(real_n[region] ** 2)), 1e-12)
    psnr = float(10 * np.log10(1.0 / max(mse, 1e-12)))
    return {"ssim_brain": float(ssim_full[region].mean()), "psnr_brain": psnr, "nmse_brain": float(nmse)}


def _with_volume(scores: dict, ssim_full: np.ndarray) -> dict:
    """The brain's figures with SSIM over the whole array and the normalisation, in image_metrics' key order."""
    return {"ssim_brain": scores["ssim_brain"], "ssim_volume": float(ssim_full.mean()), "psnr_brain": scores["psnr_brain"],
            "nmse_brain": scores["nmse_brain"], "normalisation": NORMALISATION}
