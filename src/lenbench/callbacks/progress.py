"""Training progress that leaves a fold while it trains: epochs done, and the loss-curve points recorded so far.

:class:`ProgressReporter` is a plain Lightning callback: after every Lightning step (a chunk of protocol epochs, see
:mod:`lenbench.nn.module`) it hands a :class:`TrainingProgress` to a *sink*, a callable the fold loop provides.
The sink decides where it goes (the console's progress lines, the fold's MLflow run, a queue to the job's process
when folds train in parallel); the network code never knows. Only rank 0 reports when a fit runs on several
processes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytorch_lightning as pl


@dataclass(frozen=True)
class TrainingProgress:
    """``epochs_done`` of ``epochs_total``; ``losses``: the (epoch, loss) points recorded since the last report
    (one every ``trainer.log_every_n_epochs`` epochs, and the last epoch's)."""

    epochs_done: int
    epochs_total: int
    losses: tuple[tuple[int, float], ...] = ()


ProgressSink = Callable[[TrainingProgress], None]


class ProgressReporter(pl.Callback):
    """Reports a :class:`FullBatchModule`'s progress to ``sink`` after every Lightning step (rank 0 only)."""

    def __init__(self, sink: ProgressSink) -> None:
        self.sink = sink
        self._sent = 0

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._sent = 0

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if trainer.global_rank != 0:
            return
        curve = list(getattr(pl_module, "loss_curve", []))
        new, self._sent = tuple(curve[self._sent :]), len(curve)
        total = int(getattr(pl_module, "last_epoch", -1)) + 1
        self.sink(TrainingProgress(int(getattr(pl_module, "epoch", -1)) + 1, total, new))
