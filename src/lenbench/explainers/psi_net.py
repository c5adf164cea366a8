"""Psi-network explainer (method ``psi``): a small sigmoid MLP pruned to fan-in 2 and read as a boolean formula.

The network (k-10-4-1, sigmoid everywhere) is trained with BCE on ``y == target_class``, an L1 penalty on every
weight and, once, equal fan-in pruning (callbacks in ``conf/method/psi.yaml``). Its formula is read from the
weights alone by :func:`lenbench.logic.extract.psi.read_out` (truth table of every neuron, substituted layer by
layer, minimal DNF). The network explains one class, the one it was trained for; ``explain`` for another class
raises. On MIMIC-II the reference notebook's psi network predicts no positive: its model accuracy is
the majority rate.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from itertools import pairwise
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from lenbench.callbacks.pruning import FanInPruning
from lenbench.data.base import Fold
from lenbench.errors import ConfigError
from lenbench.explainers.network import NetworkExplainer
from lenbench.logic.extract.psi import MAX_FAN_IN, read_out
from lenbench.logic.formula import Formula
from lenbench.nn.heads import ThresholdHead
from lenbench.validation import check_positive, check_widths, refuse

logger = logging.getLogger(__name__)


class PsiNetExplainer(NetworkExplainer):
    """Sigmoid MLP ``k-hidden...-1`` for ``target_class`` (0 or 1), explained by reading its pruned weights.

    ``predict`` returns ``target_class`` where the output is > 0.5 and the other class elsewhere.
    """

    name = "psi"
    stackable = True  # trainer.batching=fast: Linear layers and elementwise activations, row_loss below
    training_defaults: ClassVar[dict[str, Any]] = {
        "epochs": 5001,
        "lr": 1e-3,
        "optimizer": "adam",
        "weight_decay": 0.0,
    }

    def __init__(
        self,
        *,
        target_class: int = 1,
        hidden: Sequence[int] = (10, 4),
        max_fan_in: int = MAX_FAN_IN,
        **settings: Any,
    ) -> None:
        owner = type(self).__name__
        if target_class not in (0, 1) or isinstance(target_class, bool):
            refuse(owner, "target_class", target_class, "0 or 1 (binary tasks)")
        check_positive(owner, "max_fan_in", max_fan_in, integer=True)
        super().__init__(**settings)
        self.target_class = target_class
        self.hidden = check_widths(owner, "hidden", hidden)
        self.max_fan_in = max_fan_in
        if not any(isinstance(cb, FanInPruning) for cb in self.training.callbacks):
            logger.warning(
                "PsiNetExplainer without a FanInPruning callback: the read-out enumerates every neuron's inputs "
                "and refuses neurons with more than %d",
                max_fan_in,
            )

    def check_inputs(self, n_inputs: int) -> None:
        """The read-out refuses neurons with more than ``max_fan_in`` inputs: with more concepts (or a wider
        layer) than that, the fan-in pruning must happen within the configured epochs, else every fold trains and
        then fails."""
        callbacks = self.training.callbacks
        pruned = [i for i, cb in enumerate(callbacks) if isinstance(cb, FanInPruning)]
        epochs = self.training.epochs
        if max(n_inputs, *self.hidden) <= self.max_fan_in or any(
            callbacks[i].epoch + 1 < epochs for i in pruned
        ):
            return
        fix = (
            f"method.explainer.epochs={callbacks[pruned[0]].epoch + 2} or more, or an earlier pruning, e.g. "
            f"method.explainer.callbacks.{pruned[0]}.epoch={epochs // 2}"
            if pruned
            else "add the FanInPruning callback of conf/method/psi.yaml"
        )
        raise ConfigError(
            f"method.explainer.epochs={epochs}: psi's fan-in pruning never happens in {epochs} epochs, and its "
            f"read-out refuses neurons with more than max_fan_in={self.max_fan_in} inputs ({n_inputs} concepts, "
            f"hidden {list(self.hidden)}); fix: {fix}"
        )

    def build_network(self, n_inputs: int) -> nn.Module:
        layers: list[nn.Module] = []
        for width_in, width_out in pairwise([n_inputs, *self.hidden, 1]):
            layers += [nn.Linear(width_in, width_out), nn.Sigmoid()]
        return nn.Sequential(*layers)

    def criterion(self) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
        bce = nn.BCELoss()

        def loss(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
            return bce(output.squeeze(1), target)

        return loss

    def row_loss(self) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
        """:meth:`criterion` per row of stacked networks: output ``[N, R, 1]``, target ``[N, R]`` -> BCE ``[N, R]``."""

        def loss(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
            return F.binary_cross_entropy(output.squeeze(-1), target, reduction="none")

        return loss

    def targets(self, y: np.ndarray) -> torch.Tensor:
        return torch.from_numpy((np.asarray(y) == self.target_class).astype(np.float32))

    def head(self) -> ThresholdHead:
        return ThresholdHead(self.target_class)

    def explain(self, fold: Fold, target_class: int = 1) -> Formula:
        if target_class != self.target_class:
            raise ValueError(
                f"PsiNetExplainer was trained for target_class={self.target_class} and cannot explain class "
                f"{target_class}; set method.explainer.target_class={target_class} to train one for it"
            )
        stopped = self._info.get("epochs_trained")
        if stopped is not None and self._info.get("fan_in_pruned_at", 0) is None:
            raise ValueError(
                f"psi: training stopped early after {stopped} epochs, before its fan-in pruning, and the read-out "
                "needs a pruned network; let EarlyStopping wait longer (trainer.callbacks.0.patience) or train psi "
                "without it"
            )
        start = time.perf_counter()
        readout = read_out(
            self.layer_arrays(),
            fold.concept_names,
            max_fan_in=self.max_fan_in,
            max_variables=self.max_simplify_variables,
            max_terms=self.max_simplify_terms,
        )
        self._info.update(
            extraction_time=time.perf_counter() - start,
            empty_explanation=False,
            simplify_exact=readout.exact,
            simplify_method=readout.results[0].method,
            neuron_formulas=[[str(f) for f in layer] for layer in readout.neurons],
        )
        return readout.formula
