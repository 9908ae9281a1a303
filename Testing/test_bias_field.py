"""N4 bias field correction of real volumes, and scoring imputations against the corrected volume."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from CollaGANImputeLib.analysis.evaluation import evaluate_subjects
from CollaGANImputeLib.core.errors import InputError
from CollaGANImputeLib.core.metrics import image_metrics
from CollaGANImputeLib.inference.imputation import impute
from CollaGANImputeLib.inference.synthesis import model_inputs, model_smoothing, network_stack, synthesise
from CollaGANImputeLib.model.weights import load_model, save_model
from CollaGANImputeLib.preparation.bias_field import bias_corrected, corrected_study, n4_bias_field
from CollaGANImputeLib.preparation.data import discover_subjects, prepare_subject
from CollaGANImputeLib.preparation.study import normalise_in_brain, prepare_study
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

    fake = synthesise(tiny_model.generator, network_stack(study, CONTRASTS), 0, study.mask,
                      smoothing=model_smoothing(tiny_model, CONTRASTS[0], study.slice_spacing))
    expected = image_metrics(bias_corrected(study.images["t1"], study.mask, study.canonical_spacing), fake, study.mask)
    (row,) = corrected["results"]
    assert row["psnr_brain"] == pytest.approx(expected["psnr_brain"], abs=1e-6)
    assert row["ssim_brain"] == pytest.approx(expected["ssim_brain"], abs=1e-6)
    assert row["psnr_brain"] != pytest.approx(as_acquired["results"][0]["psnr_brain"], abs=1e-3)


def test_a_model_trained_on_corrected_studies_reads_corrected_inputs(sample_files, tiny_model, tmp_path):
    slab = {}  # 40 axial slices of the sample case keep N4 quick
    for key, path in sample_files.items():
        slab[key] = tmp_path / f"{key}.nii.gz"
        sitk.WriteImage(sitk.ReadImage(str(path))[:, :, 50:90], str(slab[key]))
    study = prepare_study(slab, CONTRASTS)
    before = network_stack(study, CONTRASTS)
    shading_free = load_model(save_model(tiny_model.generator, CONTRASTS, tmp_path / "n4.safetensors", {}, bias_corrected=True))
    assert shading_free.bias_corrected and not tiny_model.bias_corrected
    assert "N4" in shading_free.card["normalisation"]["bias_field"]
    np.testing.assert_array_equal(model_inputs(tiny_model, study), before)

    corrected = model_inputs(shading_free, study)
    np.testing.assert_array_equal(network_stack(study, CONTRASTS), before)  # the study stays as acquired
    for number, key in enumerate(CONTRASTS):
        image = corrected[number]
        assert image[study.mask].std() == pytest.approx(1.0, abs=1e-4) and np.all(image[~study.mask] == 0)
        assert np.abs(image - before[number])[study.mask].mean() > 0.01, key
    expected = bias_corrected(study.images["t1"], study.mask, study.canonical_spacing)  # N4, then normalised again
    normalise_in_brain(expected, study.mask)
    np.testing.assert_allclose(corrected[0], expected, atol=1e-3)

    inputs = {key: slab[key] for key in ("t1", "t2", "flair")}
    imputed, plain = impute(inputs, "t1gd", shading_free), impute(inputs, "t1gd", tiny_model)
    assert any("coil shading" in note for note in imputed.notes) and not any("coil shading" in note for note in plain.notes)
    assert imputed.image.GetSize() == plain.image.GetSize() == (148, 198, 40)
    assert np.abs(sitk.GetArrayFromImage(imputed.image) - sitk.GetArrayFromImage(plain.image)).max() > 1e-3


def test_a_thin_study_is_fitted_on_a_finer_grid_and_a_single_slice_is_refused_by_name(sample_files):
    slab = {key: sitk.ReadImage(str(path))[:, :, 70:73] for key, path in sample_files.items()}
    study = prepare_study(slab, CONTRASTS)
    field = n4_bias_field(study.images["t1"], study.mask, study.canonical_spacing)  # 3 slices: too few for the 4x grid
    assert field.shape == study.images["t1"].shape and np.all(np.isfinite(field)) and np.all(field > 0)
    assert abs(np.log(field[study.mask]).mean()) < 1e-4

    single = prepare_study({key: image[:, :, 1:2] for key, image in slab.items()}, CONTRASTS)
    with pytest.raises(InputError, match=r"the T1 input is 1 x \d+ x \d+ voxels: N4 needs at least 2"):
        corrected_study(single)
