"""Training progress that leaves a fold while it trains: epochs done, and the loss-curve points recorded so far.

:class:`ProgressReporter` is a plain Lightning callback: whenever the module has checked a new stretch of epochs'
losses (every ``SYNC_EVERY`` epochs, see :mod:`lenbench.nn.module`) it hands each network's
:class:`TrainingProgress` (with the latest checked loss, already on the CPU) to that network's *sink*, a callable the
fold loop provides. The sink decides where it goes (the console's progress lines, the fold's MLflow run, a queue to
the job's process when folds train in parallel); the network code never knows. Only rank 0 reports when a fit runs
on several processes.
"""

from __future__ import annotations

from collections.abc import Sequence

import pytorch_lightning as pl

from lenbench.progress import ProgressSink, TrainingProgress


class ProgressReporter(pl.Callback):
    """Reports a :class:`~lenbench.nn.module.FullBatchModule`'s progress, network ``i``'s to ``sinks[i]`` (a
    ``None`` sink is skipped), once per checked stretch of epochs (rank 0 only)."""

    def __init__(self, sinks: ProgressSink | Sequence[ProgressSink | None]) -> None:
        self.sinks = [sinks] if callable(sinks) else list(sinks)
        self._sent: list[int] = []
        self._epochs = 0

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._sent = [0] * len(self.sinks)
        self._epochs = 0

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        checked = int(getattr(pl_module, "checked_epochs", 0))
        if trainer.global_rank != 0 or checked == self._epochs:
            return
        self._epochs = checked
        total = int(getattr(pl_module, "last_epoch", -1)) + 1
        curves = getattr(pl_module, "loss_curves", [])
        latest = pl_module.final_losses() if hasattr(pl_module, "final_losses") else []
        for i, sink in enumerate(self.sinks):
            curve = curves[i] if i < len(curves) else []
            new, self._sent[i] = tuple(curve[self._sent[i] :]), len(curve)
            if sink is not None:
                sink(TrainingProgress(checked, total, new, latest[i] if i < len(latest) else None))
