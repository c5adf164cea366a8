"""The full-batch LightningModule that trains every network explainer, its epoch chunks and its divergence check.

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

Several processes: see :mod:`lenbench.nn.ddp` (sharded rows, averaged losses, the record sent back by rank 0).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import pytorch_lightning as pl
import torch
from torch import nn

from lenbench.callbacks.pruning import restore_pruning
from lenbench.nn.ddp import RankRecords, shard


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
        self._records: RankRecords | None = None
        self._record_callbacks: list[pl.Callback] = []
        self._threads: int | None = None

    def set_data(self, x: torch.Tensor, y: torch.Tensor, epochs: int) -> None:
        self._x, self._y = x, y
        self.last_epoch = epochs - 1

    def release_data(self) -> None:
        """Drop the training tensors once trained (the module stays for predictions)."""
        self._x = self._y = None

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

    def share_records(
        self, records: RankRecords | None, callbacks: Sequence[pl.Callback] = (), threads: int | None = None
    ) -> None:
        """Several processes: report through ``records`` (with the states of ``callbacks``), train on ``threads``
        torch threads per rank; ``None`` detaches them after the fit."""
        self._records = records
        self._record_callbacks = list(callbacks)
        self._threads = threads

    def _shard(self) -> None:
        """Keep this rank's contiguous share of the rows and weight its mean loss (:func:`lenbench.nn.ddp.shard`)."""
        assert self._x is not None and self._y is not None
        if self._threads is not None:
            torch.set_num_threads(self._threads)  # Lightning's launcher picks cores // processes otherwise
        start, stop, self._loss_scale = shard(self._x.shape[0], self._world_size, self.global_rank)
        self._x, self._y = self._x[start:stop], self._y[start:stop]

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
            bad = first_non_finite(start, torch.stack(losses).cpu()) if losses else None
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
        bad = first_non_finite(start, values)
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
        if self._records is not None:  # several processes: tell the calling process, whichever rank saw it
            self._records.write_error(self.global_rank, (self.method_name, epoch, loss))
        return TrainingDiverged(self.method_name, epoch, loss)

    def on_train_end(self) -> None:
        # Several processes: what the calling process needs besides the weights (Lightning sends those).
        if self._records is not None and self.global_rank == 0:
            self._records.write_record(
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


def first_non_finite(start: int, values: torch.Tensor) -> tuple[int, float] | None:
    """(epoch, loss) of the first non-finite entry of a chunk's losses starting at epoch ``start``, else None."""
    finite = torch.isfinite(values)
    if bool(finite.all()):
        return None
    index = int((~finite).nonzero()[0])
    return start + index, float(values[index])
