"""What the network explainers ask of a callback, so that they never switch on concrete callback classes.

A callback listed in a method config is a Lightning callback; on top of Lightning's hooks it may take part in three
small protocols, each duck-typed:

- *protocol epochs*: :class:`EpochEndCallback` acts after the optimiser step of given epochs, also when the module
  runs several epochs inside one Lightning step (see :mod:`lenbench.nn.module`);
- *regulariser* (:class:`Regulariser`): ``penalty(module) -> float``, the value of the term it adds to the loss;
  the penalties of a fit's regularisers add up to the fold's ``final_penalty``;
- *report* (:class:`Reports`): ``report() -> dict``, what the callback did during the fit (e.g. the pruning
  history), merged into the fold's info.

State that must survive a fit over several processes goes through Lightning's ``state_dict``/``load_state_dict``
(rank 0 sends it back, see :mod:`lenbench.nn.ddp`); the report is then read in the calling process.
:func:`fit_report` gathers what a fit's callbacks report.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol, runtime_checkable

import pytorch_lightning as pl
from torch import nn


class EpochEndCallback(pl.Callback):
    """A callback that acts after the optimiser step of given epochs.

    An "epoch" is one pass over the (full-batch) training data. The network explainers run several such epochs
    inside one Lightning training step and call :meth:`on_protocol_epoch_end` after every optimiser step; they say
    so with ``dispatches_protocol_epochs = True``. With any other LightningModule the callback acts in
    ``on_train_epoch_end`` with ``trainer.current_epoch``, i.e. after the last step of each Lightning epoch, which
    is the same thing for full-batch training. Either way the schedule is keyed on the true epoch number.
    """

    def on_protocol_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, epoch: int) -> None:
        """Called after the optimiser step of ``epoch`` (0-based)."""

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not getattr(pl_module, "dispatches_protocol_epochs", False):
            self.on_protocol_epoch_end(trainer, pl_module, trainer.current_epoch)


@runtime_checkable
class Regulariser(Protocol):
    """A callback that adds a penalty's gradient to the loss's: ``penalty`` is that penalty's current value."""

    def penalty(self, module: nn.Module) -> float: ...


@runtime_checkable
class Reports(Protocol):
    """A callback that reports what it did during the fit (JSON-friendly values, one key per concept)."""

    def report(self) -> dict[str, Any]: ...


def fit_report(callbacks: Iterable[pl.Callback], module: nn.Module) -> dict[str, Any]:
    """What the callbacks of a finished fit report: their reports in order, and ``final_penalty``, the sum of the
    regularisers' penalties on ``module`` (absent without regularisers)."""
    callbacks = list(callbacks)
    info: dict[str, Any] = {}
    penalties = [cb.penalty(module) for cb in callbacks if isinstance(cb, Regulariser)]
    if penalties:
        info["final_penalty"] = sum(penalties, 0.0)
    for cb in callbacks:
        if isinstance(cb, Reports):
            info.update(cb.report())
    return info
