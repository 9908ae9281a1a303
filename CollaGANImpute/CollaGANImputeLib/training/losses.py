"""CollaGAN's losses (METHOD.md): least-squares GAN, contrast classification, multiple-cycle L1 and SSIM."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch.nn import functional as F


@dataclass(frozen=True)
class LossWeights:
    """The MRI paper's weights; `direct_l1` is the public MRI code's 0 (the CVPR code used 10).

    With every cycle and adversarial weight at 0 a step is one generator pass on the direct losses
    alone (the fast first phase of training); the discriminator then rests."""

    cycle_l1: float = 10.0
    cycle_ssim: float = 1.0
    adversarial: float = 1.0
    generator_classification: float = 1.0
    discriminator: float = 1.0
    direct_l1: float = 0.0
    direct_ssim: float = 0.0
    direct_quantile: float = 0.0
    direct_gradient: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)

    def weight_of(self, loss: str) -> float:
        """The weight of a generator loss as the trainer names it (the adversarial terms carry a g_ prefix)."""
        return getattr(self, {"g_adversarial": "adversarial", "g_classification": "generator_classification"}.get(loss, loss))

    @property
    def uses_cycles(self) -> bool:
        return bool(self.cycle_l1 or self.cycle_ssim)

    @property
    def uses_discriminator(self) -> bool:
        return bool(self.adversarial or self.generator_classification)


def lsgan_real(prediction: torch.Tensor) -> torch.Tensor:
    """E[(D(x) - 1)^2]: what D wants for real images and G wants for its fakes."""
    return ((prediction - 1.0) ** 2).mean()


def lsgan_fake(prediction: torch.Tensor) -> torch.Tensor:
    """E[D(x)^2]: what D wants for fakes."""
    return (prediction**2).mean()


def classification(logits: torch.Tensor, contrast: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of the contrast classifier; `contrast` holds class indices."""
    return F.cross_entropy(logits, contrast)


def ssim_map(x: torch.Tensor, y: torch.Tensor, data_range: torch.Tensor | float, window: int = 5) -> torch.Tensor:
    """Per-pixel SSIM over a uniform `window` x `window` neighbourhood, valid positions only.

    Matches scikit-image's structural_similarity (uniform filter, sample covariance, K1 = 0.01,
    K2 = 0.03) whose mean is taken over the same valid region. `data_range` is a scalar or (B,) tensor.
    """
    c1 = (0.01 * torch.as_tensor(data_range, dtype=x.dtype, device=x.device)) ** 2
    c2 = (0.03 * torch.as_tensor(data_range, dtype=x.dtype, device=x.device)) ** 2
    if c1.ndim == 1:
        c1, c2 = c1[:, None, None, None], c2[:, None, None, None]
    mean = lambda t: F.avg_pool2d(t, window, stride=1)  # noqa: E731 - a local shorthand
    mx, my = mean(x), mean(y)
    n = window * window
    sample = n / (n - 1)
    vx = sample * (mean(x * x) - mx * mx)
    vy = sample * (mean(y * y) - my * my)
    vxy = sample * (mean(x * y) - mx * my)
    return ((2 * mx * my + c1) * (2 * vxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))


def ssim_loss(x: torch.Tensor, y: torch.Tensor, data_range: torch.Tensor | float, window: int = 5) -> torch.Tensor:
    """-log( mean_p (1 + SSIM_p) / 2 ), one value per image, averaged over the batch."""
    return ssim_loss_per_image(x, y, data_range, window).mean()


def ssim_loss_per_image(x: torch.Tensor, y: torch.Tensor, data_range: torch.Tensor | float, window: int = 5) -> torch.Tensor:
    per_image = ssim_map(x, y, data_range, window).mean(dim=(1, 2, 3))
    return -torch.log((1.0 + per_image) / 2.0)


def quantile_l1(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean |sorted(x) - sorted(y)| per image pair, averaged over the batch: the 1-D Wasserstein distance
    between their intensity distributions, blind to where each voxel is.

    L1 alone pulls each voxel to its conditional median, so the bright tail (vessels, enhancement, CSF on
    T2) comes out dim, and a window set from the image's own percentiles then stretches the whole brain;
    this term asks for the real image's distribution of intensities."""
    return (torch.sort(x.flatten(1), dim=1).values - torch.sort(y.flatten(1), dim=1).values).abs().mean()


def gradient_l1(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean |difference| of the images' row and column finite differences (the gradient difference loss).

    L1 on intensities forgives a blurred edge as much as a slightly wrong grey level; this term asks for the
    real image's edges themselves (a lesion's rim, the grey-white boundary), which SSIM's structure term rewards."""
    rows = (x.diff(dim=-2) - y.diff(dim=-2)).abs().mean()
    return rows + (x.diff(dim=-1) - y.diff(dim=-1)).abs().mean()


def direct_losses(fake: torch.Tensor, real: torch.Tensor, weights: LossWeights) -> dict[str, torch.Tensor]:
    """The losses of the direct output against the real missing contrast: L1 always (it is logged even at
    weight 0), SSIM, the quantile distance and the gradient difference where they have a weight."""
    losses = {"direct_l1": torch.abs(fake - real).mean()}
    if weights.direct_ssim:
        losses["direct_ssim"] = ssim_loss(fake, real, dynamic_range(real))
    if weights.direct_quantile:
        losses["direct_quantile"] = quantile_l1(fake, real)
    if weights.direct_gradient:
        losses["direct_gradient"] = gradient_l1(fake, real)
    return losses


def _sum_of_group_means(per_image: torch.Tensor, cycles: int, valid: torch.Tensor | None) -> torch.Tensor:
    """sum over groups of the mean over samples; with `valid` ((cycles * B,) 0/1) the mean of the valid
    samples only: a contrast the subject lacks has no real image to compare with (selective loss)."""
    per_image = per_image.view(cycles, -1)
    if valid is None:
        return per_image.mean(dim=1).sum()
    valid = valid.view(cycles, -1).to(per_image.dtype)
    return ((per_image * valid).sum(dim=1) / valid.sum(dim=1).clamp_min(1)).sum()


def multiple_cycle_l1(reconstructed: torch.Tensor, real: torch.Tensor, cycles: int, valid: torch.Tensor | None = None) -> torch.Tensor:
    """sum_j ||x_j - x_tilde_j|k||_1 (mean absolute error per image), averaged over the batch.

    Both tensors hold `cycles` groups of images stacked along the batch axis (group j, then sample).
    """
    return _sum_of_group_means(torch.abs(reconstructed - real).flatten(1).mean(dim=1), cycles, valid)


def multiple_cycle_ssim(reconstructed: torch.Tensor, real: torch.Tensor, cycles: int, window: int = 5,
                        valid: torch.Tensor | None = None) -> torch.Tensor:
    """sum_j L_SSIM(x_j, x_tilde_j|k), each real image's max - min as the dynamic range."""
    return _sum_of_group_means(ssim_loss_per_image(reconstructed, real, dynamic_range(real), window), cycles, valid)


def dynamic_range(images: torch.Tensor) -> torch.Tensor:
    """L in the SSIM constants: each real image's max - min (B,), detached, never below a small floor."""
    flat = images.detach().flatten(1)
    return (flat.max(dim=1).values - flat.min(dim=1).values).clamp_min(1e-3)


def cycle_inputs(real: torch.Tensor, fake: torch.Tensor, target: torch.Tensor, absent: torch.Tensor | None = None,
                 planes: int = 1) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The multiple-cycle batch: for every sample and every contrast j != k, the real set with the
    fake replacing contrast k and contrast j zero-filled (and the sample's other absent contrasts too).

    real: (B, N x planes, H, W) as the generator reads it (networks.GeneratorConfig.planes); fake: (B, 1, H, W),
    which stands in for every plane of contrast k (its neighbouring slices were not synthesised); target: (B,)
    indices k; absent: (B, N) 1 where a contrast was zero-filled in the generator's input (default: the target
    alone). Returns inputs ((N-1)*B, N x planes, H, W), their targets j ((N-1)*B,) and the real centre slices
    x_j ((N-1)*B, 1, H, W), grouped by j offset then sample.
    """
    batch, n = real.shape[0], real.shape[1] // planes
    stacked = real.view(batch, n, planes, *real.shape[-2:])
    hot = torch.nn.functional.one_hot(target, n).to(real.dtype)
    kept = 1 - (hot if absent is None else absent.to(real.dtype)) + hot  # the fake counts as present
    hot, kept = hot[:, :, None, None, None], kept[:, :, None, None, None]
    with_fake = (stacked * (1 - hot) + fake[:, :, None] * hot) * kept
    others = torch.stack([(target + offset) % n for offset in range(1, n)])  # (N-1, B)
    zero_j = 1 - torch.nn.functional.one_hot(others, n).to(real.dtype)[..., None, None, None]  # (N-1, B, N, 1, 1, 1)
    inputs = (with_fake.unsqueeze(0) * zero_j).flatten(0, 1).flatten(1, 2)
    centre = stacked[:, :, planes // 2]
    truth = centre.unsqueeze(0).expand(n - 1, -1, -1, -1, -1).gather(
        2, others.view(n - 1, batch, 1, 1, 1).expand(-1, -1, 1, *real.shape[-2:])).flatten(0, 1)
    return inputs, others.flatten(), truth
