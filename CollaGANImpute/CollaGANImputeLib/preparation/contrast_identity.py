"""Is each input the contrast it was given as? Two volumes swapped between their contrasts (T2 given as T1
and T1 as T2) are read without complaint and give a wrong imputation, so their intensity histograms are
compared with what each contrast's histogram looks like.

A volume is described by five numbers of its brain intensities, free of scale: the skewness and the 75th,
90th, 95th and 99th percentiles over the median (log). T2 is the contrast whose cerebrospinal fluid is the
brightest tissue, a long bright tail; T1 has dark fluid and a short tail. A pair of given contrasts is
called swapped when the features fit the two contrasts better the other way round (summed squared
distance to each contrast's centroid, in units of the features' spread).

The centroids and spreads are those of the 26 subjects of ../shared/data/training.json (benchmarks/
contrast_identity.py recomputes them and the figures below, benchmarks/results/contrast_identity.md). Left out
one subject at a time, the pairs in CHECKED_PAIRS told the true assignment from the swapped one in every subject
(no false alarm, and every swap found), by at least 46.3 (T1-T2) and 8.7 (T1Gd-T2) units, so the check fires
at 0, the midpoint. T2-FLAIR (1.4 units) and T1-T1Gd (0.3) are too close, and the swapped assignment of FLAIR
with T1 or T1Gd fits better in 4 and 6 of the 26 subjects: those pairs are not checked.

A volume given without its partner (T2 given as T1, no T2 input) has no pair to compare with; it is judged
alone, by whether it fits the partner's centroid better than its own (LONE_PAIRS). Left out one subject at a
time, that tells T1 from T2 in 25 of the 26 subjects each way (TCGA-DU-7294's T1 looks like a T2, Brats18_2013_11_1's
T2 like a T1) and T1Gd from T2 in far fewer, so only T1-T2 is judged alone, and its finding is a doubt (a note
beside the result, refused with --strict), never a refusal on its own.
"""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING

import numpy as np

from ..core.contrasts import display_name

if TYPE_CHECKING:
    from .study import PreparedStudy

FEATURES = ("skewness", "log p75/p50", "log p90/p50", "log p95/p50", "log p99/p50")
CENTROIDS = {
    "t1": (-0.9431, 0.1258, 0.2066, 0.2439, 0.3069),
    "t1gd": (0.3829, 0.1271, 0.2171, 0.2790, 0.5689),
    "t2": (1.3922, 0.2331, 0.5502, 0.7350, 0.9902),
    "flair": (0.1248, 0.1323, 0.2858, 0.4178, 0.6769),
}
SPREAD = (0.7926, 0.0520, 0.1021, 0.1324, 0.1790)  # root mean square distance to the own centroid, per feature
CHECKED_PAIRS = (("t1", "t2"), ("t1gd", "t2"))
LONE_PAIRS = (("t1", "t2"),)  # judged for a volume given without its partner, both ways
# The centroids describe whole skull-stripped brains (1099-1729 ml in the 26 subjects). A slab or a crop (a few
# slices, a block inside the brain) holds another mix of tissues, a mask with scalp and skull (ood_checks refuses
# masks over 2500 ml) other tissues again: neither is judged.
BRAIN_ML_JUDGED = (500.0, 2500.0)


def brain_ml(study: PreparedStudy) -> float:
    """The brain mask's volume in millilitres."""
    return float(study.mask.sum() * np.prod(study.canonical_spacing) / 1000.0)


def histogram_features(values: np.ndarray) -> np.ndarray:
    """FEATURES of one volume's brain voxels (any positive scale: only ratios and the skewness are used)."""
    values = values.astype(np.float64, copy=False)
    p50, p75, p90, p95, p99 = np.percentile(values, [50, 75, 90, 95, 99])
    spread = values.std()
    skewness = float(((values - values.mean()) ** 3).mean() / spread**3) if spread > 0 else 0.0
    if p50 <= 0:
        return np.array([skewness, 0.0, 0.0, 0.0, 0.0])
    return np.array([skewness, *np.log(np.array([p75, p90, p95, p99]) / p50)])


def _distance(features: np.ndarray, contrast: str) -> float:
    return float(np.sum(((features - np.array(CENTROIDS[contrast])) / np.array(SPREAD)) ** 2))


def swap_margin(features: dict[str, np.ndarray], first: str, second: str) -> float:
    """How much better (positive) the two volumes fit their contrasts swapped than as given."""
    given = _distance(features[first], first) + _distance(features[second], second)
    swapped = _distance(features[first], second) + _distance(features[second], first)
    return given - swapped


def _judged_features(study: PreparedStudy) -> dict[str, np.ndarray]:
    """FEATURES of every input with a centroid, or nothing for a brain mask outside BRAIN_ML_JUDGED."""
    if not BRAIN_ML_JUDGED[0] <= brain_ml(study) <= BRAIN_ML_JUDGED[1]:
        return {}
    return {key: histogram_features(array[study.mask]) for key, array in study.images.items()
            if key in CENTROIDS and np.any(array[study.mask] > 0)}


def identity_notes(study: PreparedStudy) -> tuple[list[str], list[str]]:
    """(check_contrast_identity's notes, lone_identity_doubts's doubts), from one look at the histograms."""
    features = _judged_features(study)
    return _swapped_pairs(features), _lone_doubts(features)


def lone_identity_doubts(study: PreparedStudy) -> list[str]:
    """Doubts about each LONE_PAIRS input given without its partner whose histogram fits the partner's
    contrast better than its own (T2 given as T1 with no T2 input)."""
    return _lone_doubts(_judged_features(study))


def _lone_doubts(features: dict[str, np.ndarray]) -> list[str]:
    doubts = []
    for given, other in [*LONE_PAIRS, *(pair[::-1] for pair in LONE_PAIRS)]:
        if given in features and other not in features and _distance(features[given], given) > _distance(features[given], other):
            doubts.append(f"the {display_name(given)} input's intensity histogram matches {display_name(other)} better than "
                          f"{display_name(given)}: check that it is a {display_name(given)} (a {display_name(other)} given as "
                          f"{display_name(given)} makes a wrong imputation)")
    return doubts


def check_contrast_identity(study: PreparedStudy) -> list[str]:
    """Notes for each checked pair of the study's inputs whose histograms fit the other contrast better: the
    two files were probably given for each other's contrast. Empty when nothing looks swapped, and for a brain
    mask outside BRAIN_ML_JUDGED (part of a brain, or a head)."""
    return _swapped_pairs(_judged_features(study))


def _swapped_pairs(features: dict[str, np.ndarray]) -> list[str]:
    notes = []
    for first, second in itertools.combinations(features, 2):
        pair = tuple(sorted((first, second), key=list(CENTROIDS).index))
        if pair in CHECKED_PAIRS and swap_margin(features, *pair) > 0:
            notes.append(f"the {display_name(pair[0])} and {display_name(pair[1])} inputs look swapped: their intensity histograms match "
                         f"{display_name(pair[1])} and {display_name(pair[0])} better than their own (check which file is which)")
    return notes
