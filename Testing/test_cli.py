"""The command line: a good run, and every bad input ending in a clear message, exit code 2, no output."""

import hashlib
import json
import subprocess
import sys

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from CollaGANImputeLib.cli.main import main
from CollaGANImputeLib.core.errors import InputError
from conftest import REPO, SHARED_CROP, crop_volumes, subject_files


@pytest.fixture(scope="module")
def small_study(manifest, tmp_path_factory):
    """A 64x64x12 crop of a real study's T1, T1Gd, T2 and FLAIR (fast, still real voxels)."""
    return crop_volumes(subject_files(manifest, "TCGA-DU-7294"), SHARED_CROP, tmp_path_factory.mktemp("study"), "crop_")


def run(argv, capsys):
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.err


def impute_args(study, output, weights, **overrides):
    inputs = {"t1": study["t1"], "t2": study["t2"], "flair": study["flair"], **overrides}
    args = ["impute", "--missing", "t1gd", "-o", output, "--weights", weights, "--device", "cpu"]
    for key, value in inputs.items():
        for path in value if isinstance(value, list) else [value]:
            args += [f"--{key}", path]
    return args


def write_like(reference_path, array, path, **geometry):
    image = sitk.GetImageFromArray(array)
    reference = sitk.ReadImage(str(reference_path))
    if array.ndim == 3:
        image.CopyInformation(reference)
    for name, value in geometry.items():
        getattr(image, f"Set{name}")(value)
    sitk.WriteImage(image, str(path))
    return path


def test_impute_writes_output_on_the_reference_grid(small_study, tiny_model_path, tmp_path, capsys):
    before = {k: hashlib.sha256(p.read_bytes()).hexdigest() for k, p in small_study.items()}
    output = tmp_path / "out" / "t1gd.nii.gz"
    code, err = run(impute_args(small_study, output, tiny_model_path), capsys)
    assert code == 0, err
    result, reference = sitk.ReadImage(str(output)), sitk.ReadImage(str(small_study["t1"]))
    assert (result.GetSize(), result.GetOrigin(), result.GetSpacing(), result.GetDirection()) == (
        reference.GetSize(), reference.GetOrigin(), reference.GetSpacing(), reference.GetDirection())
    assert [p.name for p in output.parent.iterdir()] == ["t1gd.nii.gz"]  # no temporary file left
    assert {k: hashlib.sha256(p.read_bytes()).hexdigest() for k, p in small_study.items()} == before


def test_study_folder_is_recognised_from_file_names(small_study, tiny_model_path, tmp_path, capsys):
    study = tmp_path / "study"
    study.mkdir()
    for path in small_study.values():
        (study / path.name).write_bytes(path.read_bytes())
    (study / "crop_pd.nii.gz").write_bytes(small_study["t2"].read_bytes())  # a contrast the model does not take
    output = tmp_path / "t1gd.nrrd"
    code, err = run(["impute", "--study", study, "--missing", "t1gd", "-o", output,
                     "--weights", tiny_model_path, "--progress", "lines"], capsys)
    assert code == 0, err
    assert output.is_file()


def bad_inputs(study, tmp):
    """(name, overrides of the impute inputs, words the message must contain)."""
    t1 = sitk.GetArrayFromImage(sitk.ReadImage(str(study["t1"]))).astype(np.float32)
    garbage = tmp / "garbage.nii.gz"
    garbage.write_bytes(b"not a volume" * 10)
    two_d = write_like(study["t1"], t1[5], tmp / "flat.nii.gz")
    four_d = tmp / "four.nii.gz"
    sitk.WriteImage(sitk.JoinSeries([sitk.ReadImage(str(study["t1"]))] * 2), str(four_d))
    zero = write_like(study["t1"], np.zeros_like(t1), tmp / "zero.nii.gz")
    nan, inf = t1.copy(), t1.copy()
    nan[3, 3, 3] = np.nan
    inf[4, 4, 4] = np.inf
    far = write_like(study["t2"], sitk.GetArrayFromImage(sitk.ReadImage(str(study["t2"]))), tmp / "far.nii.gz",
                     Origin=(1000.0, 1000.0, 1000.0))
    return [
        ("missing file", {"t1": tmp / "absent.nii.gz"}, ["T1", "absent.nii.gz", "does not exist"]),
        ("unreadable file", {"t1": garbage}, ["T1", "garbage.nii.gz", "cannot read"]),
        ("2-D volume", {"t1": two_d}, ["T1", "flat.nii.gz", "2-D"]),
        ("4-D volume", {"t1": four_d}, ["T1", "four.nii.gz", "4-D"]),
        ("all zero", {"t1": zero}, ["T1", "zero.nii.gz", "all zero"]),
        ("NaN", {"t2": write_like(study["t1"], nan, tmp / "nan.nii.gz")}, ["T2", "nan.nii.gz", "NaN"]),
        ("Inf", {"flair": write_like(study["t1"], inf, tmp / "inf.nii.gz")}, ["FLAIR", "inf.nii.gz", "infinite"]),
        ("two files for one contrast", {"t2": [study["t2"], study["t1"]]}, ["T2", "2 files"]),
        ("missing also given", {"t1gd": study["t1gd"]}, ["T1Gd", "contrast to impute"]),
        ("no overlap", {"t2": far}, ["T2", "far.nii.gz", "does not overlap"]),
    ]


def test_bad_inputs_fail_clearly_without_output(small_study, tiny_model_path, tmp_path, capsys):
    for name, overrides, words in bad_inputs(small_study, tmp_path):
        output = tmp_path / f"out_{name.replace(' ', '_')}.nii.gz"
        code, err = run(impute_args(small_study, output, tiny_model_path, **overrides), capsys)
        assert code == 2, f"{name}: exit code {code}; {err}"
        assert err.startswith("collagan-impute: error: ") and err.count("\n") == 1, f"{name}: {err}"
        for word in words:
            assert word in err, f"{name}: {word!r} not in {err!r}"
        assert not output.exists(), name
    assert not [p for p in tmp_path.iterdir() if "partial" in p.name]


@pytest.fixture()
def model_copy(tiny_model_path, tmp_path):
    weights = tmp_path / "copy.safetensors"
    weights.write_bytes(tiny_model_path.read_bytes())
    card = json.loads(tiny_model_path.with_suffix(".json").read_text())
    card["weights_file"] = weights.name
    weights.with_suffix(".json").write_text(json.dumps(card))
    return weights


def test_weights_whose_contrasts_do_not_match(small_study, model_copy, tmp_path, capsys):
    card = json.loads(model_copy.with_suffix(".json").read_text())
    card["contrasts"] = ["t1", "t1gd", "t2", "pd"]
    model_copy.with_suffix(".json").write_text(json.dumps(card))
    output = tmp_path / "out.nii.gz"
    code, err = run(impute_args(small_study, output, model_copy), capsys)
    assert code == 2 and "FLAIR" in err and "does not take this contrast" in err, err
    assert not output.exists()


def test_corrupt_weights(small_study, model_copy, tmp_path, capsys):
    model_copy.write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{broken}")
    card = json.loads(model_copy.with_suffix(".json").read_text())
    card["sha256"] = hashlib.sha256(model_copy.read_bytes()).hexdigest()  # a consistent card for a broken file
    model_copy.with_suffix(".json").write_text(json.dumps(card))
    output = tmp_path / "out.nii.gz"
    code, err = run(impute_args(small_study, output, model_copy), capsys)
    assert code == 2 and "copy.safetensors" in err and "cannot be read as safetensors" in err, err
    assert not output.exists()


def test_weights_that_do_not_match_their_card(small_study, model_copy, tmp_path, capsys):
    data = bytearray(model_copy.read_bytes())
    data[-1] ^= 0xFF  # one flipped byte in the last tensor
    model_copy.write_bytes(bytes(data))
    output = tmp_path / "out.nii.gz"
    code, err = run(impute_args(small_study, output, model_copy), capsys)
    assert code == 2 and "copy.safetensors" in err and "does not match its model card" in err, err
    assert not output.exists()


def test_weights_without_card(small_study, model_copy, tmp_path, capsys):
    code, err = run(impute_args(small_study, tmp_path / "out.nii.gz", tmp_path / "cpoy.safetensors"), capsys)  # a typo
    assert code == 2 and f"weights file '{tmp_path / 'cpoy.safetensors'}' not found" in err, err
    model_copy.with_suffix(".json").unlink()
    code, err = run(impute_args(small_study, tmp_path / "out.nii.gz", model_copy), capsys)
    assert code == 2 and "copy.json" in err and "not found" in err, err


def test_evaluating_a_contrast_the_model_lacks(tiny_model):
    from CollaGANImputeLib.analysis.evaluation import evaluate_subjects

    with pytest.raises(InputError, match="PD: model 'tiny' imputes only T1, T1Gd, T2, FLAIR"):
        evaluate_subjects(tiny_model, [], missing=["pd"])


def test_evaluate_scores_the_average_of_views_when_asked(small_study, tiny_model, tmp_path, capsys):
    """`evaluate --views N` scores what `impute --views N` delivers: the average of N shifted and mirrored views."""
    from CollaGANImputeLib.analysis.evaluation import evaluate_subjects
    from CollaGANImputeLib.core.metrics import image_metrics
    from CollaGANImputeLib.inference import synthesis
    from CollaGANImputeLib.inference.intensity_landmarks import model_landmarks
    from CollaGANImputeLib.inference.synthesis import model_inputs, model_smoothing, synthesise
    from CollaGANImputeLib.preparation.data import Subject, prepare_subject

    subject = Subject("crop", dict(small_study))
    plain, averaged = (evaluate_subjects(tiny_model, [subject], ["t2"], views=views) for views in (1, 4))
    assert (plain["views"], averaged["views"]) == (1, 4)
    study = prepare_subject(subject, tiny_model.contrasts)
    fake = synthesise(tiny_model.generator, model_inputs(tiny_model, study), tiny_model.contrasts.index("t2"), study.mask,
                      smoothing=model_smoothing(tiny_model, "t2", study.slice_spacing), views=4)
    expected = image_metrics(study.images["t2"], model_landmarks(tiny_model, "t2", fake, study.mask), study.mask)
    (row,) = averaged["results"]
    assert row["ssim_brain"] == pytest.approx(expected["ssim_brain"], abs=1e-6)
    assert row["psnr_brain"] == pytest.approx(expected["psnr_brain"], abs=1e-6)
    assert row["psnr_brain"] != pytest.approx(plain["results"][0]["psnr_brain"], abs=1e-3)
    fp32 = evaluate_subjects(tiny_model, [subject], ["t2"], planes=1, bf16=False)  # the report says how it imputed
    assert (fp32["planes"], fp32["precision"], averaged["planes"]) == (1, "fp32", 3)
    assert averaged["precision"] == ("bf16" if synthesis.native_bf16(torch.device("cpu")) else "fp32")

    manifest = tmp_path / "manifest.json"
    manifest.write_text(json.dumps({"subjects": {"crop": {"dir": str(small_study["t1"].parent), **{k: p.name for k, p in small_study.items()}}}}))
    code, err = run(["evaluate", "--data", manifest, "--weights", tiny_model.weights_path, "--json", tmp_path / "e.json", "--views", 9], capsys)
    assert code == 2 and "between 1 and 8" in err and "Traceback" not in err, err
    assert not (tmp_path / "e.json").exists()


def test_a_study_too_thin_to_score_is_refused_before_any_imputation(sample_files, tiny_model, tmp_path, capsys):
    """3-D SSIM's window is 7 voxels: a 4-slice study gets a clear error naming it, not skimage's."""
    from CollaGANImputeLib.analysis.evaluation import evaluate_subjects, score_imputation
    from CollaGANImputeLib.analysis.importance import analyse_study
    from CollaGANImputeLib.inference.imputation import impute
    from CollaGANImputeLib.preparation.data import Subject

    thin = crop_volumes(sample_files, (slice(None), slice(None), slice(60, 64)), tmp_path / "thin")
    with pytest.raises(InputError, match=r"subject 'thin': 4 x 198 x 148 voxels; SSIM's 7-voxel window needs at least 7"):
        evaluate_subjects(tiny_model, [Subject("thin", thin)], ["t1"])
    with pytest.raises(InputError, match="subject 'thin': .*cannot be scored"):
        analyse_study(thin, tiny_model, name="thin")
    imputation = impute({k: v for k, v in thin.items() if k != "t1"}, "t1", tiny_model)  # imputing it is fine
    with pytest.raises(InputError, match=r"the study imputed \(T1\): .*cannot be scored"):
        score_imputation(imputation, thin["t1"])

    manifest = tmp_path / "thin" / "manifest.json"
    manifest.write_text(json.dumps({"subjects": {"thin": {"dir": ".", **{k: p.name for k, p in thin.items()}}}}))
    code, err = run(["evaluate", "--data", manifest, "--weights", tiny_model.weights_path, "--json", tmp_path / "e.json"], capsys)
    assert code == 2 and "subject 'thin'" in err and "Traceback" not in err, err
    assert not (tmp_path / "e.json").exists()


def test_output_may_not_overwrite_an_input(small_study, tiny_model_path, tmp_path, capsys):
    before = small_study["t2"].read_bytes()
    code, err = run(impute_args(small_study, small_study["t2"], tiny_model_path), capsys)
    assert code == 2 and "is one of the inputs" in err
    assert small_study["t2"].read_bytes() == before
    mask = tmp_path / "mask.nii.gz"
    sitk.WriteImage(sitk.Cast(sitk.ReadImage(str(small_study["t1"])) > 0, sitk.sitkUInt8), str(mask))
    before = mask.read_bytes()
    code, err = run([*impute_args(small_study, mask, tiny_model_path), "--mask", mask], capsys)
    assert code == 2 and f"output '{mask}' is one of the inputs" in err and mask.read_bytes() == before
    code, err = run(impute_args(small_study, tmp_path / "t1gd.mhd", tiny_model_path), capsys)  # a detached voxel file
    assert code == 2 and "must end in one of .nii.gz, .nii, .nrrd, .mha" in err and not list(tmp_path.glob("*t1gd*"))


def test_info_and_module_entry_point(tiny_model_path):
    done = subprocess.run([sys.executable, "-m", "CollaGANImputeLib", "info", str(tiny_model_path)],
                          capture_output=True, encoding="utf-8", cwd=REPO / "CollaGANImpute", timeout=120)
    assert done.returncode == 0, done.stderr
    card = json.loads(done.stdout)
    assert card["contrasts"] == ["t1", "t1gd", "t2", "flair"] and "sha256 verified" in done.stderr
    bad = subprocess.run([sys.executable, "-m", "CollaGANImputeLib", "info", str(tiny_model_path.parent / "none.safetensors")],
                         capture_output=True, encoding="utf-8", cwd=REPO / "CollaGANImpute", timeout=120)
    assert bad.returncode == 2 and "weights file '" in bad.stderr and "none.safetensors' not found" in bad.stderr


def test_a_reader_that_stops_reading_gets_no_traceback(tiny_model_path):
    """`collagan-impute info | head`: the pipe's reader has gone when the card is written; the command ends quietly
    with 141 (128 + SIGPIPE), as a shell tool would."""
    import os

    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before the first byte
    try:
        done = subprocess.run([sys.executable, "-m", "CollaGANImputeLib", "info", str(tiny_model_path)], stdout=write_end,
                              stderr=subprocess.PIPE, encoding="utf-8", cwd=REPO / "CollaGANImpute", timeout=120)
    finally:
        os.close(write_end)
    assert done.returncode == 141 and "Traceback" not in done.stderr and "BrokenPipe" not in done.stderr, done.stderr


def test_planes_option(small_study, tiny_model_path, tmp_path, capsys):
    """By default the three orientations are averaged; --planes 1 writes the axial pass alone, on the same grid and unlike
    it; --planes 3 is the default; --planes 2 is refused with no output."""
    plain, averaged, named, refused = (tmp_path / f"{name}.nii.gz" for name in ("plain", "planes", "named", "refused"))
    assert run(impute_args(small_study, plain, tiny_model_path) + ["--planes", "1"], capsys)[0] == 0
    code, err = run(impute_args(small_study, averaged, tiny_model_path), capsys)
    assert code == 0, err
    assert run(impute_args(small_study, named, tiny_model_path) + ["--planes", "3"], capsys)[0] == 0
    assert np.array_equal(sitk.GetArrayFromImage(sitk.ReadImage(str(named))), sitk.GetArrayFromImage(sitk.ReadImage(str(averaged))))
    one, three = (sitk.ReadImage(str(p)) for p in (plain, averaged))
    assert (one.GetSize(), one.GetOrigin(), one.GetDirection()) == (three.GetSize(), three.GetOrigin(), three.GetDirection())
    assert not np.allclose(sitk.GetArrayFromImage(one), sitk.GetArrayFromImage(three), atol=1e-4)
    code, err = run(impute_args(small_study, refused, tiny_model_path) + ["--planes", "2"], capsys)
    assert code == 2 and "planes: 2 asked" in err and not refused.exists()


def test_precision_option(small_study, tiny_model_path, tmp_path, capsys, monkeypatch):
    """--precision auto (the default) is bf16 exactly where the CPU computes it natively, fp32 and bf16 force either, and
    anything else is refused with no output."""
    from CollaGANImputeLib.inference import synthesis

    outputs = {name: tmp_path / f"{name}.nii.gz" for name in ("fp32", "bf16", "auto_native", "auto_emulated", "refused")}
    for precision in ("fp32", "bf16"):
        argv = impute_args(small_study, outputs[precision], tiny_model_path) + ["--precision", precision, "--planes", "1"]
        assert main([str(a) for a in argv]) == 0
        assert f"T1Gd imputed by tiny from axial slices, {precision};" in capsys.readouterr().out  # the output says how it was made
    for native in (True, False):
        monkeypatch.setattr(synthesis, "native_bf16", lambda device, native=native: native)
        name = "auto_native" if native else "auto_emulated"
        assert run(impute_args(small_study, outputs[name], tiny_model_path) + ["--planes", "1"], capsys)[0] == 0
    array = {name: sitk.GetArrayFromImage(sitk.ReadImage(str(path))) for name, path in outputs.items() if path.exists()}
    assert not np.array_equal(array["fp32"], array["bf16"])
    assert np.array_equal(array["auto_native"], array["bf16"]) and np.array_equal(array["auto_emulated"], array["fp32"])
    with pytest.raises(SystemExit) as refused:
        main([str(a) for a in impute_args(small_study, outputs["refused"], tiny_model_path) + ["--precision", "fp16"]])
    assert refused.value.code == 2 and "--precision: invalid choice: 'fp16'" in capsys.readouterr().err
    assert not outputs["refused"].exists()


def test_views_option(small_study, tiny_model_path, tmp_path, capsys):
    """--views 2 writes an output unlike the one-view output; --views 9 is refused with no output."""
    plain, averaged, refused = (tmp_path / f"{name}.nii.gz" for name in ("plain", "averaged", "refused"))
    assert run(impute_args(small_study, plain, tiny_model_path), capsys)[0] == 0
    code, err = run(impute_args(small_study, averaged, tiny_model_path) + ["--views", "2"], capsys)
    assert code == 0, err
    one, two = (sitk.GetArrayFromImage(sitk.ReadImage(str(p))) for p in (plain, averaged))
    assert one.shape == two.shape and not np.allclose(one, two, atol=1e-4)
    code, err = run(impute_args(small_study, refused, tiny_model_path) + ["--views", "9"], capsys)
    assert code == 2 and "views: 9 asked, but between 1 and 8" in err and not refused.exists()
