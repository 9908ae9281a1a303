"""Three slice orientations averaged (`synthesise(planes=3)`): each pass is put back on the study's own axes, the
mean keeps the intensity distribution of one pass, progress counts every pass, and only 1 or 3 are accepted."""

import numpy as np
import pytest
import torch
from CollaGANImputeLib.core.errors import InputError
from CollaGANImputeLib.inference.imputation import impute_all
from CollaGANImputeLib.inference.synthesis import network_stack, quantile_restored, synthesise
from CollaGANImputeLib.model.networks import GeneratorConfig
from CollaGANImputeLib.preparation.study import prepare_study
from conftest import subject_files


class Echo(torch.nn.Module):
    """A stand-in network that hands back one of its input contrasts. Whatever the orientation of the slices it is
    given, a pass put back on the study's axes must then give back that contrast voxel for voxel."""

    def __init__(self, echoed: int) -> None:
        super().__init__()
        self.config = GeneratorConfig(num_contrasts=4, branch_width=4, decoder_width=8, depth=3)
        self.echoed = echoed
        self.anchor = torch.nn.Parameter(torch.zeros(()))  # where synthesise looks for the device

    def forward(self, images: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return images[:, self.echoed : self.echoed + 1]


@pytest.fixture(scope="module")
def block(manifest, tiny_model):
    """A real study cut to a block with three different side lengths, so that an axis put back wrongly cannot pass."""
    files = {k: v for k, v in subject_files(manifest, "BraTS-GLI-00001-000").items() if k != "t1gd"}
    study = prepare_study(files, tiny_model.contrasts)
    low = np.argwhere(study.mask).min(axis=0)  # 40 x 56 x 72 voxels across the brain's front and side edges
    region = (slice(low[0] + 50, low[0] + 90), slice(max(low[1] - 8, 0), max(low[1] - 8, 0) + 56), slice(max(low[2] - 8, 0), max(low[2] - 8, 0) + 72))
    stack = np.ascontiguousarray(network_stack(study, tiny_model.contrasts)[(slice(None), *region)])
    mask = np.ascontiguousarray(study.mask[region])
    assert 0.2 < mask.mean() < 0.9  # brain and background both
    return stack, mask, tiny_model.contrasts.index("t1gd")


def test_every_pass_is_put_back_on_the_study_axes(block):
    stack, mask, target = block
    echoed = 0 if target != 0 else 1
    calls = []
    three = synthesise(Echo(echoed), stack, target, mask, planes=3, progress=lambda done, total: calls.append((done, total)))
    assert three.shape == mask.shape and not three[~mask].any()
    np.testing.assert_allclose(three[mask], stack[echoed][mask], rtol=1e-6, atol=1e-6)
    totals = {total for _, total in calls}
    assert len(totals) == 1 and calls[-1][0] == calls[-1][1]  # one count over the three passes, ending at its total
    assert [done for done, _ in calls] == sorted(done for done, _ in calls)
    assert totals.pop() == sum(mask.any(axis=tuple(a for a in range(3) if a != axis)).sum() for axis in range(3))


def test_the_mean_of_three_real_passes_keeps_one_pass_distribution(block, tiny_model):
    stack, mask, target = block
    one = synthesise(tiny_model.generator, stack, target, mask, planes=1)
    three = synthesise(tiny_model.generator, stack, target, mask)  # the default
    assert np.isfinite(three).all() and not three[~mask].any()
    assert not np.allclose(three[mask], one[mask], atol=1e-3)  # the other orientations do change the imputation
    spread = lambda volume: np.percentile(volume[mask], 99.5) - np.percentile(volume[mask], 0.5)  # noqa: E731
    assert spread(three) == pytest.approx(spread(one), rel=0.25)  # not the shrunken range of a plain average


def test_quantile_restoration_keeps_the_mean_ranks_and_the_passes_distribution():
    rng = np.random.default_rng(3)
    mask = rng.random((6, 7, 8)) > 0.3
    passes = [rng.normal(size=mask.shape).astype(np.float32) * (k + 1) for k in range(3)]
    mean = np.mean(passes, axis=0)
    restored = quantile_restored(mean, passes, mask)
    np.testing.assert_allclose(np.sort(restored[mask]), np.mean([np.sort(p[mask]) for p in passes], axis=0), rtol=1e-6)
    assert np.array_equal(np.argsort(restored[mask], kind="stable"), np.argsort(mean[mask], kind="stable"))
    assert not restored[~mask].any()
    assert np.ptp(restored[mask]) > np.ptp(mean[mask])  # the average's tails were shrunken, and are given back


@pytest.mark.parametrize("planes", [0, 2, 4])
def test_only_one_or_all_three_orientations(block, planes):
    stack, mask, target = block
    with pytest.raises(InputError, match=f"planes: {planes} asked"):
        synthesise(Echo(0), stack, target, mask, planes=planes)


def test_an_impossible_number_is_refused_before_any_work(sample_files, tiny_model):
    with pytest.raises(InputError, match="planes: 2 asked"):
        impute_all({k: sample_files[k] for k in ("t1", "t2", "flair")}, ["t1gd"], tiny_model, planes=2,
                   progress=lambda *_: pytest.fail("work started before the number of planes was checked"))
