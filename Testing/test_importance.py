"""The contrast-importance analysis: the paired test, the analysis on real (cropped) studies with the
tiny and the bundled model, label maps, segmenters, cancel, and the report files."""

import csv
import json

import numpy as np
import pytest
import SimpleITK as sitk
from CollaGANImputeLib.analysis.importance import analyse_study, analyse_subjects
from CollaGANImputeLib.analysis.importance_report import paired_test, write_report
from CollaGANImputeLib.cli.importance import cmd_importance, label_files
from CollaGANImputeLib.core.errors import Cancelled, InputError
from CollaGANImputeLib.preparation.segmenters import callable_segmenter, threshold_segmenter
from CollaGANImputeLib.preparation.study import prepare_study
from conftest import CONTRASTS, crop_volumes, cropped_manifest
from PIL import Image

# A slab of the sample case (BraTS-GLI-00001-000) through its tumour: 96 x 96 voxels, 12 slices. Small
# enough to impute all four contrasts in seconds; the metrics are those of the slab, not of the volume.
SAMPLE_CROP = (slice(110, 206), slice(70, 166), slice(60, 72))


def box_labels(reference_path, path, *, enhancing=3):
    """Hand-made BraTS labels in the middle of a crop: oedema, enhancing shell, necrotic centre."""
    reference = sitk.ReadImage(str(reference_path))
    z, y, x = sitk.GetArrayViewFromImage(reference).shape
    labels = np.zeros((z, y, x), dtype=np.uint8)
    labels[2:z - 2, y // 4:3 * y // 4, x // 4:3 * x // 4] = 2
    labels[3:z - 3, 3 * y // 8:5 * y // 8, 3 * x // 8:5 * x // 8] = enhancing
    labels[4:z - 4, 7 * y // 16:9 * y // 16, 7 * x // 16:9 * x // 16] = 1
    image = sitk.GetImageFromArray(labels)
    image.CopyInformation(reference)
    sitk.WriteImage(image, str(path))
    return path


def t1gd_reader(images):
    """A fake segmenter that reads T1Gd alone: enhancing tumour where it is bright."""
    t1gd = sitk.GetArrayFromImage(images["t1gd"])
    labels = np.where(t1gd > np.percentile(t1gd[t1gd > 0], 90), 3, 0).astype(np.uint8)
    return labels


@pytest.fixture(scope="module")
def sample_crop(sample_files, tmp_path_factory):
    return crop_volumes(sample_files, SAMPLE_CROP, tmp_path_factory.mktemp("sample"))


@pytest.fixture(scope="module")
def shared_crops(manifest, tmp_path_factory):
    """Two shared subjects, cropped, with hand-made label maps, and a manifest listing them."""
    root = cropped_manifest(manifest, ("TCGA-DU-7294", "AURORA-MET-example"), tmp_path_factory.mktemp("shared"))  # LPS, RAS
    (root / "labels").mkdir()
    for name in ("TCGA-DU-7294", "AURORA-MET-example"):
        box_labels(root / name / "t1.nii.gz", root / "labels" / f"{name}-seg.nii.gz")
    return root


# ----- the paired test ------------------------------------------------------------------------------
def test_wilcoxon_against_hand_computed_p_values():
    # differences 1, -2, 3, 4, 5: ranks 1..5, the negative rank sum is 2; of the 2^5 sign patterns, 3 have a
    # rank sum of 2 or less on one side ({}, {1}, {2}), so the exact two-sided p is 2 * 3 / 32
    result = paired_test([1, -2, 3, 4, 5], [0] * 5)
    assert result["statistic"] == 2.0 and result["p_value"] == pytest.approx(6 / 32)
    assert result["method"] == "exact" and result["n"] == 5 and result["reason"] is None
    # four positive differences: the smallest possible p for four subjects, 2 / 16
    assert paired_test([0.9, 0.8, 0.7, 0.95], [0.5, 0.6, 0.1, 0.2])["p_value"] == pytest.approx(0.125)
    tied = paired_test([1, -1, 2, 3, 4], [0] * 5)
    assert tied["method"].startswith("exhaustive") and tied["p_value"] == pytest.approx(6 / 32)


def test_wilcoxon_when_it_cannot_be_computed():
    one = paired_test([0.8], [0.5])
    assert one["p_value"] is None and "two or more subjects" in one["reason"]
    zeros = paired_test([0.7, 0.6, 0.5], [0.7, 0.6, 0.5])
    assert zeros["p_value"] is None and zeros["reason"] == "every difference is zero" and zeros["n_nonzero"] == 0
    some_zero = paired_test([0.7, 0.6, 0.9], [0.7, 0.5, 0.8])
    assert some_zero["n"] == 3 and some_zero["n_nonzero"] == 2 and some_zero["p_value"] == pytest.approx(0.5)


# ----- the analysis ---------------------------------------------------------------------------------
def test_bundled_model_on_the_held_out_subject_writes_a_sound_report(sample_crop, tmp_path):
    from CollaGANImputeLib.model.weights import load_model

    model = load_model()
    seen = []
    report = analyse_study(sample_crop, model, name="BraTS-GLI-00001-000", segmenter=threshold_segmenter(),
                           progress=lambda done, total, stage: seen.append((done, total)))
    assert [d for d, _ in seen] == list(range(len(seen))) and seen[-1][0] == seen[-1][1] == 1 + 2 * 4
    assert sorted(report.ranking) == sorted(CONTRASTS)
    assert report.subjects == [{"name": "BraTS-GLI-00001-000", "trained_on": False, "regions": report.subjects[0]["regions"]}]
    assert "enhancement proxy" in report.subjects[0]["regions"]
    brain = int(prepare_study(sample_crop, model.contrasts).mask.sum())
    for row in report.rows:
        assert -1 <= row["ssim_brain"] <= 1 and -1 <= row["ssim_volume"] <= 1
        assert np.isfinite(row["psnr_brain"]) and row["nmse_brain"] >= 0
        assert row["outside_tumour"]["voxels"] + row["regions"]["enh_proxy"]["voxels"] == brain  # inside and outside
        outside = row["outside_tumour"]
        assert -1 <= outside["ssim_brain"] <= 1 and np.isfinite(outside["psnr_brain"]) and outside["nmse_brain"] >= 0
        region = row["regions"]["enh_proxy"]
        assert region["voxels"] > 0 and -1 <= region["ssim_brain"] <= 1 and np.isfinite(region["psnr_brain"])
        assert all(0 <= row[kind][r] <= 1 for kind in ("dice_real", "dice_imputed") for r in ("wt", "tc", "et"))
        assert row["dice_real"] == {"wt": 1.0, "tc": 1.0, "et": 1.0}  # agreement with itself
        assert row["segmenter_reads"] == (row["contrast"] != "t2")
    header = report.table()[0]
    assert header[header.index("SSIM enhancement proxy") + 1] == "SSIM outside tumour"
    t2 = next(r for r in report.rows if r["contrast"] == "t2")
    assert t2["score"] == 0.0 and any("does not read T2" in note for note in report.notes)
    assert report.summary["t1gd"]["tests"]["score"]["reason"].startswith("a paired test needs two")

    paths = write_report(report, tmp_path / "out")
    data = json.loads(paths["json"].read_text())
    assert data["ranking"] == report.ranking and data["test"].startswith("Wilcoxon signed-rank")
    assert "brain standard deviations" in data["inputs"] and "BraSyn" in data["normalisation"]
    with paths["csv"].open() as handle:
        rows = list(csv.DictReader(handle))
    assert [r["contrast"] for r in rows] == CONTRASTS and {r["rank"] for r in rows} == {"1", "2", "3", "4"}
    text = paths["md"].read_text()
    assert "T1Gd ranks" in text and "not a clinical tool" in text and "![Contrast importance](importance.png)" in text
    with Image.open(paths["png"]) as figure:
        assert figure.size == (640, 400)
    assert sorted(p.name for p in paths["json"].parent.iterdir()) == sorted(p.name for p in paths.values())


def test_without_a_segmenter_the_score_is_tumour_ssim(sample_crop, tiny_model):
    report = analyse_study(sample_crop, tiny_model)
    assert report.segmenter is None and "1 - SSIM" in report.score_definition
    for key in CONTRASTS:
        assert report.summary[key]["score"] == pytest.approx(1 - report.summary[key]["regions"]["enh_proxy"]["ssim_brain"])
    scores = [report.summary[k]["score"] for k in report.ranking]
    assert scores == sorted(scores)
    assert "Dice" not in " ".join(report.table()[0])


def test_labels_and_a_segmenter_that_needs_t1gd_rank_t1gd_last(sample_crop, tiny_model, tmp_path):
    real_t1gd = sitk.ReadImage(str(sample_crop["t1gd"]))
    labels = sitk.GetImageFromArray(t1gd_reader({"t1gd": real_t1gd}))  # the label map this segmenter gets right
    labels.CopyInformation(real_t1gd)
    report = analyse_study(sample_crop, tiny_model, labels=labels, segmenter=callable_segmenter(t1gd_reader))
    assert report.labels and "BraTS 2023" in report.subjects[0]["regions"]
    assert set(report.rows[0]["regions"]) == {"wt", "tc", "et"}
    assert report.rows[0]["dice_real"]["et"] > 0.95
    for row in report.rows:
        if row["contrast"] != "t1gd":  # the segmenter's input is unchanged: the same label map, no loss
            assert row["dice_imputed"] == row["dice_real"] and row["score"] == 0.0
    assert report.ranking[-1] == "t1gd" and report.summary["t1gd"]["score"] > 0.0
    assert "Dice loss" in report.score_definition and "label map" in report.score_definition


def test_bad_study_input_is_refused(sample_crop, tiny_model, tmp_path):
    with pytest.raises(InputError, match="no volume was given for FLAIR"):
        analyse_study({k: v for k, v in sample_crop.items() if k != "flair"}, tiny_model)
    labels = box_labels(sample_crop["t1"], tmp_path / "old.nii.gz", enhancing=5)
    with pytest.raises(InputError, match=r"label map of study 'case' holds label\(s\) 5"):
        analyse_study(sample_crop, tiny_model, name="case", labels=labels)
    with pytest.raises(InputError, match="does not exist"):
        analyse_study(sample_crop, tiny_model, labels=tmp_path / "none.nii.gz")


def test_cancel_stops_at_the_next_step(sample_crop, tiny_model):
    calls = []

    def cancel():
        calls.append(1)
        return len(calls) > 2

    with pytest.raises(Cancelled):
        analyse_study(sample_crop, tiny_model, cancel=cancel)
    assert len(calls) == 3  # checked before each step; none ran after the cancel


def test_cli_over_a_manifest_with_label_maps(shared_crops, tiny_model_path, tmp_path, capsys):
    out = tmp_path / "report"
    code = cmd_importance(["--data", str(shared_crops / "manifest.json"), "--weights", str(tiny_model_path), "--device", "cpu",
                           "--labels", str(shared_crops / "labels" / "{subject}-seg.nii.gz"),
                           "--segmenter", "threshold", "--out", str(out), "--progress", "lines"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "T1Gd ranks" in printed and "ranking, redundant to indispensable" in printed
    data = json.loads((out / "importance.json").read_text())
    assert [s["name"] for s in data["subjects"]] == ["TCGA-DU-7294", "AURORA-MET-example"]
    assert data["dice_reference"] == "label map" and len(data["results"]) == 8
    for key in CONTRASTS:
        tests = data["summary"][key]["tests"]
        assert set(tests) == {"wt", "tc", "et", "score"} and all(t["n"] == 2 for t in tests.values())
    assert all((out / f"importance.{kind}").is_file() for kind in ("json", "csv", "md", "png"))


def test_cli_subject_choice_and_bad_labels(shared_crops, tiny_model_path, tmp_path):
    common = ["--data", str(shared_crops), "--weights", str(tiny_model_path), "--device", "cpu", "--out", str(tmp_path / "r")]
    with pytest.raises(InputError, match="subject\\(s\\) NOPE not in"):
        cmd_importance([*common, "--subject", "NOPE"])
    with pytest.raises(InputError, match="no {subject} placeholder"):
        cmd_importance([*common, "--labels", "seg.nii.gz"])
    with pytest.raises(InputError, match="no label map .*missing-TCGA-DU-7294.nii.gz' \\(TCGA-DU-7294\\)"):
        cmd_importance([*common, "--subject", "TCGA-DU-7294", "--labels", str(tmp_path / "missing-{subject}.nii.gz")])
    assert not (tmp_path / "r").exists()


def test_label_files_from_the_manifest(tmp_path):
    manifest = tmp_path / "manifest.json"
    manifest.write_text(json.dumps({"subjects": {"a": {"dir": "A", "t1": "t1.nii.gz", "labels": "seg.nii.gz"},
                                                 "b": {"dir": "B", "t1": "t1.nii.gz"}}}))
    assert label_files(manifest, ["a"], None) == {"a": tmp_path / "A" / "seg.nii.gz"}
    assert label_files(tmp_path, ["b"], None) is None  # a folder holding the manifest; b has none
    assert label_files(tmp_path / "no-manifest-here", ["a"], None) is None


def test_labels_for_only_some_subjects_are_refused(tiny_model):
    from CollaGANImputeLib.preparation.data import Subject

    subjects = [Subject("a", {}), Subject("b", {})]
    with pytest.raises(InputError, match="not for b; give them for all or none"):
        analyse_subjects(tiny_model, subjects, labels={"a": "seg.nii.gz"})


def test_ranking_breaks_ties_by_tumour_ssim_and_can_use_held_out_subjects_alone():
    from CollaGANImputeLib.analysis.importance_report import ImportanceReport

    scores = {  # (subject, contrast): (score, 1 - tumour SSIM)
        ("held", "t1"): (0.0, 0.5), ("held", "t1gd"): (0.5, 0.7), ("held", "t2"): (0.0, 0.5), ("held", "flair"): (0.25, 0.6),
        ("seen", "t1"): (0.0, 0.5), ("seen", "t1gd"): (0.0, 0.7), ("seen", "t2"): (0.0, 0.5), ("seen", "flair"): (0.25, 0.6),
    }
    rows = [{"subject": s, "contrast": k, "score": v[0], "ssim_score": v[1]} for (s, k), v in scores.items()]
    subjects = [{"name": "held", "trained_on": False, "regions": "r"}, {"name": "seen", "trained_on": True, "regions": "r"}]
    report = ImportanceReport("m", "", CONTRASTS, subjects, "'fake'", False, rows)
    # mean scores: t1 0, t2 0 (equal SSIM scores too: model order), flair 0.25 = t1gd 0.25 (the SSIM score decides)
    assert report.ranking_over(["held", "seen"]) == ["t1", "t2", "flair", "t1gd"]
    assert report.held_out == ["held"]
    alone = report.ranking_over(report.held_out)
    assert alone == ["t1", "t2", "flair", "t1gd"]
    assert report.ranking_over(["seen"]) == ["t1", "t2", "t1gd", "flair"]
    assert report.ranking_over(["held", "seen"], by="ssim_score") == ["t1", "t2", "flair", "t1gd"]
    assert report.place("t1gd", alone) == "T1Gd ranks 4 of 4 (1 = most redundant, 4 = most indispensable)"
