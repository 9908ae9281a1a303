"""Training on real slices: the loss falls, and a stopped and resumed run repeats the uninterrupted one."""

import csv

import pytest
import torch
from CollaGANImputeLib.core.errors import InputError, ModelError
from CollaGANImputeLib.model.networks import DiscriminatorConfig, GeneratorConfig
from CollaGANImputeLib.preparation.data import Subject, build_slice_set, prepare_subject
from CollaGANImputeLib.training.config import TrainConfig
from CollaGANImputeLib.training.trainer import Trainer
from conftest import CONTRASTS, subject_files


@pytest.fixture(scope="module")
def slices(manifest):
    """Twelve brain slices of one real subject, the central 96x96 mm of the brain (small enough for CI)."""
    subject = Subject("TCGA-DU-7294", subject_files(manifest, "TCGA-DU-7294"))
    studies = {subject.name: prepare_subject(subject, CONTRASTS)}
    return build_slice_set(studies, CONTRASTS, (96, 96), max_slices_per_subject=12)


def small_config(**overrides) -> TrainConfig:
    values = dict(
        generator=GeneratorConfig(num_contrasts=4, branch_width=4, decoder_width=8, depth=4),
        discriminator=DiscriminatorConfig(num_contrasts=4, width=2),
        steps=40, batch_size=2, lr=1e-3, lr_discriminator=1e-3, augment=True, validate_every=1000, checkpoint_every=1000,
    )
    values.update(overrides)
    return TrainConfig(**values)


def test_slice_set_is_real_and_normalised(slices):
    assert slices.images.shape == (12, 4, 96, 96)
    assert slices.masks.any(dim=(1, 2)).all()  # every slice holds brain
    for k in range(4):
        brain = slices.images[:, k][slices.masks]
        assert 0.5 < float(brain.std()) < 2.0  # unit standard deviation over the whole brain, roughly in its centre


def fixed_batch_cycle_l1(trainer: Trainer, slices) -> float:
    """The multiple-cycle L1 of every slice and every target, in eval mode: no sampling noise."""
    from CollaGANImputeLib.training.losses import cycle_inputs, multiple_cycle_l1

    generator, real = trainer.generator.eval(), slices.images
    total = 0.0
    with torch.no_grad():
        for k in range(4):
            target = torch.full((len(real),), k)
            hot = torch.nn.functional.one_hot(target, 4).float()
            fake = generator(real * (1 - hot[:, :, None, None]), hot)
            inputs, others, truth = cycle_inputs(real, fake, target)
            total += multiple_cycle_l1(generator(inputs, torch.nn.functional.one_hot(others, 4).float()), truth, 3).item()
    return total / 4


def test_training_loss_falls(slices, tmp_path):
    trainer = Trainer(small_config(lr=2e-3), slices, tmp_path)
    before = fixed_batch_cycle_l1(trainer, slices)
    for _ in range(40):
        trainer.train_step()
    after = fixed_batch_cycle_l1(trainer, slices)
    # Seeded, so deterministic: measured 5.33 -> 4.28 (-20 %) on this machine.
    assert after < 0.9 * before, f"multiple-cycle L1 went from {before:.3f} to {after:.3f}"


def test_bf16_autocast_trains_on_the_cpu_with_float32_weights(slices, tmp_path):
    """`--bf16` on the CPU (docs/training.md: twice the speed where the CPU computes bf16): the networks run in bf16,
    their weights and the losses stay float32, and the loss falls as in float32."""
    trainer = Trainer(small_config(lr=2e-3, bf16=True), slices, tmp_path)
    seen = []
    hook = trainer.generator.head.register_forward_hook(lambda module, inputs, output: seen.append(output.dtype))
    before = fixed_batch_cycle_l1(trainer, slices)
    losses = [trainer.train_step() for _ in range(40)]
    hook.remove()
    assert seen[-1] == torch.bfloat16 and all(p.dtype == torch.float32 for p in trainer.generator.parameters())
    assert all(torch.isfinite(torch.tensor(list(step.values()))).all() for step in losses)
    assert fixed_batch_cycle_l1(trainer, slices) < 0.9 * before


def test_resume_repeats_the_uninterrupted_run(slices, tmp_path):
    config = small_config(steps=6, checkpoint_every=3)
    straight = Trainer(config, slices, tmp_path / "straight")
    expected = [straight.train_step() for _ in range(6)]

    interrupted = Trainer(config, slices, tmp_path / "resumed")
    for _ in range(3):
        interrupted.train_step()
    interrupted.save()
    del interrupted
    torch.manual_seed(1234)  # whatever happened in between must not matter
    resumed = Trainer(config, slices, tmp_path / "resumed")
    resumed.load()
    assert resumed.step == 3
    got = [resumed.train_step() for _ in range(3)]
    for want, have in zip(expected[3:], got):
        assert want.keys() == have.keys()
        for key in want:
            assert have[key] == pytest.approx(want[key], rel=1e-5, abs=1e-7), key


def test_moving_average_is_resumed_and_exported(slices, tmp_path):
    config = small_config(steps=6, checkpoint_every=3, ema_decay=0.9)
    straight = Trainer(config, slices, tmp_path / "straight")
    start = {k: v.clone() for k, v in straight.averaged.state_dict().items()}
    straight.train_step()
    # The first step forgets fast ((1 + 0) / (10 + 0) = 0.1 of the old average is kept).
    for name, tensor in straight.averaged.named_parameters():
        torch.testing.assert_close(tensor, 0.1 * start[name] + 0.9 * straight.generator.state_dict()[name])
    for _ in range(5):
        straight.train_step()

    interrupted = Trainer(config, slices, tmp_path / "resumed")
    for _ in range(3):
        interrupted.train_step()
    interrupted.save()
    resumed = Trainer(config, slices, tmp_path / "resumed")
    resumed.load()
    for _ in range(3):
        resumed.train_step()
    for name, tensor in straight.averaged.state_dict().items():
        torch.testing.assert_close(resumed.averaged.state_dict()[name], tensor)
    lagging = [name for name, tensor in straight.averaged.named_parameters()
               if not torch.allclose(tensor, straight.generator.state_dict()[name])]
    assert len(lagging) > len(list(straight.generator.parameters())) // 2  # an average, not a copy of the weights
    from CollaGANImputeLib.model.weights import load_model

    exported = load_model(resumed.export(tmp_path / "model.safetensors", {"description": "test"}))
    for name, tensor in exported.generator.state_dict().items():
        torch.testing.assert_close(tensor, resumed.averaged.state_dict()[name])
    assert exported.card["training"]["config"]["ema_decay"] == 0.9
    with pytest.raises(InputError, match="moving average's decay"):
        Trainer(small_config(ema_decay=1.0), slices, tmp_path / "bad")


def test_run_writes_logs_checkpoint_and_validation(slices, tmp_path):
    config = small_config(steps=4, validate_every=2, checkpoint_every=2)
    trainer = Trainer(config, slices, tmp_path, validation_set=slices)
    trainer.run()
    assert (tmp_path / "checkpoint.safetensors").is_file()
    rows = list(csv.DictReader(open(tmp_path / "train_log.csv")))
    assert [int(r["step"]) for r in rows] == [1, 2, 3, 4]
    validation = list(csv.DictReader(open(tmp_path / "validation.csv")))
    assert {(int(r["step"]), r["contrast"]) for r in validation} == {(s, c) for s in (2, 4) for c in CONTRASTS}
    assert all(-1 <= float(r["ssim_brain"]) <= 1 and float(r["nmse_brain"]) >= 0 for r in validation)
    weights = trainer.export(tmp_path / "model.safetensors", {"description": "test"})
    from CollaGANImputeLib.model.weights import load_model

    model = load_model(weights)
    assert model.card["training"]["steps"] == 4
    assert set(model.card["metrics"]["validation"]) == {"step", *CONTRASTS}


def test_folder_of_subject_folders_is_discovered(manifest):
    from CollaGANImputeLib.preparation.data import discover_subjects
    from conftest import SHARED_DATA

    subjects = discover_subjects(SHARED_DATA / "brats4", CONTRASTS)
    by_name = {s.name: s for s in subjects}
    assert set(by_name) == set(manifest["subjects"])
    assert by_name["TCGA-FG-6692"].files["flair"].name == "OtherEXampleFromTCIA_fla_bet.nii.gz"
    assert by_name["BraTS-GLI-00001-000"].files["t1gd"].name.endswith("-t1c.nii.gz")


def test_any_subset_patterns_follow_the_curriculum(slices, tmp_path):
    """MM-GAN training: 1 absent contrast early on, then up to N-1; the target is always among the absent."""
    trainer = Trainer(small_config(missing_max=3, curriculum_steps=300, batch_size=1), slices, tmp_path)
    seen: dict[int, set[int]] = {}
    for step in (0, 99, 100, 199, 200, 500):
        trainer.step = step
        for _ in range(60):
            target, absent = trainer.draw_missing(4)
            assert torch.all(absent[torch.arange(4), target] == 1)
            seen.setdefault(step, set()).update(absent.sum(dim=1).int().tolist())
    assert seen[0] == seen[99] == {1}
    assert seen[100] == seen[199] == {1, 2}
    assert seen[200] == seen[500] == {1, 2, 3}
    single = Trainer(small_config(missing_min=3, missing_max=3), slices, tmp_path / "single")
    assert set(single.draw_missing(64)[1].sum(dim=1).int().tolist()) == {3}  # a single-input model


def test_cycle_inputs_keep_other_absent_contrasts_zero(slices):
    from CollaGANImputeLib.training.losses import cycle_inputs

    real = slices.images[:2]
    fake = torch.full((2, 1, 96, 96), 7.0)
    target = torch.tensor([1, 3])
    absent = torch.tensor([[0, 1, 0, 1], [1, 0, 0, 1]], dtype=torch.float32)
    inputs, others, truth = cycle_inputs(real, fake, target, absent)
    for row, (sample, j) in enumerate(zip([0, 1] * 3, others.tolist())):
        planes = inputs[row]
        assert torch.all(planes[target[sample]] == 7.0)  # the fake stands in for the target
        assert not planes[j].any()  # the contrast this cycle reconstructs is zero-filled
        for k in range(4):
            if absent[sample, k] and k != target[sample]:
                assert not planes[k].any()  # the sample's other absent contrasts stay absent
        torch.testing.assert_close(truth[row, 0], real[sample, j])


def test_any_subset_training_runs_from_an_initial_checkpoint(slices, tmp_path):
    from CollaGANImputeLib.model.checkpoint import load_checkpoint

    first = Trainer(small_config(steps=2), slices, tmp_path / "one")
    first.run()
    second = Trainer(small_config(steps=3, missing_max=3), slices, tmp_path / "any")
    second.initialise_from(load_checkpoint(tmp_path / "one" / "checkpoint.safetensors"))
    for name, tensor in first.generator.state_dict().items():
        torch.testing.assert_close(second.generator.state_dict()[name], tensor)
    second.run()
    assert second.step == 3
    assert second.initialised_from["steps"] == 2  # the card keeps the history of the starting run
    resumed = Trainer(small_config(steps=3, missing_max=3), slices, tmp_path / "any")
    resumed.load()
    assert resumed.initialised_from == second.initialised_from
    other = Trainer(small_config(generator=GeneratorConfig(num_contrasts=4, branch_width=2, decoder_width=8, depth=4)), slices, tmp_path / "x")
    with pytest.raises(InputError, match="does not fit"):
        other.initialise_from(load_checkpoint(tmp_path / "one" / "checkpoint.safetensors"))


def test_training_starts_from_a_released_models_weights(slices, tiny_model_path, tmp_path):
    """`train --init MODEL.safetensors`: the model's generator, a fresh discriminator, and the card's history kept."""
    from CollaGANImputeLib.cli.train import _initial_state
    from CollaGANImputeLib.model.weights import load_model

    released = load_model(tiny_model_path)
    state = _initial_state(tiny_model_path)
    config = small_config(steps=2, generator=released.generator.config)
    run = Trainer(config, slices, tmp_path / "tuned")
    fresh_discriminator = {k: v.clone() for k, v in run.discriminator.state_dict().items()}
    run.initialise_from(state)
    for name, tensor in released.generator.state_dict().items():
        torch.testing.assert_close(run.generator.state_dict()[name], tensor)
    for name, tensor in fresh_discriminator.items():
        torch.testing.assert_close(run.discriminator.state_dict()[name], tensor)
    run.run()
    assert run.initialised_from["weights"] == {"name": "tiny", "sha256": released.card["sha256"]}
    exported = load_model(run.export(tmp_path / "tuned.safetensors", {}))
    assert exported.card["training"]["initialised_from"]["weights"]["sha256"] == released.card["sha256"]
    with pytest.raises(InputError, match="does not fit"):  # another architecture than the run's
        Trainer(small_config(), slices, tmp_path / "x").initialise_from(state)
    with pytest.raises(ModelError, match="model card"):  # neither a checkpoint nor weights with a card
        stray = tmp_path / "stray.safetensors"
        stray.write_bytes(tiny_model_path.read_bytes())
        _initial_state(stray)
