"""Weights files: float16 storage halves a file and changes an imputation only within float16's rounding."""

from pathlib import Path

import numpy as np
import torch
from CollaGANImputeLib.inference.synthesis import model_inputs, synthesise
from CollaGANImputeLib.model.weights import load_model, save_model
from CollaGANImputeLib.preparation.study import brain_slices, prepare_study
from safetensors import safe_open

# A trained model stored in float32: the narrower GPU-trained model bundled before the present one (which is float16).
FLOAT32_MODEL = Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "gpu_run" / "model" / "phase2" / "collagan_brats.safetensors"


def test_float16_weights_are_half_the_file_and_impute_as_float32_within_rounding(sample_files, tmp_path):
    bundled = load_model(FLOAT32_MODEL)
    assert bundled.card["dtype"] == "float32"
    half = save_model(bundled.generator, bundled.contrasts, tmp_path / "half.safetensors", {"description": "float16 copy"},
                      dtype=torch.float16)
    with safe_open(str(half), framework="pt") as handle:
        assert {handle.get_slice(k).get_dtype() for k in handle.keys()} == {"F16"}
    assert abs(half.stat().st_size / bundled.weights_path.stat().st_size - 0.5) < 0.01
    model = load_model(half)
    assert model.card["dtype"] == "float16" and {p.dtype for p in model.generator.parameters()} == {torch.float32}

    study = prepare_study({k: v for k, v in sample_files.items() if k != "t1gd"}, bundled.contrasts)
    mask = np.zeros_like(study.mask)
    with_brain = brain_slices(study.mask)
    middle = with_brain[len(with_brain) // 2]
    mask[middle - 2:middle + 2] = study.mask[middle - 2:middle + 2]  # four brain slices: enough to compare, quick on a CPU
    stack, target = model_inputs(bundled, study), bundled.contrasts.index("t1gd")
    full, rounded = (synthesise(m.generator, stack, target, mask, planes=1, bf16=False) for m in (bundled, model))
    brain = mask.astype(bool)
    assert np.abs(full[brain]).mean() > 0.5  # a real imputation, in brain standard deviations
    difference = np.abs(rounded - full)[brain]
    assert difference.max() < 0.005 * np.abs(full[brain]).max()  # measured 0.1% (bf16 autocast: 7%)
    assert difference.mean() < 0.001 * np.abs(full[brain]).mean()  # measured 0.01%
