"""The slice orientations an imputation averages, how many it takes by default, and the check of a request: here,
with no PyTorch, so that the Slicer panel and the command line know them before the engine is installed."""

from __future__ import annotations

from .errors import InputError

# The orientations `synthesis.synthesise(planes=N)` averages, the first N, as the order that puts a study's axes
# (S, H, W) slice axis first: the network's own axial slices, then coronal and sagittal ones (docs/validation_rule.md).
PLANE_ORDERS = ((0, 1, 2), (1, 0, 2), (2, 0, 1))
# All three by default: better on the validation subjects for every contrast, and within 15 s for the sample case on
# two CPU threads in bf16 (docs/validation_rule.md, "Three orientations by default"); 1 is the axial pass alone.
DEFAULT_PLANES = len(PLANE_ORDERS)


def check_planes(planes: int) -> None:
    """Refuse a number of slice orientations other than the network's own (1) or all three, before any work starts."""
    if planes not in (1, len(PLANE_ORDERS)):
        raise InputError(f"planes: {planes} asked, but the slices are imputed in 1 orientation (axial) or all 3 averaged")
