"""N4 bias field correction of real volumes, and scoring imputations against the corrected volume."""

from __future__ import annotations

import numpy as np
import pytest

from CollaGANImputeLib.bias_field import bias_corrected, n4_bias_field
from CollaGANImputeLib.data import discover_subjects, prepare_subject
from CollaGANImputeLib.evaluation import evaluate_subjects
from CollaGANImputeLib.inference import model_smoothing, network_stack, synthesise
from CollaGANImputeLib.metrics import image_metrics
from conftest import CONTRASTS, REPO

SAMPLE_DATA = REPO / "CollaGANImpute" / "Resources" / "SampleData"


@pytest.fixture(scope="module")
def sample_study():
    (subject,) = discover_subjects(SAMPLE_DATA, CONTRASTS)
    return subject, prepare_subject(subject, CONTRASTS)


def test_n4_removes_a_shading_added_to_a_real_volume(sample_study):
    _, study = sample_study
    real, brain, spacing = study.images["t1"], study.mask, study.canonical_spacing
    added = np.linspace(-0.3, 0.3, real.shape[1], dtype=np.float32)[None, :, None]  # log shading, posterior to anterior
    shaded = real * np.exp(added)
    untouched = shaded.copy()

    plain, corrected = bias_corrected(real, brain, spacing), bias_corrected(shaded, brain, spacing)
    np.testing.assert_array_equal(shaded, untouched)
    left = np.log(corrected[brain] / plain[brain])
    assert left.std() < 0.1 * np.broadcast_to(added, real.shape)[brain].std()
    assert np.all(corrected[~brain] == 0)

    field = n4_bias_field(shaded, brain, spacing)
    assert field.shape == real.shape and field.dtype == np.float32
    assert abs(np.log(field[brain]).mean()) < 1e-4  # geometric mean 1: the intensity scale is kept


def test_an_empty_mask_is_refused():
    with pytest.raises(ValueError, match="no voxel"):
        n4_bias_field(np.ones((4, 8, 8), np.float32), np.zeros((4, 8, 8), bool))


def test_evaluate_scores_against_the_corrected_volume_when_asked(sample_study, tiny_model):
    subject, study = sample_study
    as_acquired = evaluate_subjects(tiny_model, [subject], ["t1"])
    corrected = evaluate_subjects(tiny_model, [subject], ["t1"], bias_corrected=True)
    assert as_acquired["reference"] == "the real volume as acquired" and "N4" in corrected["reference"]

    fake = synthesise(tiny_model.generator, network_stack(study, CONTRASTS), 0, study.mask, smoothing=model_smoothing(tiny_model, study))
    expected = image_metrics(bias_corrected(study.images["t1"], study.mask, study.canonical_spacing), fake, study.mask)
    (row,) = corrected["results"]
    assert row["psnr_brain"] == pytest.approx(expected["psnr_brain"], abs=1e-6)
    assert row["ssim_brain"] == pytest.approx(expected["ssim_brain"], abs=1e-6)
    assert row["psnr_brain"] != pytest.approx(as_acquired["results"][0]["psnr_brain"], abs=1e-3)
