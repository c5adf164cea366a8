"""Training one fold over several processes (``trainer=ddp``): what Lightning's DDP needs from lenbench.

Several processes
-----------------
``strategy: ddp`` runs one process per device with Lightning's DDP, *forked* from the process that trains the fold
(``start_method: fork``). Lightning's default for ``ddp`` ("popen") re-runs the command line once per extra rank:
under ``python -m train`` every rank would run the whole job (all folds, MLflow runs), under pytest the whole test
session; ``spawn`` pickles the module and re-imports ``__main__``. Forking starts the ranks inside ``fit`` with the
data, module and callbacks already in memory, so it works the same in a job, a sweep and a test. Each rank trains on
a contiguous shard of the rows (:func:`shard`), its mean loss weighted by ``rows_in_shard * world_size / rows``;
DDP averages the gradients over ranks, so the update is the full-batch gradient (up to float rounding) for equal or
unequal shards. The L1 callback adds ``strength * sign(w)`` after the averaged backward on every rank, i.e. once.
Several networks trained together are each sharded the same way. The losses are averaged over ranks when they are
checked (every ``SYNC_EVERY`` epochs), which gives the full-batch loss for the curve and the divergence check.
After ``fit``, rank 0's weights come back to the calling process (Lightning's launcher), and the module's record
(epochs done, loss curve, callback states such as the pruning history) through a small file (:class:`RankRecords`);
predictions and explanations run there. A rank that sees the loss diverge leaves a file too, so the calling process
reports the divergence rather than the launcher's error.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

# Environment variables Lightning's DDP launcher sets in the calling process; restored after each fit so that folds
# (and tests) do not inherit a stale port or thread setting.
DDP_ENV = ("MASTER_ADDR", "MASTER_PORT", "OMP_NUM_THREADS", "LOCAL_RANK", "NODE_RANK", "WORLD_SIZE")
# DDP launchers that re-run the script (popen) or pickle the module (spawn): see the module docstring.
_REFUSED_DDP = {
    "ddp_spawn": "spawn",
    "ddp_spawn_find_unused_parameters_false": "spawn",
    "ddp_spawn_find_unused_parameters_true": "spawn",
    "ddp_find_unused_parameters_false": "popen",
    "ddp_find_unused_parameters_true": "popen",
}
_FORK_DDP = ("ddp_fork", "ddp_notebook", "ddp_fork_find_unused_parameters_false")


def is_ddp(strategy: object) -> bool:
    """Whether ``cfg.trainer.strategy`` names one of Lightning's DDP strategies."""
    return isinstance(strategy, str) and strategy.startswith("ddp")


def check_ddp(owner: str, strategy: str, start_method: str) -> None:
    """Refuse DDP strategies whose ranks are not forked (see the module docstring), and systems without fork."""
    start_method = "fork" if strategy in _FORK_DDP else _REFUSED_DDP.get(strategy, start_method)
    if start_method != "fork":
        raise ValueError(
            f"{owner} trainer.strategy={strategy!r} with start_method={start_method!r}: the ranks must be "
            "forked from the process that trains the fold (strategy: ddp, start_method: fork); 'popen' "
            "re-runs the whole command once per rank and 'spawn' pickles the module"
        )
    if not hasattr(os, "fork"):
        raise ValueError(f"{owner} trainer.strategy={strategy!r}: needs os.fork (Linux or macOS)")


def fork_strategy(process_group_backend: str | None) -> Any:
    """Lightning's DDP strategy with ranks forked from the calling process."""
    from pytorch_lightning.strategies import DDPStrategy

    return DDPStrategy(start_method="fork", process_group_backend=process_group_backend)


def shard(n_rows: int, world_size: int, rank: int) -> tuple[int, int, float]:
    """(start, stop, loss scale) of rank ``rank``'s contiguous share of ``n_rows`` rows (see the module docstring)."""
    rows = np.array_split(np.arange(n_rows), world_size)[rank]
    if rows.size == 0:
        raise ValueError(f"{n_rows} training rows cannot be shared by {world_size} processes")
    return int(rows[0]), int(rows[-1]) + 1, rows.size * world_size / n_rows


class RankRecords:
    """A temporary folder through which the ranks of one fit report to the calling process.

    Rank 0 writes the module's record (:meth:`write_record`) at the end of training; any rank whose loss diverged
    writes ``(method, epoch, loss)`` (:meth:`write_error`). The calling process reads them after (or when) the fit
    ends, then :meth:`close` removes the folder.
    """

    def __init__(self) -> None:
        self.folder = tempfile.mkdtemp(prefix="lenbench-ddp-")
        self._record = os.path.join(self.folder, "record.pkl")

    def write_record(self, record: dict[str, Any]) -> None:
        _write(self._record, record)

    def read_record(self) -> dict[str, Any] | None:
        """Rank 0's record, or None when no rank wrote one."""
        return _read(self._record)

    def write_error(self, rank: int, error: tuple[str, int, float]) -> None:
        _write(f"{self._record}.error{rank}", {"error": error})

    def first_error(self) -> tuple[str, int, float] | None:
        """The earliest divergence ``(method, epoch, loss)`` any rank reported, or None."""
        names = [name for name in os.listdir(self.folder) if ".error" in name]
        errors = [tuple(_read(os.path.join(self.folder, name))["error"]) for name in names]
        return min(errors, key=lambda e: e[1]) if errors else None  # type: ignore[return-value]

    def close(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


def _read(path: str) -> dict[str, Any] | None:
    if not os.path.exists(path):
        return None
    with open(path, "rb") as handle:
        return pickle.load(handle)


def _write(path: str, record: dict[str, Any]) -> None:
    with open(path, "wb") as handle:
        pickle.dump(record, handle)


@contextlib.contextmanager
def restore_environment(names: Sequence[str] = DDP_ENV) -> Iterator[None]:
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
