"""Small synthetic concept data sets with a known formula, for tests and offline demos (no download needed).

Each one is a deterministic function of its seed (numpy Generator), and its ``ground_truth`` is the formula the
labels were made from, so an explainer's output can be checked against the truth.

``trig`` and ``dot`` also bring raw inputs x from which the concepts can be learnt (the concept-bottleneck setting,
``data.concepts_from=encoder``). Their inputs and concepts are those of the synthetic tasks of Concept Embedding
Models (Espinosa Zarlenga et al., NeurIPS 2022, after Mahinpei et al., 2021); their labels differ: CEM's labels
are functions of the latent variables that the concepts do not determine (its point is incomplete concepts), while
lenbench's are a formula of the concepts, so that what an explainer extracts can be scored against it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import numpy as np

from lenbench.data.base import ConceptDataset
from lenbench.data.encoded import concepts_from as with_concepts_from
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


TRIG_FORMULA = "(h1_pos & h2_pos) | (h1_pos & h3_pos) | (h2_pos & h3_pos)"
DOT_FORMULA = "(v1_up & ~v3_down) | (v3_down & ~v1_up)"
TRIG_CONCEPTS = ["h1_pos", "h2_pos", "h3_pos"]
DOT_CONCEPTS = ["v1_up", "v3_down", "v1_right", "v3_right"]


def make_trig(
    n_samples: int = 1000,
    seed: int = 0,
    name: str = "trig",
    concepts_from: str = "truth",
    encoder: Mapping[str, Any] | None = None,
) -> ConceptDataset:
    """Latent h ~ N(0, 2^2) [n, 3]; raw inputs (7): sin(h_i) + h_i, cos(h_i) + h_i for each i, and |h|^2 (CEM's
    trig task); concepts ``h<i>_pos`` = h_i > 0; label = the majority of the three concepts (CEM's label is
    h1 + h2 + h3 > 1, which the concepts do not determine). Since sin(h) + h has the sign of h, each concept can be
    read from the inputs without error."""
    check_int(None, "n_samples", n_samples, 10)
    h = np.random.default_rng(seed).normal(0.0, 2.0, size=(n_samples, 3))
    inputs = np.column_stack(
        [f(h[:, i]) + h[:, i] for i in range(3) for f in (np.sin, np.cos)] + [np.sum(h**2, axis=1)]
    ).astype(np.float32)
    x = (h > 0).astype(np.float32)
    y = (x.sum(axis=1) >= 2).astype(np.int64)
    dataset = ConceptDataset(
        name=name, x=x, y=y, concept_names=list(TRIG_CONCEPTS), ground_truth=TRIG_FORMULA, inputs=inputs
    )
    return with_concepts_from(dataset, concepts_from, encoder)


def make_dot(
    n_samples: int = 1000,
    seed: int = 0,
    name: str = "dot",
    concepts_from: str = "truth",
    encoder: Mapping[str, Any] | None = None,
) -> ConceptDataset:
    """Vectors v1, v3 ~ N(0, 2^2 I) in R^2; raw inputs (4): v1 + v3 and v1 - v3 (CEM's dot task). Concepts: CEM's
    two, ``v1_up`` = v1 . (1, 1) > 0 and ``v3_down`` = v3 . (-1, -1) > 0, and two distractors the label ignores,
    ``v1_right`` = v1 . (1, -1) > 0 and ``v3_right`` = v3 . (1, -1) > 0. Label: v1 and v3 lie on the same side of
    the line x + y = 0, i.e. ``v1_up`` XOR ``v3_down`` (the concept-level version of CEM's label v1 . v3 > 0)."""
    check_int(None, "n_samples", n_samples, 10)
    rng = np.random.default_rng(seed)
    v1, v3 = rng.normal(0.0, 2.0, size=(n_samples, 2)), rng.normal(0.0, 2.0, size=(n_samples, 2))
    inputs = np.hstack([v1 + v3, v1 - v3]).astype(np.float32)
    up, right = np.array([1.0, 1.0]), np.array([1.0, -1.0])
    x = np.column_stack([v1 @ up > 0, v3 @ -up > 0, v1 @ right > 0, v3 @ right > 0]).astype(np.float32)
    y = (x[:, 0] != x[:, 1]).astype(np.int64)
    dataset = ConceptDataset(
        name=name, x=x, y=y, concept_names=list(DOT_CONCEPTS), ground_truth=DOT_FORMULA, inputs=inputs
    )
    return with_concepts_from(dataset, concepts_from, encoder)


def _coins(rng: np.random.Generator, n_samples: int, n_concepts: int) -> np.ndarray:
    return rng.integers(0, 2, size=(n_samples, n_concepts)).astype(np.float32)


def _names(n_concepts: int) -> list[str]:
    return [f"c{i}" for i in range(n_concepts)]
