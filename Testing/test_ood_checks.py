"""Out-of-distribution checks (ood_checks.py): no false alarm on the training subjects, and each check
catching the study it is for (thick slices, non-axial slices, another in-plane spacing, no skull stripping,
swapped contrasts), with refusal, --force and the command line's message."""

import json
import subprocess
import sys

import numpy as np
import pytest
import SimpleITK as sitk
from CollaGANImputeLib.core.contrasts import DEFAULT_CONTRASTS
from CollaGANImputeLib.inference.imputation import impute
from CollaGANImputeLib.io.geometry import Grid
from CollaGANImputeLib.preparation.contrast_identity import brain_ml
from CollaGANImputeLib.preparation.ood_checks import (
    MAX_BRAIN_ML,
    MAX_BRIGHT_RING,
    OutOfDistribution,
    bright_ring,
    check_study,
    tilt_from_axial,
)
from CollaGANImputeLib.preparation.study import prepare_study
from conftest import SHARED_DATA, subject_files

TRAINING = SHARED_DATA / "training.json"
RAW = SHARED_DATA / "raw" / "TCGA-FG-6692-native"


def _training_subjects() -> dict[str, dict]:
    if not TRAINING.is_file():
        pytest.skip(f"real data not found: expected {TRAINING}")
    subjects = json.loads(TRAINING.read_text())["subjects"]
    return {name: {k: SHARED_DATA / e["dir"] / e[k] for k in DEFAULT_CONTRASTS} for name, e in subjects.items()}


def _raw_files() -> dict:
    if not RAW.is_dir():
        pytest.skip(f"real data not found: expected the raw study in {RAW}")
    from CollaGANImputeLib.io.series_recognition import recognise_study

    return recognise_study(RAW, DEFAULT_CONTRASTS).files


@pytest.mark.slow
def test_no_false_alarm_on_any_training_subject():
    """All 26 skull-stripped training subjects pass every check, with the margins docs/clinical_studies.md records."""
    volumes, rings = [], []
    for name, files in _training_subjects().items():
        study = prepare_study(files, DEFAULT_CONTRASTS)
        assert check_study(study) == [], name
        volumes.append(brain_ml(study))
        rings.append(bright_ring(study)[1])
    assert max(volumes) < 0.75 * MAX_BRAIN_ML and max(rings) < MAX_BRIGHT_RING["t1"] - 0.04


def test_no_false_alarm_on_the_manifest_subjects(manifest):
    for name in manifest["subjects"]:
        study = prepare_study(subject_files(manifest, name), DEFAULT_CONTRASTS)
        assert check_study(study) == [], name


def _resampled(image: sitk.Image, spacing, direction=None) -> sitk.Image:
    """`image` over the same field of view on a grid of `spacing` (and `direction`, about its centre)."""
    direction = image.GetDirection() if direction is None else direction
    old, size = np.array(image.GetSpacing()), np.array(image.GetSize())
    centre = image.TransformContinuousIndexToPhysicalPoint((size - 1) / 2.0)
    new_size = [int(round(n)) for n in size * old / np.array(spacing)]
    origin = np.array(centre) - np.array(direction).reshape(3, 3) @ ((np.array(new_size) - 1) / 2.0 * np.array(spacing))
    return sitk.Resample(image, new_size, sitk.Transform(), sitk.sitkLinear, origin.tolist(), list(spacing), list(direction), 0.0,
                         sitk.sitkFloat32)


@pytest.fixture(scope="module")
def du7294(manifest) -> dict[str, sitk.Image]:
    return {k: sitk.ReadImage(str(p), sitk.sitkFloat32) for k, p in subject_files(manifest, "TCGA-DU-7294").items()}


def _checks(volumes: dict) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for finding in check_study(prepare_study(volumes, DEFAULT_CONTRASTS)):
        found.setdefault(finding.check, []).append(finding.reason)
    return found


def test_thick_slices_are_caught(du7294):
    thick = {k: _resampled(v, (1.0, 1.0, 5.0)) for k, v in du7294.items()}
    found = _checks(thick)
    assert list(found) == ["slice_thickness"] and len(found["slice_thickness"]) == 4
    assert found["slice_thickness"][0] == "T1 has 5 mm slices (training: 1 mm)"


def test_sagittal_and_oblique_acquisitions_are_caught(du7294):
    sagittal = {k: _resampled(v, (5.0, 1.0, 1.0)) for k, v in du7294.items()}
    found = _checks(sagittal)
    assert set(found) == {"slice_thickness", "orientation", "in_plane_spacing"}
    assert found["orientation"][0].startswith("T1 was acquired in sagittal slices (90 degrees from axial")
    # Isotropic but tilted 40 degrees about the left-right axis: the slices the network would read are oblique.
    angle = np.radians(40)
    tilted = (1, 0, 0, 0, np.cos(angle), -np.sin(angle), 0, np.sin(angle), np.cos(angle))
    assert tilt_from_axial(Grid((10, 10, 10), (1.0, 1.0, 1.0), tilted)) == pytest.approx(40.0, abs=0.01)
    found = _checks({k: _resampled(v, (1.0, 1.0, 1.0), tilted) for k, v in du7294.items()})
    assert list(found) == ["orientation"] and "oblique slices (40 degrees from axial" in found["orientation"][0]


def test_in_plane_spacing_far_from_the_models_is_caught(du7294):
    coarse = {k: _resampled(v, (2.0, 2.0, 1.0)) for k, v in du7294.items()}
    found = _checks(coarse)
    assert list(found) == ["in_plane_spacing"]
    assert found["in_plane_spacing"] == ["the T1 grid the network runs on has 2 x 2 mm voxels in plane (training: 1 mm)"]


def test_swapped_t1_and_t2_are_caught(manifest):
    """T2 given as T1 (and T1 as T2): the sibling check contrast_identity.py, run with the others."""
    files = subject_files(manifest, "TCGA-DU-7294")
    found = _checks({**files, "t1": files["t2"], "t2": files["t1"]})
    assert list(found) == ["contrast_identity"] and "T1 and T2 inputs look swapped" in found["contrast_identity"][0]


def test_a_t2_given_as_t1_without_a_t2_input_is_doubted(manifest):
    """No T2 to swap with: the "T1" is judged alone against the T1 and T2 centroids. A doubt, noted beside the result
    and refused with --strict; the real T1 in its place raises none. Its bright rim of fluid also trips the skull
    check: the refusal says the doubt first."""
    from CollaGANImputeLib.core.errors import InputError
    from CollaGANImputeLib.preparation.contrast_identity import lone_identity_doubts
    from CollaGANImputeLib.preparation.ood_checks import refuse_out_of_distribution

    files = subject_files(manifest, "BraTS-GLI-00001-000")
    as_given = prepare_study({"t1": files["t2"], "t1gd": files["t1gd"], "flair": files["flair"]}, DEFAULT_CONTRASTS)
    assert lone_identity_doubts(as_given) == [
        "the T1 input's intensity histogram matches T2 better than T1: check that it is a T1 (a T2 given as T1 makes a wrong imputation)"]
    with pytest.raises(OutOfDistribution, match=r"axial\): the T1 input's intensity histogram matches T2 better than T1: .*, so give each "
                                                 r"file as the contrast it is; .*scalp or skull"):
        refuse_out_of_distribution(as_given, force=False)
    with pytest.raises(InputError, match=r"^the T1 input's intensity histogram matches T2 better than T1: .* \(refused: --strict\)$"):
        refuse_out_of_distribution(as_given, force=True, strict=True)
    refuse_out_of_distribution(as_given, force=True)
    assert as_given.notes[-1].startswith("the T1 input's intensity histogram matches T2 better than T1")
    right = prepare_study({"t1": files["t1"], "t1gd": files["t1gd"], "flair": files["flair"]}, DEFAULT_CONTRASTS)
    assert lone_identity_doubts(right) == []
    with_t2 = prepare_study({"t1": files["t2"], "t2": files["t1"]}, DEFAULT_CONTRASTS)  # a pair: the swap check speaks, not this one
    assert lone_identity_doubts(with_t2) == []


def test_a_swap_is_said_alone_in_one_line():
    """T2 given as T1 on the sample case also trips the skull check (its bright rim of fluid reads as scalp); the
    refusal says only the swap and its remedy, in one line, and keeps every finding for the caller."""
    from CollaGANImputeLib.analysis.demo import sample_case_files

    files = sample_case_files(DEFAULT_CONTRASTS)
    study = prepare_study({"t1": files["t2"], "t2": files["t1"], "flair": files["flair"]}, DEFAULT_CONTRASTS)
    findings = check_study(study)
    assert {f.check for f in findings} == {"skull", "contrast_identity"}
    message = str(OutOfDistribution(findings))
    assert "\n" not in message and "scalp" not in message and "--prepare" not in message
    assert message.endswith("the T1 and T2 inputs look swapped: their intensity histograms match T2 and T1 better than their own "
                            "(check which file is which), so give each file as the contrast it is; or impute it as it is (--force)")


def test_raw_study_is_caught_as_not_skull_stripped():
    files = _raw_files()
    study = prepare_study({k: files[k] for k in ("t1", "t2", "flair")}, DEFAULT_CONTRASTS)
    found = {f.check: f for f in check_study(study)}
    assert set(found) == {"skull", "slice_thickness"}
    assert brain_ml(study) > 2.5 * MAX_BRAIN_ML
    assert "not skull-stripped" in found["skull"].reason and "--prepare" in found["skull"].remedy


def test_a_mask_wider_than_the_brain_is_caught_by_its_bright_ring(manifest, tmp_path):
    """The raw T1 in the brain of its own skull-stripped copy (registered into native space) widened by 5 mm: a
    mask of brain size, but its outer ring is scalp and skull, bright on T1."""
    from CollaGANImputeLib.preparation.brain_prep import register_rigid
    from scipy import ndimage

    raw_t1 = sitk.ReadImage(str(_raw_files()["t1"]), sitk.sitkFloat32)
    copy = subject_files(manifest, "TCGA-FG-6692", "subjects")
    brain = sitk.ReadImage(str(copy["t1"]), sitk.sitkFloat32)
    registration = register_rigid(raw_t1, brain, "t1")
    mask = sitk.Resample(sitk.Cast(brain > 0, sitk.sitkFloat32), raw_t1, registration.transform, sitk.sitkLinear, 0.0) > 0.5
    wide = sitk.GetImageFromArray(ndimage.binary_dilation(sitk.GetArrayFromImage(mask) > 0, np.ones((1, 3, 3)), iterations=5)
                                  .astype(np.uint8))
    wide.CopyInformation(raw_t1)
    exact = prepare_study({"t1": raw_t1}, DEFAULT_CONTRASTS, mask=mask)
    widened = prepare_study({"t1": raw_t1}, DEFAULT_CONTRASTS, mask=wide)
    assert bright_ring(exact)[1] < MAX_BRIGHT_RING["t1"] < bright_ring(widened)[1]
    assert [f.check for f in check_study(exact)] == ["slice_thickness"]
    assert [f.check for f in check_study(widened)] == ["skull", "slice_thickness"]
    assert "scalp or skull is left around the brain" in check_study(widened)[0].reason


def test_impute_refuses_unless_forced(du7294, tiny_model):
    thick = {k: _resampled(v, (1.0, 1.0, 5.0))[100:140, 100:140, :] for k, v in du7294.items() if k != "t1gd"}
    with pytest.raises(OutOfDistribution, match=r"(?s)not what the model was trained on.*T1 has 5 mm slices.*--force") as refused:
        impute(thick, "t1gd", tiny_model)
    assert [f.check for f in refused.value.findings] == ["slice_thickness"] * 3
    message = str(refused.value)  # one line: three reasons, their one remedy said once, then --force
    assert "\n" not in message and message.count("--prepare resamples it to 1 mm") == 1
    assert "T1 has 5 mm slices (training: 1 mm); T2 has 5 mm slices (training: 1 mm); FLAIR has 5 mm slices" in message
    assert message.endswith("or impute it as it is (--force) (--prepare: prepare=PrepareOptions() in Python, 'Prepare raw study' in Slicer)")
    result = impute(thick, "t1gd", tiny_model, force=True)
    assert result.image.GetSize() == thick["t1"].GetSize()
    assert "imputed although T1 has 5 mm slices (training: 1 mm) (--force)" in result.notes


def test_command_line_refuses_with_reasons_and_forces(du7294, tiny_model_path, tmp_path):
    paths = {}
    for key in ("t1", "t2", "flair"):
        paths[key] = tmp_path / f"{key}.nii.gz"
        sitk.WriteImage(_resampled(du7294[key], (1.0, 1.0, 5.0))[100:140, 100:140, :], str(paths[key]))
    command = [sys.executable, "-m", "CollaGANImputeLib", "impute", *(a for k, p in paths.items() for a in (f"--{k}", str(p))),
               "--missing", "t1gd", "-o", str(tmp_path / "out.nii.gz"), "--weights", str(tiny_model_path), "--device", "cpu"]
    refused = subprocess.run(command, capture_output=True, encoding="utf-8", timeout=300)
    assert refused.returncode == 2 and "T2 has 5 mm slices" in refused.stderr and not (tmp_path / "out.nii.gz").exists()
    forced = subprocess.run([*command, "--force"], capture_output=True, encoding="utf-8", timeout=300)
    assert forced.returncode == 0, forced.stderr
    assert "note: imputed although FLAIR has 5 mm slices" in forced.stderr and (tmp_path / "out.nii.gz").is_file()
