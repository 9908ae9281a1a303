"""Any subset of inputs, any set of missing contrasts: joint imputation by a model trained for it, and
chains of one-missing imputations, in the library and on the command line."""

import numpy as np
import pytest
import SimpleITK as sitk
from CollaGANImputeLib.cli.main import main
from CollaGANImputeLib.core.errors import InputError
from CollaGANImputeLib.inference.imputation import impute, impute_all
from CollaGANImputeLib.inference.intensity_landmarks import LEVELS, move_landmarks
from CollaGANImputeLib.inference.synthesis import network_stack, synthesise
from CollaGANImputeLib.io.geometry import to_canonical_array
from CollaGANImputeLib.model.weights import load_model
from CollaGANImputeLib.preparation.study import prepare_study
from conftest import CONTRASTS


@pytest.fixture(scope="module")
def any_model(tiny_any_model_path):
    return load_model(tiny_any_model_path)


@pytest.mark.parametrize("present", [["t2"], ["t1", "flair"], ["t1", "t2", "flair"]])
def test_every_absent_contrast_from_one_two_or_three_inputs(tumour_crop, any_model, present):
    inputs = {k: tumour_crop[k] for k in present}
    missing = [k for k in CONTRASTS if k not in present]
    results = impute_all(inputs, missing, any_model)
    assert sorted(results) == sorted(missing)
    reference = sitk.ReadImage(str(tumour_crop[present[0]]))
    study = prepare_study(inputs, CONTRASTS)
    stack = network_stack(study, CONTRASTS)
    assert not stack[[CONTRASTS.index(k) for k in missing]].any()  # absent inputs are zero-filled
    for key, result in results.items():
        assert result.missing == key
        assert (result.image.GetSize(), result.image.GetOrigin(), result.image.GetDirection()) == (
            reference.GetSize(), reference.GetOrigin(), reference.GetDirection())
        volume = to_canonical_array(result.image)
        assert np.isfinite(volume).all() and not volume[~study.mask].any() and volume[study.mask].any()
        # Joint: each missing contrast comes from the given inputs alone.
        expected = synthesise(any_model.generator, stack, CONTRASTS.index(key), study.mask)
        np.testing.assert_allclose(volume, expected, atol=1e-5)


def test_joint_result_does_not_depend_on_what_else_is_imputed(tumour_crop, any_model):
    inputs = {"t1": tumour_crop["t1"], "t2": tumour_crop["t2"]}
    both = impute_all(inputs, ["t1gd", "flair"], any_model)
    alone = impute(inputs, "t1gd", any_model)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(both["t1gd"].image), sitk.GetArrayFromImage(alone.image))


def test_chain_feeds_each_imputation_to_the_next(tumour_crop, any_model):
    inputs = {"t1": tumour_crop["t1"], "t2": tumour_crop["t2"]}
    chained = impute_all(inputs, ["t1gd", "flair"], any_model, strategy="chain")
    study = prepare_study(inputs, CONTRASTS)
    stack = network_stack(study, CONTRASTS)
    first = synthesise(any_model.generator, stack, 1, study.mask)  # T1Gd comes first in model order
    np.testing.assert_allclose(to_canonical_array(chained["t1gd"].image), first, atol=1e-5)
    stack[1] = first
    second = synthesise(any_model.generator, stack, 3, study.mask)
    np.testing.assert_allclose(to_canonical_array(chained["flair"].image), second, atol=1e-5)
    joint_flair = to_canonical_array(impute(inputs, "flair", any_model).image)
    assert np.abs(joint_flair - second).max() > 1e-3  # the chain really used the imputed T1Gd
    assert any("chained" in note for note in chained["flair"].notes)


def test_the_chain_feeds_the_next_imputation_the_one_with_its_landmark_offsets(tumour_crop, any_model):
    """The card's landmark offsets are part of the imputation, so the chain passes them on: the next contrast is
    imputed from the T1Gd the user gets, not from the network's raw output."""
    inputs = {"t1": tumour_crop["t1"], "t2": tumour_crop["t2"]}
    moving = load_model(any_model.weights_path)
    offsets = np.linspace(0.0, 1.5, len(LEVELS)).tolist()
    moving.card["intensity_landmarks"] = {"levels": list(LEVELS), "offsets": {"t1gd": offsets}}
    chained = impute_all(inputs, ["t1gd", "flair"], moving, strategy="chain")
    study = prepare_study(inputs, CONTRASTS)
    stack = network_stack(study, CONTRASTS)
    first = move_landmarks(synthesise(moving.generator, stack, 1, study.mask), study.mask, offsets)
    np.testing.assert_allclose(to_canonical_array(chained["t1gd"].image), first, atol=1e-4)
    stack[1] = first
    np.testing.assert_allclose(to_canonical_array(chained["flair"].image), synthesise(moving.generator, stack, 3, study.mask), atol=1e-4)


def test_one_missing_model_refuses_absent_inputs_unless_chained(tumour_crop, tiny_model):
    inputs = {"t1": tumour_crop["t1"], "t2": tumour_crop["t2"]}
    with pytest.raises(InputError, match="no volume was given for FLAIR.*strategy 'chain'"):
        impute(inputs, "t1gd", tiny_model)
    with pytest.raises(InputError, match="at most 1 absent contrast"):
        impute_all(inputs, ["t1gd", "flair"], tiny_model, strategy="joint")
    results = impute_all(inputs, ["t1gd", "flair"], tiny_model, strategy="chain")
    assert any("expect lower quality" in note for note in results["t1gd"].notes)


def test_request_errors(tumour_crop, any_model):
    with pytest.raises(InputError, match="no input volume"):
        impute_all({}, ["t1gd"], any_model)
    with pytest.raises(InputError, match="named twice"):
        impute_all({"t1": tumour_crop["t1"]}, ["t2", "t2"], any_model)
    with pytest.raises(InputError, match="no contrast to impute"):
        impute_all({"t1": tumour_crop["t1"]}, [], any_model)
    with pytest.raises(InputError, match="unknown strategy"):
        impute_all({"t1": tumour_crop["t1"]}, ["t2"], any_model, strategy="guess")


def test_command_line_repeats_missing(tumour_crop, tiny_any_model_path, tmp_path, capsys):
    args = ["impute", "--t1", tumour_crop["t1"], "--flair", tumour_crop["flair"], "--missing", "t1gd", "--missing", "t2",
            "--weights", tiny_any_model_path, "--device", "cpu"]
    code = main([str(a) for a in args + ["-o", tmp_path / "case_{contrast}.nii.gz"]])
    assert code == 0, capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["case_t1gd.nii.gz", "case_t2.nii.gz"]
    code = main([str(a) for a in args + ["-o", tmp_path / "one.nii.gz"]])
    err = capsys.readouterr().err
    assert code == 2 and "{contrast}" in err and not (tmp_path / "one.nii.gz").exists()


def test_command_line_writes_reliability_maps_beside_the_outputs(tumour_crop, tiny_any_model_path, tmp_path, capsys):
    args = ["impute", "--t1", tumour_crop["t1"], "--t2", tumour_crop["t2"], "--missing", "t1gd", "--missing", "flair", "--uncertainty",
            "-o", tmp_path / "case_{contrast}.nii.gz", "--weights", tiny_any_model_path, "--device", "cpu"]
    code = main([str(a) for a in args])
    assert code == 0, capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "case_flair.nii.gz", "case_flair_uncertainty.nii.gz", "case_t1gd.nii.gz", "case_t1gd_uncertainty.nii.gz"]
    output, spread = (sitk.ReadImage(str(tmp_path / name)) for name in ("case_t1gd.nii.gz", "case_t1gd_uncertainty.nii.gz"))
    assert (spread.GetSize(), spread.GetOrigin(), spread.GetDirection()) == (output.GetSize(), output.GetOrigin(), output.GetDirection())
    values = sitk.GetArrayFromImage(spread)
    brain = np.logical_or.reduce([sitk.GetArrayFromImage(sitk.ReadImage(str(tumour_crop[k]))) > 0 for k in ("t1", "t2")])
    assert values.min() >= 0 and values[brain].max() > 0 and not values[~brain].any()
