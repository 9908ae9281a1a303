"""The uncertainty map beside an imputation: its plumbing on small synthetic studies (a voxel-wise model
that depends on neither canvas nor mirroring, and the untrained tiny CollaGAN), and on the real held-out
subject with the bundled model, that it ranks the actual error of a synthetic T1Gd."""

import numpy as np
import pytest
import torch
from CollaGANImputeLib.core.errors import Cancelled, InputError
from CollaGANImputeLib.core.metrics import brasyn_normalise
from CollaGANImputeLib.inference.reliability import available_methods, reliability_map, uncertainty_map
from CollaGANImputeLib.inference.synthesis import network_stack, synthesise
from CollaGANImputeLib.model.model_card import WEAK_RANKING, held_out_caveat
from CollaGANImputeLib.model.networks import GeneratorConfig
from CollaGANImputeLib.model.weights import load_model
from CollaGANImputeLib.preparation.study import prepare_study
from conftest import subject_files
from scipy.stats import spearmanr

T1GD = 1


class VoxelWise(torch.nn.Module):
    """A generator-shaped 1x1 convolution: each output voxel depends on that voxel's inputs alone."""

    config = GeneratorConfig(num_contrasts=4, depth=1)

    def __init__(self) -> None:
        super().__init__()
        self.mix = torch.nn.Conv2d(4, 1, 1)
        with torch.no_grad():
            self.mix.weight.copy_(torch.tensor([0.5, 3.0, -0.4, 0.9]).view(1, 4, 1, 1))
            self.mix.bias.fill_(0.2)

    def forward(self, images: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.mix(images))


@pytest.fixture(scope="module")
def study() -> tuple[np.ndarray, np.ndarray]:
    """Four smooth, left-right asymmetric contrasts in an off-centre ellipsoid; first and last slices empty."""
    rng = np.random.default_rng(0)
    depth, rows, cols = np.mgrid[0:6, 0:44, 0:52].astype(np.float32)
    mask = ((depth - 2.5) / 2.2) ** 2 + ((rows - 20) / 15) ** 2 + ((cols - 29) / 19) ** 2 <= 1
    mask[0] = mask[-1] = False
    stack = np.stack([1 + np.sin(cols / (4 + c)) * np.cos(rows / 7) + rng.random(mask.shape) * 0.3 for c in range(4)])
    return np.where(mask, stack, 0).astype(np.float32), mask


def test_shapes_masking_and_the_central_prediction_is_the_plain_imputation(tiny_model, study):
    stack, mask = study
    for method, smoothing in (("flips", (0.0, 0.0)), ("subsets", (0.0, 0.0)), ("subsets", (1.25, 0.75))):
        central, spread = uncertainty_map(tiny_model.generator, stack, T1GD, mask, method=method, smoothing=smoothing)
        assert central.shape == spread.shape == mask.shape and spread.dtype == np.float32
        assert not central[~mask].any() and not spread[~mask].any()
        assert (spread >= 0).all() and spread[mask].min() < spread[mask].max()
        np.testing.assert_allclose(central, synthesise(tiny_model.generator, stack, T1GD, mask, smoothing=smoothing, planes=1), atol=1e-5)


def test_a_voxelwise_model_has_no_flip_or_canvas_spread(tiny_model, study):
    """Mirrored predictions are mirrored back and every canvas is put back in its place: a model that
    ignores both agrees with itself everywhere, while the tiny CollaGAN does not."""
    stack, mask = study
    model = VoxelWise()
    central, spread = uncertainty_map(model, stack, T1GD, mask)
    assert spread.max() < 1e-5
    np.testing.assert_allclose(central, synthesise(model, stack, T1GD, mask, planes=1), atol=1e-6)
    _, spread = uncertainty_map(tiny_model.generator, stack, T1GD, mask)
    assert spread[mask].mean() > 1e-3


def test_subsets_spread_over_dropped_inputs(study):
    """The voxel-wise model's predictions from all inputs and from each with one dropped, by hand."""
    stack, mask = study
    weights, bias = np.array([0.5, 3.0, -0.4, 0.9]), 0.2
    present = [0, 3]  # channel 2 absent: zero-filled, never a member
    full = weights[0] * stack[0] + weights[3] * stack[3] + bias
    members = np.maximum([full, full - weights[0] * stack[0], full - weights[3] * stack[3]], 0)
    central, spread = uncertainty_map(VoxelWise(), stack, T1GD, mask, method="subsets", present=present, bf16=False)  # exact arithmetic
    np.testing.assert_allclose(central, np.where(mask, members[0], 0), atol=1e-5)
    np.testing.assert_allclose(spread, np.where(mask, members.std(axis=0), 0), atol=1e-5)


def test_deterministic(tiny_model, study):
    stack, mask = study
    first = uncertainty_map(tiny_model.generator, stack, T1GD, mask)
    second = uncertainty_map(tiny_model.generator, stack, T1GD, mask, batch_size=3)
    for a, b in zip(first, second):
        np.testing.assert_allclose(a, b, atol=1e-6)


def test_requests_that_cannot_work_are_refused(tiny_model, study):
    stack, mask = study
    with pytest.raises(InputError, match="nothing to drop"):
        uncertainty_map(tiny_model.generator, stack, T1GD, mask, method="subsets", present=[2])
    with pytest.raises(InputError, match="unknown uncertainty method"):
        uncertainty_map(tiny_model.generator, stack, T1GD, mask, method="dropout")
    with pytest.raises(InputError, match="cannot also be a present input"):
        uncertainty_map(tiny_model.generator, stack, T1GD, mask, present=[0, 1])
    assert available_methods(tiny_model.card) == ("flips",)
    any_subset = {"contrasts": ["t1", "t1gd", "t2", "flair"], "missing_inputs": {"min": 1, "max": 3}}
    assert available_methods(any_subset) == available_methods(any_subset, present=2) == ("subsets", "flips")
    assert available_methods(any_subset, present=1) == ("flips",)
    assert available_methods({**any_subset, "missing_inputs": {"min": 1, "max": 2}}, present=2) == ("flips",)


def test_cancel_and_progress(tiny_model, study):
    stack, mask = study
    with pytest.raises(Cancelled):
        uncertainty_map(tiny_model.generator, stack, T1GD, mask, cancel=lambda: True)
    seen = []
    uncertainty_map(tiny_model.generator, stack, T1GD, mask, method="subsets", batch_size=2, progress=lambda d, t: seen.append((d, t)))
    slices, members = 4, 4  # brain slices; all inputs plus each of three dropped
    assert seen[-1] == (slices * members, slices * members)
    assert [d for d, _ in seen] == sorted(d for d, _ in seen) and len({t for _, t in seen}) == 1


def test_the_card_tells_how_well_the_spread_ranks_a_held_out_t1gd_error(manifest):
    """The bundled model (trained for any subset of missing inputs) never saw BraTS-GLI-00001-000. On five
    slices spread over its brain, the Spearman correlation of the spread over input subsets with |error| of the
    synthetic T1Gd (BraSyn-normalised) is near the card's whole-volume figure (benchmarks/reliability.py), and
    where that figure is under WEAK_RANKING every such imputation carries the caveat."""
    model = load_model()
    assert "subsets" in available_methods(model.card), "the bundled model is no longer trained for any subset"
    prepared = prepare_study(subject_files(manifest, "BraTS-GLI-00001-000"), model.contrasts)
    chosen = [35, 55, 75, 95, 115]
    stack = np.ascontiguousarray(network_stack(prepared, model.contrasts)[:, chosen])
    mask = prepared.mask[chosen]
    central, spread = reliability_map(model, stack, T1GD, mask, method="subsets")  # the imputation as delivered
    error = np.abs(brasyn_normalise(central, mask) - brasyn_normalise(stack[T1GD], mask))
    recorded = model.card["reliability_held_out"]["subsets"]["spearman_brain"]["t1gd"]
    assert abs(spearmanr(spread[mask], error[mask])[0] - recorded) < 0.25
    assert (held_out_caveat(model.card, "subsets", "t1gd") is not None) == (recorded < WEAK_RANKING)
