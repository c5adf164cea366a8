"""Concept bottleneck model (Koh et al., ICML 2020): raw inputs -> concepts -> task, the concepts supervised.

The concept encoder is :func:`lenbench.nn.encoder.mlp` (inputs standardised with the training rows' statistics, ReLU
hidden layers ``hidden``, one logit per concept); the task head reads the concepts' probabilities (sigmoid of the
logits), ``head: linear`` (one Linear layer) or ``mlp`` (ReLU layers ``head_hidden``, then Linear). ``training``:

- ``independent``: the encoder learns the concepts (BCE), the head learns the task from the *true* concepts;
- ``sequential``: the encoder as above, then the head learns the task from the encoder's predicted probabilities;
- ``joint``: one network, one loss: task cross-entropy + ``concept_loss_weight`` x concept BCE.

Every stage trains full-batch for ``epochs`` epochs with the method's seed (deterministic on the CPU); at test time
the head reads the predicted probabilities in every mode, as in the paper.

Its global explanation is the head's truth table over the concepts: the distinct boolean assignments the validation
rows' predicted concepts show, each given to the head as 0/1 values, the OR of those it decides for the target class,
minimised (:mod:`lenbench.logic.extract.truth_table`, :func:`lenbench.logic.simplify.simplify`). Why: the head *is*
a function of the concepts, so reading it on the assignments the data shows gives a formula that equals the head on
each of them, whatever the head (linear or not), without choosing a weight threshold; assignments never seen are
left false. Its fidelity on the test rows measures what the formula misses: assignments unseen in validation and
rows where the head's decision on probabilities differs from its decision on the thresholded concepts.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from lenbench.data.base import Fold
from lenbench.explainers.raw_inputs import ConceptModelExplainer, n_classes
from lenbench.logic.extract.truth_table import distinct_assignments, truth_table_formula
from lenbench.logic.formula import Formula
from lenbench.logic.simplify import simplify
from lenbench.nn.encoder import mlp, perceptron
from lenbench.validation import check_choice, check_positive, check_widths

TRAINING = ("independent", "sequential", "joint")
HEADS = ("linear", "mlp")


class Bottleneck(nn.Module):
    """inputs -> concept logits -> their probabilities -> head -> task logits. Its output is the concept logits
    followed by the task logits ([n, k + classes]), so one loss can supervise both (joint training)."""

    def __init__(self, concepts: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.concepts = concepts
        self.head = head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.concepts(x)
        return torch.cat([logits, self.head(torch.sigmoid(logits))], dim=1)

    def intervened(self, x: torch.Tensor, values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Task logits when the concept probabilities where ``mask`` is True are replaced by ``values``."""
        return self.head(torch.where(mask, values, torch.sigmoid(self.concepts(x))))


class JointLoss(nn.Module):
    """Task loss + ``weight`` x concept loss, on an output [n, k + task outputs] (the concepts first, as a
    :class:`Bottleneck`'s) and targets [n, k + 1] (the true concepts, then the label). By default the task loss is
    cross-entropy on logits and the concept loss BCE on logits; concept models whose outputs are probabilities
    (:mod:`lenbench.explainers.cem`) give their own."""

    def __init__(
        self,
        n_concepts: int,
        weight: float,
        concept_loss: Callable[
            [torch.Tensor, torch.Tensor], torch.Tensor
        ] = F.binary_cross_entropy_with_logits,
        task_loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = F.cross_entropy,
    ) -> None:
        super().__init__()
        self.n_concepts, self.weight = n_concepts, weight
        self.concept_loss, self.task_loss = concept_loss, task_loss

    def forward(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        k = self.n_concepts
        task = self.task_loss(output[:, k:], target[:, k].long())
        return task + self.weight * self.concept_loss(output[:, :k], target[:, :k])


def truth_table_reading(
    assignments: np.ndarray, decisions: np.ndarray, names: Sequence[str], budget: tuple[int, int]
) -> tuple[Formula, dict[str, Any]]:
    """(the OR of the ``assignments`` decided for the target class, minimised within ``budget`` (variables,
    terms); what the fold's record says about it): the read-out of every concept model explained by its truth
    table on the validation rows' predicted concepts (cbm, cem)."""
    result = simplify(truth_table_formula(assignments, decisions, names), *budget)
    record = {
        "head_assignments": int(assignments.shape[0]),
        "simplify_exact": result.exact,
        "simplify_method": result.method,
    }
    return result.formula, record


class ConceptBottleneckExplainer(ConceptModelExplainer):
    """A concept bottleneck model on raw inputs, explained by its head's truth table (module docstring)."""

    name = "cbm"

    def __init__(
        self,
        *,
        training: str = "joint",
        head: str = "mlp",
        hidden: Sequence[int] = (32,),
        head_hidden: Sequence[int] = (16,),
        concept_loss_weight: float = 1.0,
        **settings: Any,
    ) -> None:
        owner = type(self).__name__
        self.training = check_choice(owner, "training", training, TRAINING)
        self.head = check_choice(owner, "head", head, HEADS)
        self.hidden = check_widths(owner, "hidden", hidden)
        self.head_hidden = check_widths(owner, "head_hidden", head_hidden)
        self.concept_loss_weight = check_positive(
            owner, "concept_loss_weight", concept_loss_weight, allow_zero=True
        )
        super().__init__(**settings)

    # -- training ------------------------------------------------------------------------------------------------

    def _head(self, n_concepts: int, classes: int) -> nn.Module:
        widths = self.head_hidden if self.head == "mlp" else []
        self.seeded()
        return nn.Sequential(*perceptron(n_concepts, classes, widths)).to(self.dtype)

    def trained_network(self, fold: Fold) -> nn.Module:
        inputs, concepts, y = fold.inputs_trainval, fold.x_trainval, fold.y_trainval
        k, classes = concepts.shape[1], n_classes(y)
        if self.training == "joint":
            self.seeded()
            net = Bottleneck(mlp(inputs, k, self.hidden, self.dtype), self._head(k, classes))
            targets = self.tensor(np.column_stack([concepts > 0.5, y]))
            return self.train_stage("joint", net, JointLoss(k, self.concept_loss_weight), inputs, targets)
        self.seeded()
        encoder = mlp(inputs, k, self.hidden, self.dtype)
        truth = self.tensor(concepts > 0.5)
        encoder = self.train_stage("concepts", encoder, nn.BCEWithLogitsLoss(), inputs, truth)
        with torch.no_grad():
            predicted = torch.sigmoid(encoder(self.tensor(inputs))).numpy()
        head_rows = concepts > 0.5 if self.training == "independent" else predicted
        head = self.train_stage("head", self._head(k, classes), nn.CrossEntropyLoss(), head_rows, y)
        return Bottleneck(encoder, head)

    # -- using it ------------------------------------------------------------------------------------------------

    def task_logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.network(x)[:, self._n_concepts :]

    @property
    def _n_concepts(self) -> int:
        return int(self.network.head[0].in_features)

    @torch.no_grad()
    def concept_probabilities(self, x: np.ndarray) -> np.ndarray:
        return torch.sigmoid(self.network.concepts(self.tensor(x))).numpy().astype(np.float64)

    @torch.no_grad()
    def explain(self, fold: Fold, target_class: int = 1) -> Formula:
        """The head's truth table on the validation rows' predicted concept assignments (module docstring)."""
        assignments = distinct_assignments(self.predict_concepts(fold.inputs_val))
        decisions = self.network.head(self.tensor(assignments)).argmax(dim=1).numpy() == target_class
        formula, record = truth_table_reading(assignments, decisions, fold.concept_names, self.budget)
        self._info |= record
        return formula
