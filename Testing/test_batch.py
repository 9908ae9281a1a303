"""Batch imputation: a run cancelled after its first study, rerun (with two worker processes), imputes
only the studies left, records each in the manifest with its notes, and writes outputs on each study's own grid."""

import json
import os
import subprocess
import sys
import threading

import pytest
import SimpleITK as sitk
from CollaGANImputeLib.core.errors import Cancelled, InputError
from CollaGANImputeLib.inference.batch import impute_folder, manifest_path, output_path
from CollaGANImputeLib.inference.synthesis import precision_of
from CollaGANImputeLib.model.weights import load_model
from conftest import REPO, subject_files

SUBJECTS = ("AURORA-MET-example", "BraTS-GLI-00001-000", "TCGA-DU-7294")  # in the order they run; AURORA is RAS, the others LPS


@pytest.fixture(scope="module")
def studies(manifest, tmp_path_factory):
    """Three real studies without T1Gd, cropped to 112x128x8 voxels of brain (cropping keeps the physical grid);
    the second one's FLAIR is a slice shorter, so it is resampled onto the T1 grid."""
    root = tmp_path_factory.mktemp("studies")
    for name in SUBJECTS:
        (root / name).mkdir()
        for key, path in subject_files(manifest, name).items():
            if key != "t1gd":
                last = 79 if (name, key) == (SUBJECTS[1], "flair") else 80
                sitk.WriteImage(sitk.ReadImage(str(path))[64:176, 56:184, 72:last], str(root / name / f"{key}.nii.gz"))
    return root


def test_interrupted_batch_resumes_only_the_unfinished_studies(studies, tiny_model, tiny_model_path, tmp_path):
    out = tmp_path / "out"
    first_done = threading.Event()
    with pytest.raises(Cancelled):
        impute_folder(tiny_model, studies, out, "t1gd", progress=lambda done, total, stage: done and first_done.set(),
                      cancel=first_done.is_set)
    first = output_path(out, SUBJECTS[0], "t1gd")
    # no partial file either; the lock stays (empty; the system frees it when its process ends)
    assert sorted(p.name for p in out.iterdir()) == sorted([first.name, manifest_path(out, "t1gd").name, ".collagan_batch_t1gd.lock"])
    cases = json.loads(manifest_path(out, "t1gd").read_text())["cases"]  # the others are listed as started: a rerun may replace their outputs
    assert {name: case["status"] for name, case in cases.items()} == {SUBJECTS[0]: "done", SUBJECTS[1]: "started", SUBJECTS[2]: "started"}
    first_written = first.stat().st_mtime_ns

    env = {**os.environ, "PYTHONPATH": str(REPO / "CollaGANImpute")}
    rerun = subprocess.run([sys.executable, "-m", "CollaGANImputeLib", "batch", "--studies", str(studies), "--out", str(out),
                            "--missing", "t1gd", "--weights", str(tiny_model_path), "--device", "cpu", "--workers", "2",
                            "--progress", "lines"], env=env, capture_output=True, encoding="utf-8", timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    done_counts = [json.loads(line.split(" ", 1)[1])["done"] for line in rerun.stdout.splitlines() if line.startswith("collagan-progress")]
    assert done_counts[0] == 1 and done_counts[-1] == 3
    assert first.stat().st_mtime_ns == first_written  # the finished study was not imputed again
    cases = json.loads(manifest_path(out, "t1gd").read_text())["cases"]
    assert set(cases) == set(SUBJECTS) and all(case["status"] == "done" for case in cases.values())
    assert cases[SUBJECTS[0]]["notes"] == [] and cases[SUBJECTS[2]]["notes"] == []
    how = f"three slice orientations averaged, {precision_of(load_model(tiny_model_path).generator)}"
    assert {case["method"] for case in cases.values()} == {how}  # how each file was made, whichever process made it
    resampled, coverage = cases[SUBJECTS[1]]["notes"]  # its FLAIR lacks the top slice of the T1 grid
    assert resampled.startswith("FLAIR (112x128x7") and "covers only 87 % of the T1 volume's non-zero voxels; axial slice 7 of 8 lacks it" in coverage
    assert "was resampled onto the T1 grid (112x128x8" in cases[SUBJECTS[1]]["notes"][0]

    for name in SUBJECTS:
        reference, result = sitk.ReadImage(str(studies / name / "t1.nii.gz")), sitk.ReadImage(str(output_path(out, name, "t1gd")))
        assert result.GetSize() == reference.GetSize() and result.GetOrigin() == pytest.approx(reference.GetOrigin())
        assert result.GetSpacing() == pytest.approx(reference.GetSpacing())
        assert result.GetDirection() == pytest.approx(reference.GetDirection())

    written = {name: output_path(out, name, "t1gd").stat().st_mtime_ns for name in SUBJECTS}
    assert impute_folder(tiny_model, studies, out, "t1gd") == {name: output_path(out, name, "t1gd") for name in SUBJECTS}
    assert {name: output_path(out, name, "t1gd").stat().st_mtime_ns for name in SUBJECTS} == written  # nothing left to do
    flair = impute_folder(tiny_model, studies, out, "flair")  # another contrast into the same folder keeps its own record
    assert all("T1Gd" in reason for reason in flair.values())  # these studies have no T1Gd to impute FLAIR from
    impute_folder(tiny_model, studies, out, "t1gd")
    assert {name: output_path(out, name, "t1gd").stat().st_mtime_ns for name in SUBJECTS} == written


def test_an_impossible_number_of_views_stops_the_batch_before_any_study(studies, tiny_model, tmp_path):
    """Checked once, up front: otherwise every study would be skipped with the same complaint."""
    with pytest.raises(InputError, match="views: 9 asked"):
        impute_folder(tiny_model, studies, tmp_path / "out", "t1gd", views=9)
    assert not (tmp_path / "out").exists()
