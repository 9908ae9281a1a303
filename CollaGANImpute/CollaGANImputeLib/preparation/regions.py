"""Tumour regions of a study: from a BraTS label map, or from the enhancement proxy when there is none.

Whole-brain image metrics hide what matters clinically (a synthetic T1Gd can score well overall and
still lose the enhancing rim), so imputations are also scored inside the tumour. BraTS label maps
define three nested regions: whole tumour (every tumour label), tumour core (everything but oedema) and
enhancing tumour. The enhancing label changed in 2023, so the convention is read from the labels present.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..core.errors import InputError

REGIONS = ("wt", "tc", "et")
REGION_NAMES = {"wt": "whole tumour", "tc": "tumour core", "et": "enhancing tumour", "enh_proxy": "enhancement proxy"}
PROXY_REGION = "enh_proxy"

ENHANCEMENT_MARGIN = 2.5  # z-score units: z(T1Gd) - z(T1) inside the brain (the quality benchmark's value)
OEDEMA = 2  # the one label that is tumour but not core, in every BraTS convention


@dataclass(frozen=True)
class LabelConvention:
    name: str
    labels: tuple[int, ...]
    enhancing: int
    description: str


BRATS_2023 = LabelConvention("brats2023", (0, 1, 2, 3), 3, "BraTS 2023: 1 necrosis (NCR), 2 oedema (ED/SNFH), 3 enhancing tumour (ET)")
BRATS_2021 = LabelConvention(
    "brats2021", (0, 1, 2, 3, 4), 4,
    "BraTS 2015-2021: 1 necrosis/non-enhancing core, 2 oedema, 4 enhancing tumour (3, non-enhancing core, only before 2017)",
)
CONVENTIONS = {c.name: c for c in (BRATS_2023, BRATS_2021)}


def zscore(volume: np.ndarray, brain: np.ndarray) -> np.ndarray:
    """Intensities in standard deviations from the brain mean, so two contrasts compare on one scale."""
    values = volume[brain]
    return (volume - values.mean()) / values.std()


def enhancement_proxy(t1gd: np.ndarray, t1: np.ndarray, brain: np.ndarray) -> np.ndarray:
    """Brain voxels whose z-scored T1Gd exceeds their z-scored T1 by more than ENHANCEMENT_MARGIN.

    It exists because the shared subjects have no tumour labels, yet enhancement is exactly what an
    imputed T1Gd tends to lose. It is a proxy, not a segmentation: it also holds vessels, venous sinuses
    and choroid plexus, which enhance too. It is defined from the real T1Gd, so when T1Gd itself is
    imputed the region is where the real volume has its most distinctive voxels.
    """
    return brain & (zscore(t1gd, brain) - zscore(t1, brain) > ENHANCEMENT_MARGIN)


def label_convention(labels: np.ndarray, where: str, convention: str | None = None) -> LabelConvention:
    """The BraTS convention of a label map: 2015-2021 when label 4 is present, else 2023, unless named.

    Auto-detection cannot tell a pre-2017 map whose non-enhancing core (3) has no enhancing voxels (4)
    from a 2023 map; name the convention for those, or for relabelled data such as BraTS 2024's
    post-treatment maps (4 = resection cavity), which must be converted first.
    """
    if not np.array_equal(labels, np.round(labels)):
        raise InputError(f"label map {where} holds non-integer values; expected BraTS labels 0-4")
    present = {int(v) for v in np.unique(labels)}
    if convention is not None:
        if convention not in CONVENTIONS:
            raise InputError(f"unknown label convention {convention!r}; expected {' or '.join(CONVENTIONS)}")
        chosen = CONVENTIONS[convention]
    else:
        chosen = BRATS_2021 if 4 in present else BRATS_2023
    unknown = sorted(present - set(chosen.labels))
    if unknown:
        raise InputError(f"label map {where} holds label(s) {', '.join(map(str, unknown))}, unknown in {chosen.description}")
    return chosen


@dataclass
class TumourRegions:
    """Boolean canonical masks by region key, and how they were defined (stated with every result)."""

    masks: dict[str, np.ndarray]
    definition: str


def regions_from_labels(labels: np.ndarray, where: str, convention: str | None = None) -> TumourRegions:
    """Whole tumour (label > 0), tumour core (every tumour label but oedema) and enhancing tumour."""
    chosen = label_convention(labels, where, convention)
    labels = np.round(labels).astype(np.int16)
    masks = {"wt": labels > 0, "tc": (labels > 0) & (labels != OEDEMA), "et": labels == chosen.enhancing}
    return TumourRegions(masks, f"label map ({chosen.description}; whole tumour = labels > 0, tumour core = all but 2, "
                                f"enhancing = {chosen.enhancing})")


def proxy_regions(t1gd: np.ndarray, t1: np.ndarray, brain: np.ndarray) -> TumourRegions:
    """The one region available without labels: the enhancement proxy of the real T1Gd and T1."""
    return TumourRegions(
        {PROXY_REGION: enhancement_proxy(t1gd, t1, brain)},
        f"enhancement proxy (no label map): brain voxels with z(T1Gd) - z(T1) > {ENHANCEMENT_MARGIN}, z over each real "
        "volume's brain; it includes vessels and choroid plexus, and it is defined by the real T1Gd, so T1Gd's own "
        "imputation is scored where its real volume is most distinctive, which favours calling T1Gd indispensable",
    )


def dice(a: np.ndarray, b: np.ndarray) -> float:
    """2|A and B| / (|A| + |B|); 1.0 when both are empty (the BraTS challenges' convention: agreeing that
    a region is absent is perfect agreement)."""
    a, b = a.astype(bool), b.astype(bool)
    total = int(a.sum()) + int(b.sum())
    return 1.0 if total == 0 else 2.0 * int(np.count_nonzero(a & b)) / total
