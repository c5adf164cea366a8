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

Divergence
----------
Each epoch's loss stays on the device in a list; at the end of every chunk the list is stacked and checked once (one
device sync per chunk, none per epoch). A NaN or infinite loss raises :class:`TrainingDiverged` naming the method, the
first non-finite epoch and its loss, so a diverged fold never yields a formula read from garbage weights. When a hook
fails inside a chunk (e.g. pruning NaN weights), the losses of the epochs done so far are checked first.

Several processes (``trainer=ddp``)
-----------------------------------
``strategy: ddp`` runs one process per device with Lightning's DDP, *forked* from the process that trains the fold
(``start_method: fork``). Lightning's default for ``ddp`` ("popen") re-runs the command line once per extra rank:
under ``python -m train`` every rank would run the whole job (all folds, MLflow runs), under pytest the whole test
session; ``spawn`` pickles the module and re-imports ``__main__``. Forking starts the ranks inside ``fit`` with the
data, module and callbacks already in memory, so it works the same in a job, a sweep and a test. Each rank trains on
a contiguous shard of the rows, its mean loss weighted by ``rows_in_shard * world_size / rows``; DDP averages the
gradients over ranks, so the update is the full-batch gradient (up to float rounding) for equal or unequal shards. The
L1 callback adds ``strength * sign(w)`` after the averaged backward on every rank, i.e. once. The chunk's losses are
averaged over ranks, which gives the full-batch loss for the curve and the divergence check. After ``fit``, rank 0's
weights come back to the calling process (Lightning's launcher), and the module's record (epochs done, loss curve,
callback states such as the pruning history) through a small file; predictions and explanations run there.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import os
import pickle
import random
import shutil
import tempfile
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
    "use_distributed_sampler",
)
# Keys of cfg.trainer read by the explainer itself, not passed to pl.Trainer.
_OWN_TRAINER_KEYS = ("log_every_n_epochs", "epochs_per_batch", "start_method", "process_group_backend")
# DDP launchers that re-run the script (popen) or pickle the module (spawn): see the module docstring.
_REFUSED_DDP = {
    "ddp_spawn": "spawn",
    "ddp_spawn_find_unused_parameters_false": "spawn",
    "ddp_spawn_find_unused_parameters_true": "spawn",
    "ddp_find_unused_parameters_false": "popen",
    "ddp_find_unused_parameters_true": "popen",
}
_FORK_DDP = ("ddp_fork", "ddp_notebook", "ddp_fork_find_unused_parameters_false")
# A gradient scaler would scale the gradients that the L1 callback adds to; those precisions are refused.
_SCALED_PRECISIONS = ("16", "16-mixed")
_TRAINER_DEFAULTS: dict[str, Any] = {
    "accelerator": "cpu",
    "devices": 1,
    "strategy": "auto",
    "precision": "32-true",
    "log_every_n_epochs": 500,
    "epochs_per_batch": 100,
    "start_method": "fork",
    "process_group_backend": None,
}
# Environment variables Lightning's DDP launcher sets in the calling process; restored after each fit so that folds
# (and tests) do not inherit a stale port or thread setting.
_DDP_ENV = ("MASTER_ADDR", "MASTER_PORT", "OMP_NUM_THREADS", "LOCAL_RANK", "NODE_RANK", "WORLD_SIZE")


class TrainingDiverged(RuntimeError):
    """The training loss became NaN or infinite: the fold stops with this error instead of yielding a formula read
    from garbage weights. ``epoch`` is the first epoch (0-based) whose loss was not finite."""

    def __init__(self, method: str, epoch: int, loss: float) -> None:
        super().__init__(
            f"{method}: training diverged at epoch {epoch}: the loss is {loss} (not finite); "
            "lower the learning rate or check the data for NaN/inf values"
        )
        self.method = method
        self.epoch = epoch
        self.loss = loss

    def __reduce__(self) -> tuple[Any, ...]:
        # Process pools pickle exceptions; the default would call __init__ with the message only.
        return (TrainingDiverged, (self.method, self.epoch, self.loss))


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
    data term (without regularisers) of the forward pass of that epoch, before its optimiser step. ``name`` (the
    method) is what :class:`TrainingDiverged` names. ``criterion`` must be a mean over rows (sharding relies on it).
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
        name: str = "network",
    ) -> None:
        super().__init__()
        self.automatic_optimization = False
        self.net = net
        self.criterion = criterion
        self.optimizer_name = optimizer
        self.lr = lr
        self.weight_decay = weight_decay
        self.log_every_n_epochs = log_every_n_epochs
        self.method_name = name
        self.loss_curve: list[tuple[int, float]] = []
        self.epoch = -1  # the epoch being trained (0-based); -1 before training
        self.last_epoch = -1
        self._x: torch.Tensor | None = None
        self._y: torch.Tensor | None = None
        self._last_loss: torch.Tensor | None = None
        self._epoch_hooks: list[Callable[..., None]] = []
        self._optimizer: torch.optim.Optimizer | None = None
        # Several processes: the rank's loss weight, and how the record reaches the calling process.
        self._loss_scale: float | None = None
        self._world_size = 1
        self._record_path: str | None = None
        self._record_callbacks: list[pl.Callback] = []
        self._threads: int | None = None

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
        self._world_size = int(self.trainer.world_size)
        self._loss_scale = None
        if self._world_size > 1:
            self._shard()
        self._x = self._x.to(self.device)
        self._y = self._y.to(self.device)
        self.loss_curve = []
        self._optimizer = self.optimizers(use_pl_optimizer=False)  # type: ignore[assignment]
        self._epoch_hooks = [
            cb.on_protocol_epoch_end for cb in self.trainer.callbacks if hasattr(cb, "on_protocol_epoch_end")
        ]

    def _shard(self) -> None:
        """Keep this rank's contiguous share of the rows and weight its mean loss (see the module docstring)."""
        assert self._x is not None and self._y is not None
        if self._threads is not None:
            torch.set_num_threads(self._threads)  # Lightning's launcher picks cores // processes otherwise
        n = self._x.shape[0]
        rows = np.array_split(np.arange(n), self._world_size)[self.global_rank]
        if rows.size == 0:
            raise ValueError(f"{n} training rows cannot be shared by {self._world_size} processes")
        start, stop = int(rows[0]), int(rows[-1]) + 1
        self._x, self._y = self._x[start:stop], self._y[start:stop]
        self._loss_scale = rows.size * self._world_size / n

    def training_step(self, batch: tuple[int, int], batch_idx: int) -> None:
        start, stop = int(batch[0]), int(batch[1])
        optimizer, x, y, scale = self._optimizer, self._x, self._y, self._loss_scale
        assert optimizer is not None and x is not None and y is not None
        losses: list[torch.Tensor] = []
        try:
            for epoch in range(start, stop):
                self.epoch = epoch
                optimizer.zero_grad()
                loss = self.criterion(self.net(x), y)
                if scale is not None:
                    loss = loss * scale
                self.manual_backward(loss)
                optimizer.step()
                losses.append(loss.detach())
                for hook in self._epoch_hooks:
                    hook(self.trainer, self, epoch)
        except Exception as exc:
            # A loss or hook failing on diverged weights (BCE refuses NaN inputs, pruning NaN norms): report the
            # divergence, not its symptom. Local checks only: no collective on an error path.
            bad = _first_non_finite(start, torch.stack(losses).cpu()) if losses else None
            if bad is None and not self._finite_state():
                bad = (self.epoch, float("nan"))  # this epoch's loss could not even be computed
            if bad is not None:
                raise self._diverged(*bad) from exc
            raise
        self._end_chunk(start, losses)

    def _end_chunk(self, start: int, losses: list[torch.Tensor]) -> None:
        """Check the chunk's losses (one sync) and record the loss curve; across ranks the losses are averaged."""
        values = torch.stack(losses)
        if self._world_size > 1:
            values = self.trainer.strategy.reduce(values, reduce_op="mean")
        values = values.cpu()
        bad = _first_non_finite(start, values)
        if bad is not None:
            raise self._diverged(*bad)
        every = self.log_every_n_epochs
        stop = start + len(losses)
        for epoch in range(-(-start // every) * every, stop, every):
            self.loss_curve.append((epoch, float(values[epoch - start])))
        if self.last_epoch == stop - 1 and self.last_epoch % every != 0:
            self.loss_curve.append((self.last_epoch, float(values[-1])))
        self._last_loss = values[-1]

    @torch.no_grad()
    def _finite_state(self) -> bool:
        """Whether the parameters and the training inputs are all finite."""
        tensors = [
            *self.net.parameters(),
            *(t for t in (self._x,) if t is not None and t.is_floating_point()),
        ]
        return all(bool(torch.isfinite(t).all()) for t in tensors)

    def _diverged(self, epoch: int, loss: float) -> TrainingDiverged:
        if (
            self._record_path is not None
        ):  # several processes: tell the calling process, whichever rank saw it
            _write_record(
                f"{self._record_path}.error{self.global_rank}", {"error": (self.method_name, epoch, loss)}
            )
        return TrainingDiverged(self.method_name, epoch, loss)

    def on_train_end(self) -> None:
        # Several processes: what the calling process needs besides the weights (Lightning sends those).
        if self._record_path is not None and self.global_rank == 0:
            _write_record(
                self._record_path,
                {
                    "epoch": self.epoch,
                    "loss_curve": list(self.loss_curve),
                    "last_loss": None if self._last_loss is None else float(self._last_loss),
                    "callbacks": [cb.state_dict() for cb in self._record_callbacks],
                },
            )

    def load_record(self, record: Mapping[str, Any]) -> None:
        """Take over the training record written by rank 0 (several processes)."""
        self.epoch = int(record["epoch"])
        self.loss_curve = [(int(e), float(v)) for e, v in record["loss_curve"]]
        last = record["last_loss"]
        self._last_loss = None if last is None else torch.tensor(last)
        for cb, state in zip(self._record_callbacks, record["callbacks"], strict=True):
            cb.load_state_dict(state)

    @property
    def final_loss(self) -> float | None:
        return None if self._last_loss is None else float(self._last_loss)

    def load_state_dict(
        self, state_dict: Mapping[str, Any], strict: bool = True, assign: bool = False
    ) -> Any:
        """Also loads state dicts of pruned networks (``weight_orig``/``weight_mask``), e.g. from a checkpoint."""
        restore_pruning(self, state_dict)
        return super().load_state_dict(state_dict, strict=strict, assign=assign)


def _first_non_finite(start: int, values: torch.Tensor) -> tuple[int, float] | None:
    """(epoch, loss) of the first non-finite entry of a chunk's losses starting at epoch ``start``, else None."""
    finite = torch.isfinite(values)
    if bool(finite.all()):
        return None
    index = int((~finite).nonzero()[0])
    return start + index, float(values[index])


def _read_record(path: str | None) -> dict[str, Any] | None:
    if path is None or not os.path.exists(path):
        return None
    with open(path, "rb") as handle:
        return pickle.load(handle)


def _rank_divergence(record_dir: str | None) -> TrainingDiverged | None:
    """The earliest divergence any rank reported (several processes), or None."""
    if record_dir is None:
        return None
    errors = []
    for name in os.listdir(record_dir):
        record = _read_record(os.path.join(record_dir, name)) if ".error" in name else None
        if record is not None:
            errors.append(record["error"])
    return TrainingDiverged(*min(errors, key=lambda e: e[1])) if errors else None


def _write_record(path: str, record: dict[str, Any]) -> None:
    with open(path, "wb") as handle:
        pickle.dump(record, handle)


@contextlib.contextmanager
def _restore_environment(names: Sequence[str]) -> Iterator[None]:
    """Put back the environment variables ``names`` as they were (Lightning's DDP launcher sets some)."""
    saved = {name: os.environ.get(name) for name in names}
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


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
        accelerator = str(merged["accelerator"])
        if accelerator in ("gpu", "cuda") and not torch.cuda.is_available():
            raise ValueError(
                f"{owner} trainer.accelerator={accelerator!r}: no CUDA GPU is available here; use trainer=cpu "
                "(one process) or trainer=ddp (several CPU processes)"
            )
        strategy = merged["strategy"]
        if isinstance(strategy, str) and strategy.startswith("ddp"):
            start_method = (
                "fork" if strategy in _FORK_DDP else _REFUSED_DDP.get(strategy, merged["start_method"])
            )
            if start_method != "fork":
                raise ValueError(
                    f"{owner} trainer.strategy={strategy!r} with start_method={start_method!r}: the ranks must be "
                    "forked from the process that trains the fold (strategy: ddp, start_method: fork); 'popen' "
                    "re-runs the whole command once per rank and 'spawn' pickles the module"
                )
            if not hasattr(os, "fork"):
                raise ValueError(f"{owner} trainer.strategy={strategy!r}: needs os.fork (Linux or macOS)")
        return merged

    def _strategy(self) -> Any:
        """``pl.Trainer``'s strategy: DDP with forked ranks for ``ddp*`` strings, anything else as it is."""
        strategy = self.trainer_config["strategy"]
        if isinstance(strategy, str) and strategy.startswith("ddp"):
            from pytorch_lightning.strategies import DDPStrategy

            return DDPStrategy(
                start_method="fork", process_group_backend=self.trainer_config["process_group_backend"]
            )
        return strategy

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
            name=self.name,
        )
        module.set_data(torch.from_numpy(np.ascontiguousarray(x)), self.targets(y), self.epochs)
        self._fit_callbacks = copy.deepcopy(self.callbacks)
        extra = {k: v for k, v in self.trainer_config.items() if k not in _OWN_TRAINER_KEYS}
        extra["strategy"] = self._strategy()
        start = time.perf_counter()
        record_dir: str | None = None
        try:
            with _quiet_lightning(), _restore_environment(_DDP_ENV):
                trainer = pl.Trainer(
                    max_epochs=1,
                    logger=False,
                    enable_checkpointing=False,
                    enable_progress_bar=False,
                    enable_model_summary=False,
                    num_sanity_val_steps=0,
                    limit_val_batches=0,
                    use_distributed_sampler=False,
                    callbacks=self._fit_callbacks,
                    **extra,
                )
                if trainer.world_size > 1:
                    record_dir = tempfile.mkdtemp(prefix="lenbench-ddp-")
                    module._record_path = os.path.join(record_dir, "record.pkl")
                    module._record_callbacks = self._fit_callbacks
                    module._threads = torch.get_num_threads()
                try:
                    trainer.fit(
                        module,
                        train_dataloaders=EpochChunks(self.epochs, self.trainer_config["epochs_per_batch"]),
                    )
                except Exception as exc:
                    diverged = _rank_divergence(record_dir)
                    if diverged is not None:
                        raise diverged from exc
                    raise
            if trainer.world_size > 1:
                record = _read_record(module._record_path)
                if record is None:
                    raise RuntimeError("the training processes ended without sending their record back")
                module.load_record(record)
        finally:
            if record_dir is not None:
                shutil.rmtree(record_dir, ignore_errors=True)
            module._record_path = None
            module._record_callbacks = []
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
            "world_size": int(trainer.world_size),
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
