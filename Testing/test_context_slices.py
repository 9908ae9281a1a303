"""2.5-D input (train --context-slices): each branch reads its contrast's slice with its neighbours. The planes are
the study's own slices (the same for training and inference), the centre plane is what a 2-D network reads,
the neighbours change the output, the fast path still equals the naive one, the multiple cycle puts the fake in
every plane of its contrast, a card records the context, and a run whose slices lack the planes is refused."""

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from CollaGANImputeLib.cli.main import main
from CollaGANImputeLib.core.errors import InputError, ModelError
from CollaGANImputeLib.inference.synthesis import network_stack, synthesise, synthesise_naive
from CollaGANImputeLib.model.networks import DiscriminatorConfig, Generator, GeneratorConfig
from CollaGANImputeLib.model.weights import load_model, save_model
from CollaGANImputeLib.preparation.data import Subject, build_slice_set, prepare_subject
from CollaGANImputeLib.preparation.study import slice_planes
from CollaGANImputeLib.training.config import TrainConfig
from CollaGANImputeLib.training.losses import LossWeights, cycle_inputs
from CollaGANImputeLib.training.trainer import Trainer
from conftest import CONTRASTS, assert_same_grid, cropped_manifest, subject_files

EXACT = 1e-4  # as test_fast_path: float reassociation only


def test_slice_planes_are_each_slice_with_its_neighbours_edges_repeated():
    stack = np.arange(2 * 5, dtype=np.float32).reshape(2, 5, 1, 1) * np.ones((1, 1, 3, 4), np.float32)  # value: 5 k + slice
    planes = slice_planes(stack, np.array([0, 2, 4]), 1)
    assert planes.shape == (3, 6, 3, 4)
    assert planes[:, :, 0, 0].tolist() == [[0, 0, 1, 5, 5, 6], [1, 2, 3, 6, 7, 8], [3, 4, 4, 8, 9, 9]]
    assert np.array_equal(slice_planes(stack, np.array([1, 3])), stack[:, [1, 3]].transpose(1, 0, 2, 3))  # context 0: 2-D


@pytest.fixture(scope="module")
def study(manifest):
    return prepare_subject(Subject("TCGA-DU-7294", subject_files(manifest, "TCGA-DU-7294")), CONTRASTS)


@pytest.fixture(scope="module")
def slices(study):
    return {k: build_slice_set({"TCGA-DU-7294": study}, CONTRASTS, (160, 160), stride=8, context=k) for k in (0, 1)}


def test_training_slices_carry_the_neighbours_of_the_2d_slices(slices):
    flat, deep = slices[0], slices[1]
    assert deep.images.shape == (len(flat), 12, 160, 160) and deep.context == 1
    centre = GeneratorConfig(context=1).centre
    assert torch.equal(deep.images[:, centre], flat.images)  # the slice synthesised is the 2-D network's
    assert torch.equal(deep.masks, flat.masks) and torch.equal(deep.present, flat.present)
    # Neighbours are the study's adjacent slices: an axial step changes a brain slice, so they differ from the centre.
    assert float((deep.images[:, 0] - deep.images[:, 1]).abs().mean()) > 0.01
    assert deep.of_subjects(["TCGA-DU-7294"], 3).context == 1


def test_generator_reads_every_plane_and_refuses_a_2d_batch():
    torch.manual_seed(0)
    generator = Generator(GeneratorConfig(4, 4, 8, 2, context=1)).eval()
    images, target = torch.rand(2, 12, 32, 32), torch.eye(4)[[1, 3]]
    with torch.no_grad():
        plain = generator(images, target)
        moved = images.clone()
        moved[:, 0] += 1.0  # the slice below the centre, of T1
        assert plain.shape == (2, 1, 32, 32) and (generator(moved, target) - plain).abs().max() > 1e-4
    with pytest.raises(ValueError, match="expected 4 contrasts of 3 plane"):
        generator(torch.rand(2, 4, 32, 32), target)
    with pytest.raises(ValueError, match="context must be >= 0"):
        GeneratorConfig(context=-1)


def test_cycle_inputs_put_the_fake_in_every_plane_of_its_contrast():
    real = torch.rand(2, 12, 4, 4)
    fake, target, absent = torch.rand(2, 1, 4, 4), torch.tensor([1, 2]), torch.tensor([[0, 1, 0, 0], [1, 0, 1, 0.0]])
    inputs, others, truth = cycle_inputs(real, fake, target, absent, planes=3)
    flat_inputs, flat_others, flat_truth = cycle_inputs(real[:, 1::3], fake, target, absent)
    assert inputs.shape == (6, 12, 4, 4) and torch.equal(others, flat_others) and torch.equal(truth, flat_truth)
    assert torch.equal(inputs[:, 1::3], flat_inputs)  # the centre planes are the 2-D cycle's inputs
    stacked = inputs.view(3, 2, 4, 3, 4, 4)
    for row in range(3):
        assert torch.equal(stacked[row, 0, 1], fake[0].expand(3, -1, -1))  # the fake in each plane of contrast k
        j = int(others.view(3, 2)[row, 1])
        assert not stacked[row, 1, j].any() and not stacked[row, 1, 0].any()  # x_j and the absent T1 zero-filled
        kept = [i for i in range(4) if i not in (j, 0, 2)]
        for i in kept:
            assert torch.equal(stacked[row, 1, i], real[1, 3 * i : 3 * i + 3])


@pytest.fixture(scope="module")
def deep_model(tmp_path_factory):
    torch.manual_seed(1)
    generator = Generator(GeneratorConfig(4, 4, 8, 3, context=1))
    return load_model(save_model(generator, CONTRASTS, tmp_path_factory.mktemp("deep") / "deep.safetensors", {"description": "test"}))


def test_card_records_the_context_and_rebuilds_the_network(deep_model, tmp_path):
    assert deep_model.card["architecture"]["generator"]["context"] == 1 and deep_model.generator.config.planes == 3
    weights = deep_model.weights_path
    (tmp_path / weights.name).write_bytes(weights.read_bytes())
    card = weights.with_suffix(".json").read_text()
    assert '"context": 1' in card
    (tmp_path / weights.with_suffix(".json").name).write_text(card.replace('"context": 1', '"context": 9'))
    with pytest.raises(ModelError, match="architecture.generator.context"):
        load_model(tmp_path / weights.name)


def test_fast_path_equals_naive_and_the_neighbours_count(study, deep_model):
    torch.set_num_threads(2)
    chosen = list(range(70, 80))
    stack, mask = np.ascontiguousarray(network_stack(study, CONTRASTS)[:, chosen]), study.mask[chosen]
    generator, target = deep_model.generator, CONTRASTS.index("t1gd")
    naive = synthesise_naive(generator, stack, target, mask)
    fast = synthesise(generator, stack, target, mask, crop=False, batch_size=4, planes=1, bf16=False)
    assert np.abs(fast - naive)[mask].max() <= EXACT
    changed = stack.copy()
    changed[0, 6] *= 1.5  # T1 of the slice above slice 5: slices 5-7 read it, no other
    moved = np.abs(synthesise(generator, changed, target, mask, crop=False, batch_size=4, planes=1, bf16=False) - fast).max(axis=(1, 2))
    assert (moved[[5, 6, 7]] > 0.1).all() and (moved[[0, 1, 2, 3, 4, 8, 9]] <= EXACT).all()


def test_training_steps_on_planes_and_refuses_slices_without_them(slices, tmp_path):
    config = TrainConfig(generator=GeneratorConfig(4, 4, 8, 4, context=1), discriminator=DiscriminatorConfig(4, 2), steps=2,
                         batch_size=2, crop=96, validate_every=1000, checkpoint_every=1000, weights=LossWeights())
    trainer = Trainer(config, slices[1], tmp_path / "deep", validation_set=slices[1].of_subjects(["TCGA-DU-7294"], 2))
    values = trainer.train_step()
    assert {"direct_l1", "cycle_l1", "cycle_ssim", "g_adversarial", "d_adversarial"} <= set(values)
    assert all(np.isfinite(v) for v in values.values())
    rows = trainer.validate()
    assert len(rows) == 4 and all(0 <= row["ssim_brain"] <= 1 for row in rows)
    with pytest.raises(InputError, match="the slices hold 0 neighbours a side; the generator reads 1"):
        Trainer(config, slices[0], tmp_path / "flat")


def test_train_then_impute_from_the_command_line(manifest, tmp_path, capsys):
    data = cropped_manifest(manifest, ("TCGA-DU-7294", "AURORA-MET-example"), tmp_path / "data",
                            (slice(88, 152), slice(88, 152), slice(70, 80)))
    out = tmp_path / "run"
    argv = ["train", "--data", data, "--out", out, "--steps", 2, "--validation", "AURORA-MET-example", "--branch-width", 4,
            "--decoder-width", 8, "--depth", 2, "--context-slices", 1, "--name", "deep", "--progress", "lines"]
    assert main([str(a) for a in argv]) == 0
    model = load_model(out / "deep.safetensors")
    assert model.generator.config.context == 1 and model.card["training"]["config"]["generator"]["context"] == 1
    inputs = [a for k in ("t1", "t2", "flair") for a in (f"--{k}", str(data / "TCGA-DU-7294" / f"{k}.nii.gz"))]
    result = tmp_path / "t1gd.nii.gz"
    assert main(["impute", *inputs, "--missing", "t1gd", "-o", str(result), "--weights", str(out / "deep.safetensors")]) == 0
    imputed, reference = sitk.ReadImage(str(result)), sitk.ReadImage(str(data / "TCGA-DU-7294" / "t1.nii.gz"))
    assert_same_grid(imputed, reference)
    assert sitk.GetArrayViewFromImage(imputed).max() > 0
    capsys.readouterr()
    assert main(["train", "--data", str(data), "--out", str(tmp_path / "bad"), "--steps", "1", "--context-slices", "-1"]) == 2
    assert "the generator asked for cannot be built: context must be >= 0" in capsys.readouterr().err
