"""Issue 21: inputs that lie about themselves, cards that steer the work badly, outputs that would destroy
something. Each case ends in one line naming the file and the problem (exit 2) before any work, or in a note
beside a kept result; no input is ever changed."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import nibabel
import numpy as np
import pytest
import SimpleITK as sitk
import torch
from CollaGANImputeLib.cli.impute import _impute_parser
from CollaGANImputeLib.cli.main import main
from CollaGANImputeLib.core.errors import InputError, ModelError
from CollaGANImputeLib.inference.batch import impute_folder
from CollaGANImputeLib.inference.imputation import require_usable_output
from CollaGANImputeLib.io.atomic import atomic_path, folder_lock
from CollaGANImputeLib.io.volume_files import MAX_VOXELS
from CollaGANImputeLib.io.volumes import read_volume, write_volume
from CollaGANImputeLib.model.model_card import RESERVED_NAMES, read_card, sha256_of
from CollaGANImputeLib.model.weights import load_model
from CollaGANImputeLib.preparation.contrast_identity import check_contrast_identity
from CollaGANImputeLib.preparation.study import prepare_study
from conftest import CONTRASTS, REPO, SHARED_CROP, crop_volumes, subject_files
from safetensors.torch import load_file, save_file

LIB = REPO / "CollaGANImpute"


@pytest.fixture(scope="module")
def crop(manifest, tmp_path_factory) -> dict[str, Path]:
    """A 64x64x12 crop of a real study's four contrasts."""
    return crop_volumes(subject_files(manifest, "TCGA-DU-7294"), SHARED_CROP, tmp_path_factory.mktemp("crop"), "crop_")


def run(argv, capsys) -> tuple[int, str]:
    code = main([str(a) for a in argv])
    return code, capsys.readouterr().err


def one_error_line(code: int, err: str, *words: str) -> None:
    """Exit 2 and one error line (after the lines --study prints about the files it found), holding `words`."""
    assert code == 2, err
    lines = err.splitlines()
    assert lines[-1].startswith("collagan-impute: error: ") and "Traceback" not in err and not any(
        line.startswith("collagan-impute") for line in lines[:-1]), err
    for word in words:
        assert word in lines[-1], f"{word!r} not in {err!r}"


def impute(inputs: dict, output: Path, weights: Path, *extra) -> list[str]:
    args = ["impute", "--missing", "t1gd", "-o", output, "--weights", weights, "--device", "cpu", *extra]
    for key, path in inputs.items():
        args += [f"--{key}", path]
    return args


def digests(paths) -> dict[Path, str]:
    return {Path(p): hashlib.sha256(Path(p).read_bytes()).hexdigest() for p in paths}


# ----- data loss: outputs ---------------------------------------------------------------------------------
def test_study_mode_never_replaces_the_real_scan_of_the_missing_contrast(crop, tiny_model_path, tmp_path, capsys):
    study = tmp_path / "study"
    shutil.copytree(crop["t1"].parent, study)
    before = digests(study.iterdir())
    code, err = run(["impute", "--study", study, "--missing", "t1gd", "-o", study / "crop_t1gd.nii.gz", "--weights", tiny_model_path,
                     "--overwrite"], capsys)
    one_error_line(code, err, "crop_t1gd.nii.gz", "is one of the inputs")
    code, err = run(["impute", "--study", study, "--missing", "t1gd", "-o", tmp_path / "synth.nii.gz", "--weights", tiny_model_path], capsys)
    assert code == 0 and "holds a real T1Gd ('crop_t1gd.nii.gz'): it was neither used nor replaced" in err, err
    assert digests(study.iterdir()) == before


def test_an_existing_output_is_replaced_only_with_overwrite(crop, tiny_model_path, tmp_path, capsys):
    inputs = {k: crop[k] for k in ("t1", "t2", "flair")}
    output = tmp_path / "t1gd.nii.gz"
    output.write_bytes(b"someone's file")
    one_error_line(*run(impute(inputs, output, tiny_model_path), capsys), f"output '{output}' already exists; give --overwrite")
    assert output.read_bytes() == b"someone's file"
    assert run(impute(inputs, output, tiny_model_path, "--overwrite"), capsys)[0] == 0
    assert sitk.ReadImage(str(output)).GetSize() == (64, 64, 12)


@pytest.mark.parametrize("command, existing", [
    (["demo", "--missing", "t1gd", "--out", "{out}"], "BraTS-GLI-00001-000_t1gd_collagan_montage.png"),
    (["importance", "--data", "{out}", "--out", "{out}"], "importance.md"),
])
def test_demo_and_importance_reports_replace_nothing_without_overwrite(command, existing, tmp_path, capsys):
    """Checked before the model is loaded: one line, exit 2, the file as it was."""
    (tmp_path / existing).write_bytes(b"last week's report")
    one_error_line(*run([str(a).replace("{out}", str(tmp_path)) for a in command], capsys),
                   f"output '{tmp_path / existing}' already exists; give --overwrite")
    assert (tmp_path / existing).read_bytes() == b"last week's report"


def test_an_output_folder_that_cannot_be_written_is_refused_before_any_work(crop, tiny_model_path, tmp_path, capsys):
    locked = tmp_path / "locked"
    locked.mkdir()
    if os.geteuid() == 0:  # root writes into a read-only folder; an immutable one stops it too
        if subprocess.run(["chattr", "+i", str(locked)], capture_output=True).returncode != 0:
            pytest.skip("running as root where chattr +i is not allowed: no folder is read-only to root")
    else:
        locked.chmod(0o555)
    try:
        code, err = run(impute({k: crop[k] for k in ("t1", "t2", "flair")}, locked / "t1gd.nii.gz", tiny_model_path), capsys)
    finally:
        subprocess.run(["chattr", "-i", str(locked)], capture_output=True) if os.geteuid() == 0 else locked.chmod(0o755)
    one_error_line(code, err, f"output folder '{locked}' is not writable")
    (tmp_path / "notes.txt").write_text("a file, not a folder")
    code, err = run(impute({k: crop[k] for k in ("t1", "t2", "flair")}, tmp_path / "notes.txt" / "t1gd.nii.gz", tiny_model_path), capsys)
    one_error_line(code, err, "cannot be made", "notes.txt' is a file")


def test_stale_partial_files_of_a_killed_write_go_with_the_next_write(crop, tmp_path):
    destination = tmp_path / "out" / "t1gd.nii.gz"
    checkpoint = tmp_path / "run" / "checkpoint.safetensors"
    script = textwrap.dedent(f"""
        import os, signal, sys
        sys.path.insert(0, {str(LIB)!r})
        from CollaGANImputeLib.io.atomic import atomic_paths
        with atomic_paths({str(destination)!r}, {str(checkpoint)!r}) as temps:
            for temp in temps:
                temp.write_bytes(b"half")
            os.kill(os.getpid(), signal.SIGKILL)
    """)
    assert subprocess.run([sys.executable, "-c", script], timeout=60).returncode == -signal.SIGKILL
    leftovers = [p for folder in (destination.parent, checkpoint.parent) for p in folder.iterdir()]
    assert len(leftovers) == 2 and all(".partial" in p.name for p in leftovers)
    write_volume(sitk.ReadImage(str(crop["t1"])), destination)
    from CollaGANImputeLib.model.checkpoint import save_checkpoint

    save_checkpoint({"step": 1, "weights": torch.zeros(2)}, checkpoint)
    assert sorted(p.name for p in destination.parent.iterdir()) == ["t1gd.nii.gz"]
    assert sorted(p.name for p in checkpoint.parent.iterdir()) == ["checkpoint.safetensors"]
    with atomic_path(destination) as live:  # a live writer's temporary file is left alone
        live.write_bytes(b"writing")
        write_volume(sitk.ReadImage(str(crop["t1"])), tmp_path / "out" / "other.nii.gz")
        assert live.exists()


# ----- batch -------------------------------------------------------------------------------------------
@pytest.fixture()
def studies(crop, tmp_path) -> Path:
    root = tmp_path / "studies"
    for name in ("a", "b"):
        shutil.copytree(crop["t1"].parent, root / name)
    return root


def test_two_batch_runs_never_share_an_output_folder(studies, tiny_model, tmp_path):
    out = tmp_path / "out"
    with folder_lock(out, "collagan_batch_t1gd"):  # as a second process running the same batch would hold it
        with pytest.raises(InputError, match=f"'{out}' is in use by another run"):
            impute_folder(tiny_model, studies, out, "t1gd")
        assert impute_folder(tiny_model, studies, out, "flair")["a"].is_file()  # another contrast: its own lock
    assert not list(out.glob("*t1gd_collagan*"))


def test_batch_replaces_only_its_own_outputs_and_never_writes_among_the_studies(studies, tiny_model, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "a_t1gd_collagan.nii.gz").write_bytes(b"not ours")
    with pytest.raises(InputError, match="a_t1gd_collagan.nii.gz' already exists; give --overwrite"):
        impute_folder(tiny_model, studies, out, "t1gd")
    assert (out / "a_t1gd_collagan.nii.gz").read_bytes() == b"not ours" and not (out / "b_t1gd_collagan.nii.gz").exists()
    report = impute_folder(tiny_model, studies, out, "t1gd", overwrite=True)
    assert all(isinstance(v, Path) for v in report.values()), report
    with pytest.raises(InputError, match="lies inside the folder of studies"):
        impute_folder(tiny_model, studies, studies / "imputed", "t1gd")


# ----- volumes: size and integrity -----------------------------------------------------------------------
def _peak_memory_mb(path: Path) -> tuple[str, float]:
    """read_volume in a fresh process: its message and the process's peak resident memory."""
    script = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(LIB)!r})
        from CollaGANImputeLib.io.volumes import read_volume
        try:
            read_volume({str(path)!r}, "t1")
            print("read")
        except Exception as error:
            print(type(error).__name__, error)
        # VmHWM belongs to this process's memory; ru_maxrss would inherit the forking pytest's peak.
        print(next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:")) / 1024)
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, encoding="utf-8", timeout=120)
    message, peak = done.stdout.strip().splitlines()
    return message, float(peak)


def test_a_small_file_claiming_a_huge_volume_is_refused_in_little_memory(tmp_path):
    header = nibabel.Nifti1Image(np.zeros((2, 2, 2), np.int16), np.eye(4)).header
    header.set_data_shape((1000, 1000, 1000))
    (tmp_path / "huge.nii").write_bytes(header.binaryblock + bytes(104))
    (tmp_path / "huge.nii.gz").write_bytes(gzip.compress(header.binaryblock + bytes(104)))
    # under the voxel limit, but more than the few hundred bytes could hold even as gzip
    header.set_data_shape((400, 400, 400))
    (tmp_path / "big.nii.gz").write_bytes(gzip.compress(header.binaryblock + bytes(104)))
    (tmp_path / "big.nrrd").write_bytes(b"NRRD0004\ntype: short\ndimension: 3\nsizes: 400 400 400\nendian: little\nencoding: gzip\n\n" + gzip.compress(bytes(100)))
    (tmp_path / "big.mha").write_bytes(b"ObjectType = Image\nNDims = 3\nDimSize = 400 400 400\nElementType = MET_SHORT\n"
                                       b"CompressedData = True\nElementDataFile = LOCAL\n" + bytes(100))
    for name, words in (("huge.nii", "declares 1000x1000x1000 voxels, more than the"), ("huge.nii.gz", "1000x1000x1000"),
                        ("big.nii.gz", "is cut short or damaged"), ("big.nrrd", "is cut short or damaged"),
                        ("big.mha", "is cut short or damaged")):
        message, peak = _peak_memory_mb(tmp_path / name)
        assert message.startswith("InputError T1: '") and name in message and words in message, message
        assert peak < 1024, f"{name}: {peak:.0f} MB"
    assert MAX_VOXELS == 512**3


@pytest.mark.parametrize("dtype", [sitk.sitkUInt8, sitk.sitkInt16, sitk.sitkFloat32, sitk.sitkFloat64])
def test_a_volume_cut_short_is_refused_in_every_format(crop, dtype, tmp_path):
    image = sitk.Cast(sitk.ReadImage(str(crop["t1"])), dtype)
    for name, compressed in (("v.nii.gz", True), ("v.nii", False), ("z.nrrd", True), ("r.nrrd", False), ("z.mha", True),
                             ("r.mha", False), ("v.mhd", False)):
        path = tmp_path / name
        sitk.WriteImage(image, str(path), useCompression=compressed)
        read_volume(path)  # whole, it reads
        voxels = next(tmp_path.glob("v.*raw")) if name == "v.mhd" else path
        voxels.write_bytes(voxels.read_bytes()[: voxels.stat().st_size * 2 // 3])
        with pytest.raises(InputError, match=rf"T1: '.*{name}' is (cut short or damaged|damaged)"):
            read_volume(path, "t1")


def test_bad_spacing_and_sheared_grids_are_refused_in_every_format(crop, tmp_path):
    stored = gzip.decompress(crop["t1"].read_bytes())
    header = nibabel.Nifti1Header.from_fileobj(__import__("io").BytesIO(stored), check=False)
    header["pixdim"][3] = 0.0  # ITK would read this as 1 mm without a word
    (tmp_path / "zero.nii.gz").write_bytes(gzip.compress(header.binaryblock + stored[348:]))
    image = sitk.ReadImage(str(crop["t1"]))
    sheared = sitk.Image(image)
    sheared.SetDirection((1, 0.3, 0, 0, 1, 0, 0, 0, 1))
    sitk.WriteImage(sheared, str(tmp_path / "sheared.nrrd"))
    sitk.WriteImage(image, str(tmp_path / "zero.mha"))
    text = (tmp_path / "zero.mha").read_bytes()
    start = text.index(b"ElementSpacing = ")
    end = text.index(b"\n", start)
    (tmp_path / "zero.mha").write_bytes(text[:start] + b"ElementSpacing = 1 0 1" + text[end:])
    for name, words in (("zero.nii.gz", "has voxel spacing (1.0, 1.0, 0.0) mm"), ("zero.mha", "spacing from [1, 1, 1] to [1, 0, 1]"),
                        ("sheared.nrrd", "has a direction matrix whose axes are not orthogonal")):
        with pytest.raises(InputError) as caught:
            read_volume(tmp_path / name, "t2")
        assert str(caught.value).startswith("T2: ") and name in str(caught.value) and words in str(caught.value), str(caught.value)


def test_links_and_permissions_are_named_as_what_they_are(tmp_path):
    (tmp_path / "loop.nii.gz").symlink_to(tmp_path / "loop.nii.gz")
    (tmp_path / "dangling.nii.gz").symlink_to(tmp_path / "gone.nii.gz")
    with pytest.raises(InputError, match="T1: '.*loop.nii.gz' is a loop of symbolic links"):
        read_volume(tmp_path / "loop.nii.gz", "t1")
    with pytest.raises(InputError, match="dangling.nii.gz' is a symbolic link to '.*gone.nii.gz', which does not exist"):
        read_volume(tmp_path / "dangling.nii.gz", "t1")


def test_a_symbolic_link_loop_as_output_or_input_is_one_line(crop, tiny_model_path, tmp_path, capsys):
    loop = tmp_path / "loop.nii.gz"
    loop.symlink_to(loop)
    one_error_line(*run(impute({"t1": crop["t1"], "t2": crop["t2"], "flair": crop["flair"]}, loop, tiny_model_path), capsys),
                   "loop.nii.gz' is a loop of symbolic links")
    one_error_line(*run(impute({"t1": loop, "t2": crop["t2"], "flair": crop["flair"]}, tmp_path / "o.nii.gz", tiny_model_path), capsys),
                   "T1: '", "loop of symbolic links")


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their permissions")
def test_an_unreadable_input_is_not_called_absent(crop, tmp_path):
    private = tmp_path / "private.nii.gz"
    shutil.copy(crop["t1"], private)
    private.chmod(0)
    with pytest.raises(InputError, match="private.nii.gz' cannot be read: permission denied"):
        read_volume(private, "t1")


# ----- inputs that are not what they say --------------------------------------------------------------------
def test_one_volume_for_two_contrasts_is_refused(crop, tiny_model_path, tmp_path, capsys):
    copy = tmp_path / "copy_of_t2.nii.gz"
    shutil.copy(crop["t2"], copy)
    for t1 in (crop["t2"], copy):
        code, err = run(impute({"t1": t1, "t2": crop["t2"], "flair": crop["flair"]}, tmp_path / "o.nii.gz", tiny_model_path), capsys)
        one_error_line(code, err, f"T1 '{t1}' and T2 '{crop['t2']}' hold the same voxels")
    assert not (tmp_path / "o.nii.gz").exists()


def test_an_input_covering_part_of_the_reference_is_noted_or_refused_with_strict(crop, tiny_model_path, tmp_path, capsys):
    part = tmp_path / "t2_part.nii.gz"
    sitk.WriteImage(sitk.ReadImage(str(crop["t2"]))[:, :, 7:], str(part))  # 5 of 12 slices
    inputs = {"t1": crop["t1"], "t2": part, "flair": crop["flair"]}
    code, err = run(impute(inputs, tmp_path / "noted.nii.gz", tiny_model_path), capsys)
    assert code == 0 and f"T2 '{part}' covers only 42 % of the T1 volume's non-zero voxels; axial slices 0-6 of 12 lack it" in err, err
    code, err = run(impute(inputs, tmp_path / "strict.nii.gz", tiny_model_path, "--strict"), capsys)
    one_error_line(code, err, "covers only 42 %", "(refused: --strict)")
    assert not (tmp_path / "strict.nii.gz").exists()


def test_swapped_t1_and_t2_are_found(sample_files, crop):
    """Whole brains (the bundled sample case): the histograms tell T2 from T1 and T1Gd; a crop is not judged.
    (ood_checks.py refuses such a study before imputing; Testing/test_ood_checks.py.)"""
    given = {k: sample_files[k] for k in ("t1", "t2", "flair")}
    assert check_contrast_identity(prepare_study(given, CONTRASTS)) == []
    swapped = {**given, "t1": sample_files["t2"], "t2": sample_files["t1"]}
    assert check_contrast_identity(prepare_study(swapped, CONTRASTS)) == [
        "the T1 and T2 inputs look swapped: their intensity histograms match T2 and T1 better than their own (check which file is which)"]
    gd_swapped = {"t1gd": sample_files["t2"], "t2": sample_files["t1gd"]}
    assert "the T1Gd and T2 inputs look swapped" in check_contrast_identity(prepare_study(gd_swapped, CONTRASTS))[0]
    crop_swapped = {"t1": crop["t2"], "t2": crop["t1"]}  # 49 ml of brain: too little to compare with whole brains
    assert check_contrast_identity(prepare_study(crop_swapped, CONTRASTS)) == []


def test_contrast_identity_raises_no_alarm_on_the_training_subjects():
    """The figures behind contrast_identity.py (benchmarks/contrast_identity.py over ../shared/data/training.json)."""
    figures = json.loads((REPO / "benchmarks" / "results" / "contrast_identity.json").read_text())
    assert len(figures["subjects"]) == 26
    for pair in ("t1-t2", "t1gd-t2"):
        assert figures["pairs_left_one_out"][pair]["checked"] and figures["pairs_left_one_out"][pair]["false_alarms"] == 0
        assert figures["pairs_left_one_out"][pair]["closest_margin"] > 8


def test_an_imputation_that_is_not_finite_or_all_zero_is_refused(tiny_model):
    mask = np.ones((2, 4, 4), bool)
    volume = np.ones(mask.shape, np.float32)
    require_usable_output(volume, mask, tiny_model, "t1gd")
    volume[1, 2, 2] = np.nan
    with pytest.raises(ModelError, match="imputed T1Gd with 1 NaN or infinite voxels; nothing was written"):
        require_usable_output(volume, mask, tiny_model, "t1gd")
    with pytest.raises(ModelError, match="as zero in the whole brain"):
        require_usable_output(np.zeros(mask.shape, np.float32), mask, tiny_model, "t1gd")


# ----- model cards --------------------------------------------------------------------------------------
@pytest.fixture()
def card_copy(tiny_model_path, tmp_path) -> Path:
    weights = tmp_path / "m.safetensors"
    shutil.copy(tiny_model_path, weights)
    card = json.loads(tiny_model_path.with_suffix(".json").read_text())
    weights.with_suffix(".json").write_text(json.dumps({**card, "weights_file": weights.name}))
    return weights


BAD_CARDS = [
    ("in-plane sigma of 1e6", {"inference": {"in_plane_sigma_voxels": 1e6}}, "'inference.in_plane_sigma_voxels' is 1000000.0; expected a number from 0 to 4"),
    ("negative sigma", {"inference": {"through_plane_sigma_mm": -1}}, "'inference.through_plane_sigma_mm' is -1; expected a number from 0 to 10"),
    ("sigma as text", {"inference": {"through_plane_sigma_mm": "wide"}}, "'inference.through_plane_sigma_mm' is \"wide\"; expected a number"),
    ("sigma as true", {"inference": {"in_plane_sigma_voxels": True}}, "'inference.in_plane_sigma_voxels' is true; expected a number"),
    ("a contrast's sigma too wide", {"inference": {"by_contrast": {"t2": {"through_plane_sigma_mm": 50}}}},
     "'inference.by_contrast.t2.through_plane_sigma_mm' is 50; expected a number from 0 to 10"),
    ("smoothing for an unknown contrast", {"inference": {"by_contrast": {"pd": {}}}}, "'inference.by_contrast.pd' names no contrast of the card"),
    ("a contrast's smoothing as a number", {"inference": {"by_contrast": {"t2": 1.0}}}, "'inference.by_contrast.t2' is 1.0; expected an object"),
    ("architecture as text", {"architecture": "big"}, "'architecture' is \"big\"; expected an object"),
    ("an unknown layer field", {"architecture": {"generator": {"num_contrasts": 4, "layers": 9}}}, "'architecture.generator.layers' is not a field"),
    ("a huge depth", {"architecture": {"generator": {"num_contrasts": 4, "depth": 100}}}, "'architecture.generator.depth' is 100; expected a whole number from 1 to 8"),
    ("a contrast named study", {"contrasts": ["t1", "t1gd", "t2", "study"]}, "contrast 'study' is the name of a command-line option (--study)"),
    ("a contrast with a dash", {"contrasts": ["t1", "t1gd", "t2", "batch-size"]}, "contrast 'batch-size' is not a contrast key"),
    ("a contrast twice", {"contrasts": ["t1", "t1", "t2", "flair"]}, "'contrasts' is [\"t1\", \"t1\", \"t2\", \"flair\"]; expected 2 to 16 different names"),
    ("weights outside the folder", {"weights_file": "../../../../etc/passwd"}, "'weights_file' is \"../../../../etc/passwd\"; expected the name of a .safetensors file beside the card"),
    ("weights by absolute path", {"weights_file": "/etc/passwd"}, "'weights_file' is \"/etc/passwd\""),
    ("sha256 not hex", {"sha256": 12}, "'sha256' is 12; expected 64 lower-case hexadecimal digits"),
    ("missing inputs beyond the contrasts", {"missing_inputs": {"min": 1, "max": 9}}, "'missing_inputs.max' is 9; expected a whole number from 1 to 3"),
    ("coefficients as text", {"error_model": {"spread": "subsets", "features": ["a"], "window": 5, "coefficients": {"t1": ["x", 1]}}},
     "'error_model.coefficients.t1[0]' is \"x\"; expected a number"),
    ("a correlation of 5", {"reliability_held_out": {"flips": {"subjects": ["s"], "spearman_brain": {"t1": 5}}}},
     "'reliability_held_out.flips.spearman_brain.t1' is 5; expected a number from -1 to 1"),
    ("landmark levels out of order", {"intensity_landmarks": {"levels": [50, 10], "offsets": {}}},
     "'intensity_landmarks.levels' is [50, 10]; expected at least two increasing percentiles"),
    ("offsets for an unknown contrast", {"intensity_landmarks": {"levels": [10, 50], "offsets": {"pd": [0, 1]}}},
     "'intensity_landmarks.offsets.pd' names no contrast of the card"),
    ("one offset too few", {"intensity_landmarks": {"levels": [10, 50], "offsets": {"t1gd": [0]}}},
     "'intensity_landmarks.offsets.t1gd' is [0]; expected 2 numbers (one per level)"),
    ("an infinite offset", {"intensity_landmarks": {"levels": [10, 50], "offsets": {"t1gd": [0, 1e9]}}},
     "'intensity_landmarks.offsets.t1gd[1]' is 1000000000.0; expected a number from -1000 to 1000"),
    ("slopes without offsets", {"intensity_landmarks": {"levels": [10, 50], "offsets": {"t1gd": [0, 1]}, "slopes": {"t2": [1, 1]}}},
     "'intensity_landmarks.slopes.t2' names a contrast without offsets; a line needs both"),
    ("one slope too few", {"intensity_landmarks": {"levels": [10, 50], "offsets": {"t1gd": [0, 1]}, "slopes": {"t1gd": [1]}}},
     "'intensity_landmarks.slopes.t1gd' is [1]; expected 2 numbers (one per level)"),
    ("not an object", [1, 2], "the card is [1, 2]; expected a JSON object"),
    ("a weights file that is hidden", {"weights_file": ".m.safetensors"}, "'weights_file' is \".m.safetensors\""),
]


@pytest.mark.parametrize("name, change, words", BAD_CARDS, ids=[c[0] for c in BAD_CARDS])
def test_every_card_value_is_checked_before_use(card_copy, capsys, name, change, words):
    card_file = card_copy.with_suffix(".json")
    card = json.loads(card_file.read_text())
    card_file.write_text(json.dumps(change if isinstance(change, list) else {**card, **change}))
    with pytest.raises(ModelError) as caught:
        read_card(card_copy)
    assert str(caught.value).startswith(f"model card '{card_file}': {words}"), str(caught.value)
    code, err = run(["info", card_file], capsys)
    one_error_line(code, err, words)


def test_a_card_never_makes_the_tool_open_a_file_outside_its_folder(card_copy, tmp_path, capsys, monkeypatch):
    card_file = card_copy.with_suffix(".json")
    card_file.write_text(json.dumps({**json.loads(card_file.read_text()), "weights_file": "../../../../etc/passwd"}))
    opened = []
    monkeypatch.setattr("CollaGANImputeLib.model.weights.sha256_of", lambda path: opened.append(path))
    one_error_line(*run(["info", card_file], capsys), "'weights_file'")
    assert opened == []


def test_no_contrast_name_can_be_an_option_of_impute():
    options = {o.lstrip("-") for action in _impute_parser([])._actions for o in action.option_strings if o.startswith("--")}
    assert {o for o in options if "-" not in o} <= RESERVED_NAMES  # names with a dash are no contrast keys


def test_weights_holding_a_nan_are_refused(card_copy):
    tensors = load_file(str(card_copy))
    name = next(k for k, v in tensors.items() if v.is_floating_point())
    tensors[name].view(-1)[0] = float("nan")
    save_file(tensors, str(card_copy))
    card_file = card_copy.with_suffix(".json")
    card_file.write_text(json.dumps({**json.loads(card_file.read_text()), "sha256": sha256_of(card_copy)}))  # a matching card
    with pytest.raises(ModelError, match=rf"weights file '.*m.safetensors' holds 1 NaN or infinite value\(s\) in '{name}'"):
        load_model(card_copy)


def test_a_card_larger_than_its_weights_is_refused_before_memory_is_taken(card_copy):
    card_file = card_copy.with_suffix(".json")
    card = json.loads(card_file.read_text())
    card["architecture"]["generator"].update(decoder_width=2048, depth=8)
    card_file.write_text(json.dumps(card))
    with pytest.raises(ModelError, match="does not fit its card's architecture"):
        load_model(card_copy)
