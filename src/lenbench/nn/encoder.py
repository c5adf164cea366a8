"""The concept encoder of the concept-bottleneck pipeline (x -> c -> y): a small MLP that predicts concepts from raw
inputs, trained per fold with the same deterministic full-batch trainer as the explainers.

:class:`ConceptEncoder` is a :class:`~lenbench.nn.module.FullBatchModule` (so a LightningModule with the project's
one-step epochs and divergence check) whose network standardises its inputs with the mean and standard deviation of the
rows it is trained on, then maps them through ReLU hidden layers to one logit per concept; its output is the sigmoid
of those logits, its loss binary cross-entropy (``BCEWithLogitsLoss``: sigmoid and BCE in one stable step).
:func:`train_encoder` trains one on given rows only (the fold's training rows; the caller picks them) and
:func:`predict_concepts` thresholds its probabilities (:func:`concept_probabilities`) at 0.5 into boolean concepts.
:func:`train_full_batch` trains any other network on raw inputs the same way (the concept models and the black box).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from lenbench.nn.module import FullBatchModule
from lenbench.nn.trainer import TrainingConfig, fit, set_seed

logger = logging.getLogger(__name__)


class Standardise(nn.Module):
    """``(x - mean) / std`` with the statistics of the training rows, kept as buffers (saved with the weights)."""

    def __init__(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("mean", mean)
        self.register_buffer("std", std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


def perceptron(width: int, n_outputs: int, hidden: Sequence[int]) -> list[nn.Module]:
    """Linear+ReLU per hidden width, then a Linear to ``n_outputs`` (no hidden width: one Linear layer)."""
    layers: list[nn.Module] = []
    for size in hidden:
        layers += [nn.Linear(width, int(size)), nn.ReLU()]
        width = int(size)
    return [*layers, nn.Linear(width, n_outputs)]


def mlp(
    inputs: np.ndarray, n_concepts: int, hidden: Sequence[int], dtype: torch.dtype = torch.float32
) -> nn.Sequential:
    """Standardise (fitted on ``inputs``), then Linear+ReLU per hidden width, then one logit per concept; built in
    ``dtype`` (``trainer.precision``), statistics included."""
    x = torch.from_numpy(np.ascontiguousarray(inputs)).to(dtype)
    std = x.std(dim=0, unbiased=False)
    standardise = Standardise(x.mean(dim=0), torch.where(std > 0, std, torch.ones_like(std)))
    return nn.Sequential(standardise, *perceptron(x.shape[1], n_concepts, hidden)).to(dtype)


class ConceptEncoder(FullBatchModule):
    """Raw inputs -> concept probabilities (sigmoid outputs), trained with binary cross-entropy per concept."""

    def __init__(self, net: nn.Module, config: TrainingConfig) -> None:
        super().__init__(
            net,
            nn.BCEWithLogitsLoss(),
            optimizer=config.optimizer,
            lr=config.lr,
            weight_decay=config.weight_decay,
            log_every_n_epochs=config.trainer["log_every_n_epochs"],
            name="concept encoder",
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.net(x))


@dataclass(frozen=True)
class TrainedEncoder:
    """A trained encoder (or any network of :func:`train_full_batch`) and what its fit leaves for the record."""

    module: FullBatchModule
    seconds: float
    final_loss: float | None


def train_encoder(
    inputs: np.ndarray, concepts: np.ndarray, hidden: Sequence[int], config: TrainingConfig
) -> TrainedEncoder:
    """A fresh encoder (seeded with ``config.seed``) trained full-batch on these rows only: inputs [n, d] -> the
    boolean concepts [n, k] (> 0.5 is true), for ``config.epochs`` epochs on the CPU trainer ``config.trainer``."""
    inputs = np.asarray(inputs, dtype=np.float32)
    targets = (np.asarray(concepts) > 0.5).astype(np.float32)  # 0/1: exact in any dtype; set_data casts them
    if inputs.ndim != 2 or targets.ndim != 2 or inputs.shape[0] != targets.shape[0]:
        raise ValueError(f"inputs {inputs.shape} and concepts {targets.shape} do not describe the same rows")
    set_seed(config.seed)
    module = ConceptEncoder(mlp(inputs, targets.shape[1], hidden, config.dtype), config)
    return _trained(module, torch.from_numpy(np.ascontiguousarray(inputs)), torch.from_numpy(targets), config)


def train_full_batch(
    net: nn.Module, criterion: nn.Module, x: torch.Tensor, targets: torch.Tensor, config: TrainingConfig
) -> TrainedEncoder:
    """``net`` (built and seeded by the caller, in ``config.dtype``) trained full-batch on these rows only with
    ``criterion`` for ``config.epochs`` epochs, by the trainer every network of lenbench trains with."""
    module = FullBatchModule(
        net,
        criterion,
        optimizer=config.optimizer,
        lr=config.lr,
        weight_decay=config.weight_decay,
        log_every_n_epochs=config.trainer["log_every_n_epochs"],
        name=config.owner,
    )
    return _trained(module, x, targets, config)


def _trained(
    module: FullBatchModule, x: torch.Tensor, targets: torch.Tensor, config: TrainingConfig
) -> TrainedEncoder:
    module.set_data(x, targets, config.epochs)
    done = fit(module, config)
    module.release_data()
    module.eval()
    logger.debug(
        "%s: %d rows, %d epochs in %.2f s, final loss %s",
        config.owner,
        x.shape[0],
        config.epochs,
        done.seconds,
        module.final_loss,
    )
    return TrainedEncoder(module=module, seconds=done.seconds, final_loss=module.final_loss)


@torch.no_grad()
def concept_probabilities(module: FullBatchModule, inputs: np.ndarray) -> np.ndarray:
    """The encoder's probability of each concept for ``inputs`` (float64 [n, k]; exactly its own dtype's values)."""
    x = torch.from_numpy(np.ascontiguousarray(inputs, dtype=np.float32)).to(
        module.device, module.dtype_of_networks()
    )
    return module(x).cpu().to(torch.float64).numpy()


def predict_concepts(module: FullBatchModule, inputs: np.ndarray) -> np.ndarray:
    """The encoder's concepts for ``inputs``: its probabilities thresholded at 0.5, as float32 0/1 [n, k]."""
    return (concept_probabilities(module, inputs) > 0.5).astype(np.float32)
