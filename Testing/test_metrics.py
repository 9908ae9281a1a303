"""region_metrics: the brain and several regions from one SSIM map must equal one image_metrics call each."""

from __future__ import annotations

import numpy as np
import pytest
from CollaGANImputeLib.core.metrics import image_metrics, region_metrics


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
