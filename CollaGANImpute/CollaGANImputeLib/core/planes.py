"""The layout of a 2.5-D generator's input, named once: each contrast's slice with `context` neighbours on either
side, lowest slice first, one contrast's planes together (preparation.study.slice_planes writes it; the training
slices and model.networks read it)."""

from __future__ import annotations


def plane_count(context: int) -> int:
    """Input planes a contrast has: its slice and `context` neighbours on either side."""
    return 2 * context + 1


def centre_channels(context: int) -> slice:
    """The channels of the slices synthesised, one a contrast: images[:, centre_channels(context)] is (B, N, H, W)."""
    return slice(context, None, plane_count(context))
