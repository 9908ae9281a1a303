"""The fast inference path against the naive one (every full 240x240 slice, one at a time, fp32) on a real
subject (five axial slices, to stay quick on two cores; the first and last hold no brain): skipping
brain-free slices and batching change nothing beyond float rounding; cropping each batch to its brain's box
changes the canvas the network normalises over, and is exact given that canvas; bf16 stays within its
documented tolerance."""

import numpy as np
import pytest
import torch
from CollaGANImputeLib.inference import synthesis
from CollaGANImputeLib.inference.synthesis import SMALLEST_BOX, batch_box, network_stack, synthesise, synthesise_naive
from CollaGANImputeLib.preparation.study import padded_bounds, prepare_study
from conftest import subject_files

AXIAL_FP32 = {"planes": 1, "bf16": False}  # the path the naive one is the reference of: the axial slices, in fp32
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
    fast = synthesise(generator, stack, target, mask, crop=False, batch_size=4, **AXIAL_FP32)
    assert np.abs(fast - naive)[mask].max() <= EXACT
    assert not fast[~mask].any()
    channels_last = synthesise(generator, stack, target, mask, crop=False, batch_size=4, channels_last=True, **AXIAL_FP32)
    assert np.abs(channels_last - naive)[mask].max() <= EXACT  # a memory layout, not a different computation


def test_cropped_path_is_exact_on_its_canvas(case):
    generator, stack, target, mask, naive = case
    fast = synthesise(generator, stack, target, mask, **AXIAL_FP32)
    rows, cols, padding = padded_bounds(mask, generator.config.size_multiple)
    assert padding == (0, 0)
    on_canvas = synthesise_naive(generator, np.ascontiguousarray(stack[:, :, rows, cols]), target, mask[:, rows, cols])
    assert np.abs(fast[:, rows, cols] - on_canvas).max() <= EXACT
    assert np.abs(fast - naive)[mask].max() > EXACT  # the canvas does matter: instance norm and CCAM average over it


def test_each_batch_is_cut_to_its_own_brain_box(case):
    """One slice a batch: each slice is imputed on its own brain's box, no smaller than the training crop and inside
    the whole volume's, and exactly as the network imputes that canvas."""
    generator, stack, target, mask, _ = case
    multiple = generator.config.size_multiple
    fast = synthesise(generator, stack, target, mask, batch_size=1, **AXIAL_FP32)
    whole = padded_bounds(mask, multiple)[:2]
    boxes = set()
    for index in (1, 2, 3):
        rows, cols = batch_box(mask, np.array([index]), multiple)
        boxes.add((rows.start, rows.stop, cols.start, cols.stop))
        for part, within in zip((rows, cols), whole):
            assert within.start <= part.start and part.stop <= within.stop
            assert part.stop - part.start >= min(SMALLEST_BOX, within.stop - within.start) and (part.stop - part.start) % multiple == 0
        assert mask[index, rows, cols].sum() == mask[index].sum()  # the whole of this slice's brain
        one = np.s_[index : index + 1, rows, cols]
        on_box = synthesise_naive(generator, np.ascontiguousarray(stack[(slice(None), *one)]), target, mask[one])
        assert np.abs(fast[index, rows, cols] - on_box[0]).max() <= EXACT
        assert not fast[index][~mask[index]].any()
    assert len(boxes) > 1  # the slices' brains differ, and so do their boxes


def test_a_small_brain_gets_the_training_crop_and_a_canvas_moves_the_box():
    mask = np.zeros((2, 200, 180), dtype=bool)
    mask[0, 20:190, 10:170] = True  # a whole brain's cross-section: the volume's box is 176 x 160
    mask[1, 100:110, 15:25] = True  # the top of the head: a 10 x 10 voxel brain
    rows, cols = batch_box(mask, np.array([1]), 16)
    assert (rows.stop - rows.start, cols.stop - cols.start) == (SMALLEST_BOX, SMALLEST_BOX)
    assert rows.start <= 100 and 110 <= rows.stop and cols.start == 10  # centred where it can be, inside the volume's box
    assert batch_box(mask, np.array([0, 1]), 16) == (slice(17, 193), slice(10, 170))  # both slices: the volume's box
    moved = batch_box(mask, np.array([1]), 16, (4, 2, -3))
    assert moved == (slice(rows.start - 2, rows.stop + 6), slice(3, cols.stop + 1))  # 4 wider on every side, shifted


def test_bf16_stays_within_its_tolerance(case):
    generator, stack, target, mask, _ = case
    fp32 = synthesise(generator, stack, target, mask, **AXIAL_FP32)
    bf16 = synthesise(generator, stack, target, mask, planes=1, bf16=True)
    assert np.abs(bf16 - fp32)[mask].max() <= BF16 * np.abs(fp32).max()


@pytest.mark.parametrize("native", [True, False])
def test_the_default_precision_is_bf16_exactly_where_the_cpu_computes_it(case, monkeypatch, native):
    """bf16 unless told otherwise where `native_bf16` says the CPU has bf16 arithmetic, fp32 elsewhere; told, either."""
    generator, stack, target, mask, _ = case
    monkeypatch.setattr(synthesis, "native_bf16", lambda device: native)
    default = synthesise(generator, stack, target, mask, planes=1)
    assert np.array_equal(default, synthesise(generator, stack, target, mask, planes=1, bf16=native))
    assert not np.array_equal(default, synthesise(generator, stack, target, mask, planes=1, bf16=not native))


def test_bf16_is_native_only_on_a_cpu_with_bf16_arithmetic(monkeypatch):
    for avx512_bf16, amx, expected in ((True, False, True), (False, True, True), (False, False, False)):
        monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda value=avx512_bf16: value)
        monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda value=amx: value)
        assert synthesis.native_bf16(torch.device("cpu")) is expected
        assert synthesis.native_bf16(torch.device("cuda")) is False  # not shorter there (docs/benchmarks.md)
