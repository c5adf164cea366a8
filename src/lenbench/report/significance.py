"""Significance tests for cross-validated comparisons: pure functions over numbers (numpy/scipy, no pandas).

The corrected resampled t-test (Nadeau and Bengio 2003), the Wilcoxon signed-rank test and the smallest p it can give
at its n, Holm's (1979) adjustment, and across data sets Demšar's (2006) average ranks, Friedman test and Nemenyi
critical difference. The paired tests take one difference per *test fold*: the caller averages seeds first.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

NAN = float("nan")


@dataclass(frozen=True)
class TTest:
    """A t statistic, its degrees of freedom and two-sided p-value."""

    t: float
    df: int
    p: float


def corrected_resampled_ttest(differences: Sequence[float], test_train_ratio: float) -> TTest:
    """Nadeau-Bengio corrected resampled t-test of ``differences`` (one per test fold) against 0: ``t = mean(d) /
    sqrt((1/J + n_test/n_train) var(d))``, ``var`` with ddof=1, J differences, ``J - 1`` degrees of freedom; for k-fold
    CV ``n_test/n_train = 1/(k - 1)``, with 0 the plain paired t-test (scipy's ``ttest_rel``). NaN with fewer than two
    differences; p = 1 when every difference is 0, p = 0 when they are all the same non-zero value."""
    d = np.asarray(differences, dtype=float).reshape(-1)
    if d.size < 2 or test_train_ratio < 0:
        return TTest(NAN, max(d.size - 1, 0), NAN)
    from scipy import stats

    mean, var = float(d.mean()), float(d.var(ddof=1))
    df = d.size - 1
    if var == 0.0:
        return TTest(0.0, df, 1.0) if mean == 0.0 else TTest(math.copysign(math.inf, mean), df, 0.0)
    t = mean / math.sqrt((1.0 / d.size + test_train_ratio) * var)
    return TTest(t, df, float(2 * stats.t.sf(abs(t), df)))


def wilcoxon_p(differences: Sequence[float]) -> float:
    """Two-sided p-value of the Wilcoxon signed-rank test of ``differences`` against 0 (scipy's defaults: exact
    for small samples, zero differences dropped). NaN with fewer than two differences; 1 when all are 0."""
    d = np.asarray(differences, dtype=float).reshape(-1)
    if d.size < 2:
        return NAN
    if np.all(d == 0):
        return 1.0
    nonzero = np.abs(d[d != 0])
    if d.size <= SIGN_FLIP_MAX_N and not np.isnan(d).any() and np.unique(nonzero).size < d.size:
        return _sign_flip_p(d)  # zeros or ties: scipy's permutation test, done in one step
    from scipy import stats

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # small samples, ties: scipy warns; the p-value says it
        try:
            return float(stats.wilcoxon(d).pvalue)
        except ValueError:
            return NAN


# scipy's wilcoxon ("auto") runs a permutation test over all 2**n sign flips when the differences hold zeros or ties
# and n <= 13, about 0.15 s a test; the README's suite tables run thousands of them.
SIGN_FLIP_MAX_N = 13


def _sign_flip_p(d: np.ndarray) -> float:
    """The two-sided p-value of that permutation test, exactly as scipy computes it: the statistic is the sum of the
    (average) ranks of ``|d|`` over the positive differences, zeros dropped; its null distribution is that sum over
    every sign flip of ``d``; p is twice the smaller tail's share, the tails taken with scipy's relative tolerance."""
    from scipy import stats

    nonzero = d != 0
    ranks = np.zeros(d.size)
    ranks[nonzero] = stats.rankdata(np.abs(d[nonzero]), method="average")
    flips = ((np.arange(2**d.size)[:, None] >> np.arange(d.size)[None, :]) & 1).astype(bool)
    positive = ((d > 0)[None, :] ^ flips) & nonzero[None, :]
    null = positive.astype(float) @ ranks
    observed = float(ranks[d > 0].sum())
    gamma = abs(np.finfo(float).eps * 100 * observed)
    less = np.count_nonzero(null <= observed + gamma) / null.size
    greater = np.count_nonzero(null >= observed - gamma) / null.size
    return float(min(1.0, 2 * min(less, greater)))


def holm(p_values: Sequence[float]) -> np.ndarray:
    """Holm's step-down adjusted p-values, in the input order. NaN entries stay NaN and are not counted in the
    family: with m tests, the i-th smallest p gets ``max_{j<=i} min(1, (m - j + 1) p_(j))``."""
    p = np.asarray(p_values, dtype=float).reshape(-1)
    out = np.full(p.shape, NAN)
    valid = np.flatnonzero(~np.isnan(p))
    if valid.size == 0:
        return out
    order = valid[np.argsort(p[valid], kind="stable")]
    m = order.size
    scaled = np.minimum(1.0, (m - np.arange(m)) * p[order])
    out[order] = np.maximum.accumulate(scaled)
    return out


def wilcoxon_floor(n: int) -> float:
    """The smallest two-sided p-value the Wilcoxon signed-rank test of ``n`` differences can give, ``2 / 2**n`` (all
    of one sign): with 5 test folds 0.0625, so no 5-fold comparison can be significant at 0.05. NaN below 2."""
    return 2.0 / 2**n if n >= 2 else NAN


def holm_floor(floors: Sequence[float]) -> np.ndarray:
    """The smallest Holm-adjusted p-value each test of a family can reach, from each test's own smallest p (NaN:
    not in the family): at least its own, and at least m times the family's smallest (Holm's first step)."""
    f = np.asarray(floors, dtype=float).reshape(-1)
    out = np.full(f.shape, NAN)
    valid = ~np.isnan(f)
    if valid.any():
        out[valid] = np.minimum(1.0, np.maximum(f[valid], valid.sum() * f[valid].min()))
    return out


def average_ranks(scores: np.ndarray, higher_is_better: bool = True) -> np.ndarray:
    """Mean rank of each column (method) over the rows (data sets), Demšar's R_j: per row, 1 is the best column
    and ties get their average rank."""
    from scipy import stats

    values = np.asarray(scores, dtype=float)
    return np.vstack([stats.rankdata(-row if higher_is_better else row) for row in values]).mean(axis=0)


@dataclass(frozen=True)
class Friedman:
    """Friedman's chi-square over N data sets and k methods, and Iman-Davenport's F = (N-1) chi2 / (N(k-1) - chi2)
    with (k-1, (k-1)(N-1)) degrees of freedom (less conservative, Demšar's recommendation)."""

    chi2: float
    p_chi2: float
    f: float
    p_f: float
    n: int
    k: int


def friedman(scores: np.ndarray, higher_is_better: bool = True) -> Friedman:
    """The Friedman test of ``scores`` (N data sets x k methods) from the average ranks, as Demšar (2006) writes
    it: ``chi2 = 12N/(k(k+1)) (sum R_j^2 - k(k+1)^2/4)`` (no tie correction, like the paper). When every data set
    ranks the methods alike, Iman-Davenport's F is unbounded and its p-value is left NaN (the chi-square p stands)."""
    from scipy import stats

    values = np.asarray(scores, dtype=float)
    n, k = values.shape
    if n < 2 or k < 2:
        return Friedman(NAN, NAN, NAN, NAN, n, k)
    ranks = average_ranks(values, higher_is_better)
    chi2 = 12 * n / (k * (k + 1)) * (float(np.sum(ranks**2)) - k * (k + 1) ** 2 / 4)
    p_chi2 = float(stats.chi2.sf(chi2, k - 1))
    denominator = n * (k - 1) - chi2
    if denominator <= 0:  # every data set ranks the methods alike: F is unbounded, its F approximation void
        return Friedman(chi2, p_chi2, math.inf, NAN, n, k)
    f = (n - 1) * chi2 / denominator
    return Friedman(chi2, p_chi2, f, float(stats.f.sf(f, k - 1, (k - 1) * (n - 1))), n, k)


def nemenyi_q(k: int, alpha: float = 0.05) -> float:
    """Demšar's q_alpha: the studentized range quantile (k groups, infinite df) divided by sqrt(2)."""
    from scipy import stats

    return float(stats.studentized_range.ppf(1 - alpha, k, np.inf) / math.sqrt(2))


def nemenyi_cd(k: int, n: int, alpha: float = 0.05) -> float:
    """Critical difference of average ranks for k methods over n data sets: ``q_alpha sqrt(k(k+1)/(6n))``."""
    if k < 2 or n < 1:
        return NAN
    return nemenyi_q(k, alpha) * math.sqrt(k * (k + 1) / (6 * n))
