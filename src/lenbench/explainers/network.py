"""Shared machinery of the network explainers: a full-batch LightningModule and the Trainer built from ``cfg.trainer``.

Why one Lightning training step runs several epochs
---------------------------------------------------
The protocol trains full-batch for 5001 epochs of about 2 ms of work each (MIMIC-II, one thread). Lightning's own
loop costs about 0.5 ms per epoch (``max_epochs=5001``) and still 0.25-0.6 ms per step when each epoch is one
training step of one long epoch (hooks, progress tracking, batch transfer), i.e. 15-35 % on top of a plain PyTorch
loop. So the module uses manual optimisation, and each Lightning batch is a *chunk* of consecutive epochs
``(start, stop)`` (``trainer.epochs_per_batch``, default 100) that ``training_step`` runs one after another with the
in-memory full batch. Lightning still owns the run (device placement, precision context, callbacks, hooks); its
per-batch cost is paid once per chunk. ``benchmarks/bench_lightning_overhead.py`` measures the result against a
plain loop doing the same steps; on MIMIC-II fold 0 (``pruning``, 5001 epochs, one thread, medians of 3) it gave
10.71 s against 10.34 s (ratio 1.04) with chunks of 100 epochs, and 11.86 s against 9.92 s (1.20) with one epoch
per Lightning step (``epochs_per_batch: 1``).

Callbacks stay correct because they are keyed on the true epoch:

- ``self.manual_backward(loss)`` runs Lightning's ``on_after_backward`` callback hooks after every epoch's backward,
  which is where :class:`~lenbench.callbacks.L1Regularization` adds its gradient;
- after every optimiser step the module calls ``on_protocol_epoch_end(trainer, module, epoch)`` on every callback
  that has it (``dispatches_protocol_epochs = True``), which is where the pruning schedules act. With
  ``epochs_per_batch: 1`` the same code runs one epoch per Lightning step.

Each epoch is exactly the reference's ``zero_grad(); loss = criterion(net(x), y); loss.backward(); <L1 gradient>;
optimizer.step(); <pruning>``, so the trajectory equals a plain PyTorch loop's (tested).
"""

from __future__ import annotations

import contextlib
import copy
import logging
import random
import time
from abc import abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from torch import nn

from lenbench.callbacks.l1 import L1Regularization, effective_weight, linear_layers
from lenbench.callbacks.pruning import FanInPruning, FeaturePruning, restore_pruning
from lenbench.data.base import Fold
from lenbench.explainers.base import Explainer

logger = logging.getLogger(__name__)

OPTIMIZERS = ("adam", "adamw")
# Trainer settings the explainer fixes itself: full-batch training without logger, checkpoints, progress bar,
# model summary or validation loop.
_FIXED_TRAINER_KEYS = (
    "max_epochs",
    "max_steps",
    "logger",
    "enable_checkpointing",
    "enable_progress_bar",
    "enable_model_summary",
    "num_sanity_val_steps",
    "limit_val_batches",
    "callbacks",
)
# A gradient scaler would scale the gradients that the L1 callback adds to; those precisions are refused.
_SCALED_PRECISIONS = ("16", "16-mixed")
_TRAINER_DEFAULTS: dict[str, Any] = {
    "accelerator": "cpu",
    "devices": 1,
    "strategy": "auto",
    "precision": "32-true",
    "log_every_n_epochs": 500,
    "epochs_per_batch": 100,
}


def set_seed(seed: int) -> None:
    """Seed Python, numpy and torch, as the notebook's ``set_seed`` does before building each network."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def check_positive(
    owner: str, key: str, value: object, integer: bool = False, allow_zero: bool = False
) -> None:
    """Raise ValueError naming the parameter, its value and what is allowed."""
    kinds = (int,) if integer else (int, float)
    ok = not isinstance(value, bool) and isinstance(value, kinds)
    if ok:
        ok = value >= 0 if allow_zero else value > 0  # type: ignore[operator]
    if not ok:
        what = "an integer" if integer else "a number"
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{owner} {key}={value!r}: must be {what} {bound}")


def check_choice(owner: str, key: str, value: object, choices: Sequence[str]) -> None:
    if value not in choices:
        raise ValueError(f"{owner} {key}={value!r}: must be one of {', '.join(repr(c) for c in choices)}")


class EpochChunks:
    """The "data loader": ``(start, stop)`` ranges of epochs covering ``range(epochs)``, ``size`` at a time.

    Not a list or tuple (Lightning would take those as several loaders); the data itself stays on the module.
    """

    def __init__(self, epochs: int, size: int) -> None:
        self.epochs = epochs
        self.size = size

    def __len__(self) -> int:
        return -(-self.epochs // self.size)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        return ((start, min(start + self.size, self.epochs)) for start in range(0, self.epochs, self.size))


class FullBatchModule(pl.LightningModule):
    """Trains ``net`` full-batch on in-memory tensors, one epoch per optimiser step (see the module docstring).

    ``loss_curve`` holds ``(epoch, loss)`` every ``log_every_n_epochs`` epochs and at the last epoch; the loss is the
    data term (without regularisers) of the forward pass of that epoch, before its optimiser step.
    """

    dispatches_protocol_epochs = True

    def __init__(
        self,
        net: nn.Module,
        criterion: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
        optimizer: str,
        lr: float,
        weight_decay: float,
        log_every_n_epochs: int,
    ) -> None:
        super().__init__()
        self.automatic_optimization = False
        self.net = net
        self.criterion = criterion
        self.optimizer_name = optimizer
        self.lr = lr
        self.weight_decay = weight_decay
        self.log_every_n_epochs = log_every_n_epochs
        self.loss_curve: list[tuple[int, float]] = []
        self.epoch = -1  # the epoch being trained (0-based); -1 before training
        self.last_epoch = -1
        self._x: torch.Tensor | None = None
        self._y: torch.Tensor | None = None
        self._last_loss: torch.Tensor | None = None
        self._epoch_hooks: list[Callable[..., None]] = []
        self._optimizer: torch.optim.Optimizer | None = None

    def set_data(self, x: torch.Tensor, y: torch.Tensor, epochs: int) -> None:
        self._x, self._y = x, y
        self.last_epoch = epochs - 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def _ordered_parameters(self) -> list[nn.Parameter]:
        # Layer order, weight before bias, also once pruned (``weight_orig`` is registered after ``bias``), so that
        # an optimiser state saved from a pruned network maps onto the same parameters.
        params: list[nn.Parameter] = []
        seen: set[int] = set()
        for module in self.net.modules():
            for name in ("weight", "bias"):
                p = module._parameters.get(f"{name}_orig", module._parameters.get(name))
                if p is not None and id(p) not in seen:
                    seen.add(id(p))
                    params.append(p)
        params.extend(p for p in self.parameters() if id(p) not in seen)
        return params

    def configure_optimizers(self) -> torch.optim.Optimizer:
        cls = torch.optim.AdamW if self.optimizer_name == "adamw" else torch.optim.Adam
        return cls(self._ordered_parameters(), lr=self.lr, weight_decay=self.weight_decay)

    def on_fit_start(self) -> None:
        if self._x is None or self._y is None:
            raise RuntimeError("FullBatchModule.set_data must be called before fitting")
        self._x = self._x.to(self.device)
        self._y = self._y.to(self.device)
        self.loss_curve = []
        self._optimizer = self.optimizers(use_pl_optimizer=False)  # type: ignore[assignment]
        self._epoch_hooks = [
            cb.on_protocol_epoch_end for cb in self.trainer.callbacks if hasattr(cb, "on_protocol_epoch_end")
        ]

    def training_step(self, batch: tuple[int, int], batch_idx: int) -> None:
        start, stop = batch
        optimizer = self._optimizer
        assert optimizer is not None and self._x is not None and self._y is not None
        for epoch in range(int(start), int(stop)):
            self.epoch = epoch
            optimizer.zero_grad()
            loss = self.criterion(self.net(self._x), self._y)
            self.manual_backward(loss)
            optimizer.step()
            self._last_loss = loss.detach()
            if epoch % self.log_every_n_epochs == 0 or epoch == self.last_epoch:
                self.loss_curve.append((epoch, float(self._last_loss)))
            for hook in self._epoch_hooks:
                hook(self.trainer, self, epoch)

    @property
    def final_loss(self) -> float | None:
        return None if self._last_loss is None else float(self._last_loss)

    def load_state_dict(
        self, state_dict: Mapping[str, Any], strict: bool = True, assign: bool = False
    ) -> Any:
        """Also loads state dicts of pruned networks (``weight_orig``/``weight_mask``), e.g. from a checkpoint."""
        restore_pruning(self, state_dict)
        return super().load_state_dict(state_dict, strict=strict, assign=assign)


@contextlib.contextmanager
def _quiet_lightning() -> Iterator[None]:
    """Silence Lightning's per-fit banners ("GPU available: ...") for the duration of one fit."""
    names = ("pytorch_lightning", "lightning", "lightning.pytorch", "lightning_fabric")
    loggers = [logging.getLogger(n) for n in names]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


class NetworkExplainer(Explainer):
    """Base of the network explainers: seeds, builds the network, trains it with Lightning, predicts labels.

    Subclasses say how to build the network (:meth:`build_network`), which loss to use and how targets are made
    (:meth:`criterion`, :meth:`targets`), and how to turn outputs into labels (:meth:`labels_from_output`).

    ``trainer`` takes the keys of ``conf/trainer/*.yaml``: ``accelerator``, ``devices``, ``strategy``, ``precision``,
    ``log_every_n_epochs`` (loss curve resolution), ``epochs_per_batch`` (epochs per Lightning step, see the module
    docstring); any other key is passed to ``pl.Trainer`` as it is, except the ones the explainer fixes (logger,
    checkpointing, progress bar, model summary, validation, epochs, callbacks).
    ``callbacks`` are Lightning callbacks (regularisers, pruning schedules); each fit uses fresh copies of them.
    """

    name = "network"

    def __init__(
        self,
        *,
        seed: int,
        trainer: Mapping[str, Any] | None = None,
        epochs: int,
        lr: float,
        optimizer: str,
        weight_decay: float,
        callbacks: Sequence[pl.Callback] = (),
    ) -> None:
        owner = type(self).__name__
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ValueError(f"{owner} seed={seed!r}: must be an integer")
        check_positive(owner, "epochs", epochs, integer=True)
        check_positive(owner, "lr", lr)
        check_positive(owner, "weight_decay", weight_decay, allow_zero=True)
        check_choice(owner, "optimizer", optimizer, OPTIMIZERS)
        callbacks = list(callbacks or ())
        for cb in callbacks:
            if not isinstance(cb, pl.Callback):
                raise ValueError(
                    f"{owner} callbacks: {cb!r} is not a Lightning Callback (give each one a _target_ in the config)"
                )
        self.seed = seed
        self.trainer_config = self._check_trainer(dict(trainer or {}))
        self.epochs = epochs
        self.lr = float(lr)
        self.optimizer = optimizer
        self.weight_decay = float(weight_decay)
        self.callbacks = callbacks
        self._module: FullBatchModule | None = None
        self._fit_callbacks: list[pl.Callback] = []
        self._info: dict[str, Any] = {}

    def _check_trainer(self, config: dict[str, Any]) -> dict[str, Any]:
        owner = type(self).__name__
        fixed = sorted(set(config) & set(_FIXED_TRAINER_KEYS))
        if fixed:
            raise ValueError(f"{owner} trainer: {', '.join(fixed)} are set by the explainer, remove them")
        merged = {**_TRAINER_DEFAULTS, **config}
        check_positive(owner, "trainer.log_every_n_epochs", merged["log_every_n_epochs"], integer=True)
        check_positive(owner, "trainer.epochs_per_batch", merged["epochs_per_batch"], integer=True)
        if str(merged["precision"]) in _SCALED_PRECISIONS:
            raise ValueError(
                f"{owner} trainer.precision={merged['precision']!r}: needs a gradient scaler, which would scale the "
                "L1 gradient added after backward; use 32-true, 64-true, bf16-mixed or bf16-true"
            )
        return merged

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
        self._info = {}
        set_seed(self.seed)
        net = self.build_network(x.shape[1])
        module = FullBatchModule(
            net,
            self.criterion(),
            optimizer=self.optimizer,
            lr=self.lr,
            weight_decay=self.weight_decay,
            log_every_n_epochs=self.trainer_config["log_every_n_epochs"],
        )
        module.set_data(torch.from_numpy(np.ascontiguousarray(x)), self.targets(y), self.epochs)
        self._fit_callbacks = copy.deepcopy(self.callbacks)
        extra = {
            k: v
            for k, v in self.trainer_config.items()
            if k not in ("log_every_n_epochs", "epochs_per_batch")
        }
        start = time.perf_counter()
        with _quiet_lightning():
            trainer = pl.Trainer(
                max_epochs=1,
                logger=False,
                enable_checkpointing=False,
                enable_progress_bar=False,
                enable_model_summary=False,
                num_sanity_val_steps=0,
                limit_val_batches=0,
                callbacks=self._fit_callbacks,
                **extra,
            )
            trainer.fit(
                module, train_dataloaders=EpochChunks(self.epochs, self.trainer_config["epochs_per_batch"])
            )
        training_time = time.perf_counter() - start
        if module.epoch != self.epochs - 1:
            raise RuntimeError(f"training stopped after epoch {module.epoch} of {self.epochs}")
        module._x = module._y = None  # release the training tensors
        module.eval()
        self._module = module
        self._info = {
            "training_time": training_time,
            "final_loss": module.final_loss,
            "loss_curve": list(module.loss_curve),
            "epochs": self.epochs,
            "seed": self.seed,
            "torch_threads": torch.get_num_threads(),
            **self._callback_info(),
        }
        logger.info(
            "%s: trained %d epochs in %.1f s, final loss %.4f",
            self.name,
            self.epochs,
            training_time,
            module.final_loss if module.final_loss is not None else float("nan"),
        )
        return self

    def _callback_info(self) -> dict[str, Any]:
        info: dict[str, Any] = {}
        net = self.network
        for cb in self._fit_callbacks:
            if isinstance(cb, L1Regularization):
                info["final_penalty"] = info.get("final_penalty", 0.0) + cb.penalty(net)
            elif isinstance(cb, FeaturePruning):
                info["feature_pruning"] = [list(h) for h in cb.history]
            elif isinstance(cb, FanInPruning):
                info["fan_in_pruned_at"] = cb.pruned_at
        first = linear_layers(net)[0]
        info["features_used"] = int((effective_weight(first).detach() != 0).any(dim=0).sum())
        return info

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
