"""Generator and discriminator shapes for several contrast counts, and CCAM's dependence on the target."""

import pytest
import torch
from CollaGANImputeLib.model.networks import (
    CCAM,
    Discriminator,
    DiscriminatorConfig,
    Generator,
    GeneratorConfig,
    count_parameters,
)


@pytest.mark.parametrize("n", [3, 4, 5])
def test_generator_and_discriminator_shapes(n):
    torch.manual_seed(0)
    generator = Generator(GeneratorConfig(num_contrasts=n, branch_width=4, decoder_width=8, depth=4))
    discriminator = Discriminator(DiscriminatorConfig(num_contrasts=n))
    images = torch.rand(2, n, 64, 48)
    target = torch.nn.functional.one_hot(torch.tensor([0, n - 1]), n).float()
    out = generator(images, target)
    assert out.shape == (2, 1, 64, 48)
    assert (out >= 0).all()  # the final ReLU: normalised intensities are non-negative
    assert len(generator.branches) == n
    realness, logits = discriminator(out)
    assert realness.shape == (2, 1, 4, 3)  # PatchGAN map at 1/16 resolution
    assert logits.shape == (2, n)


def test_generator_rejects_wrong_channels_and_sizes():
    generator = Generator(GeneratorConfig(num_contrasts=4, branch_width=4, decoder_width=8, depth=3))
    with pytest.raises(ValueError, match="4 contrasts of 1 plane"):
        generator(torch.rand(1, 3, 32, 32), torch.eye(3)[:1])
    with pytest.raises(ValueError, match="multiple of 8"):
        generator(torch.rand(1, 4, 36, 32), torch.eye(4)[:1])


def test_public_configuration_size():
    """The public MRI configuration: measured 20.9 M parameters with CCNL units (34.1 M with plain blocks)."""
    assert count_parameters(Generator(GeneratorConfig())) == pytest.approx(20.86e6, rel=0.01)
    assert count_parameters(Generator(GeneratorConfig(unit="plain"))) == pytest.approx(34.12e6, rel=0.01)


def test_ccam_output_depends_on_target():
    torch.manual_seed(0)
    ccam = CCAM(channels=16, num_contrasts=4)
    x = torch.rand(1, 16, 8, 8)
    a = ccam(x, torch.tensor([[1.0, 0, 0, 0]]))
    b = ccam(x, torch.tensor([[0, 0, 1.0, 0]]))
    assert not torch.allclose(a, b)
    # Attention only rescales channels: the ratio to the input is constant over each channel's pixels.
    ratio = a / x
    assert torch.allclose(ratio, ratio[:, :, :1, :1].expand_as(ratio), atol=1e-5)


def test_generator_output_depends_on_target():
    torch.manual_seed(0)
    generator = Generator(GeneratorConfig(num_contrasts=4, branch_width=4, decoder_width=8, depth=2)).eval()
    images = torch.rand(1, 4, 32, 32)
    first = generator(images, torch.eye(4)[:1])
    third = generator(images, torch.eye(4)[2:3])
    assert not torch.allclose(first, third)
