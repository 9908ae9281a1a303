"""CollaGAN generator and discriminator (METHOD.md, "Generator/Discriminator architecture").

The generator is one network for every target contrast: a multi-branch encoder (one branch per contrast,
each fed its own image plus the one-hot target planes), a shared U-Net decoder that concatenates the skips
of all branches, CCNL units and CCAM channel attention conditioned on the target. Nothing here assumes
four contrasts: N comes from the configuration, which comes from the model card.

With `context` K > 0 the network is 2.5-D: each branch reads its contrast's slice with the K slices on
either side (2K + 1 planes), so that what lies just above and below (a vessel's course, the extent of an
oedema) informs the slice synthesised; the output is still the centre slice alone.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.nn import functional as F

from ..core.planes import centre_channels, plane_count

LEAKY_SLOPE = 0.2  # TensorFlow's leaky_relu default, used throughout the public code


@dataclass(frozen=True)
class GeneratorConfig:
    """Shape of a generator; stored in the model card so weights can be rebuilt exactly.

    The defaults are the public MRI configuration: branch widths 16-32-64-128 (256 after the last
    downsampling), decoder widths 64-128-256-512 with a 1024-channel bottleneck, four 2x2 stride-2
    downsamplings, CCNL units and CCAM at the bottleneck and the three deeper decoder levels.
    """

    num_contrasts: int = 4
    branch_width: int = 16
    decoder_width: int = 64
    depth: int = 4
    unit: str = "ccnl"  # "ccnl" (the paper) or "plain" (the released code's 3x3 conv blocks)
    ccam: bool = True
    context: int = 0  # neighbouring slices each branch reads on either side of the one synthesised (0: 2-D)

    def __post_init__(self) -> None:
        if self.num_contrasts < 2:
            raise ValueError("a CollaGAN needs at least two contrasts")
        if self.unit not in ("ccnl", "plain"):
            raise ValueError(f"unknown unit {self.unit!r}; expected 'ccnl' or 'plain'")
        if self.depth < 1 or self.branch_width < 2 or self.decoder_width < 2:
            raise ValueError("depth must be >= 1 and widths >= 2")
        if self.context < 0:
            raise ValueError(f"context must be >= 0 slices, not {self.context}")

    @property
    def planes(self) -> int:
        """Input planes a contrast has (core.planes.plane_count)."""
        return plane_count(self.context)

    @property
    def centre(self) -> slice:
        """The input channels of the slices synthesised: images[:, centre] is (B, N, H, W) (core.planes.centre_channels)."""
        return centre_channels(self.context)

    @property
    def size_multiple(self) -> int:
        """Height and width of an input slice must be multiples of this."""
        return 2**self.depth

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class DiscriminatorConfig:
    """The public discriminator: three paths of base width 4, dropout 0.5 before both heads."""

    num_contrasts: int = 4
    width: int = 4
    dropout: float = 0.5

    def to_dict(self) -> dict:
        return asdict(self)


def _norm_act(channels: int) -> nn.Sequential:
    return nn.Sequential(nn.InstanceNorm2d(channels, affine=True), nn.LeakyReLU(LEAKY_SLOPE))


class CCNL(nn.Module):
    """Concatenated 1x1 (voxel-wise intensity mapping) and 3x3 (context) convolutions, then IN + LeakyReLU."""

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        half = out_ch // 2
        self.point = nn.Conv2d(in_ch, half, 1, bias=False)
        self.context = nn.Conv2d(in_ch, out_ch - half, 3, padding=1, bias=False)
        self.post = _norm_act(out_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.post(torch.cat([self.point(x), self.context(x)], dim=1))


class PlainUnit(nn.Module):
    """3x3 conv + IN + LeakyReLU, the block of the released generator."""

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_ch, out_ch, 3, padding=1, bias=False)
        self.post = _norm_act(out_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.post(self.conv(x))


def _double_unit(kind: str, in_ch: int, out_ch: int) -> nn.Sequential:
    unit = CCNL if kind == "ccnl" else PlainUnit
    return nn.Sequential(unit(in_ch, out_ch), unit(out_ch, out_ch))


class CCAM(nn.Module):
    """Conditional channel attention: X * sigmoid(MLP([AvgPool(X), target one-hot]))."""

    def __init__(self, channels: int, num_contrasts: int, reduction: int = 4) -> None:
        super().__init__()
        hidden = max(channels // reduction, 1)
        self.mlp = nn.Sequential(
            nn.Linear(channels + num_contrasts, hidden),
            nn.LeakyReLU(LEAKY_SLOPE),
            nn.Linear(hidden, hidden),
            nn.LeakyReLU(LEAKY_SLOPE),
            nn.Linear(hidden, channels),
        )

    def forward(self, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        pooled = x.mean(dim=(2, 3))
        weights = torch.sigmoid(self.mlp(torch.cat([pooled, target.to(pooled.dtype)], dim=1)))
        return x * weights[:, :, None, None]


class EncoderBranch(nn.Module):
    """One contrast's encoder: returns the skip features of every level and the downsampled bottom."""

    def __init__(self, config: GeneratorConfig) -> None:
        super().__init__()
        widths = [config.branch_width * 2**level for level in range(config.depth + 1)]
        in_ch = config.planes + config.num_contrasts
        self.blocks = nn.ModuleList()
        self.downs = nn.ModuleList()
        for level in range(config.depth):
            self.blocks.append(_double_unit(config.unit, in_ch, widths[level]))
            self.downs.append(nn.Conv2d(widths[level], widths[level + 1], 2, stride=2, bias=False))
            in_ch = widths[level + 1]

    def forward(self, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        skips = []
        for block, down in zip(self.blocks, self.downs):
            x = block(x)
            skips.append(x)
            x = down(x)
        return skips, x


class Generator(nn.Module):
    """x_hat_k = G({x_j : j != k}; k) for any target k, one network for all N mappings."""

    def __init__(self, config: GeneratorConfig) -> None:
        super().__init__()
        self.config = config
        n, bw, dw, depth = config.num_contrasts, config.branch_width, config.decoder_width, config.depth
        self.branches = nn.ModuleList(EncoderBranch(config) for _ in range(n))
        self.bottleneck = _double_unit(config.unit, n * bw * 2**depth, dw * 2**depth)
        self.ups = nn.ModuleList()
        self.decoders = nn.ModuleList()
        for level in reversed(range(depth)):
            self.ups.append(nn.ConvTranspose2d(dw * 2 ** (level + 1), dw * 2**level, 2, stride=2))
            self.decoders.append(_double_unit(config.unit, n * bw * 2**level + dw * 2**level, dw * 2**level))
        # CCAM at the bottleneck and every decoder level but the finest (the public code's placement).
        attention_widths = [dw * 2**depth] + [dw * 2**level for level in reversed(range(1, depth))]
        self.attention = nn.ModuleList(CCAM(w, n) for w in attention_widths) if config.ccam else None
        self.head = nn.Conv2d(dw, 1, 1)

    def forward(self, images: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """images: (B, N x planes, H, W), each contrast's planes together (`GeneratorConfig.planes`), the target's
        (and any absent contrast's) zero-filled; target: (B, N) one-hot of the contrast to synthesise.
        Returns (B, 1, H, W), non-negative."""
        n, p = self.config.num_contrasts, self.config.planes
        if images.shape[1] != n * p or target.shape[1] != n:
            raise ValueError(f"expected {n} contrasts of {p} plane(s) each, got images {tuple(images.shape)}, target {tuple(target.shape)}")
        multiple = self.config.size_multiple
        if images.shape[-1] % multiple or images.shape[-2] % multiple:
            raise ValueError(f"slice size {tuple(images.shape[-2:])} is not a multiple of {multiple}")
        code = target.to(images.dtype)[:, :, None, None].expand(-1, -1, *images.shape[-2:])
        outputs = [branch(torch.cat([images[:, i * p : (i + 1) * p], code], dim=1)) for i, branch in enumerate(self.branches)]
        x = self.bottleneck(torch.cat([bottom for _, bottom in outputs], dim=1))
        x = self._attend(0, x, target)
        for step, (up, decoder) in enumerate(zip(self.ups, self.decoders)):
            level = self.config.depth - 1 - step
            skips = [skip_list[level] for skip_list, _ in outputs]
            x = decoder(torch.cat([*skips, up(x)], dim=1))
            if level > 0:
                x = self._attend(step + 1, x, target)
        return F.relu(self.head(x))

    def _attend(self, index: int, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.attention[index](x, target) if self.attention is not None else x


class Discriminator(nn.Module):
    """Two heads on a shared three-scale trunk: PatchGAN real/fake map and contrast classification."""

    def __init__(self, config: DiscriminatorConfig) -> None:
        super().__init__()
        w, act = config.width, lambda: nn.LeakyReLU(LEAKY_SLOPE)
        self.config = config
        # Full resolution, then a 4x4 stride-4 reduction.
        self.fine = nn.Sequential(
            nn.Conv2d(1, w, 3, padding=1), act(), nn.Conv2d(w, w, 3, padding=1), act(),
            nn.Conv2d(w, w, 3, padding=1), act(), nn.Conv2d(w, 4 * w, 4, stride=4, bias=False),
        )
        # Halves the scale step by step.
        self.pyramid = nn.Sequential(
            nn.Conv2d(1, w, 3, padding=1), nn.MaxPool2d(2), nn.Conv2d(w, 2 * w, 3, padding=1), nn.MaxPool2d(2),
            nn.Conv2d(2 * w, 4 * w, 3, padding=1), act(),
        )
        # Reduces to 1/4 resolution at once.
        self.coarse = nn.Sequential(
            nn.Conv2d(1, 4 * w, 4, stride=4, bias=False), nn.Conv2d(4 * w, 4 * w, 3, padding=1), act(),
            nn.Conv2d(4 * w, 4 * w, 3, padding=1), act(), nn.Conv2d(4 * w, 4 * w, 3, padding=1),
        )
        self.trunk = nn.Sequential(
            nn.Conv2d(12 * w, 8 * w, 4, stride=2, padding=1, bias=False), act(),
            nn.Conv2d(8 * w, 16 * w, 4, stride=2, padding=1, bias=False), act(),
        )
        self.realness = nn.Sequential(nn.Dropout(config.dropout), nn.Conv2d(16 * w, 1, 3, padding=1, bias=False))
        # A third stride-2 convolution feeds the classifier; global pooling lets any slice size through.
        self.classifier = nn.Sequential(
            nn.Conv2d(16 * w, 32 * w, 4, stride=2, padding=1, bias=False), act(), nn.Dropout(config.dropout),
            nn.AdaptiveAvgPool2d(1), nn.Conv2d(32 * w, config.num_contrasts, 1, bias=False), nn.Flatten(),
        )

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """image: (B, 1, H, W), H and W multiples of 16. Returns (real/fake map, contrast logits (B, N))."""
        features = self.trunk(torch.cat([self.fine(image), self.pyramid(image), self.coarse(image)], dim=1))
        return self.realness(features), self.classifier(features)


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
