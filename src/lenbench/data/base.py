"""The concept data set every loader returns, and one cross-validation fold of it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np


class Refitted(NamedTuple):
    """What a refit may return instead of a bare matrix: x of all rows and what was fitted (JSON-friendly plain
    values, e.g. ``{"bin_edges": {"age": [18.0, 52.5, 67.0, 91.0]}}``), which the fold then carries; a concept
    encoder also gives the probabilities it thresholded into x (float [n, k]: the uncertainty-first order of
    concept interventions reads them)."""

    x: np.ndarray
    preprocessing: dict[str, Any]
    probabilities: np.ndarray | None = None


def row_positions(train_index: np.ndarray, n_rows: int) -> np.ndarray:
    """A refit's ``train_index`` as an array, or ValueError unless it holds row positions of an ``n_rows`` table."""
    rows = np.asarray(train_index)
    if rows.ndim != 1 or rows.size == 0 or not np.issubdtype(rows.dtype, np.integer):
        raise ValueError(
            f"train_index must be a non-empty 1-D array of row positions, got {rows.dtype} {rows.shape}"
        )
    if rows.min() < 0 or rows.max() >= n_rows:
        raise ValueError(
            f"train_index must hold row positions in [0, {n_rows - 1}], got {rows.min()}..{rows.max()}"
        )
    return rows


# Re-fits the preprocessing on the given training rows and returns the concept matrix of *all* rows (or Refitted).
Refit = Callable[[np.ndarray], "np.ndarray | Refitted"]


@dataclass(frozen=True)
class ConceptDataset:
    """Boolean concepts x (float32 [n, k], a concept is true where x > 0.5), labels y (int64 [n]).

    ``refit`` is set by loaders whose preprocessing is learnt from data (MIMIC-II's imputer, scaler and binner):
    given the training row indices of a fold it returns x recomputed with preprocessing fitted on those rows only
    (``data.fit_scope=train``). ``None`` means x does not depend on which rows are used for fitting.

    ``preprocessing`` describes what was fitted to make ``x`` (bin edges, imputed values; plain values for JSON),
    ``None`` when there is nothing to tell; a fold built with ``refit`` carries its own instead. ``inputs`` may hold
    the raw inputs the concepts describe (the digits' 8x8 pixels), for pipelines that learn concepts from them.

    ``concepts_predicted``: ``x`` holds the true concepts, and ``refit`` returns the concepts a concept encoder,
    trained on the fold's rows, predicts from ``inputs`` (``data.concepts_from=encoder``, see
    :mod:`lenbench.data.encoded`): explainers see the predicted concepts, concept accuracy compares them with ``x``.
    """

    name: str
    x: np.ndarray
    y: np.ndarray
    concept_names: list[str]
    label: str = "y"
    ground_truth: str | None = None
    checksum: str | None = None
    refit: Refit | None = field(default=None, repr=False, compare=False)
    preprocessing: dict[str, Any] | None = field(default=None, repr=False, compare=False)
    inputs: np.ndarray | None = field(default=None, repr=False, compare=False)
    concepts_predicted: bool = False

    def __post_init__(self) -> None:
        if self.x.ndim != 2 or self.x.shape[0] != self.y.shape[0]:
            raise ValueError(f"x {self.x.shape} and y {self.y.shape} do not describe the same rows")
        if self.x.shape[1] != len(self.concept_names):
            raise ValueError(f"x has {self.x.shape[1]} columns but {len(self.concept_names)} concept names")

    @property
    def input_rows(self) -> np.ndarray | None:
        """The raw inputs as float32 rows [n, d] (an image flattened), None when the data set has none."""
        if self.inputs is None:
            return None
        return np.asarray(self.inputs, dtype=np.float32).reshape(len(self.y), -1)

    @property
    def n_concepts(self) -> int:
        return self.x.shape[1]

    @property
    def n_classes(self) -> int:
        return int(self.y.max()) + 1 if self.y.size else 0


@dataclass(frozen=True)
class Fold:
    """One outer fold: train+validation rows fit the model, validation rows build explanations, test rows score.

    Index arrays are positions in the full data set, so results can always be traced back to patients.
    ``x_trainval`` keeps the notebook's row order (``x[trainval_index]``), which full-batch training depends on in
    the last bits of the loss; it is not train followed by validation.

    ``preprocessing`` is what was fitted to build this fold's concepts, for the fold's record: the data set's refit's
    when it returns :class:`Refitted`, the data set's own when it has no refit, else empty.

    ``inputs_*`` are the raw input rows of each split (float32 [n, d], the rows of ``x_*`` in the same order), None
    when the data set has none. A method that reads raw inputs (``Explainer.reads_inputs``: a concept bottleneck, a
    black box) is given the fold of the true concepts (:func:`lenbench.data.encoded.raw_input_dataset`): its ``x_*``
    are then the true concepts it learns and is scored against.

    ``concept_probabilities_test``: when ``x_*`` are concepts a concept encoder predicted (its refit's
    :class:`Refitted` ``probabilities``), its probabilities for the test rows (float [n, k]), from which the
    uncertainty-first concept interventions pick the concepts least sure; None otherwise.
    """

    index: int
    concept_names: list[str]
    x_trainval: np.ndarray
    y_trainval: np.ndarray
    trainval_index: np.ndarray
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    train_index: np.ndarray
    val_index: np.ndarray
    test_index: np.ndarray
    preprocessing: dict[str, Any] = field(default_factory=dict)
    inputs_trainval: np.ndarray | None = field(default=None, repr=False)
    inputs_train: np.ndarray | None = field(default=None, repr=False)
    inputs_val: np.ndarray | None = field(default=None, repr=False)
    inputs_test: np.ndarray | None = field(default=None, repr=False)
    concept_probabilities_test: np.ndarray | None = field(default=None, repr=False)
