"""The report's significance tests against published worked examples (Demšar 2006) and scipy."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from lenbench.report import significance as sig

# Demšar (2006), JMLR 7:1-30, Table 6: AUC of C4.5, C4.5+m, C4.5+cf and C4.5+m+cf on 14 UCI data sets. The table
# prints 3 digits; on "rheum" C4.5+cf is above C4.5+m+cf (the paper's ranks say so), hence 0.97501.
DEMSAR = np.array(
    [
        [0.763, 0.768, 0.771, 0.798],
        [0.599, 0.591, 0.590, 0.569],
        [0.954, 0.971, 0.968, 0.967],
        [0.628, 0.661, 0.654, 0.657],
        [0.882, 0.888, 0.886, 0.898],
        [0.936, 0.931, 0.916, 0.931],
        [0.661, 0.668, 0.609, 0.685],
        [0.583, 0.583, 0.563, 0.625],
        [0.775, 0.838, 0.866, 0.875],
        [1.000, 1.000, 1.000, 1.000],
        [0.940, 0.962, 0.965, 0.962],
        [0.619, 0.666, 0.614, 0.669],
        [0.972, 0.981, 0.97501, 0.975],
        [0.957, 0.978, 0.946, 0.970],
    ]
)


def test_friedman_average_ranks_and_critical_difference_match_demsar() -> None:
    # Section 3.2.2: average ranks 3.143, 2.000, 2.893, 1.964; chi2_F = 9.28; F_F = 3.69.
    assert sig.average_ranks(DEMSAR) == pytest.approx([3.143, 2.000, 2.893, 1.964], abs=5e-4)
    result = sig.friedman(DEMSAR)
    assert result.chi2 == pytest.approx(9.28, abs=5e-3)
    assert result.f == pytest.approx(3.69, abs=5e-3)
    assert (result.n, result.k) == (14, 4)
    assert result.p_f < 0.05  # F(3, 39) critical value 2.85: the null hypothesis is rejected
    # Section 3.2.4: Nemenyi CD = 2.569 sqrt(4*5/(6*14)) = 1.25 at alpha 0.05, 1.12 at alpha 0.10.
    assert sig.nemenyi_cd(4, 14) == pytest.approx(1.25, abs=5e-3)
    assert sig.nemenyi_cd(4, 14, alpha=0.10) == pytest.approx(1.12, abs=5e-3)
    # Table 5(a): q_0.05 for 2..10 classifiers.
    published = [1.960, 2.343, 2.569, 2.728, 2.850, 2.949, 3.031, 3.102, 3.164]
    assert [sig.nemenyi_q(k) for k in range(2, 11)] == pytest.approx(published, abs=1e-3)


def test_friedman_equals_scipy_without_ties() -> None:
    rng = np.random.default_rng(1)
    scores = rng.random((8, 5))
    ours = sig.friedman(scores)
    theirs = stats.friedmanchisquare(*scores.T)
    assert ours.chi2 == pytest.approx(theirs.statistic)
    assert ours.p_chi2 == pytest.approx(theirs.pvalue)
    # Every data set ranks alike: chi2 = N(k-1), F unbounded, its p-value left NaN.
    same = sig.friedman(np.tile([0.9, 0.8, 0.7], (4, 1)))
    assert same.chi2 == pytest.approx(8.0) and same.f == math.inf and math.isnan(same.p_f)
    # Lower is better: ranks flip.
    assert sig.average_ranks(scores, higher_is_better=False) == pytest.approx(
        5 + 1 - sig.average_ranks(scores)
    )


def test_wilcoxon_matches_demsar_and_scipy() -> None:
    # Section 3.1.3: C4.5+m against C4.5, R+ = 93, R- = 12 (zero differences split), T = 12 < 21: p < 0.05.
    d = DEMSAR[:, 1] - DEMSAR[:, 0]
    assert stats.wilcoxon(d, zero_method="zsplit").statistic == 12
    assert sig.wilcoxon_p(d) == pytest.approx(stats.wilcoxon(d).pvalue)
    assert sig.wilcoxon_p(d) < 0.05
    assert sig.wilcoxon_p(np.zeros(5)) == 1.0
    assert math.isnan(sig.wilcoxon_p([0.3]))
    # With 10 test folds the exact two-sided test cannot go below 2/2^10.
    assert sig.wilcoxon_p(np.arange(1, 11)) == pytest.approx(2 / 2**10)


def test_corrected_resampled_ttest() -> None:
    d = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    # Plain paired t-test when the correction is off.
    plain = sig.corrected_resampled_ttest(d, 0.0)
    assert plain.t == pytest.approx(stats.ttest_1samp(d, 0).statistic)
    assert plain.p == pytest.approx(stats.ttest_1samp(d, 0).pvalue)
    # 5-fold CV: n_test/n_train = 1/4; mean 3, var 2.5: t = 3 / sqrt((1/5 + 1/4) 2.5) = sqrt(8).
    corrected = sig.corrected_resampled_ttest(d, 1 / 4)
    assert corrected.t == pytest.approx(math.sqrt(8))
    assert corrected.df == 4
    assert corrected.p == pytest.approx(2 * stats.t.sf(math.sqrt(8), 4))
    assert corrected.p > plain.p  # the correction only ever makes the test more conservative
    # 10 x 10-fold: J = 100, ratio 1/9: the variance term is 0.01 + 0.111, not 0.01.
    rng = np.random.default_rng(3)
    many = rng.normal(0.01, 0.02, 100)
    t_plain = stats.ttest_1samp(many, 0).statistic
    assert sig.corrected_resampled_ttest(many, 1 / 9).t == pytest.approx(
        t_plain * math.sqrt((1 / 100) / (1 / 100 + 1 / 9))
    )
    assert sig.corrected_resampled_ttest(np.zeros(4), 0.1).p == 1.0
    assert sig.corrected_resampled_ttest(np.full(4, 0.2), 0.1).p == 0.0
    assert math.isnan(sig.corrected_resampled_ttest([0.1], 0.1).p)


def test_holm() -> None:
    # Sorted 0.005, 0.01, 0.03, 0.04 -> 4 x 0.005, 3 x 0.01, 2 x 0.03, max(1 x 0.04, 0.06); NaN not counted.
    adjusted = sig.holm([0.01, 0.04, 0.03, 0.005, float("nan")])
    assert adjusted[:4] == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert math.isnan(adjusted[4])
    assert sig.holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])
    assert sig.holm([]).size == 0
    # Never below the raw p-value, never above 1, monotone in the raw order.
    rng = np.random.default_rng(0)
    raw = rng.random(20) ** 3
    holm = sig.holm(raw)
    assert np.all(holm >= raw) and np.all(holm <= 1)
    order = np.argsort(raw)
    assert np.all(np.diff(holm[order]) >= 0)


def test_the_smallest_wilcoxon_p_at_n_before_and_after_holm() -> None:
    """2/2^n is what the test gives when every difference has one sign (5 folds: 0.0625, never below 0.05), and no
    Holm-adjusted p of a family falls below its floor: 3 comparisons on 5 folds, at best 0.1875."""
    for n in range(2, 12):
        assert sig.wilcoxon_p(np.arange(1.0, n + 1)) == pytest.approx(sig.wilcoxon_floor(n))
    assert sig.wilcoxon_floor(5) == 0.0625 and math.isnan(sig.wilcoxon_floor(1))
    assert sig.holm_floor([0.0625] * 3) == pytest.approx([0.1875] * 3)
    floors = sig.holm_floor([sig.wilcoxon_floor(n) for n in (10, 10, 5)] + [float("nan")])
    assert floors[:3] == pytest.approx([3 * 2 / 2**10, 3 * 2 / 2**10, 0.0625]) and math.isnan(floors[3])
    rng = np.random.default_rng(1)
    for _ in range(50):
        ns = rng.integers(3, 9, size=4)
        p = [sig.wilcoxon_p(rng.normal(1.5, 1.0, size=n)) for n in ns]
        assert np.all(sig.holm(p) >= sig.holm_floor([sig.wilcoxon_floor(n) for n in ns]) - 1e-12)


def test_wilcoxon_with_ties_or_zeros_equals_scipys_permutation_test_bit_for_bit() -> None:
    """lenbench computes scipy's small-sample permutation test (zeros or ties, n <= 13) in one step: the same float."""
    import warnings

    rng = np.random.default_rng(7)
    checked = 0
    for trial in range(60):  # scipy takes about 0.15 s a test
        n = int(rng.integers(2, sig.SIGN_FLIP_MAX_N + 1))
        pools = (rng.integers(-3, 4, size=n) * 0.01, np.round(rng.normal(size=n), 1))
        d = pools[trial % 2]
        if np.all(d == 0):
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            expected = float(stats.wilcoxon(d).pvalue)
        assert sig.wilcoxon_p(d) == expected, d
        checked += 1
    assert checked > 50
    ties = np.array([0.0, 0.01, -0.01, 0.02, 0.02, 0.03, -0.04, 0.05, 0.01, 0.0])
    assert sig._sign_flip_p(ties) == stats.wilcoxon(ties).pvalue
