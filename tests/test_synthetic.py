"""Synthetic data sets: deterministic from the seed, labels made by their ground-truth formula, noise as asked."""

from __future__ import annotations

import numpy as np
import pytest

from lenbench.data import make_dnf, make_xor
from lenbench.data.base import ConceptDataset


def _evaluate(formula: str, data: ConceptDataset) -> np.ndarray:
    """The formula's truth value per row (concept true where x > 0.5), independent of lenbench.logic."""
    concepts = {name: data.x[:, i] > 0.5 for i, name in enumerate(data.concept_names)}
    return eval(formula, {"__builtins__": {}}, concepts)


@pytest.mark.parametrize("make", [make_xor, make_dnf])
def test_deterministic_from_seed(make) -> None:
    a, b, c = make(seed=3), make(seed=3), make(seed=4)
    np.testing.assert_array_equal(a.x, b.x)
    np.testing.assert_array_equal(a.y, b.y)
    assert not np.array_equal(a.x, c.x)


def test_xor() -> None:
    data = make_xor(n_samples=500, n_concepts=6, seed=1)
    assert data.name == "xor"
    assert data.x.shape == (500, 6) and data.x.dtype == np.float32 and data.y.dtype == np.int64
    assert set(np.unique(data.x)) == {0.0, 1.0}
    assert data.concept_names == ["c0", "c1", "c2", "c3", "c4", "c5"]
    assert data.ground_truth == "(c0 & ~c1) | (c1 & ~c0)"
    np.testing.assert_array_equal(data.y, data.x[:, 0] != data.x[:, 1])
    np.testing.assert_array_equal(data.y, _evaluate(data.ground_truth, data))
    assert 0.4 < data.x.mean() < 0.6 and 0.4 < data.y.mean() < 0.6


def test_dnf_ground_truth_holds_without_noise() -> None:
    data = make_dnf(n_samples=2000, noise=0.0, seed=2)
    assert data.name == "dnf" and data.x.shape == (2000, 12)
    assert data.ground_truth == "(c0 & c1) | (c2 & ~c3)"
    np.testing.assert_array_equal(data.y, _evaluate(data.ground_truth, data))
    assert data.y.mean() == pytest.approx(7 / 16, abs=0.04)


def test_dnf_noise_rate() -> None:
    data = make_dnf(n_samples=20000, n_concepts=5, noise=0.1, seed=5)
    flipped = np.mean(data.y != _evaluate(data.ground_truth, data))
    assert flipped == pytest.approx(0.1, abs=0.01)  # 5 standard errors


@pytest.mark.parametrize(
    ("make", "kwargs", "key"),
    [
        (make_xor, {"n_samples": 9}, "n_samples"),
        (make_xor, {"n_concepts": 1}, "n_concepts"),
        (make_xor, {"n_samples": 100.0}, "n_samples"),
        (make_dnf, {"n_concepts": 3}, "n_concepts"),
        (make_dnf, {"noise": 0.5}, "noise"),
        (make_dnf, {"noise": -0.1}, "noise"),
    ],
)
def test_rejects_nonsense(make, kwargs: dict, key: str) -> None:
    with pytest.raises(ValueError, match=rf"{key} must be .*got {next(iter(kwargs.values()))!r}"):
        make(**kwargs)
