"""A model trained in the metrics' intensity space (--brasyn-scale): its inputs are put in the BraSyn
normalisation before every imputation, and the study itself is left as acquired."""

from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk
from CollaGANImputeLib.core.metrics import brasyn_normalise
from CollaGANImputeLib.inference.imputation import impute
from CollaGANImputeLib.inference.intensity_landmarks import model_landmarks
from CollaGANImputeLib.inference.synthesis import model_inputs, network_stack, synthesise
from CollaGANImputeLib.model.model_card import INTENSITY_UNIT
from CollaGANImputeLib.model.weights import load_model, save_model
from CollaGANImputeLib.preparation.brasyn_scale import brasyn_scaled_study, landmarks_back_to_sd
from CollaGANImputeLib.preparation.study import prepare_study
from conftest import CONTRASTS, REPO


@pytest.fixture(scope="module")
def slab_study(sample_files, tmp_path_factory):
    """40 axial slices of the sample case, as files (for impute) and prepared."""
    folder = tmp_path_factory.mktemp("slab")
    slab = {}
    for key, path in sample_files.items():
        slab[key] = folder / f"{key}.nii.gz"
        sitk.WriteImage(sitk.ReadImage(str(path))[:, :, 50:90], str(slab[key]))
    return slab, prepare_study(slab, CONTRASTS)


def test_every_contrast_is_clipped_to_its_brain_percentiles_and_scaled_to_one(slab_study):
    _, study = slab_study
    before = {key: image.copy() for key, image in study.images.items()}
    scaled = brasyn_scaled_study(study)
    for key, image in scaled.images.items():
        np.testing.assert_array_equal(study.images[key], before[key])  # the study given is only read
        brain = image[study.mask]
        assert brain.min() == 0.0 and brain.max() == pytest.approx(1.0, abs=1e-6), key
        assert np.mean(brain <= 0.0) == pytest.approx(0.005, abs=0.003) and np.mean(brain >= 1.0 - 1e-6) == pytest.approx(0.005, abs=0.003)
        assert np.all(image[~study.mask] == 0)
        np.testing.assert_array_equal(image, brasyn_normalise(before[key], study.mask))  # the metrics' own function
    assert scaled.mask is study.mask and scaled.notes == study.notes and scaled.notes is not study.notes


def test_a_model_trained_in_the_metrics_space_reads_scaled_inputs_and_says_so(slab_study, tiny_model, tmp_path):
    slab, study = slab_study
    scaled_model = load_model(save_model(tiny_model.generator, CONTRASTS, tmp_path / "brasyn.safetensors", {}, brasyn_scaled=True))
    assert scaled_model.brasyn_scaled and not tiny_model.brasyn_scaled
    assert "0.5-99.5 percentiles" in scaled_model.card["normalisation"]["brasyn"]
    assert "BraSyn" in scaled_model.card["output_intensity"] and "standard deviations" in tiny_model.card["output_intensity"]

    before = network_stack(study, CONTRASTS)
    np.testing.assert_array_equal(model_inputs(tiny_model, study), before)
    np.testing.assert_array_equal(model_inputs(scaled_model, study), network_stack(brasyn_scaled_study(study), CONTRASTS))
    np.testing.assert_array_equal(network_stack(study, CONTRASTS), before)  # the study stays as acquired

    inputs = {key: slab[key] for key in ("t1", "t2", "flair")}
    imputed, plain = impute(inputs, "t1gd", scaled_model), impute(inputs, "t1gd", tiny_model)
    assert imputed.image.GetSize() == plain.image.GetSize() == (148, 198, 40)
    assert np.abs(sitk.GetArrayFromImage(imputed.image) - sitk.GetArrayFromImage(plain.image)).max() > 1e-3


def test_the_bundled_companion_delivers_brain_sds_with_the_figures_of_its_own_scale(slab_study):
    """The companion imputes in [0, 1]; its card's lines (benchmarks/normalisation_spread.py --write-card, the training
    subjects' mean percentiles) bring the output back to brain standard deviations like every other model's, affine
    between the 0.5th and 99.5th brain percentiles, so the BraSyn-normalised output, and every figure, is the same."""
    _, study = slab_study
    companion = load_model().companion
    report = json.loads((REPO / "benchmarks" / "results" / "normalisation_spread.json").read_text())
    block = companion.card["intensity_landmarks"]
    expected = landmarks_back_to_sd({name: report["by_subject"][name] for name in companion.card["training"]["train_subjects"]},
                                    companion.contrasts)
    assert {k: block[k] for k in expected} == expected and companion.card["output_intensity"] == INTENSITY_UNIT
    assert not set(block["fitted_on"]) & set(companion.card["training"]["validation_subjects"])
    raw = synthesise(companion.generator, model_inputs(companion, study), companion.contrasts.index("flair"), study.mask)
    delivered = model_landmarks(companion, "flair", raw, study.mask)
    low, high = np.percentile(raw[study.mask], [0.5, 99.5])
    (offset, _), (slope, _) = block["offsets"]["flair"], block["slopes"]["flair"]
    inside = study.mask & (raw >= low) & (raw <= high)
    np.testing.assert_allclose(delivered[inside], offset + slope * raw[inside], rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(brasyn_normalise(delivered, study.mask), brasyn_normalise(raw, study.mask), atol=1e-4)
    real = study.images["flair"][study.mask]  # the real FLAIR of this slab, in brain SDs
    assert 0.7 < np.percentile(delivered[study.mask], 99.5) / np.percentile(real, 99.5) < 1.4
    assert raw.max() < 1.5 < np.percentile(delivered[study.mask], 50)
