"""Statistics of a visual Turing test, exact and dependency-free (no SciPy in Slicer's Python by default).

Accuracy is the share of items whose class (real or synthetic) the rater called correctly; its 95 %
interval is Clopper-Pearson's exact interval, and its p-value the exact two-sided binomial test against
chance (0.5), ordering outcomes by probability as SciPy's `binomtest` does. Agreement between raters is
Cohen's kappa for two raters and Fleiss' kappa for three or more, over the items every rater answered.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

CLASSES = ("real", "synthetic")
INTERVAL_METHOD = "Clopper-Pearson exact 95 % interval"
TEST_METHOD = "exact two-sided binomial test against 0.5"


def binomial_pmf(k: int, n: int, p: float) -> float:
    """P(K = k) for K ~ Binomial(n, p), through logarithms so that large n does not overflow."""
    if p <= 0.0 or p >= 1.0:
        return float(k == (0 if p <= 0.0 else n))
    return math.exp(math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1) + k * math.log(p) + (n - k) * math.log1p(-p))


def _tail_at_least(k: int, n: int, p: float) -> float:
    return sum(binomial_pmf(i, n, p) for i in range(k, n + 1))


def _tail_at_most(k: int, n: int, p: float) -> float:
    return sum(binomial_pmf(i, n, p) for i in range(0, k + 1))


def _solve(function, target: float) -> float:
    """p in [0, 1] where the monotone increasing `function(p)` equals `target`, by bisection."""
    low, high = 0.0, 1.0
    for _ in range(200):
        middle = (low + high) / 2
        if function(middle) < target:
            low = middle
        else:
            high = middle
    return (low + high) / 2


def clopper_pearson(k: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Exact interval for a proportion k/n: the p whose tails P(X >= k) and P(X <= k) equal alpha/2."""
    if n <= 0:
        return (math.nan, math.nan)
    alpha = 1.0 - confidence
    lower = 0.0 if k == 0 else _solve(lambda p: _tail_at_least(k, n, p), alpha / 2)
    upper = 1.0 if k == n else _solve(lambda p: -_tail_at_most(k, n, p), -alpha / 2)
    return lower, upper


def binomial_test(k: int, n: int, p: float = 0.5) -> float:
    """Exact two-sided p-value: the probability of every outcome no more likely than k."""
    if n <= 0:
        return math.nan
    observed = binomial_pmf(k, n, p)
    return min(1.0, sum(q for q in (binomial_pmf(i, n, p) for i in range(n + 1)) if q <= observed * (1 + 1e-7)))


def cohen_kappa(first: Sequence[str], second: Sequence[str]) -> float:
    """Agreement of two raters on the same items beyond chance; NaN when chance agreement is total."""
    if len(first) != len(second) or not first:
        raise ValueError("Cohen's kappa needs two equally long, non-empty lists of calls")
    n = len(first)
    observed = sum(a == b for a, b in zip(first, second)) / n
    expected = sum((first.count(c) / n) * (second.count(c) / n) for c in set(first) | set(second))
    return math.nan if expected >= 1.0 else (observed - expected) / (1.0 - expected)


def fleiss_kappa(calls_per_item: Sequence[Sequence[str]]) -> float:
    """Agreement of m >= 2 raters (the same number per item) beyond chance; NaN when undefined."""
    if not calls_per_item:
        raise ValueError("Fleiss' kappa needs at least one item")
    m = len(calls_per_item[0])
    if m < 2 or any(len(calls) != m for calls in calls_per_item):
        raise ValueError("Fleiss' kappa needs the same number (two or more) of calls for every item")
    categories = sorted({c for calls in calls_per_item for c in calls})
    items = len(calls_per_item)
    agreement = sum((sum(calls.count(c) ** 2 for c in categories) - m) / (m * (m - 1)) for calls in calls_per_item) / items
    shares = [sum(calls.count(c) for calls in calls_per_item) / (items * m) for c in categories]
    expected = sum(s * s for s in shares)
    return math.nan if expected >= 1.0 else (agreement - expected) / (1.0 - expected)


@dataclass(frozen=True)
class Score:
    """One row of the results table: a rater (or all raters pooled) on one contrast (or all)."""

    rater: str
    contrast: str
    items: int
    synthetic_items: int
    synthetic_called_real: float
    real_items: int
    real_called_real: float
    correct: int
    accuracy: float
    ci_low: float
    ci_high: float
    p_value: float

    def as_dict(self) -> dict:
        return asdict(self)


def score(rater: str, contrast: str, pairs: Sequence[tuple[str, str]]) -> Score:
    """pairs: (truth, call) per answered item, each 'real' or 'synthetic'."""
    synthetic = [call for truth, call in pairs if truth == "synthetic"]
    real = [call for truth, call in pairs if truth == "real"]
    correct = sum(truth == call for truth, call in pairs)
    n = len(pairs)
    low, high = clopper_pearson(correct, n)
    return Score(
        rater, contrast, n,
        len(synthetic), synthetic.count("real") / len(synthetic) if synthetic else math.nan,
        len(real), real.count("real") / len(real) if real else math.nan,
        correct, correct / n if n else math.nan, low, high, binomial_test(correct, n),
    )


def agreement(calls: Mapping[str, Mapping[str, str]], items: Sequence[str]) -> tuple[str, float, int]:
    """(method, kappa, items used) over `items` that every rater in `calls` (rater -> item -> call) answered."""
    raters = sorted(calls)
    shared = [item for item in items if all(item in calls[r] for r in raters)]
    if len(raters) < 2 or not shared:
        return ("", math.nan, 0)
    if len(raters) == 2:
        return ("Cohen's kappa", cohen_kappa([calls[raters[0]][i] for i in shared], [calls[raters[1]][i] for i in shared]), len(shared))
    return ("Fleiss' kappa", fleiss_kappa([[calls[r][i] for r in raters] for i in shared]), len(shared))
