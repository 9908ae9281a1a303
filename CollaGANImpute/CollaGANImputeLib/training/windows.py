"""The part of each training slice a step shows the network: the canvas, a random window of it, or its brain's box.

Imputation cuts each batch of slices to its brain's box (`synthesis.batch_box`), and instance normalisation and CCAM
average over whatever the network is shown; training on that same box makes the statistics it learns on those it
meets in use. Tried for the companion in session 31 (docs/training.md): random 160x160 windows scored better."""

from __future__ import annotations

import numpy as np
import torch

from ..inference.synthesis import batch_box
from ..preparation.data import SliceSet, augment, random_crops
from .config import TrainConfig


def training_windows(slices: SliceSet, index: torch.Tensor, config: TrainConfig, rng: torch.Generator) -> torch.Tensor:
    """Samples `index` of `slices`, augmented as `config` asks, then cut to `config.crop` random windows or, with
    `config.brain_box`, to the box of the batch's augmented brain masks as imputation cuts a batch of slices."""
    images = slices.images[index].float()
    if config.brain_box:  # the mask rides through augmentation as one more channel, so its box is the images' own
        images = torch.cat([images, slices.masks[index].to(images.device, images.dtype)[:, None]], 1)
    if config.augment:
        images = augment(images, rng, rotation=config.rotation)
    if config.brain_box:
        mask = (images[:, -1] > 0.5).cpu().numpy()
        rows, cols = batch_box(mask, np.arange(len(mask)), config.generator.size_multiple)
        return images[:, :-1, rows, cols]
    return random_crops(images, config.crop, rng) if config.crop else images
