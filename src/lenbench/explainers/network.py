"""The base of the network explainers: what every network method shares between its config and its formula.

A network explainer seeds, builds its network, trains it full-batch with Lightning and predicts labels; subclasses
say how to build the network, which loss and targets to use, how outputs become labels and scores, and how to read
a formula. The training settings every network method shares live in one
:class:`~lenbench.nn.trainer.TrainingConfig` (``self.training``), built here from the keyword arguments the
subclasses do not declare, with each method's own defaults (``training_defaults``). The training itself is
:func:`lenbench.nn.trainer.fit` on a :class:`~lenbench.nn.module.FullBatchModule`; what the callbacks did is what
they report (:func:`lenbench.callbacks.base.fit_report`), so this class never asks which callbacks it was given.
"""

from __future__ import annotations

import logging
from abc import abstractmethod
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from lenbench.callbacks.base import fit_report
from lenbench.callbacks.l1 import effective_weight, linear_layers
from lenbench.callbacks.progress import ProgressReporter
from lenbench.data.base import Fold
from lenbench.explainers.base import Explainer
from lenbench.nn.module import FullBatchModule
from lenbench.nn.trainer import TrainingConfig, fit, set_seed

logger = logging.getLogger(__name__)


class NetworkExplainer(Explainer):
    """Base of the network explainers: seeds, builds the network, trains it with Lightning, predicts labels.

    Subclasses say how to build the network (:meth:`build_network`), which loss to use and how targets are made
    (:meth:`criterion`, :meth:`targets`), and how to turn outputs into labels and scores
    (:meth:`labels_from_output`, :meth:`scores_from_output`). ``training`` takes the keyword arguments of
    :class:`~lenbench.nn.trainer.TrainingConfig` (``seed``, ``trainer``, ``epochs``, ``lr``, ``optimizer``,
    ``weight_decay``, ``callbacks``); those a subclass has defaults for may be left out (``training_defaults``).
    """

    name = "network"
    training_defaults: ClassVar[Mapping[str, Any]] = {}

    def __init__(self, **training: Any) -> None:
        self.training = TrainingConfig(**{**self.training_defaults, **training}, owner=type(self).__name__)
        self._module: FullBatchModule | None = None
        self._info: dict[str, Any] = {}

    # -- what subclasses define ----------------------------------------------------------------------------------

    @abstractmethod
    def build_network(self, n_inputs: int) -> nn.Module: ...

    @abstractmethod
    def criterion(self) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]: ...

    @abstractmethod
    def targets(self, y: np.ndarray) -> torch.Tensor: ...

    @abstractmethod
    def labels_from_output(self, output: torch.Tensor) -> np.ndarray: ...

    @abstractmethod
    def scores_from_output(self, output: torch.Tensor) -> np.ndarray: ...

    def trained_info(self) -> dict[str, Any]:
        """Figures of the trained network worth recording; by default the inputs its first Linear layer uses."""
        first = linear_layers(self.network)[0]
        return {"features_used": int((effective_weight(first).detach() != 0).any(dim=0).sum())}

    # -- training ------------------------------------------------------------------------------------------------

    def fit(self, fold: Fold) -> NetworkExplainer:
        # Fold.x_trainval is in the notebook's row order (x[trainval_index]); full-batch sums depend on it.
        return self.train(fold.x_trainval, fold.y_trainval)

    def train(self, x: np.ndarray, y: np.ndarray) -> NetworkExplainer:
        """Train a fresh network (seeded) full-batch on ``x`` [n, k], ``y`` [n] for ``epochs`` epochs."""
        x = np.asarray(x, dtype=np.float32)
        y = np.asarray(y)
        if x.ndim != 2 or y.shape != (x.shape[0],):
            raise ValueError(f"x {x.shape} and y {y.shape} do not describe the same rows")
        config = self.training
        self._info = {}
        set_seed(config.seed)
        module = FullBatchModule(
            self.build_network(x.shape[1]),
            self.criterion(),
            optimizer=config.optimizer,
            lr=config.lr,
            weight_decay=config.weight_decay,
            log_every_n_epochs=config.trainer["log_every_n_epochs"],
            name=self.name,
        )
        module.set_data(torch.from_numpy(np.ascontiguousarray(x)), self.targets(y), config.epochs)
        observers = [] if self.progress is None else [ProgressReporter(self.progress)]
        done = fit(module, config, observers)
        module.release_data()
        module.eval()
        self._module = module
        self._info = {
            "training_time": done.seconds,
            "final_loss": module.final_loss,
            "loss_curve": list(module.loss_curve),
            "epochs": config.epochs,
            "seed": config.seed,
            "torch_threads": torch.get_num_threads(),
            "world_size": done.world_size,
            **fit_report(done.callbacks, module.net),
            **self.trained_info(),
        }
        logger.debug(
            "%s: trained %d epochs in %.1f s, final loss %.4f",
            self.name,
            config.epochs,
            done.seconds,
            module.final_loss if module.final_loss is not None else float("nan"),
        )
        return self

    # -- using the trained network -------------------------------------------------------------------------------

    @property
    def module(self) -> FullBatchModule:
        if self._module is None:
            raise RuntimeError(f"{type(self).__name__}.fit must be called before predict or explain")
        return self._module

    @property
    def network(self) -> nn.Module:
        return self.module.net

    @torch.no_grad()
    def output(self, x: np.ndarray) -> torch.Tensor:
        """The network's output for the rows of ``x`` (on the CPU)."""
        module = self.module
        tensor = torch.as_tensor(np.asarray(x, dtype=np.float32)).to(module.device)
        return module.net(tensor).cpu()

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.labels_from_output(self.output(x)).astype(np.int64)

    def scores(self, x: np.ndarray) -> np.ndarray:
        """The network's probability of class 1 per row (for the model's AUROC)."""
        return self.scores_from_output(self.output(x)).astype(np.float64)

    def layer_arrays(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """(weight, bias) of every Linear layer as float64 numpy arrays, pruned entries 0, for the extractors."""
        arrays = []
        for layer in linear_layers(self.network):
            weight = effective_weight(layer).detach().cpu().double().numpy()
            bias = (
                layer.bias.detach().cpu().double().numpy()
                if layer.bias is not None
                else np.zeros(weight.shape[0])
            )
            arrays.append((weight, bias))
        return arrays

    def info(self) -> dict[str, Any]:
        return dict(self._info)

    def output_head(self) -> dict[str, Any]:
        """How outputs become labels and scores, as data (:func:`lenbench.models.predict._network_outputs`)."""
        return {"kind": "argmax", "probabilities": False}

    def local_reading(self) -> dict[str, Any] | None:
        """How a row's local explanation is read from the network, as data; None when the method has none."""
        return None

    def model_parts(self) -> dict[str, Any]:
        from lenbench.models.network import network_spec

        predictor = {"kind": "network", "layers": network_spec(self.network), "head": self.output_head()}
        return {"predictor": predictor, "local": self.local_reading()}
