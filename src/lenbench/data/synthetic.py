"""Small synthetic concept data sets with a known formula, for tests and offline demos (no download needed).

Each one is a deterministic function of its seed (numpy Generator), and its ``ground_truth`` is the formula the
labels were made from, so an explainer's output can be checked against the truth.
"""

from __future__ import annotations

import logging

import numpy as np

from lenbench.data.base import ConceptDataset
from lenbench.validation import check_int, is_number, refuse

logger = logging.getLogger(__name__)

XOR_FORMULA = "(c0 & ~c1) | (c1 & ~c0)"
DNF_FORMULA = "(c0 & c1) | (c2 & ~c3)"
_DNF_CONCEPTS = 4  # the DNF reads c0..c3


def make_xor(n_samples: int = 1000, n_concepts: int = 10, seed: int = 0, name: str = "xor") -> ConceptDataset:
    """Concepts c0..c{k-1} iid fair coins; y = c0 XOR c1, a function no single concept (or linear model) captures."""
    check_int(None, "n_samples", n_samples, 10)
    check_int(None, "n_concepts", n_concepts, 2)
    rng = np.random.default_rng(seed)
    x = _coins(rng, n_samples, n_concepts)
    y = (x[:, 0] != x[:, 1]).astype(np.int64)
    logger.debug(
        "make_xor: %d rows, %d concepts, %d positives (seed %s)", n_samples, n_concepts, y.sum(), seed
    )
    return ConceptDataset(name=name, x=x, y=y, concept_names=_names(n_concepts), ground_truth=XOR_FORMULA)


def make_dnf(
    n_samples: int = 1000, n_concepts: int = 12, noise: float = 0.05, seed: int = 0, name: str = "dnf"
) -> ConceptDataset:
    """Concepts c0..c{k-1} iid fair coins; y = (c0 & c1) | (c2 & ~c3), each label flipped with probability noise.

    The noise makes the best achievable accuracy ``1 - noise``, which tests use to tell an explainer that found the
    formula from one that over-fits the flipped rows.
    """
    check_int(None, "n_samples", n_samples, 10)
    check_int(None, "n_concepts", n_concepts, _DNF_CONCEPTS, why=f"the formula {DNF_FORMULA} uses c0..c3")
    if not is_number(noise) or not 0.0 <= noise < 0.5:
        refuse(None, "noise", noise, "a number in [0, 0.5) (a flip probability below chance)")
    rng = np.random.default_rng(seed)
    x = _coins(rng, n_samples, n_concepts)
    c = x > 0.5
    clean = (c[:, 0] & c[:, 1]) | (c[:, 2] & ~c[:, 3])
    flip = rng.random(n_samples) < noise
    y = (clean ^ flip).astype(np.int64)
    logger.debug(
        "make_dnf: %d rows, %d concepts, %d labels flipped (seed %s)", n_samples, n_concepts, flip.sum(), seed
    )
    return ConceptDataset(name=name, x=x, y=y, concept_names=_names(n_concepts), ground_truth=DNF_FORMULA)


def _coins(rng: np.random.Generator, n_samples: int, n_concepts: int) -> np.ndarray:
    return rng.integers(0, 2, size=(n_samples, n_concepts)).astype(np.float32)


def _names(n_concepts: int) -> list[str]:
    return [f"c{i}" for i in range(n_concepts)]
