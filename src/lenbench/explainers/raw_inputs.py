"""The base of the methods whose torch network reads raw inputs: the concept models (cbm, cem, dcr), the black box.

Such a method keeps the explainer contract with ``reads_inputs = True`` (:mod:`lenbench.explainers.base`): it fits
on a fold's raw inputs ``inputs_trainval`` with the true concepts and labels, and predicts, scores and explains from
raw input rows. This class holds what they share: the training settings (``seed``, ``trainer``, ``epochs``, ``lr``,
``optimizer``, ``weight_decay``, ``callbacks``: one :class:`~lenbench.nn.trainer.TrainingConfig`, ``fit_config``),
each stage trained by :func:`lenbench.nn.encoder.train_full_batch` (the deterministic full-batch trainer of every
lenbench network), its record (``training_time`` summed over the stages, each stage's final loss), and labels and
class-1 scores read from the network's task logits (:class:`~lenbench.nn.heads.ArgmaxHead`).
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from lenbench.data.base import Fold
from lenbench.explainers.base import Explainer
from lenbench.logic.simplify import check_budget
from lenbench.nn.encoder import train_full_batch
from lenbench.nn.heads import ArgmaxHead
from lenbench.nn.trainer import TrainingConfig, set_seed
from lenbench.nn.weights import numpy_dtype


def n_classes(y: np.ndarray) -> int:
    """Output units of a classifier of labels ``y``: one per class, at least two."""
    return max(2, int(np.max(y)) + 1)


class RawInputsExplainer(Explainer):
    """A network on raw inputs trained in stages (:meth:`train_stage`); subclasses build and train it in ``fit``
    and say how its output becomes task logits (:meth:`task_logits`)."""

    name = "raw_inputs"
    reads_inputs = True
    training_defaults: ClassVar[Mapping[str, Any]] = {
        "epochs": 300,
        "lr": 0.01,
        "optimizer": "adam",
        "weight_decay": 0.0,
    }

    def __init__(self, **training: Any) -> None:
        owner = type(self).__name__
        self.fit_config = TrainingConfig(**{**self.training_defaults, **training}, owner=owner)
        if self.fit_config.trainer["validate"]:
            raise ValueError(
                f"{owner} trainer.validate=true: this method trains on the fold's train+validation rows; "
                "use trainer.validate=false"
            )
        self._net: nn.Module | None = None
        self._info: dict[str, Any] = {}

    def get_params(self) -> dict[str, Any]:
        """The method's declared settings and the training ones (``seed``, ``epochs``, ``trainer``, ...)."""
        return {**super().get_params(), **self.fit_config.settings()}

    @property
    def dtype(self) -> torch.dtype:
        return self.fit_config.dtype

    def tensor(self, rows: np.ndarray) -> torch.Tensor:
        """Rows as a C-ordered tensor in the training dtype (``trainer.precision``)."""
        return torch.from_numpy(np.ascontiguousarray(rows, dtype=numpy_dtype(self.dtype)))

    def train_stage(
        self, stage: str, net: nn.Module, criterion: nn.Module, x: np.ndarray, targets: Any
    ) -> nn.Module:
        """``net`` trained on rows ``x`` towards ``targets`` (a tensor, or labels as an int array); its time and
        final loss recorded under ``stage``. The caller seeds and builds ``net`` (in :attr:`dtype`)."""
        goal = (
            torch.from_numpy(np.asarray(targets, dtype=np.int64))
            if isinstance(targets, np.ndarray)
            else targets
        )
        trained = train_full_batch(net, criterion, self.tensor(x), goal, self.fit_config)
        self._info["training_time"] = self._info.get("training_time", 0.0) + trained.seconds
        self._info[f"{stage}_final_loss"] = trained.final_loss
        return trained.module.net

    def seeded(self) -> None:
        """Seed torch (and numpy) with the method's seed before a network is built."""
        set_seed(self.fit_config.seed)

    def fit(self, fold: Fold) -> RawInputsExplainer:
        if fold.inputs_trainval is None:
            raise ValueError(f"{self.name} reads raw inputs: give it the fold of a data set with raw inputs")
        self._info = {}
        self._net = self.trained_network(fold).eval()
        return self

    @abstractmethod
    def trained_network(self, fold: Fold) -> nn.Module:
        """The network trained on the fold's train+validation rows (raw inputs, true concepts, labels)."""

    @property
    def network(self) -> nn.Module:
        if self._net is None:
            raise RuntimeError(f"{type(self).__name__}.fit must be called before predict or explain")
        return self._net

    @abstractmethod
    def task_logits(self, x: torch.Tensor) -> torch.Tensor:
        """The task logits [n, classes] of raw input rows ``x`` (a tensor in :attr:`dtype`)."""

    @torch.no_grad()
    def task_output(self, x: np.ndarray) -> torch.Tensor:
        return self.task_logits(self.tensor(x))

    def predict(self, x: np.ndarray) -> np.ndarray:
        return ArgmaxHead().labels(self.task_output(x)).astype(np.int64)

    def scores(self, x: np.ndarray) -> np.ndarray:
        return ArgmaxHead().scores(self.task_output(x)).astype(np.float64)

    def info(self) -> dict[str, Any]:
        return dict(self._info)


class ConceptModelExplainer(RawInputsExplainer):
    """A network on raw inputs through concepts it predicts (cbm, cem, dcr): its ``network.intervened(x, values,
    mask)`` gives the task logits when the concepts where ``mask`` is True take ``values``, which makes every such
    method one that concept interventions ask again. Its formula over the concepts is simplified within the
    ``max_simplify_*`` budget, declared here once for all of them."""

    def __init__(
        self, *, max_simplify_variables: int = 10, max_simplify_terms: int = 64, **training: Any
    ) -> None:
        self.max_simplify_variables, self.max_simplify_terms = check_budget(
            type(self).__name__, max_simplify_variables, max_simplify_terms
        )
        super().__init__(**training)

    @property
    def budget(self) -> tuple[int, int]:
        """The simplification budget (variables, terms) of the formula."""
        return self.max_simplify_variables, self.max_simplify_terms

    @torch.no_grad()
    def predict_with_concepts(self, x: np.ndarray, concepts: np.ndarray, mask: np.ndarray) -> np.ndarray:
        values, chosen = (
            self.tensor(np.asarray(concepts) > 0.5),
            torch.from_numpy(np.asarray(mask, dtype=bool)),
        )
        return self.network.intervened(self.tensor(x), values, chosen).argmax(dim=1).numpy().astype(np.int64)
