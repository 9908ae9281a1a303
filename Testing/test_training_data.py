"""Training data at the scale of training.json: every orientation, grid and format loads; incomplete
studies train with their absent contrasts never a target and no loss where no real image exists; the
CPU recipe (random crops, AdamW, direct phase) resumes exactly."""

from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from CollaGANImputeLib.core.errors import InputError
from CollaGANImputeLib.inference.synthesis import batch_box
from CollaGANImputeLib.model.networks import DiscriminatorConfig, GeneratorConfig
from CollaGANImputeLib.preparation.data import (
    Subject,
    augment,
    build_slice_set,
    discover_subjects,
    jitter_contrasts,
    prepare_subject,
    random_crops,
)
from CollaGANImputeLib.training import trainer as trainer_module
from CollaGANImputeLib.training.config import TrainConfig
from CollaGANImputeLib.training.losses import LossWeights, multiple_cycle_l1
from CollaGANImputeLib.training.trainer import Trainer
from CollaGANImputeLib.training.windows import training_windows
from conftest import CONTRASTS, SHARED_DATA

TRAINING = SHARED_DATA / "training.json"
# One subject of each kind that differs from the BraTS 2023 LPS NIfTI: MetaImage with spaces in its file
# names on its own 160x216x176 grid; RAS; LAS MNI 182x218x182 stored as scaled int16.
KINDS = ("BRATS2012_HG0015", "BraTS-SSA-00002-000", "OpenMS-patient07")
DIRECT = LossWeights(cycle_l1=0, cycle_ssim=0, adversarial=0, generator_classification=0, direct_l1=1, direct_ssim=1)


@pytest.fixture(scope="module")
def training_subjects() -> dict[str, Subject]:
    if not TRAINING.is_file():
        pytest.skip(f"real training data not found: expected {TRAINING}")
    return {s.name: s for s in discover_subjects(TRAINING, CONTRASTS)}


def small_config(**overrides) -> TrainConfig:
    values = dict(generator=GeneratorConfig(4, 4, 8, 4), discriminator=DiscriminatorConfig(4, 2), steps=40, batch_size=2,
                  lr=1e-3, lr_discriminator=1e-3, validate_every=1000, checkpoint_every=1000)
    values.update(overrides)
    return TrainConfig(**values)


def check_canonical_orientation(study) -> None:
    """Canonical index [k, j, i] runs inferior->superior, anterior->posterior, right->left in physical (LPS) space."""
    markers = np.zeros(study.mask.shape, dtype=np.float32)
    markers[-1, 0, 0], markers[0, -1, -1] = 1, 2
    image = study.to_reference_image(markers)
    array = sitk.GetArrayViewFromImage(image)
    points = {int(v): np.array(image.TransformIndexToPhysicalPoint([int(c) for c in np.argwhere(array == v)[0][::-1]]))
              for v in (1, 2)}
    assert points[1][2] > points[2][2]  # superior
    assert points[1][1] < points[2][1]  # anterior (LPS: y grows posterior)
    assert points[1][0] < points[2][0]  # right (LPS: x grows left)


def test_every_kind_of_training_subject_loads(training_subjects):
    assert len(training_subjects) == 26
    assert " " in training_subjects["BRATS2012_HG0015"].files["t1gd"].name
    for name in KINDS:
        study = prepare_subject(training_subjects[name], CONTRASTS)
        check_canonical_orientation(study)
        brain = study.mask
        assert 0.001 < brain.mean() < 0.5, name
        for key in CONTRASTS:
            assert study.images[key][brain].std() == pytest.approx(1.0, rel=1e-3), (name, key)
            assert not study.images[key][~brain].any()
    slices = build_slice_set({name: prepare_subject(training_subjects[name], CONTRASTS) for name in KINDS[2:]}, CONTRASTS, (192, 160))
    assert slices.masks.any(dim=(1, 2)).all() and len(slices) > 100  # the MNI brain fits the BraTS canvas


def test_scaled_int16_is_read_with_its_scale(training_subjects):
    import nibabel
    from CollaGANImputeLib.io.volumes import read_volume

    path = training_subjects["OpenMS-patient07"].files["flair"]
    stored = nibabel.load(str(path))
    assert stored.get_data_dtype() == np.int16 and stored.dataobj.slope != 1.0
    read = sitk.GetArrayFromImage(read_volume(path, "flair"))
    expected = np.asarray(stored.get_fdata(), dtype=np.float32).transpose(2, 1, 0)
    np.testing.assert_allclose(read, expected, rtol=1e-5, atol=1e-3 * float(stored.dataobj.slope))


@pytest.mark.slow
def test_all_training_subjects_load(training_subjects):
    for name, subject in training_subjects.items():
        study = prepare_subject(subject, CONTRASTS)
        check_canonical_orientation(study)
        assert 0.001 < study.mask.mean() < 0.5, name


@pytest.fixture(scope="module")
def incomplete(training_subjects, tmp_path_factory):
    """Two real subjects in a manifest; the second has no FLAIR. Cut to 24 slices for speed."""
    folder = tmp_path_factory.mktemp("incomplete")
    entries = {}
    for name, drop in (("TCGA-DU-7294", None), ("Brats18_2013_11_1", "flair")):
        entries[name] = {"dir": name}
        (folder / name).mkdir()
        for key, path in training_subjects[name].files.items():
            if key == drop:
                continue
            sitk.WriteImage(sitk.ReadImage(str(path))[:, :, 65:89], str(folder / name / f"{key}.nii.gz"))
            entries[name][key] = f"{key}.nii.gz"
    (folder / "manifest.json").write_text(json.dumps({"subjects": entries}))
    return folder / "manifest.json"


def test_incomplete_subjects_are_refused_unless_training(incomplete):
    with pytest.raises(InputError, match="Brats18_2013_11_1.*has no FLAIR"):
        discover_subjects(incomplete, CONTRASTS)
    subjects = discover_subjects(incomplete, CONTRASTS, incomplete=True)
    assert set(subjects[1].files) == {"t1", "t1gd", "t2"}


@pytest.fixture(scope="module")
def incomplete_slices(incomplete):
    subjects = discover_subjects(incomplete, CONTRASTS, incomplete=True)
    return build_slice_set({s.name: prepare_subject(s, CONTRASTS) for s in subjects}, CONTRASTS, (160, 160), max_slices_per_subject=8)


def test_absent_contrast_is_zero_and_marked(incomplete_slices):
    lacking = torch.from_numpy(incomplete_slices.subject_index == 1)
    assert incomplete_slices.present[lacking].tolist() == [[True, True, True, False]] * 8
    assert incomplete_slices.present[~lacking].all()
    assert not incomplete_slices.images[lacking, 3].any()


def test_absent_contrast_is_never_a_target_and_always_an_absent_input(incomplete_slices, tmp_path):
    trainer = Trainer(small_config(missing_max=3), incomplete_slices, tmp_path)
    present = torch.tensor([[True, True, True, False]] * 200)
    target, absent = trainer.draw_missing(200, present)
    assert set(target.tolist()) == {0, 1, 2}
    assert absent[:, 3].eq(1).all()
    assert absent[torch.arange(200), target].eq(1).all()
    assert (absent[:, :3] == 0).any(dim=1).all()  # at least one real input is left
    assert set(absent.sum(dim=1).int().tolist()) == {2, 3}  # 1-3 absent besides the missing FLAIR, capped so one input stays


def test_targets_limit_what_is_synthesised_and_need_a_present_one(incomplete_slices, tmp_path):
    """`targets` (the companion's T1, T2 and FLAIR): only those are synthesised, each among the present contrasts; every
    other contrast stays an input. A subject with none of them present is refused by name."""
    trainer = Trainer(small_config(targets=["t1", "t2", "flair"]), incomplete_slices, tmp_path)
    present = torch.tensor([[True, True, True, False]] * 100 + [[True] * 4] * 100)
    target, absent = trainer.draw_missing(200, present)
    assert set(target[:100].tolist()) == {0, 2} and set(target[100:].tolist()) == {0, 2, 3}
    assert absent[:, 1].eq(0).all() and absent.sum(dim=1).tolist() == [2.0] * 100 + [1.0] * 100
    with pytest.raises(InputError, match="Brats18_2013_11_1 have none of the target contrasts"):
        Trainer(small_config(targets=["flair"]), incomplete_slices, tmp_path / "flair")
    with pytest.raises(InputError, match="pd are not among"):
        Trainer(small_config(targets=["pd"]), incomplete_slices, tmp_path / "pd")


def test_no_loss_where_no_real_image_exists(incomplete_slices, tmp_path):
    """Fill the absent FLAIR with huge values: were any loss to read it, the losses would explode."""
    data = incomplete_slices
    lacking = torch.from_numpy(data.subject_index == 1)
    only = type(data)(data.images[lacking], data.masks[lacking], ["x"], np.zeros(int(lacking.sum()), dtype=int), data.present[lacking])
    only.images[:, 3] = 1e4  # boolean indexing copied the images: the fixture keeps its zeros
    trainer = Trainer(small_config(batch_size=4, crop=96), only, tmp_path)
    for _ in range(3):
        values = trainer.train_step()
        assert values["direct_l1"] < 50 and values["cycle_l1"] < 150, values
        assert values["d_adversarial" if "d_adversarial" in values else "g_total"] < 1e3, values
    # The masked mean ignores invalid entries and equals the plain mean when every entry is valid.
    recon, real = torch.rand(6, 1, 8, 8), torch.rand(6, 1, 8, 8)
    valid = torch.tensor([1, 1, 1, 1, 0, 1])
    assert multiple_cycle_l1(recon, real, 3, torch.ones(6)).item() == pytest.approx(multiple_cycle_l1(recon, real, 3).item())
    per_image = (recon - real).abs().flatten(1).mean(dim=1).view(3, 2)
    expected = per_image[0].mean() + per_image[1].mean() + per_image[2, 1]
    assert multiple_cycle_l1(recon, real, 3, valid).item() == pytest.approx(expected.item())


def test_random_crops_cut_one_window_per_sample():
    images = torch.arange(2 * 4 * 32 * 48, dtype=torch.float32).view(2, 4, 32, 48)
    crops = random_crops(images, 16, torch.Generator().manual_seed(0))
    assert crops.shape == (2, 4, 16, 16)
    for sample in range(2):
        top, left = np.argwhere(images[sample, 0].numpy() == float(crops[sample, 0, 0, 0]))[0]
        torch.testing.assert_close(crops[sample], images[sample, :, top : top + 16, left : left + 16])
    with pytest.raises(InputError, match="larger than the training canvas"):
        random_crops(images, 40, torch.Generator())


def test_rotation_turns_every_contrast_alike_and_keeps_the_brain(incomplete_slices):
    images = incomplete_slices.images[:4]
    plain = augment(images, torch.Generator().manual_seed(3))
    turned = augment(images, torch.Generator().manual_seed(3), flip_p=0.0, scale_range=(1.0, 1.0), rotation=30)
    assert torch.equal(augment(images, torch.Generator().manual_seed(3), rotation=0.0), plain)  # no draw unless asked
    # A rotation keeps the brain's signal (bilinear resampling keeps the mean; the canvas holds the turned brain).
    assert torch.allclose(turned[:, 0].sum(dim=(1, 2)), images[:, 0].sum(dim=(1, 2)), rtol=0.03)
    assert float((turned[:, 0] - images[:, 0]).abs().mean()) > 0.05  # and did turn it
    edges = (turned[:, 0] > 0) != (turned[:, 2] > 0)  # T1 and T2 share one outline: the same turn for both
    assert edges.float().mean() < 0.01


def test_contrast_jitter_bends_each_contrast_by_one_gamma(incomplete_slices):
    """Per sample and contrast one gamma within the asked range, the brightest voxel and the background kept; every
    plane of a 2.5-D contrast bent alike."""
    images = incomplete_slices.images[:6].float()
    bent = jitter_contrasts(images, 0.3, torch.Generator().manual_seed(0))
    assert bent.shape == images.shape and torch.equal(bent[images <= 0], images[images <= 0])
    top = images.flatten(2).amax(2)
    torch.testing.assert_close(bent.flatten(2).amax(2), top)
    gammas = []
    for sample in range(6):
        for k in range(3):  # FLAIR is absent on some of these subjects
            x, y = images[sample, k].double(), bent[sample, k].double()
            inside = (x > 0.05 * top[sample, k]) & (x < 0.95 * top[sample, k])
            ratio = torch.log(y[inside] / top[sample, k]) / torch.log(x[inside] / top[sample, k])
            assert float(ratio.max() - ratio.min()) < 1e-3  # one curve for the whole image
            gammas.append(float(ratio.mean()))
    assert np.exp(-0.3) - 1e-4 <= min(gammas) and max(gammas) <= np.exp(0.3) + 1e-4
    assert np.std(gammas) > 0.05  # each contrast and sample draws its own
    planes = images[:, :, None].expand(-1, -1, 3, -1, -1).reshape(6, 12, *images.shape[-2:])
    stacked = jitter_contrasts(planes, 0.3, torch.Generator().manual_seed(0), planes=3).view(6, 4, 3, *images.shape[-2:])
    assert torch.equal(stacked[:, :, 0], stacked[:, :, 1]) and torch.equal(stacked[:, :, 0], stacked[:, :, 2])


def test_contrast_jitter_bends_the_inputs_and_not_the_target(incomplete_slices, tmp_path, monkeypatch):
    seen: dict = {}

    def spy_jitter(images, strength, generator, planes):
        seen["strength"], seen["before"] = strength, images.clone()
        seen["after"] = jitter_contrasts(images, strength, generator, planes)
        return seen["after"]

    def spy_losses(fake, target_real, weights):
        seen["target"] = target_real.clone()
        return direct_losses(fake, target_real, weights)

    direct_losses = trainer_module.direct_losses
    monkeypatch.setattr(trainer_module, "jitter_contrasts", spy_jitter)
    monkeypatch.setattr(trainer_module, "direct_losses", spy_losses)
    trainer = Trainer(small_config(crop=96, weights=DIRECT, input_gamma=0.3, batch_size=4), incomplete_slices, tmp_path)
    trainer.generator.register_forward_pre_hook(lambda module, args: seen.update(given=args[0].clone()))
    trainer.train_step()
    assert seen["strength"] == 0.3
    for sample in range(4):
        # The target is one of the real (unbent) contrasts, and that contrast is blank in what the generator read.
        matches = [k for k in range(4) if torch.equal(seen["before"][sample, k], seen["target"][sample, 0])]
        assert matches and not seen["given"][sample, matches[0]].any()
        for k in range(4):  # every other input the generator read is the bent image or a blank
            given = seen["given"][sample, k]
            assert not given.any() or torch.equal(given, seen["after"][sample, k])
    assert not torch.equal(seen["after"], seen["before"])
    assert TrainConfig.from_dict({k: v for k, v in small_config().to_dict().items() if k != "input_gamma"}).input_gamma == 0.0


def test_gradient_loss_joins_the_direct_phase_with_its_weight(incomplete_slices, tmp_path):
    weights = LossWeights(**{**DIRECT.to_dict(), "direct_gradient": 3.0})
    values = Trainer(small_config(crop=96, weights=weights, rotation=10.0), incomplete_slices, tmp_path).train_step()
    assert set(values) == {"direct_l1", "direct_ssim", "direct_gradient", "g_total"} and values["direct_gradient"] > 0
    assert values["g_total"] == pytest.approx(values["direct_l1"] + values["direct_ssim"] + 3.0 * values["direct_gradient"], rel=1e-5)


@pytest.mark.parametrize("weights", [DIRECT, LossWeights()], ids=["direct-phase", "method-losses"])
def test_cpu_recipe_resumes_exactly(incomplete_slices, tmp_path, weights):
    config = small_config(steps=4, batch_size=3, crop=96, optimizer="adamw", weights=weights, missing_max=3)
    straight = Trainer(config, incomplete_slices, tmp_path / "straight")
    expected = [straight.train_step() for _ in range(4)]
    first = Trainer(config, incomplete_slices, tmp_path / "resumed")
    first.train_step(), first.train_step()
    first.save()
    torch.manual_seed(99)
    resumed = Trainer(config, incomplete_slices, tmp_path / "resumed")
    resumed.load()
    for want, have in zip(expected[2:], [resumed.train_step() for _ in range(2)]):
        assert want.keys() == have.keys()
        for key in want:
            assert have[key] == pytest.approx(want[key], rel=1e-5, abs=1e-7), key
    assert ("cycle_l1" in expected[0]) == weights.uses_cycles


def test_direct_phase_leaves_the_discriminator_alone(incomplete_slices, tmp_path):
    trainer = Trainer(small_config(crop=96, weights=DIRECT), incomplete_slices, tmp_path)
    before = {k: v.clone() for k, v in trainer.discriminator.state_dict().items()}
    values = trainer.train_step(), trainer.train_step()
    assert set(values[0]) == {"direct_l1", "direct_ssim", "g_total"}
    for key, tensor in trainer.discriminator.state_dict().items():
        torch.testing.assert_close(tensor, before[key])


def test_quantile_loss_joins_the_direct_phase_with_its_weight(incomplete_slices, tmp_path):
    weights = LossWeights(**{**DIRECT.to_dict(), "direct_quantile": 2.0})
    values = Trainer(small_config(crop=96, weights=weights), incomplete_slices, tmp_path).train_step()
    assert set(values) == {"direct_l1", "direct_ssim", "direct_quantile", "g_total"} and values["direct_quantile"] > 0
    total = values["direct_l1"] + values["direct_ssim"] + 2.0 * values["direct_quantile"]
    assert values["g_total"] == pytest.approx(total, rel=1e-5)


def test_crop_must_fit_the_network_and_canvas(incomplete_slices, tmp_path):
    with pytest.raises(InputError, match="multiple of 16"):
        Trainer(small_config(crop=100), incomplete_slices, tmp_path)
    with pytest.raises(InputError, match="fit the training canvas"):
        Trainer(small_config(crop=176), incomplete_slices, tmp_path)


def test_brain_box_windows_hold_the_whole_brain_as_imputation_cuts_it(incomplete_slices, tmp_path):
    """`brain_box`: each batch is cut to the box of its augmented brain masks (synthesis.batch_box, as imputation cuts
    a batch of slices), so the window holds every brain voxel and less of the canvas around it."""
    index = torch.tensor([0, 5, 9, 14])
    plain = training_windows(incomplete_slices, index, small_config(brain_box=True, augment=False), torch.Generator())
    rows, cols = batch_box(incomplete_slices.masks[index].numpy(), np.arange(4), 16)
    torch.testing.assert_close(plain, incomplete_slices.images[index][:, :, rows, cols])
    assert plain.shape[-2] % 16 == 0 and plain.shape[-1] % 16 == 0 and plain[0, 0].numel() < 160 * 160
    # Augmented, the mask is scaled and flipped with the images: its box still holds all their signal.
    augmented = augment(incomplete_slices.images[index].float(), torch.Generator().manual_seed(4))
    boxed = training_windows(incomplete_slices, index, small_config(brain_box=True), torch.Generator().manual_seed(4))
    assert float(boxed.abs().sum()) == pytest.approx(float(augmented.abs().sum()), rel=1e-3)
    assert boxed[0, 0].numel() < 160 * 160
    with pytest.raises(InputError, match="not both"):
        Trainer(small_config(crop=128, brain_box=True), incomplete_slices, tmp_path)
    trainer = Trainer(small_config(brain_box=True, steps=2), incomplete_slices, tmp_path)
    assert all(torch.isfinite(torch.tensor(list(trainer.train_step().values()))).all() for _ in range(2))
