"""ReLU-network explainers (methods ``pruning`` and ``weights``): an MLP whose global explanation is built from
local explanations of the validation rows (:mod:`lenbench.logic.extract.relu` states the algorithm).

``pruning``: MLP k-100-10-2 with LeakyReLU, trained with an L1 penalty on the first layer and feature pruning; a
row's features are the inputs still connected to the first layer. ``weights``: the same MLP with ReLU, a stronger
L1 and no pruning; a row's features are those that weigh in its reduced (firing-path) model. The hyper-parameters
live in ``conf/method/{pruning,weights}.yaml``; the regulariser and the pruning schedule are callbacks listed there.

Reproduced quirks of the reference notebook:

- ``output: softmax`` (default) ends the network in a Softmax and trains it with CrossEntropyLoss, which applies
  log-softmax again ("double softmax", flat gradients); ``output: logits`` is the fixed version.
- ``simplify_local: false`` (default): local explanations are not simplified, as in the published numbers (the
  reference's simplification never removed a literal); ``true`` runs the working simplification.
- A row of the target class is only explained when the model also classifies its thresholded copy (``x > 0.5``)
  correctly: the reference's local simplification returned an empty explanation (and so skipped the row) otherwise.
  The local explanation describes the thresholded row, so this keeps only rows it is faithful to.
- Top-k ties go to the local explanation that occurs first among the validation rows (``Counter.most_common``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from lenbench.data.base import Fold
from lenbench.explainers.network import LocalRulesExplainer
from lenbench.logic.extract.relu import (
    FEATURE_SELECTIONS,
    PruningReading,
    WeightsReading,
    explain_class,
    select_by_pruning,
    select_by_weights,
)
from lenbench.logic.formula import Formula
from lenbench.nn.heads import ArgmaxHead
from lenbench.nn.layers import LEAKY_SLOPE
from lenbench.validation import check_choice, check_unit, check_widths

logger = logging.getLogger(__name__)

ACTIVATIONS = ("leaky_relu", "relu")
OUTPUTS = ("softmax", "logits")


class ReluNetExplainer(LocalRulesExplainer):
    """MLP ``k-hidden...-n_classes`` explained by combining local explanations (methods ``pruning``/``weights``).

    ``feature_selection``: ``"pruning"`` (inputs connected to the first layer) or ``"weights"`` (reduced-model
    column norms above ``weights_threshold`` times the largest). ``topk`` local explanations are OR-ed;
    ``max_simplify_variables``/``max_simplify_terms`` bound the final simplification (fall-backs are recorded).
    """

    stackable = True  # trainer.batching=fast: Linear layers and elementwise activations, row_loss below
    training_defaults: ClassVar[dict[str, Any]] = {
        "epochs": 5001,
        "lr": 1e-3,
        "optimizer": "adamw",
        "weight_decay": 0.01,
    }

    def __init__(
        self,
        *,
        feature_selection: str = "pruning",
        hidden: Sequence[int] = (100, 10),
        activation: str = "leaky_relu",
        output: str = "softmax",
        weights_threshold: float = 0.5,
        **settings: Any,
    ) -> None:
        owner = type(self).__name__
        check_choice(owner, "feature_selection", feature_selection, FEATURE_SELECTIONS)
        check_choice(owner, "activation", activation, ACTIVATIONS)
        check_choice(owner, "output", output, OUTPUTS)
        weights_threshold = check_unit(owner, "weights_threshold", weights_threshold, low_open=False)
        super().__init__(**settings)
        self.name = feature_selection
        self.feature_selection = feature_selection
        self.hidden = check_widths(owner, "hidden", hidden)
        self.activation = activation
        self.output = output
        self.weights_threshold = weights_threshold
        self._n_classes = 2

    def prepare(self, y: np.ndarray) -> None:
        self._n_classes = max(2, int(np.max(y)) + 1) if np.size(y) else 2

    def build_network(self, n_inputs: int) -> nn.Module:
        layers: list[nn.Module] = []
        width = n_inputs
        for h in self.hidden:
            layers.append(nn.Linear(width, h))
            layers.append(nn.ReLU() if self.activation == "relu" else nn.LeakyReLU(LEAKY_SLOPE))
            width = h
        layers.append(nn.Linear(width, self._n_classes))
        if self.output == "softmax":
            layers.append(nn.Softmax(dim=1))
        return nn.Sequential(*layers)

    def criterion(self) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
        return nn.CrossEntropyLoss()

    def row_loss(self) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
        """:meth:`criterion` per row of stacked networks: output ``[N, R, C]``, target ``[N, R]`` -> ``[N, R]``.

        Cross-entropy of whatever the network outputs, as :meth:`criterion`: with ``output: softmax`` that is the
        reference's cross-entropy of softmax outputs.
        """

        def loss(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
            n, rows, classes = output.shape
            flat = F.cross_entropy(output.reshape(-1, classes), target.reshape(-1), reduction="none")
            return flat.reshape(n, rows)

        return loss

    def targets(self, y: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(y, dtype=np.int64))

    def head(self) -> ArgmaxHead:
        # ``softmax`` networks output probabilities already; ``logits`` ones need the softmax.
        return ArgmaxHead(probabilities=self.output == "softmax")

    def local_reading(self) -> PruningReading | WeightsReading:
        layers = self.layer_arrays()
        if self.feature_selection == "pruning":
            return PruningReading(layers[0][0])
        return WeightsReading(layers, self.weights_threshold, self.negative_slope)

    @property
    def negative_slope(self) -> float:
        return 0.0 if self.activation == "relu" else LEAKY_SLOPE

    def explain(self, fold: Fold, target_class: int = 1) -> Formula:
        start = time.perf_counter()
        x_val, y_val = np.asarray(fold.x_val), np.asarray(fold.y_val)
        pred = self.predict(x_val)
        pred_thresholded = self.predict((x_val > 0.5).astype(np.float32))
        target = (y_val == target_class) & (pred == target_class) & (pred_thresholded == target_class)
        opposite = (y_val != target_class) & (pred == y_val)
        x_target = x_val[target]
        layers = self.layer_arrays()
        if self.feature_selection == "pruning":
            selected = select_by_pruning(layers[0][0], x_target.shape[0])
        else:
            selected = select_by_weights(layers, x_target, self.weights_threshold, self.negative_slope)
        result = explain_class(
            x_target,
            selected,
            fold.concept_names,
            topk=self.topk,
            x_opposite=x_val[opposite],
            simplify_local=self.simplify_local,
            max_variables=self.max_simplify_variables,
            max_terms=self.max_simplify_terms,
        )
        elapsed = time.perf_counter() - start
        if result.empty:
            logger.warning(
                "%s: no local explanation for class %d (%d correctly classified validation rows of it): "
                "the explanation is False",
                self.name,
                target_class,
                int(target.sum()),
            )
        elif not result.simplify_exact:
            logger.warning("%s: formula too large to simplify exactly; kept the absorbed DNF", self.name)
        self._info.update(
            extraction_time=elapsed,
            empty_explanation=result.empty,
            explained_rows=int(target.sum()),
            opposite_rows=int(opposite.sum()),
            local_explanations=result.n_explained,
            distinct_local_explanations=result.n_distinct,
            top_local_explanations=[[str(f), n] for f, n in result.candidates],
            local_literals_removed=result.literals_removed,
            simplify_exact=result.simplify_exact,
            simplify_method=None if result.simplify is None else result.simplify.method,
        )
        return result.formula
