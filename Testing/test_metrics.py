"""region_metrics: the brain and several regions from one SSIM map must equal one image_metrics call each; SSIM's
factors multiply to its map."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from CollaGANImputeLib.core.metrics import SSIM_WINDOW, brasyn_normalise, image_metrics, region_metrics, ssim_components
from scipy import ndimage
from skimage.metrics import structural_similarity


def test_region_metrics_equal_image_metrics_per_region():
    rng = np.random.default_rng(0)
    real = rng.random((16, 24, 24)).astype(np.float32)
    fake = real + 0.3 * rng.random(real.shape).astype(np.float32)
    brain = np.zeros(real.shape, dtype=bool)
    brain[2:14, 3:21, 3:21] = True
    tumour = np.zeros_like(brain)
    tumour[5:9, 8:14, 8:14] = True
    tumour[0] = True  # outside the brain: not counted
    outside = np.zeros_like(brain)
    outside[0, 0, 0] = True

    scores = region_metrics(real, fake, brain, {"tumour": tumour, "outside": outside})
    assert {k: v for k, v in scores.items() if k != "regions"} == image_metrics(real, fake, brain)
    alone = image_metrics(real, fake, brain, region=tumour)
    inside = scores["regions"]["tumour"]
    assert inside["voxels"] == int((tumour & brain).sum())
    for metric in ("ssim_brain", "psnr_brain", "nmse_brain"):
        assert inside[metric] == pytest.approx(alone[metric], rel=1e-6)
    assert scores["regions"]["outside"] is None  # no brain voxel in it: nothing to score


def test_ssim_components_multiply_to_skimage_ssim_on_a_real_volume(tumour_crop):
    """Luminance x contrast x structure is skimage's SSIM map, here a real FLAIR block against its blurred self; no
    factor exceeds 1, and a blur shrinks the local deviations (contrast) while the local means (luminance) stay."""
    volume = sitk.GetArrayFromImage(sitk.ReadImage(str(tumour_crop["flair"]))).astype(np.float32)
    brain = volume > 0
    real = brasyn_normalise(volume, brain)
    blurred = brasyn_normalise(ndimage.gaussian_filter(volume, 1.0), brain)
    parts = ssim_components(real, blurred)
    _, expected = structural_similarity(real.astype(np.float64), blurred.astype(np.float64), data_range=1.0, win_size=SSIM_WINDOW, full=True)
    np.testing.assert_allclose(parts["luminance"] * parts["contrast"] * parts["structure"], expected, atol=1e-5)
    means = {name: float(part[brain].mean()) for name, part in parts.items()}
    assert max(means.values()) <= 1.0 + 1e-9
    assert means["luminance"] > 0.99 and means["contrast"] < 0.97, means
