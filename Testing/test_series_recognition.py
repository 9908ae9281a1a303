"""Series recognition on clinical names, DICOM tags and real study folders (series_recognition.py)."""

import json
import subprocess
import sys

import numpy as np
import pytest
import SimpleITK as sitk
from CollaGANImputeLib.core.errors import InputError
from CollaGANImputeLib.io.series_recognition import find_study_files, match_contrast, recognise_name, recognise_study
from conftest import CONTRASTS, SHARED_DATA, subject_files, write_dicom_series

RAW = SHARED_DATA / "raw" / "TCGA-FG-6692-native"


@pytest.mark.parametrize("name, key", [
    ("T1_AX_POST_GAD", "t1gd"), ("AX T1 +C", "t1gd"), ("T1 C+ FS", "t1gd"), ("t1_mprage_sag_p2_iso", "t1"),
    ("T1_MPRAGE_POST", "t1gd"), ("T1W_SE", "t1"), ("t1_fl2d_tra_fs_post", "t1gd"), ("AX T1 post-contrast", "t1gd"),
    ("t1_pre_contrast", "t1"), ("T1_FLAIR_AX", "t1"), ("T2W_TSE", "t2"), ("AX_T2_FS", "t2"), ("T2_FLAIR", "flair"),
    ("t2_tirm_tra_dark-fluid", "flair"), ("DarkFluid_tra", "flair"), ("T2_SPACE_FLAIR", "flair"),
    ("BRATS_HG0015_T1C (1).mha", "t1gd"), ("T1POST_N4_noneck_reduced_winsor_regtoFLAIR_brain_N4_regtoMNI.nii.gz", "t1gd"),
    ("T1_N4_noneck_reduced_winsor_regtoFLAIR_brain_N4_regtoMNI.nii.gz", "t1"),
])
def test_clinical_series_names(name, key):
    assert recognise_name(name).contrast == key
    assert match_contrast(name) == key


@pytest.mark.parametrize("name, what", [
    ("AAHead_Scout_64ch", "localiser"), ("3-plane loc", "localiser"), ("ep2d_diff_3scan_trace_p2", "diffusion"),
    ("ep2d_diff_3scan_trace_p2_ADC", "diffusion"), ("SWI_Images", "susceptibility"), ("T2*_GRE_AX", "susceptibility"),
    ("ep2d_perf", "perfusion"), ("TOF_3D_multi-slab", "angiogram"),
])
def test_other_series_are_set_aside_with_the_reason(name, what):
    found = recognise_name(name)
    assert found.contrast is None and found.set_aside and what in found.reason


def test_post_gad_series_is_not_a_second_t1():
    """The issue's first failure: with T1Gd missing, the POST_GAD series was taken for a second T1."""
    name = "MRHR_T1_AX_POST_GAD_OtherEXampleTCIA_TCGA-FG-6692_Si_TCGA-FG-6692_MRHR_T1_AX_POST_GAD_SE_13_se2d1r_t1c.nii.gz"
    assert match_contrast(name, ["t1", "t2", "flair"]) is None
    assert match_contrast(name.replace("_t1c.nii.gz", ".nii.gz"), ["t1", "t2", "flair"]) is None


def test_raw_study_gets_one_series_per_contrast():
    if not RAW.is_dir():
        pytest.skip(f"real data not found: expected the raw study in {RAW}")
    series = recognise_study(RAW, ["t1", "t2", "flair"])
    assert {k: p.name.split("_Other")[0] for k, p in series.files.items()} == {"t1": "T1_AX", "t2": "MRHR_T2_AX", "flair": "MRHR_FLAIR_AX"}
    assert [(p.name.split("_Other")[0], why) for p, why in series.unused] == [("MRHR_T1_AX_POST_GAD", "named T1Gd (word 't1c'), not wanted here")]
    assert len(series.describe()) == 3 and series.describe()[0].startswith("FLAIR <- MRHR_FLAIR_AX")


def test_every_training_subject_is_recognised():
    training = SHARED_DATA / "training.json"
    if not training.is_file():
        pytest.skip(f"real data not found: expected {training}")
    for name, entry in json.loads(training.read_text())["subjects"].items():
        found = find_study_files(SHARED_DATA / entry["dir"], CONTRASTS)
        assert {k: p.name for k, p in found.items()} == {k: entry[k] for k in CONTRASTS}, name


def test_dicom_study_folder_by_series_description_and_contrast_agent(manifest, tmp_path):
    """A DICOM study of many series: localiser, DWI, SWI, a T1 before and after contrast (told apart only by the
    Contrast/Bolus Agent tag), T2 named by its protocol, FLAIR named by its folder alone."""
    files = subject_files(manifest, "TCGA-DU-7294")
    crop = (slice(100, 140), slice(100, 140), slice(74, 78))
    t1, t1gd, t2, flair = (sitk.ReadImage(str(files[k]))[crop] for k in CONTRASTS)
    study = tmp_path / "study"
    write_dicom_series(t1, study / "s1", "1.2.3.1", SeriesDescription="AAHead_Scout")
    write_dicom_series(t2, study / "s2", "1.2.3.2", SeriesDescription="ep2d_diff_3scan_trace")
    write_dicom_series(t2, study / "s3", "1.2.3.3", SeriesDescription="SWI_Images")
    write_dicom_series(t1, study / "s4", "1.2.3.4", SeriesDescription="AX T1 SE")
    write_dicom_series(t1gd, study / "s5", "1.2.3.5", SeriesDescription="AX T1 SE", ContrastBolusAgent="GADOVIST 7.5 ML")
    write_dicom_series(t2, study / "s6", "1.2.3.6", ProtocolName="t2_tse_tra")
    write_dicom_series(flair, study / "T2_FLAIR_AX", "1.2.3.7")
    (study / "notes").mkdir()  # no DICOM in it: not a series
    series = recognise_study(study, CONTRASTS)
    assert {k: p.name for k, p in series.files.items()} == {"t1": "s4", "t1gd": "s5", "t2": "s6", "flair": "T2_FLAIR_AX"}
    assert "Contrast/Bolus Agent (0018,0010) 'GADOVIST 7.5 ML'" in series.reasons["t1gd"]
    assert sorted((p.name, why.split(": ")[-1].split(" (")[0]) for p, why in series.unused) == [
        ("s1", "a localiser"), ("s2", "a diffusion series"), ("s3", "a susceptibility series")]
    # The series recognised are the ones the reader takes: T1Gd's voxels are the post-contrast series'.
    from CollaGANImputeLib.io.volumes import read_volume
    np.testing.assert_array_equal(sitk.GetArrayFromImage(read_volume(series.files["t1gd"])),
                                  sitk.GetArrayFromImage(sitk.Cast(sitk.Cast(t1gd, sitk.sitkInt16), sitk.sitkFloat32)))

    # Two T1s (an axial SE and a sagittal MPRAGE): a question listing both, not a guess.
    write_dicom_series(t1, study / "s8", "1.2.3.8", SeriesDescription="t1_mprage_sag_p2_iso")
    with pytest.raises(InputError, match=r"T1: two or more series in '.*study' match it: s4 \(series 'AX T1 SE': named T1 .*\); "
                                         r"s8 \(series 't1_mprage_sag_p2_iso': named T1 \(word 'mprage'\)\)\. Give the one to use explicitly \(--t1 PATH"):
        recognise_study(study, CONTRASTS)


def test_command_line_study_picks_the_right_series_and_says_which(tmp_path):
    """`impute --study` on the raw study no longer stops at 'two or more files match T1'; it names each series it
    took, and then refuses the raw study for what it is (ood_checks), not for its names."""
    if not RAW.is_dir():
        pytest.skip(f"real data not found: expected the raw study in {RAW}")
    done = subprocess.run([sys.executable, "-m", "CollaGANImputeLib", "impute", "--study", str(RAW), "--missing", "t1gd",
                           "-o", str(tmp_path / "t1gd.nii.gz"), "--device", "cpu"], capture_output=True, encoding="utf-8", timeout=300)
    assert done.returncode == 2, done.stderr
    assert "study: T1 <- T1_AX_" in done.stderr and "study: T2 <- MRHR_T2_AX" in done.stderr and "study: FLAIR <- MRHR_FLAIR_AX" in done.stderr
    assert "two or more" not in done.stderr
    assert "not skull-stripped" in done.stderr and "5.5 mm slices" in done.stderr and "--prepare" in done.stderr
    assert not list(tmp_path.iterdir())
