"""Black box: an MLP from raw inputs straight to the task, the accuracy ceiling of the concept models.

It never sees the concepts: inputs standardised with the training rows' statistics, ReLU hidden layers ``hidden``,
one logit per class, cross-entropy, trained full-batch like every lenbench network. It has no formula
(``provides_explanations = False``: its explanation metrics are NaN, as the random forest's) and no concepts (its
concept accuracy is NaN).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from lenbench.data.base import Fold
from lenbench.explainers.raw_inputs import RawInputsExplainer, n_classes
from lenbench.logic.formula import Formula
from lenbench.nn.encoder import mlp
from lenbench.validation import check_widths


class BlackBoxExplainer(RawInputsExplainer):
    """An MLP on raw inputs: task accuracy without a bottleneck, no explanation."""

    name = "blackbox"
    provides_explanations = False

    def __init__(self, *, hidden: Sequence[int] = (32, 32), **settings: Any) -> None:
        self.hidden = check_widths(type(self).__name__, "hidden", hidden)
        super().__init__(**settings)

    def trained_network(self, fold: Fold) -> nn.Module:
        self.seeded()
        net = mlp(fold.inputs_trainval, n_classes(fold.y_trainval), self.hidden, self.dtype)
        return self.train_stage("task", net, nn.CrossEntropyLoss(), fold.inputs_trainval, fold.y_trainval)

    def task_logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.network(x)

    def explain(self, fold: Fold, target_class: int = 1) -> Formula:
        return Formula.false()
