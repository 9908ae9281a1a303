"""The bundled model and sample case: `collagan-impute demo` writes the volume, its metrics and a montage."""

import json

import numpy as np
import pytest
import SimpleITK as sitk
from CollaGANImputeLib.cli.main import main
from CollaGANImputeLib.model.model_card import bundled_weights
from CollaGANImputeLib.model.weights import load_model
from PIL import Image


def test_bundled_model_card_is_honest():
    model = load_model()  # checks the sha256 against the card
    card = model.card
    assert model.contrasts == ["t1", "t1gd", "t2", "flair"]
    assert "BraTS-GLI-00001-000" in card["training"]["validation_subjects"]
    assert "BraTS-GLI-00001-000" not in card["training"]["train_subjects"]  # the sample case is held out
    device = card["training"]["device"].split(":")[0]  # as the run recorded it; the description must say the same
    assert {"cpu": "CPU", "cuda": "GPU"}[device] in card["description"]
    assert bundled_weights().stat().st_size <= 40e6
    assert card["missing_inputs"] == {"min": 1, "max": 3}  # any subset of the four contrasts may be missing
    assert card["training"]["initialised_from"]["steps"] > 0 and card["training"]["commands"]


@pytest.mark.parametrize("missing", ["flair"])
def test_demo_writes_volume_metrics_and_montage(tmp_path, sample_files, missing, capsys):
    assert main(["demo", "--missing", missing, "--out", str(tmp_path), "--device", "cpu"]) == 0
    stem = f"BraTS-GLI-00001-000_{missing}_collagan"
    volume = sitk.ReadImage(str(tmp_path / f"{stem}.nii.gz"))
    reference = sitk.ReadImage(str(sample_files["t1"]))
    assert (volume.GetSize(), volume.GetOrigin(), volume.GetSpacing(), volume.GetDirection()) == (
        reference.GetSize(), reference.GetOrigin(), reference.GetSpacing(), reference.GetDirection())
    values = sitk.GetArrayFromImage(volume)
    assert np.isfinite(values).all() and values.min() >= 0 and values.max() > 0
    metrics = json.loads((tmp_path / f"{stem}_metrics.json").read_text())
    assert metrics["missing"] == missing and "BraSyn" in metrics["normalisation"]
    # Trained, not random: the mean of the inputs scores brain SSIM 0.10 here (benchmarks/results/quality.md).
    assert 0.2 < metrics["ssim_brain"] <= 1 and metrics["psnr_brain"] > 8 and 0 < metrics["nmse_brain"] < 1
    montage = Image.open(tmp_path / f"{stem}_montage.png")
    assert montage.size[0] == 6 * reference.GetSize()[0]  # 3 inputs, imputed, real, difference
    assert "SSIM(brain)" in capsys.readouterr().out
