"""The one interface every explainer keeps, network or not, so the cross-validation loop never branches."""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from lenbench.data.base import Fold
from lenbench.logic.formula import Formula

if TYPE_CHECKING:
    from lenbench.callbacks.progress import ProgressSink


class Explainer(ABC):
    """fit on a fold's train+validation rows, predict labels, explain a class as a formula over concept names.

    ``info()`` returns extra per-fold figures worth tracking (training time, simplification fall-backs, ...).
    """

    name: str = "explainer"
    # False for accuracy-only references (e.g. a random forest): their explanation metrics are recorded as NaN.
    provides_explanations: bool = True
    # Where training progress goes while ``fit`` runs (set by the fold loop with :meth:`observe`); methods that do
    # not train in epochs ignore it.
    progress: ProgressSink | None = None

    def observe(self, progress: ProgressSink | None) -> Explainer:
        """Send training progress to ``progress`` during the next fits (None: nowhere)."""
        self.progress = progress
        return self

    @abstractmethod
    def fit(self, fold: Fold) -> Explainer: ...

    @property
    def trains_together(self) -> bool:
        """Whether several folds' explainers of this configuration fit together (:meth:`fit_many` batches them)."""
        return False

    @classmethod
    def fit_many(cls, explainers: Sequence[Explainer], folds: Sequence[Fold]) -> list[float]:
        """Fit explainer ``i`` on fold ``i``; returns each one's training seconds. One after another here; network
        explainers train together in one module."""
        seconds = []
        for explainer, fold in zip(explainers, folds, strict=True):
            start = time.perf_counter()
            explainer.fit(fold)
            seconds.append(time.perf_counter() - start)
        return seconds

    @abstractmethod
    def predict(self, x: np.ndarray) -> np.ndarray: ...

    @abstractmethod
    def explain(self, fold: Fold, target_class: int = 1) -> Formula: ...

    def scores(self, x: np.ndarray) -> np.ndarray | None:
        """Score (probability) of class 1 per row, for the model's AUROC; None when the method has none (NaN).

        Not abstract so that methods without scores keep working; ``predict`` stays the source of labels.
        """
        return None

    def info(self) -> dict[str, Any]:
        return {}

    def model_parts(self) -> dict[str, Any] | None:
        """The fitted model as plain data for :mod:`lenbench.models`: ``{"predictor": ..., "local": ...}`` (see
        :class:`~lenbench.models.export.ModelExport`); None when the method cannot be saved as a model."""
        return None
