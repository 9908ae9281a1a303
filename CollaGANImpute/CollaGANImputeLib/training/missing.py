"""Which contrast each training sample synthesises and which of its inputs are zero-filled: CollaGAN's one missing
contrast, MM-GAN's random subsets with their curriculum, and the contrasts a model is trained to synthesise."""

from __future__ import annotations

import torch

from ..core.errors import InputError
from ..preparation.data import SliceSet
from .config import TrainConfig


def largest_missing(config: TrainConfig, step: int) -> int:
    """The curriculum: the most contrasts a sample may lack at `step`."""
    if config.curriculum_steps <= 0:
        return config.missing_max
    grown = (config.missing_max - config.missing_min + 1) * step // config.curriculum_steps
    return min(config.missing_max, config.missing_min + grown)


def target_mask(config: TrainConfig) -> torch.Tensor:
    """(N,) which contrasts may be a sample's target: `config.targets`, or every contrast when it is empty.

    A companion that serves only some contrasts (the bundled one: T1, T2 and FLAIR) spends no steps on the others."""
    unknown = sorted(set(config.targets) - set(config.contrasts))
    if unknown:
        raise InputError(f"target contrast(s) {', '.join(unknown)} are not among the model's contrasts ({', '.join(config.contrasts)})")
    return torch.tensor([not config.targets or name in config.targets for name in config.contrasts])


def check_targets(config: TrainConfig, slices: SliceSet) -> None:
    """Refuse a run in which some subject has none of the target contrasts: its slices could teach nothing."""
    lacking = ~(slices.present & target_mask(config)).any(dim=1)
    if lacking.any():
        names = sorted({slices.subjects[i] for i in slices.subject_index[lacking.numpy()]})
        raise InputError(f"subject(s) {', '.join(names)} have none of the target contrasts ({', '.join(config.targets)})")


def draw_missing(config: TrainConfig, step: int, batch: int, rng: torch.Generator,
                 present: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Per sample the target contrast and the (B, N) mask of zero-filled inputs, target included.

    The count of absent contrasts is uniform over the allowed range, the target uniform among the target contrasts,
    and the others uniform among the rest, so every count gets the same share of steps. `present` (B, N) says which
    contrasts each sample's subject has: the target is one of them, the others are always zero-filled, and at least
    one present contrast stays an input."""
    n = len(config.contrasts)
    present = torch.ones(batch, n, dtype=torch.bool) if present is None else present.cpu()
    scores = torch.rand(batch, n, generator=rng).masked_fill(~(present & target_mask(config)), -1.0)
    target = scores.argmax(dim=1)
    absent = torch.nn.functional.one_hot(target, n).float() + (~present).float()
    counts = (torch.randint(config.missing_min, largest_missing(config, step) + 1, (batch,), generator=rng)
              if config.missing_max > 1 else torch.ones(batch, dtype=torch.long))
    for sample in range(batch):
        candidates = [j for j in torch.randperm(n, generator=rng).tolist() if absent[sample, j] == 0] if config.missing_max > 1 else []
        extra = min(int(counts[sample]) - int(absent[sample].sum()), len(candidates) - 1)
        absent[sample, candidates[: max(extra, 0)]] = 1.0
    return target, absent
