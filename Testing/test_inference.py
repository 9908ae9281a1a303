"""Whole-volume imputation on real studies: geometry of the output, masking, and untouched inputs."""

import hashlib

import numpy as np
import pytest
import SimpleITK as sitk
from CollaGANImputeLib.core.errors import Cancelled, InputError
from CollaGANImputeLib.inference.imputation import impute, impute_all
from CollaGANImputeLib.inference.synthesis import (
    VIEWS,
    model_smoothing,
    network_stack,
    smooth_in_brain,
    synthesise,
    synthesise_on_canvas,
)
from CollaGANImputeLib.io.geometry import to_canonical_array
from CollaGANImputeLib.model.weights import load_model
from CollaGANImputeLib.preparation.study import prepare_study
from conftest import SHARED_CROP, assert_same_grid, crop_volumes, subject_files


def digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("subject", ["BraTS-GLI-00001-000", "AURORA-MET-example"])  # LPS and RAS on disk
def test_output_on_reference_grid_and_zero_outside_brain(manifest, tiny_model, subject):
    files = subject_files(manifest, subject)
    inputs = {k: files[k] for k in ("t1", "t2", "flair")}
    before = {k: digest(p) for k, p in inputs.items()}
    result = impute(inputs, "t1gd", tiny_model)
    reference = sitk.ReadImage(str(files["t1"]))
    assert_same_grid(result.image, reference)
    assert result.image.GetPixelID() == sitk.sitkFloat32
    output = sitk.GetArrayFromImage(result.image)
    brain = np.logical_or.reduce([sitk.GetArrayFromImage(sitk.ReadImage(str(inputs[k]))) > 0 for k in inputs])
    assert np.all(output[~brain] == 0)
    assert np.count_nonzero(output[brain]) > 0
    assert result.notes == []  # co-registered inputs: nothing was resampled
    assert {k: digest(p) for k, p in inputs.items()} == before  # inputs are only read


def test_ras_and_lps_copies_of_one_study_give_the_same_voxels(manifest, tiny_model, tmp_path):
    """Axial slicing follows the direction cosines: the same study stored RAS gives the same image."""
    files = subject_files(manifest, "TCGA-DU-7294")
    flipped = {}
    for key in ("t1", "t2", "flair"):
        image = sitk.ReadImage(str(files[key]))
        ras = sitk.DICOMOrient(image, "RAS")
        flipped[key] = tmp_path / f"{key}_ras.nii.gz"
        sitk.WriteImage(ras, str(flipped[key]))
    lps = impute({k: files[k] for k in flipped}, "t1gd", tiny_model)
    ras = impute(flipped, "t1gd", tiny_model)
    assert ras.image.GetDirection() != lps.image.GetDirection()
    np.testing.assert_allclose(to_canonical_array(ras.image), to_canonical_array(lps.image), atol=1e-5)


@pytest.mark.parametrize("reference", ["t1", "t2"])
def test_raw_study_on_its_own_grids(manifest, tiny_model, reference):
    """The native study: each contrast on its own oblique grid; the output takes the chosen reference's."""
    files = subject_files(manifest, "TCGA-FG-6692-native", group="raw")
    inputs = {k: files[k] for k in ("t1", "t2", "flair")}
    result = impute(inputs, "t1gd", tiny_model, reference=reference, force=True)  # forced past the 5.5 mm / skull findings
    assert_same_grid(result.image, sitk.ReadImage(str(files[reference])))
    resampled = [note.split(" (")[0] for note in result.notes if "was resampled onto" in note]
    assert sorted(resampled) == sorted(k.upper() if k != "flair" else "FLAIR" for k in inputs if k != reference)


def test_user_mask_limits_the_output(manifest, tiny_model, tmp_path):
    files = subject_files(manifest, "TCGA-DU-7294")
    reference = sitk.ReadImage(str(files["t1"]))
    mask = sitk.Image(reference.GetSize(), sitk.sitkUInt8)
    mask.CopyInformation(reference)
    mask[60:180, 60:180, 70:90] = 1
    mask_path = tmp_path / "mask.nii.gz"
    sitk.WriteImage(mask, str(mask_path))
    result = impute({k: files[k] for k in ("t1", "t2", "flair")}, "t1gd", tiny_model, mask=mask_path)
    output = sitk.GetArrayFromImage(result.image)
    assert np.all(output[sitk.GetArrayFromImage(mask) == 0] == 0)
    empty = tmp_path / "empty_mask.nii.gz"
    sitk.WriteImage(mask * 0, str(empty))
    with pytest.raises(InputError, match="brain mask: '.*empty_mask.nii.gz' is all zero"):
        impute({k: files[k] for k in ("t1", "t2", "flair")}, "t1gd", tiny_model, mask=empty)
    assert np.count_nonzero(output) > 0


def test_cancel_stops_and_progress_counts_brain_slices(manifest, tiny_model):
    files = subject_files(manifest, "TCGA-DU-7294")
    inputs = {k: files[k] for k in ("t1", "t2", "flair")}
    seen = []
    impute(inputs, "t1gd", tiny_model, batch_size=16, planes=1, progress=lambda done, total: seen.append((done, total)))
    assert seen[-1][0] == seen[-1][1] < 155  # axial slices without brain are skipped (test_planes.py: every orientation)
    calls = iter(range(100))
    with pytest.raises(Cancelled):
        impute(inputs, "t1gd", tiny_model, cancel=lambda: next(calls) >= 2)


def test_request_errors_name_the_contrast(manifest, tiny_model):
    files = subject_files(manifest, "TCGA-DU-7294")
    with pytest.raises(InputError, match="T1Gd is a contrast to impute"):
        impute({k: files[k] for k in ("t1", "t1gd", "t2", "flair")}, "t1gd", tiny_model)
    with pytest.raises(InputError, match="no volume was given for FLAIR"):
        impute({k: files[k] for k in ("t1", "t2")}, "t1gd", tiny_model)
    with pytest.raises(InputError, match="imputes only"):
        impute({k: files[k] for k in ("t1", "t2")}, "pd", tiny_model)


def test_smoothing_across_slices_keeps_flat_tissue_flat_and_removes_flicker():
    rng = np.random.default_rng(0)
    mask = np.zeros((20, 16, 16), dtype=bool)
    mask[3:17, 4:12, 4:12] = True
    flat = smooth_in_brain(np.where(mask, 2.5, 0.0), mask, (1.5, 1.0))
    assert np.allclose(flat[mask], 2.5, atol=1e-5) and np.all(flat[~mask] == 0)  # the brain's edge is not darkened
    noisy = np.where(mask, 1 + rng.normal(0, 0.2, mask.shape), 0.0).astype(np.float32)
    smoothed = smooth_in_brain(noisy, mask, (1.0, 0.0))
    inside = mask[1:] & mask[:-1]

    def flicker(volume):
        return np.abs(np.diff(volume, axis=0))[inside].mean()

    assert flicker(smoothed) < 0.6 * flicker(noisy)
    assert smoothed[mask].mean() == pytest.approx(noisy[mask].mean(), abs=0.01)


def test_smoothing_in_plane_removes_a_checkerboard_and_keeps_an_edge():
    """The decoder's artefact (a +-0.2 checkerboard at one voxel's period) on a tissue edge (1 | 2): the
    card's 0.75 voxels leaves under 2 % of the checkerboard, and the edge still rises over about 3 voxels."""
    mask = np.ones((3, 32, 32), dtype=bool)
    rows, cols = np.indices((32, 32))
    tissue = np.where(cols < 16, 1.0, 2.0)
    checker = 0.2 * (-1.0) ** (rows + cols)
    smoothed = smooth_in_brain(np.broadcast_to(tissue + checker, mask.shape).astype(np.float32), mask, (0.0, 0.75))[1]
    residue = smoothed - smooth_in_brain(np.broadcast_to(tissue, mask.shape).astype(np.float32), mask, (0.0, 0.75))[1]
    assert np.abs(residue[4:-4, 4:-4]).max() < 0.02 * 0.2
    profile = smoothed[16]
    assert profile[12] == pytest.approx(1.0, abs=0.01) and profile[19] == pytest.approx(2.0, abs=0.01)
    assert 1.2 < profile[15] < 1.5 and 1.5 < profile[16] < 1.8


def test_the_cards_smoothing_is_in_millimetres_across_slices_and_voxels_in_plane(manifest, tiny_model, tmp_path):
    """A card asking for 2 mm across slices and 0.75 voxels in plane, and for FLAIR alone 1 mm and none in plane:
    on a 1 mm study T1Gd is smoothed with sigma (2, 0.75) voxels and FLAIR with (1, 0); on its copy resampled
    to 2 mm slices T1Gd gets (1, 0.75)."""
    smoothing = load_model(tiny_model.weights_path)
    smoothing.card["inference"] = {"through_plane_sigma_mm": 2.0, "in_plane_sigma_voxels": 0.75,
                                   "by_contrast": {"flair": {"through_plane_sigma_mm": 1.0}}}
    assert smoothing.smoothing("t1gd") == (2.0, 0.75) and smoothing.smoothing("flair") == (1.0, 0.0)
    assert tiny_model.smoothing("t1gd") == (0.0, 0.0)
    files = crop_volumes(subject_files(manifest, "TCGA-DU-7294"), SHARED_CROP, tmp_path)
    for key, sigma in (("t1gd", (2.0, 0.75)), ("flair", (1.0, 0.0))):
        inputs = {k: files[k] for k in tiny_model.contrasts if k != key}
        study = prepare_study(inputs, tiny_model.contrasts)
        assert model_smoothing(smoothing, key, study.slice_spacing) == pytest.approx(sigma)
        expected = smooth_in_brain(to_canonical_array(impute(inputs, key, tiny_model).image), study.mask, sigma)
        np.testing.assert_allclose(to_canonical_array(impute(inputs, key, smoothing).image), expected, atol=1e-4)
    thick = sitk.ReadImage(str(files["t1"]))
    thick.SetSpacing((1.0, 1.0, 2.0))
    thick_study = prepare_study({"t1": thick}, tiny_model.contrasts)
    assert model_smoothing(smoothing, "t1gd", thick_study.slice_spacing) == pytest.approx((1.0, 0.75))


def test_views_average_the_mirrored_and_shifted_predictions(manifest, tiny_model, tmp_path):
    """views=N is the mean of the first N views, each placed back on the study's grid, then smoothed once;
    progress counts the slices of every view; an impossible number is refused before any work."""
    files = crop_volumes(subject_files(manifest, "TCGA-DU-7294"), SHARED_CROP, tmp_path)
    study = prepare_study({k: files[k] for k in ("t1", "t2", "flair")}, tiny_model.contrasts)
    stack, target, mask = network_stack(study, tiny_model.contrasts), 1, study.mask
    members = [synthesise_on_canvas(tiny_model.generator, stack, target, mask, canvas, mirror) for canvas, mirror in VIEWS[:4]]
    assert not np.allclose(members[0], members[1], atol=1e-3)  # the mirrored view is a different prediction
    np.testing.assert_allclose(members[0], synthesise(tiny_model.generator, stack, target, mask, planes=1), atol=1e-5)
    counts = []
    averaged = synthesise(tiny_model.generator, stack, target, mask, views=4, planes=1, smoothing=(1.0, 0.75),
                          progress=lambda done, total: counts.append((done, total)))
    np.testing.assert_allclose(averaged, smooth_in_brain(np.mean(members, axis=0), mask, (1.0, 0.75)), atol=1e-5)
    assert counts[-1][0] == counts[-1][1] and [d for d, _ in counts] == sorted(d for d, _ in counts)
    assert not averaged[~mask].any()
    for views in (0, len(VIEWS) + 1):
        with pytest.raises(InputError, match=f"views: {views} asked, but between 1 and {len(VIEWS)}"):
            impute_all({k: files[k] for k in ("t1", "t2", "flair")}, ["t1gd"], tiny_model, views=views,
                       progress=lambda *_: pytest.fail("work started before the number of views was checked"))
