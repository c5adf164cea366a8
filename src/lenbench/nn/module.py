"""The full-batch LightningModule that trains every network explainer: one network, or several at once.

One Lightning epoch is one protocol epoch
-----------------------------------------
Each Lightning epoch is one training step over the in-memory full batch: ``zero_grad; loss = criterion(net(x), y);
manual_backward(loss); optimizer.step()``. Lightning's standard hooks therefore keep their meaning:
``on_after_backward`` is where :class:`~lenbench.callbacks.L1Regularization` adds its gradient, and
``on_train_epoch_end`` (``trainer.current_epoch`` = the protocol epoch) is where the pruning schedules act, so a
stock callback (``EarlyStopping``, ``ModelCheckpoint``, a progress bar) sees one epoch per protocol epoch. Each epoch
is exactly the reference's ``zero_grad(); loss = criterion(net(x), y); loss.backward(); <L1 gradient>;
optimizer.step(); <pruning>``, so a network's trajectory equals a plain PyTorch loop's bit for bit (tested).

Several networks in one module
------------------------------
Lightning's fixed cost (about 0.3 ms an epoch, ``benchmarks/bench.py``) is large beside one tiny network's epoch
(0.5 ms for the psi net on MIMIC-II), so a job trains the networks of several folds in one module (``networks``):

- ``exact`` (:class:`ExactBatch`): every network keeps its own rows and is computed on its own, op by op as alone;
  the epoch's loss is the sum of the networks' losses, whose backward gives each network exactly the gradient of its
  own loss (the sum passes a gradient of 1.0 to each term), and one Adam/AdamW over all parameters is elementwise,
  so each network's weights are bit-identical to training it alone (tested). That optimiser keeps all parameters in
  one flat buffer (:class:`~lenbench.nn.optim.FlatAdam`): one update for every network of the module, the same
  arithmetic as torch's per-tensor Adam bit for bit, a few operations per step instead of eight per tensor.
- ``fast`` (:class:`StackedBatch`): the networks are stacked into batched layers (:mod:`lenbench.nn.stacked`) and
  their rows padded into one tensor: one batched matrix product per layer for all networks. The same maths with
  another summation order: weights agree with ``exact`` within float tolerance.

Callbacks reach the networks through :func:`lenbench.callbacks.base.training_networks` (the module's ``networks()``).

Divergence
----------
Each epoch's losses (one per network) stay on the device; every ``SYNC_EVERY`` epochs and at the end they are
stacked and checked once (one device sync, none per epoch). A NaN or infinite loss raises :class:`TrainingDiverged`
naming the network, the first non-finite epoch and its loss, so a diverged fold never yields a formula read from
garbage weights. When a hook fails (e.g. pruning NaN weights), :meth:`FullBatchModule.divergence` tells the caller
whether the losses or the weights were already non-finite.

Several processes: see :mod:`lenbench.nn.ddp` (sharded rows, averaged losses, the record sent back by rank 0).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import pytorch_lightning as pl
import torch
from torch import nn

from lenbench.nn.batches import ExactBatch, NetworkBatch
from lenbench.nn.ddp import RankRecords
from lenbench.nn.optim import make_optimizer
from lenbench.nn.weights import restore_pruning

SYNC_EVERY = 100  # epochs between two checks of the losses (one device sync each)


class TrainingDiverged(RuntimeError):
    """The training loss became NaN or infinite: the fold stops with this error instead of yielding a formula read
    from garbage weights. ``epoch`` is the first epoch (0-based) whose loss was not finite; ``network`` the position
    of the network that diverged among those trained together."""

    def __init__(self, method: str, epoch: int, loss: float, network: int = 0) -> None:
        super().__init__(
            f"{method}: training diverged at epoch {epoch}: the loss is {loss} (not finite); "
            "lower the learning rate or check the data for NaN/inf values"
        )
        self.method = method
        self.epoch = epoch
        self.loss = loss
        self.network = network

    def __reduce__(self) -> tuple[Any, ...]:
        # Process pools pickle exceptions; the default would call __init__ with the message only.
        return (TrainingDiverged, (self.method, self.epoch, self.loss, self.network))


# Attributes set every epoch that are never parameters, buffers or submodules (see FullBatchModule.__setattr__).
_PLAIN_ATTRIBUTES = frozenset(
    {"_current_fx_name", "epoch", "_epoch_started", "_losses", "_checked", "_last_losses"}
)


class SingleStep:
    """The "data loader" of one epoch: a single step (the data stays on the module). Not a list or tuple, which
    Lightning would take as several loaders."""

    def __len__(self) -> int:
        return 1

    def __iter__(self) -> Iterator[int]:
        return iter((0,))


class FullBatchModule(pl.LightningModule):
    """Trains the networks of ``batch`` full-batch, one Lightning epoch per protocol epoch (module docstring).

    ``loss_curves[i]`` holds network ``i``'s ``(epoch, loss)`` every ``log_every_n_epochs`` epochs and at the last
    epoch; the loss is the data term (without regularisers) of that epoch's forward pass, before its optimiser step.
    ``names[i]`` is what :class:`TrainingDiverged` names. With validation rows (``batch.has_validation``) the module
    runs Lightning's validation loop and logs ``val_loss`` (the networks' mean); ``log_losses`` logs ``train_loss``
    every epoch, for loggers and monitoring callbacks (off by default: logging costs time every epoch).
    """

    def __init__(
        self,
        batch: NetworkBatch | nn.Module,
        criterion: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
        optimizer: str = "adam",
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        log_every_n_epochs: int = 500,
        name: str | Sequence[str] = "network",
    ) -> None:
        super().__init__()
        self.automatic_optimization = False
        if isinstance(batch, NetworkBatch):
            self.batch = batch
        else:
            if criterion is None:
                raise ValueError("FullBatchModule(net, criterion): a single network needs its criterion")
            self.batch = ExactBatch([batch], criterion)
        count = self.batch.count
        self.names = [name] * count if isinstance(name, str) else list(name)
        self.optimizer_name = optimizer
        self.lr = lr
        self.weight_decay = weight_decay
        self.log_every_n_epochs = log_every_n_epochs
        self.log_losses = False
        self.loss_curves: list[list[tuple[int, float]]] = [[] for _ in range(count)]
        self.epoch = -1  # the last epoch trained (0-based); -1 before training
        self._epoch_started = 0  # the epoch being trained (0-based)
        self.last_epoch = -1
        self._losses: list[torch.Tensor] = []  # per epoch since the last check: [count] each
        self._checked = 0  # epochs checked so far
        self._last_losses: torch.Tensor | None = None
        self._world_size = 1
        self._records: RankRecords | None = None
        self._record_callbacks: list[pl.Callback] = []
        self._threads: int | None = None

    def __setattr__(self, name: str, value: Any) -> None:
        # Lightning sets ``_current_fx_name`` around every hook it calls (about 40 times an epoch) and this module
        # keeps per-epoch counters; nn.Module's __setattr__ checks each for parameters, buffers and submodules (a
        # few microseconds each, 0.15 ms an epoch). These names never hold any of those, so they skip the checks.
        if name in _PLAIN_ATTRIBUTES:
            object.__setattr__(self, name, value)
        else:
            super().__setattr__(name, value)

    # -- the networks ----------------------------------------------------------------------------------------------

    def networks(self) -> list[nn.Module]:
        """The modules the optimiser trains, as callbacks see them (one per network; one stacked module if fast)."""
        return list(self.batch.trainable)

    @property
    def net(self) -> nn.Module:
        """The network of a one-network module."""
        if self.batch.count != 1:
            raise AttributeError(f"this module trains {self.batch.count} networks; use trained_networks()")
        return self.batch.trained_networks()[0]

    def trained_networks(self) -> list[nn.Module]:
        """The trained networks, one ordinary module each (a fast batch is unstacked into them)."""
        return self.batch.trained_networks()

    def set_data(self, x: Any, y: Any, epochs: int, x_val: Any = None, y_val: Any = None) -> None:
        """The training rows (a tensor for a one-network module, else one per network) and optional validation
        rows; ``epochs`` protocol epochs. Floating rows and targets take the networks' dtype (float64 networks
        train on float64 rows; float32 ones on the rows as they are)."""
        dtype = self.dtype_of_networks()
        x, y, x_val, y_val = (_listed(v, dtype) for v in (x, y, x_val, y_val))
        self.batch.set_data(x, y, x_val, y_val)
        self.last_epoch = epochs - 1

    def dtype_of_networks(self) -> torch.dtype:
        """The one floating dtype of the networks' parameters (ValueError if they mix dtypes)."""
        dtypes = {p.dtype for p in self.batch.parameters() if p.is_floating_point()}
        if len(dtypes) != 1:
            raise ValueError(
                f"the networks of one module need one floating dtype, got {sorted(map(str, dtypes))}"
            )
        return dtypes.pop()

    def release_data(self) -> None:
        """Drop the training tensors once trained (the networks stay for predictions)."""
        self.batch.release_data()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        """Adam or AdamW over all the networks' parameters in one flat buffer (:mod:`lenbench.nn.optim`: torch's
        update bit for bit, a few operations per step for all networks)."""
        return make_optimizer(
            self.optimizer_name, self.batch.ordered_parameters(), self.lr, self.weight_decay
        )

    def train_dataloader(self) -> SingleStep:
        return SingleStep()

    def val_dataloader(self) -> SingleStep:
        return SingleStep()

    # -- training ------------------------------------------------------------------------------------------------

    def on_fit_start(self) -> None:
        if not self.batch.has_data:
            raise RuntimeError("FullBatchModule.set_data must be called before fitting")
        self._world_size = int(self.trainer.world_size)
        if self._world_size > 1 and self._threads is not None:
            torch.set_num_threads(self._threads)  # Lightning's launcher picks cores // processes otherwise
        self.batch.prepare(self.device, self._world_size, self.global_rank)
        self.loss_curves = [[] for _ in range(self.batch.count)]
        self._losses, self._checked, self.epoch, self._epoch_started = [], 0, -1, 0
        self._optimizer = self.optimizers(use_pl_optimizer=False)

    def training_step(self, batch: Any, batch_idx: int) -> None:
        optimizer = self._optimizer
        self._epoch_started = int(self.current_epoch)
        optimizer.zero_grad()
        try:
            losses = self.batch.losses()
        except Exception as exc:  # a loss refusing diverged outputs (BCE on NaN): report the divergence
            diverged = self.divergence()
            if diverged is not None:
                raise diverged from exc
            raise
        self.manual_backward(losses.sum())
        optimizer.step()
        self.epoch = int(self.current_epoch)
        detached = losses.detach()
        self._losses.append(detached)
        if self.log_losses:
            self.log("train_loss", detached.mean(), on_step=False, on_epoch=True, prog_bar=True, batch_size=1)
        if len(self._losses) >= SYNC_EVERY or self.epoch == self.last_epoch:
            self.check_losses()  # before the callbacks' epoch-end hooks, which may read the curves

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        with torch.no_grad():
            losses = self.batch.validation_losses()
        self.log("val_loss", losses.mean(), prog_bar=True, batch_size=1)
        if losses.numel() > 1:
            for i, value in enumerate(losses):
                self.log(f"val_loss/{i}", value, batch_size=1)

    def on_train_end(self) -> None:
        self.check_losses()
        if self._last_losses is not None and self.epoch < self.last_epoch:  # stopped early (EarlyStopping)
            for curve, value in zip(self.loss_curves, self._last_losses, strict=True):
                if not curve or curve[-1][0] != self.epoch:
                    curve.append((self.epoch, float(value)))
        # Several processes: what the calling process needs besides the weights (Lightning sends those).
        if self._records is not None and self.global_rank == 0:
            self._records.write_record(self.record())

    def check_losses(self) -> None:
        """Check the losses since the last check (one sync) and extend the loss curves; across ranks the losses
        are averaged first."""
        if not self._losses:
            return
        values = torch.stack(self._losses)  # [epochs, networks]
        if self._world_size > 1:
            values = self.trainer.strategy.reduce(values, reduce_op="mean")
        values = values.cpu()
        start, self._losses = self._checked, []
        self._checked += values.shape[0]
        bad = first_non_finite(start, values)
        if bad is not None:
            raise self._diverged(*bad)
        every, stop = self.log_every_n_epochs, self._checked
        epochs = list(range(-(-start // every) * every, stop, every))
        if stop - 1 == self.last_epoch and self.last_epoch % every != 0:
            epochs.append(self.last_epoch)
        for i, curve in enumerate(self.loss_curves):
            curve.extend((e, float(values[e - start, i])) for e in epochs)
        self._last_losses = values[-1]

    def divergence(self) -> TrainingDiverged | None:
        """After a failure inside training: the divergence behind it (non-finite losses or weights), if any."""
        bad = first_non_finite(self._checked, torch.stack(self._losses).cpu()) if self._losses else None
        if bad is None:
            network = self._first_non_finite_network()
            if network is not None:  # the loss of the epoch in progress could not even be computed
                bad = (self._epoch_started, float("nan"), network)
        return None if bad is None else self._diverged(*bad)

    @torch.no_grad()
    def _first_non_finite_network(self) -> int | None:
        """The first network whose parameters or training inputs are not all finite (0 for a stacked batch)."""
        inputs = self.batch.float_inputs()
        if any(not bool(torch.isfinite(t).all()) for t in inputs):
            return 0
        for i, net in enumerate(self.batch.trainable):
            if any(not bool(torch.isfinite(p).all()) for p in net.parameters()):
                return i
        return None

    def _diverged(self, epoch: int, loss: float, network: int) -> TrainingDiverged:
        if self._records is not None:  # several processes: tell the calling process, whichever rank saw it
            self._records.write_error(self.global_rank, (self.names[network], epoch, loss, network))
        return TrainingDiverged(self.names[network], epoch, loss, network)

    # -- several processes ---------------------------------------------------------------------------------------

    def share_records(
        self, records: RankRecords | None, callbacks: Sequence[pl.Callback] = (), threads: int | None = None
    ) -> None:
        """Several processes: report through ``records`` (with the states of ``callbacks``), train on ``threads``
        torch threads per rank; ``None`` detaches them after the fit."""
        self._records = records
        self._record_callbacks = list(callbacks)
        self._threads = threads

    def record(self) -> dict[str, Any]:
        """What the calling process needs after a fit on several processes, besides the weights."""
        return {
            "epoch": self.epoch,
            "loss_curves": [list(c) for c in self.loss_curves],
            "last_losses": None if self._last_losses is None else self._last_losses.tolist(),
            "callbacks": [cb.state_dict() for cb in self._record_callbacks],
        }

    def load_record(self, record: Mapping[str, Any]) -> None:
        """Take over the training record written by rank 0 (several processes)."""
        self.epoch = int(record["epoch"])
        self.loss_curves = [[(int(e), float(v)) for e, v in c] for c in record["loss_curves"]]
        last = record["last_losses"]
        self._last_losses = None if last is None else torch.tensor(last)
        for cb, state in zip(self._record_callbacks, record["callbacks"], strict=True):
            cb.load_state_dict(state)

    # -- results -------------------------------------------------------------------------------------------------

    @property
    def checked_epochs(self) -> int:
        """How many epochs' losses have been checked (and entered the loss curves) so far."""
        return self._checked

    def final_losses(self) -> list[float | None]:
        """Each network's loss at the last epoch trained (None before training)."""
        if self._last_losses is None:
            return [None] * self.batch.count
        return [float(v) for v in self._last_losses]

    @property
    def final_loss(self) -> float | None:
        return self.final_losses()[0]

    def load_state_dict(
        self, state_dict: Mapping[str, Any], strict: bool = True, assign: bool = False
    ) -> Any:
        """Also loads state dicts of pruned networks (``weight_orig``/``weight_mask``), e.g. from a checkpoint."""
        restore_pruning(self, state_dict)
        return super().load_state_dict(state_dict, strict=strict, assign=assign)


def _listed(value: Any, dtype: torch.dtype) -> list[Any] | None:
    """``value`` as a list of tensors (one per network), floating ones in ``dtype`` (no copy when they are)."""
    if value is None:
        return None
    values = list(value) if isinstance(value, (list, tuple)) else [value]
    return [v.to(dtype) if isinstance(v, torch.Tensor) and v.is_floating_point() else v for v in values]


def first_non_finite(start: int, values: torch.Tensor) -> tuple[int, float, int] | None:
    """(epoch, loss, network) of the first non-finite loss of ``values`` [epochs] or [epochs, networks] whose first
    row is epoch ``start``; None when all are finite."""
    grid = values.reshape(values.shape[0], -1)
    finite = torch.isfinite(grid)
    if bool(finite.all()):
        return None
    epoch, network = (int(i) for i in (~finite).nonzero()[0])
    return start + epoch, float(grid[epoch, network]), network
