"""Each loss against a small hand-computed case; the SSIM loss against scikit-image on real slices."""

import math

import numpy as np
import pytest
import torch
from CollaGANImputeLib.training.losses import (
    LossWeights,
    classification,
    cycle_inputs,
    gradient_l1,
    lsgan_fake,
    lsgan_real,
    multiple_cycle_l1,
    multiple_cycle_ssim,
    quantile_l1,
    ssim_loss,
    ssim_map,
)
from conftest import subject_files
from skimage.metrics import structural_similarity


def test_lsgan_terms():
    assert lsgan_real(torch.tensor([0.5, 1.5])).item() == pytest.approx(0.25)  # ((-0.5)^2 + 0.5^2) / 2
    assert lsgan_fake(torch.tensor([0.5, -1.0])).item() == pytest.approx(0.625)  # (0.25 + 1) / 2


def test_classification_cross_entropy():
    logits = torch.tensor([[0.0, math.log(3.0)]])  # softmax = (1/4, 3/4)
    assert classification(logits, torch.tensor([1])).item() == pytest.approx(-math.log(0.75), rel=1e-6)
    assert classification(logits, torch.tensor([0])).item() == pytest.approx(-math.log(0.25), rel=1e-6)


def test_ssim_loss_hand_computed():
    # Two constant 5x5 images give one valid window: SSIM = (2cd + C1) / (c^2 + d^2 + C1) with C1 = (0.01 L)^2.
    ones, zeros = torch.ones(1, 1, 5, 5), torch.zeros(1, 1, 5, 5)
    c1 = 0.01**2
    ssim = c1 / (1 + c1)
    assert ssim_loss(ones, zeros, 1.0).item() == pytest.approx(-math.log((1 + ssim) / 2), rel=1e-5)
    assert ssim_loss(ones * 2, ones * 2, 1.0).item() == pytest.approx(0.0, abs=1e-6)


def test_multiple_cycle_l1_hand_computed():
    # Two cycles of a batch of one: per-image mean absolute errors 1 and 0.5, summed.
    reconstructed = torch.stack([torch.full((1, 6, 6), 1.0), torch.full((1, 6, 6), 0.5)])
    real = torch.zeros_like(reconstructed)
    assert multiple_cycle_l1(reconstructed, real, 2).item() == pytest.approx(1.5)
    assert multiple_cycle_ssim(real + 1, real + 1, 2).item() == pytest.approx(0.0, abs=1e-6)


def test_quantile_l1_compares_distributions_not_places():
    real = torch.tensor([[[[0.0, 1.0], [2.0, 5.0]]]])
    shuffled = torch.tensor([[[[5.0, 2.0], [0.0, 1.0]]]])  # the same intensities elsewhere: L1 3.0, distance 0
    assert torch.abs(shuffled - real).mean().item() == pytest.approx(3.0)
    assert quantile_l1(shuffled, real).item() == pytest.approx(0.0)
    dim_tail = torch.tensor([[[[0.0, 1.0], [2.0, 3.0]]]])  # the brightest voxel 2 too dim: |3 - 5| / 4
    assert quantile_l1(dim_tail, real).item() == pytest.approx(0.5)
    batch = torch.cat([real, real + 1])  # per image, then the batch's mean: (0 + 1) / 2
    assert quantile_l1(batch, torch.cat([real, real])).item() == pytest.approx(0.5)
    fake = dim_tail.clone().requires_grad_(True)
    quantile_l1(fake, real).backward()
    assert fake.grad[0, 0, 1, 1].item() == pytest.approx(-0.25) and fake.grad[0, 0, 0, 0].item() == 0.0  # only the tail moves


def test_gradient_l1_compares_edges_not_levels():
    real = torch.zeros(1, 1, 4, 4)
    real[..., 2:] = 1.0  # a vertical edge between columns 1 and 2
    assert gradient_l1(real + 0.25, real).item() == pytest.approx(0.0, abs=1e-7)  # a wrong grey level everywhere: no edge is wrong
    blurred = real.clone()
    blurred[..., 1], blurred[..., 2] = 1 / 3, 2 / 3  # the same edge spread over three columns
    # Column differences: real (0, 1, 0), blurred (1/3, 1/3, 1/3) per row -> mean |d| = (1/3 + 2/3 + 1/3) / 3; rows agree.
    assert gradient_l1(blurred, real).item() == pytest.approx(4 / 9)
    assert torch.abs(blurred - real).mean().item() == pytest.approx(1 / 6)  # L1 charges the blur less


def test_every_generator_loss_has_its_weight():
    weights = LossWeights(adversarial=2.0, generator_classification=3.0, direct_gradient=4.0)
    assert weights.weight_of("g_adversarial") == 2.0 and weights.weight_of("g_classification") == 3.0
    assert weights.weight_of("direct_gradient") == 4.0 and weights.weight_of("cycle_l1") == 10.0


def test_cycle_inputs_replace_target_by_fake_and_null_each_other_contrast():
    real = torch.arange(1.0, 5.0).view(1, 4, 1, 1).expand(1, 4, 2, 2).clone()  # channel i holds i + 1
    fake = torch.full((1, 1, 2, 2), 9.0)
    inputs, targets, truth = cycle_inputs(real, fake, torch.tensor([1]))
    assert targets.tolist() == [2, 3, 0]
    for row, j in enumerate(targets.tolist()):
        expected = [0.0 if i == j else (9.0 if i == 1 else i + 1.0) for i in range(4)]
        assert inputs[row, :, 0, 0].tolist() == expected
        assert truth[row, 0, 0, 0].item() == j + 1.0


def test_ssim_map_matches_scikit_image_on_real_slices(manifest):
    import SimpleITK as sitk

    files = subject_files(manifest, "TCGA-DU-7294")
    t1 = sitk.GetArrayFromImage(sitk.ReadImage(str(files["t1"]))).astype(np.float64)
    t2 = sitk.GetArrayFromImage(sitk.ReadImage(str(files["t2"]))).astype(np.float64)
    for index in (60, 80, 100):
        x, y = t1[index] / t1.std(), t2[index] / t2.std()
        data_range = float(x.max() - x.min())
        expected = structural_similarity(x, y, win_size=5, data_range=data_range)
        ours = ssim_map(torch.from_numpy(x)[None, None], torch.from_numpy(y)[None, None], data_range).mean().item()
        assert ours == pytest.approx(expected, abs=1e-6)
        assert ssim_loss(torch.from_numpy(x)[None, None], torch.from_numpy(y)[None, None], data_range).item() == pytest.approx(
            -math.log((1 + expected) / 2), abs=1e-6
        )
