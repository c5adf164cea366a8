"""Data set ``majority``: y = at least two of c0, c1, c2, among distractor concepts (one loader, one YAML).

A loader is any function returning a :class:`lenbench.data.base.ConceptDataset`; ``conf/data/majority.yaml``
names it with ``_target_`` and gives its arguments. ``ground_truth`` lets lenbench score truth recovery.
"""

from __future__ import annotations

import numpy as np

from lenbench.data.base import ConceptDataset
from lenbench.validation import check_int, check_unit

MAJORITY_FORMULA = "(c0 & c1) | (c0 & c2) | (c1 & c2)"


def make_majority(
    n_samples: int = 1000, n_concepts: int = 10, noise: float = 0.05, seed: int = 0, name: str = "majority"
) -> ConceptDataset:
    """Concepts c0..c{k-1} iid fair coins; y = majority(c0, c1, c2), each label flipped with probability noise."""
    check_int(None, "n_concepts", n_concepts, 3, why=f"the formula {MAJORITY_FORMULA} reads c0..c2")
    check_unit(None, "noise", noise, low_open=False)
    rng = np.random.default_rng(seed)
    x = (rng.random((n_samples, n_concepts)) < 0.5).astype(np.float32)
    clean = x[:, :3].sum(axis=1) >= 2
    y = (clean ^ (rng.random(n_samples) < noise)).astype(np.int64)
    names = [f"c{j}" for j in range(n_concepts)]
    return ConceptDataset(name=name, x=x, y=y, concept_names=names, ground_truth=MAJORITY_FORMULA)
