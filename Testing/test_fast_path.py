"""The fast inference path against the naive one (every full 240x240 slice, one at a time, fp32) on a real
subject (five axial slices, to stay quick on two cores; the first and last hold no brain): skipping
brain-free slices and batching change nothing beyond float rounding; cropping changes the canvas the
network normalises over, and is exact given that canvas; bf16 stays within its documented tolerance."""

import numpy as np
import pytest
import torch
from CollaGANImputeLib.inference.synthesis import network_stack, synthesise, synthesise_naive
from CollaGANImputeLib.preparation.study import padded_bounds, prepare_study
from conftest import subject_files

EXACT = 1e-4  # brain standard deviations: float reassociation only (docs/benchmarks.md: "Fast path tolerance")
BF16 = 0.05  # bf16 autocast, as a fraction of the largest output value (docs/benchmarks.md: "Fast path tolerance")


@pytest.fixture(scope="module")
def case(manifest, tiny_model):
    torch.set_num_threads(2)
    files = {k: v for k, v in subject_files(manifest, "BraTS-GLI-00001-000").items() if k != "t1gd"}
    study = prepare_study(files, tiny_model.contrasts)
    assert study.mask.shape == (155, 240, 240)
    chosen = [0, 40, 77, 110, 154]
    stack, mask = np.ascontiguousarray(network_stack(study, tiny_model.contrasts)[:, chosen]), study.mask[chosen]
    assert not mask[0].any() and not mask[-1].any() and mask[1:-1].any(axis=(1, 2)).all()
    target = tiny_model.contrasts.index("t1gd")
    return tiny_model.generator, stack, target, mask, synthesise_naive(tiny_model.generator, stack, target, mask)


def test_skipping_and_batching_are_exact_on_full_slices(case):
    generator, stack, target, mask, naive = case
    one = np.ascontiguousarray(stack[:, 2:3])  # one slice: its network input is a view of the caller's array
    before = one.copy()
    synthesise_naive(generator, one, target, mask[2:3])
    assert np.array_equal(one, before)  # the target channel is zeroed in a copy, not in the caller's stack
    fast = synthesise(generator, stack, target, mask, crop=False, batch_size=4)
    assert np.abs(fast - naive)[mask].max() <= EXACT
    assert not fast[~mask].any()
    channels_last = synthesise(generator, stack, target, mask, crop=False, batch_size=4, channels_last=True)
    assert np.abs(channels_last - naive)[mask].max() <= EXACT  # a memory layout, not a different computation


def test_cropped_path_is_exact_on_its_canvas(case):
    generator, stack, target, mask, naive = case
    fast = synthesise(generator, stack, target, mask)
    rows, cols, padding = padded_bounds(mask, generator.config.size_multiple)
    assert padding == (0, 0)
    on_canvas = synthesise_naive(generator, np.ascontiguousarray(stack[:, :, rows, cols]), target, mask[:, rows, cols])
    assert np.abs(fast[:, rows, cols] - on_canvas).max() <= EXACT
    assert np.abs(fast - naive)[mask].max() > EXACT  # the canvas does matter: instance norm and CCAM average over it


def test_bf16_stays_within_its_tolerance(case):
    generator, stack, target, mask, _ = case
    fp32 = synthesise(generator, stack, target, mask)
    bf16 = synthesise(generator, stack, target, mask, bf16=True)
    assert np.abs(bf16 - fp32)[mask].max() <= BF16 * np.abs(fp32).max()
