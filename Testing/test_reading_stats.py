"""The visual-Turing-test statistics against examples worked by hand (math.comb), and SciPy when present."""

from __future__ import annotations

import math

import pytest
from CollaGANImputeLib.reading.stats import agreement, binomial_test, clopper_pearson, cohen_kappa, fleiss_kappa, score


def tail(k_values, n, p) -> float:
    return sum(math.comb(n, i) * p**i * (1 - p) ** (n - i) for i in k_values)


def test_ten_items_seven_correct_by_hand():
    # 5 synthetic items, 2 called real; 5 real items, 4 called real: 3 + 4 = 7 of 10 correct.
    pairs = [("synthetic", "real")] * 2 + [("synthetic", "synthetic")] * 3 + [("real", "real")] * 4 + [("real", "synthetic")]
    result = score("A", "t1gd", pairs)
    assert (result.items, result.synthetic_items, result.real_items, result.correct) == (10, 5, 5, 7)
    assert result.synthetic_called_real == pytest.approx(0.4) and result.real_called_real == pytest.approx(0.8)
    assert result.accuracy == pytest.approx(0.7)
    # Two-sided exact test against 0.5: P(X >= 7) = (120 + 45 + 10 + 1) / 1024, doubled by symmetry.
    assert result.p_value == pytest.approx(2 * (math.comb(10, 7) + math.comb(10, 8) + math.comb(10, 9) + 1) / 2**10, abs=1e-12)
    assert result.p_value == pytest.approx(0.34375)
    # Clopper-Pearson: the bounds where P(X >= 7 | low) and P(X <= 7 | high) are each 2.5 %.
    assert tail(range(7, 11), 10, result.ci_low) == pytest.approx(0.025, abs=1e-10)
    assert tail(range(0, 8), 10, result.ci_high) == pytest.approx(0.025, abs=1e-10)
    assert (round(result.ci_low, 4), round(result.ci_high, 4)) == (0.3475, 0.9333)  # R: binom.test(7, 10)


def test_interval_and_test_at_the_edges():
    low, high = clopper_pearson(10, 10)
    assert low == pytest.approx(0.025 ** (1 / 10), abs=1e-10) and high == 1.0
    low, high = clopper_pearson(0, 10)
    assert low == 0.0 and high == pytest.approx(1 - 0.025 ** (1 / 10), abs=1e-10)
    assert binomial_test(10, 10) == pytest.approx(2 / 1024)
    assert binomial_test(5, 10) == pytest.approx(1.0)
    assert math.isnan(binomial_test(0, 0)) and all(math.isnan(v) for v in clopper_pearson(0, 0))


def test_cohen_kappa_on_a_two_by_two_table_by_hand():
    # both real 4, both synthetic 3, A real / B synthetic 2, A synthetic / B real 1
    a = ["real"] * 4 + ["synthetic"] * 3 + ["real"] * 2 + ["synthetic"]
    b = ["real"] * 4 + ["synthetic"] * 3 + ["synthetic"] * 2 + ["real"]
    observed = 7 / 10
    expected = (6 / 10) * (5 / 10) + (4 / 10) * (5 / 10)
    assert cohen_kappa(a, b) == pytest.approx((observed - expected) / (1 - expected))
    assert cohen_kappa(a, b) == pytest.approx(0.4)
    assert math.isnan(cohen_kappa(["real"] * 3, ["real"] * 3))  # chance agreement is total: undefined


def test_fleiss_kappa_by_hand():
    calls = [["real", "real", "real"], ["real", "real", "synthetic"], ["synthetic", "synthetic", "synthetic"], ["real", "synthetic", "synthetic"]]
    per_item = [1.0, 1 / 3, 1.0, 1 / 3]  # (sum n_ij^2 - m) / (m (m - 1)) with m = 3
    p_bar = sum(per_item) / 4
    shares = (6 / 12, 6 / 12)
    p_e = sum(s * s for s in shares)
    assert fleiss_kappa(calls) == pytest.approx((p_bar - p_e) / (1 - p_e))
    with pytest.raises(ValueError):
        fleiss_kappa([["real"], ["real"]])


def test_agreement_uses_items_every_rater_answered():
    calls = {"A": {"i1": "real", "i2": "synthetic", "i3": "real"}, "B": {"i1": "real", "i2": "real"}}
    method, kappa, items = agreement(calls, ["i1", "i2", "i3"])
    assert method == "Cohen's kappa" and items == 2 and kappa == pytest.approx(cohen_kappa(["real", "synthetic"], ["real", "real"]))
    calls["C"] = {"i1": "real", "i2": "real", "i3": "real"}
    assert agreement(calls, ["i1", "i2", "i3"])[0] == "Fleiss' kappa"
    assert agreement({"A": calls["A"]}, ["i1"]) == ("", pytest.approx(math.nan, nan_ok=True), 0)


@pytest.mark.parametrize("k,n", [(0, 1), (3, 17), (58, 116), (80, 116), (116, 116), (150, 232)])
def test_agrees_with_scipy(k, n):
    stats = pytest.importorskip("scipy.stats")
    reference = stats.binomtest(k, n, 0.5)
    assert binomial_test(k, n) == pytest.approx(reference.pvalue, rel=1e-9)
    interval = reference.proportion_ci(0.95, method="exact")
    assert clopper_pearson(k, n) == pytest.approx((interval.low, interval.high), abs=1e-9)
