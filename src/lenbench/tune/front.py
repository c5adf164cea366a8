"""Pareto fronts and their hypervolume: pure arithmetic on points, one row per configuration.

Directions are ``"maximize"``/``"minimize"`` per objective. The hypervolume is measured against a fixed reference
point (``tune.reference``), so fronts of different methods on the same data set compare as single numbers: the
area (two objectives) or volume dominated by the front and bounded by the reference point. Points that do not
dominate the reference point add nothing.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def _as_minimised(points: np.ndarray, directions: Sequence[str]) -> np.ndarray:
    signs = np.array([-1.0 if d == "maximize" else 1.0 for d in directions])
    return np.asarray(points, dtype=float) * signs


def pareto_mask(points: np.ndarray, directions: Sequence[str]) -> np.ndarray:
    """True for each row no other row dominates (at least as good in every objective, better in one). Rows with a
    NaN are never on the front; equal rows are all kept."""
    p = _as_minimised(np.atleast_2d(points), directions)
    finite = np.isfinite(p).all(axis=1)
    mask = np.zeros(len(p), dtype=bool)
    for i in np.flatnonzero(finite):
        others = p[finite]
        dominated = np.any(np.all(others <= p[i], axis=1) & np.any(others < p[i], axis=1))
        mask[i] = not dominated
    return mask


def hypervolume(points: np.ndarray, directions: Sequence[str], reference: Sequence[float]) -> float:
    """The hypervolume dominated by ``points`` and bounded by ``reference`` (any number of objectives; exact, by
    recursive slicing, fine for the tens of points a study has). 0.0 when no point beats the reference."""
    p = _as_minimised(np.atleast_2d(points), directions)
    ref = _as_minimised(np.asarray(reference, dtype=float)[None, :], directions)[0]
    p = p[np.isfinite(p).all(axis=1)]
    p = p[np.all(p < ref, axis=1)]
    if len(p) == 0:
        return 0.0
    return float(_volume(p[pareto_mask(p, ["minimize"] * p.shape[1])], ref))


def _volume(p: np.ndarray, ref: np.ndarray) -> float:
    if p.shape[1] == 1:
        return float(ref[0] - p[:, 0].min())
    order = np.argsort(p[:, 0])
    p = p[order]
    total = 0.0
    for i in range(len(p)):
        upper = p[i + 1, 0] if i + 1 < len(p) else ref[0]
        width = upper - p[i, 0]
        if width > 0:  # the slab [p_i, upper) is dominated by the first i+1 points in the other objectives
            total += width * _volume(p[: i + 1, 1:], ref[1:])
    return total
