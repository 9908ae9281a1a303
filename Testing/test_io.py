"""Contrast recognition from real file names, volume formats, metrics and checkpoint files."""

import json
import os

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from CollaGANImputeLib.core.errors import InputError, ModelError
from CollaGANImputeLib.core.metrics import brasyn_normalise, image_metrics
from CollaGANImputeLib.io.series_recognition import find_study_files, match_contrast
from CollaGANImputeLib.io.volumes import read_volume, write_volume
from CollaGANImputeLib.model.checkpoint import load_checkpoint, save_checkpoint
from conftest import CONTRASTS, SHARED_DATA, subject_files, write_dicom_series


@pytest.mark.parametrize("name, key", [
    ("BraTS-GLI-00001-000-t1n.nii.gz", "t1"), ("BraTS-GLI-00001-000-t1c.nii.gz", "t1gd"),
    ("BraTS-GLI-00001-000-t2w.nii.gz", "t2"), ("BraTS-GLI-00001-000-t2f.nii.gz", "flair"),
    ("BraTS20_Training_001_t1ce.nii.gz", "t1gd"), ("BraTS20_Training_001_flair.nii", "flair"),
    ("TCGA-DU-7294_fla_bet.nii.gz", "flair"), ("OtherEXampleFromTCIA_t1_bet.nii.gz", "t1"),
    ("T1Gd.nrrd", "t1gd"), ("patient7_T1CE.mha", "t1gd"), ("FLAIR.nii.gz", "flair"), ("T2-FLAIR.nii.gz", "flair"),
    ("sub-01_T2w.nii.gz", "t2"), ("t1_post_contrast.nii.gz", "t1gd"), ("segmentation.nii.gz", None),
    ("MRHR_T1_AX_POST_GAD_OtherEXampleTCIA_TCGA-FG-6692_Si_TCGA-FG-6692_MRHR_T1_AX_POST_GAD_SE_13_se2d1r_t1c.nii.gz", "t1gd"),
])
def test_contrast_from_file_name(name, key):
    assert match_contrast(name) == key


def test_real_study_folders_are_recognised(manifest):
    for group in ("subjects", "raw"):
        for name, entry in manifest[group].items():
            found = find_study_files(SHARED_DATA / entry["dir"], CONTRASTS)
            assert {k: p.name for k, p in found.items()} == {k: entry[k] for k in CONTRASTS}, name


def test_two_files_for_one_contrast_is_an_error(tmp_path):
    for name in ("a_t1.nii.gz", "b_t1n.nii.gz", "c_t2.nii.gz"):
        (tmp_path / name).write_bytes(b"")
    with pytest.raises(InputError, match=r"T1: two or more series .*a_t1.nii.gz \(named T1 .*\); b_t1n.nii.gz \(named T1 "):
        find_study_files(tmp_path, CONTRASTS)


def test_formats_and_dicom_series_keep_geometry(manifest, tmp_path):
    source = sitk.ReadImage(str(subject_files(manifest, "AURORA-MET-example")["t2"]))[80:144, 90:150, 60:70]
    reference = read_volume(_write(source, tmp_path / "ref.nii.gz"))
    for suffix in ("nrrd", "mha"):
        image = read_volume(_write(source, tmp_path / f"v.{suffix}"), "t2")
        assert image.GetOrigin() == pytest.approx(reference.GetOrigin()) and image.GetDirection() == pytest.approx(reference.GetDirection())
        np.testing.assert_array_equal(sitk.GetArrayFromImage(image), sitk.GetArrayFromImage(reference))
    series = tmp_path / "dicom"
    write_dicom_series(source, series, "1.2.826.0.1.3680043.2.1125.1.7294")
    image = read_volume(series, "t2")
    assert image.GetSize() == reference.GetSize()
    assert image.GetOrigin() == pytest.approx(reference.GetOrigin(), abs=1e-3)
    assert image.GetDirection() == pytest.approx(reference.GetDirection(), abs=1e-5)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(image), sitk.GetArrayFromImage(reference))
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="T1: .*empty' holds no DICOM series"):
        read_volume(tmp_path / "empty", "t1")
    for detached in ("out.mhd", "out.nhdr"):  # readable, but only the header could be renamed into place
        with pytest.raises(InputError, match=f"output '.*{detached}' must end in one of .nii.gz, .nii, .nrrd, .mha"):
            write_volume(reference, tmp_path / detached)
    assert not list(tmp_path.glob("*out*"))


def _write(image, path):
    sitk.WriteImage(image, str(path))
    return path


def test_metrics_on_real_volume(manifest):
    t1 = sitk.GetArrayFromImage(sitk.ReadImage(str(subject_files(manifest, "TCGA-DU-7294")["t1"]))).astype(np.float32)
    brain = t1 > 0
    perfect = image_metrics(t1, t1.copy(), brain)
    assert perfect["ssim_brain"] == pytest.approx(1.0) and perfect["nmse_brain"] == 0.0 and perfect["psnr_brain"] > 100
    noisy = t1 + np.random.default_rng(0).normal(0, 0.1 * t1[brain].std(), t1.shape).astype(np.float32) * brain
    scores = image_metrics(t1, noisy, brain)
    assert 0.3 < scores["ssim_brain"] < 0.99 and 15 < scores["psnr_brain"] < 40 and 0 < scores["nmse_brain"] < 0.1
    assert scores["ssim_volume"] > scores["ssim_brain"]  # the empty background inflates whole-volume SSIM
    assert "0.5-99.5 percentiles" in scores["normalisation"]
    scaled = brasyn_normalise(t1, brain)
    assert scaled.min() == 0.0 and scaled.max() == pytest.approx(1.0) and np.all(scaled[~brain] == 0)
    # Intensity scale does not change the scores: they are computed after normalisation.
    assert image_metrics(t1, noisy * 7.5, brain)["psnr_brain"] == pytest.approx(scores["psnr_brain"], rel=1e-4)


def test_checkpoint_round_trip_and_foreign_files(tmp_path):
    tree = {"step": 7, "nested": {0: torch.arange(3.0), "name": "x"}, "pair": (0.5, None)}
    save_checkpoint(tree, tmp_path / "c.safetensors")
    umask = os.umask(0o022)
    os.umask(umask)
    # safetensors writes a 0600 file of its own over the temporary one: a shared model must stay readable
    assert (tmp_path / "c.safetensors").stat().st_mode & 0o777 == 0o666 & ~umask
    loaded = load_checkpoint(tmp_path / "c.safetensors")
    assert loaded["step"] == 7 and loaded["nested"]["name"] == "x" and loaded["pair"] == [0.5, None]
    assert torch.equal(loaded["nested"][0], torch.arange(3.0))
    (tmp_path / "junk.safetensors").write_bytes(b"\x00" * 16)
    with pytest.raises(ModelError, match="cannot be read"):
        load_checkpoint(tmp_path / "junk.safetensors")


def test_a_manifest_entry_that_is_not_file_names_is_named(tmp_path):
    from CollaGANImputeLib.preparation.data import discover_subjects

    for entry in ({"t1": None}, ["t1.nii.gz"]):
        (tmp_path / "manifest.json").write_text(json.dumps({"subjects": {"case-7": entry}}))
        with pytest.raises(InputError, match="subject 'case-7' must map each contrast"):
            discover_subjects(tmp_path / "manifest.json", CONTRASTS)
