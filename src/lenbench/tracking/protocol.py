"""The tracking interface of a job: what the cross-validation loop calls, whatever records it.

``experiment.run_experiment`` only knows :class:`Tracker`; :class:`~lenbench.tracking.mlflow.MlflowTracker` keeps it
for MLflow, :class:`NullTracker` when tracking is off, and :class:`ResilientTracker` wraps either so a store failing
mid-job never stops the training. Per-fold numbers go to :meth:`Tracker.log_fold` only; :meth:`Tracker.finish_job`
receives the job's summary (``<metric>_mean``, ``<metric>_sem``, job-level metrics, ``n_folds``), never fold values
(README.md, "Sweeps, comparison and the MLflow UI").
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from lenbench.tracking.store import check_store, short_error

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)


class Tracker(Protocol):
    """What the experiment loop needs from tracking; MlflowTracker, NullTracker and ResilientTracker keep it."""

    def start_job(self, run_name: str, tags: Mapping[str, str], params: Mapping[str, Any]) -> None: ...

    def start_fold(self, fold: int, started_at: float) -> None: ...

    def log_training(self, fold: int, losses: Sequence[tuple[int, float]]) -> None: ...

    def log_fold(
        self,
        fold: int,
        metrics: Mapping[str, float],
        formula: str,
        loss_curve: Sequence[tuple[int, float]],
        reused_from: str | None = None,
    ) -> None: ...

    def log_fold_inputs(
        self,
        fold: int,
        dataset_name: str,
        checksum: str | None,
        splits: Mapping[str, Any],
        source: str | None = None,
    ) -> None: ...

    def log_fold_model(self, fold: int, model: Any) -> None: ...

    def log_job_model(self, models: Mapping[int, Any]) -> None: ...

    def fail_fold(self, fold: int, error: str) -> None: ...

    def finish_job(
        self,
        summary: Mapping[str, float],
        artifacts: Sequence[Path],
        texts: Mapping[str, str],
        results: pd.DataFrame | None,
    ) -> None: ...

    def fail_job(self, error: str, status: str = "FAILED") -> None: ...

    def set_tags(self, job: Mapping[str, str], folds: Mapping[int, Mapping[str, str]]) -> None: ...


TRACKER_CALLS = frozenset(name for name in vars(Tracker) if not name.startswith("_"))
"""The calls of :class:`Tracker`: what :class:`NullTracker` ignores and :class:`ResilientTracker` forwards."""


class NullTracker:
    """Tracking switched off (``tracking.enabled=false``): every :class:`Tracker` call does nothing; results still
    land in the job folder."""

    run_id: str | None = None

    def __getattr__(self, name: str) -> Callable[..., None]:
        if name not in TRACKER_CALLS:
            raise AttributeError(name)
        return lambda *args, **kwargs: None


class ResilientTracker:
    """Keeps a job going when the store fails mid-run: the first error is logged and remembered, later calls are
    skipped, and the job's local result files stay the record (``python -m lenbench.tracking.import_results``)."""

    def __init__(self, tracker: Tracker, store: str) -> None:
        self.tracker = tracker
        self.store = store
        self.error: str | None = None

    @property
    def run_id(self) -> str | None:
        return getattr(self.tracker, "run_id", None)

    def __getattr__(self, name: str) -> Callable[..., None]:
        """A :class:`Tracker` call, forwarded to the wrapped tracker through :meth:`_call`."""
        if name not in TRACKER_CALLS:
            raise AttributeError(name)
        return functools.partial(self._call, name)

    def _call(self, name: str, *args: Any, **kwargs: Any) -> None:
        if self.error is not None:
            return
        try:
            getattr(self.tracker, name)(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - any store failure: keep training, keep local results
            self.error = short_error(exc)  # one line: no SQL statement, no parameters
            log.warning(
                "MLflow store %s failed (%s); the job goes on and writes its results locally",
                self.store,
                self.error,
            )

    def find_finished(self, config_hash: str) -> str | None:
        return self.tracker.find_finished(config_hash)  # type: ignore[attr-defined]

    def finished_folds(self, config_hash: str) -> dict[int, Any]:
        """Reusable folds of an earlier run; none when the store cannot say (the folds are trained again)."""
        try:
            return self.tracker.finished_folds(config_hash)  # type: ignore[attr-defined]
        except Exception as exc:  # noqa: BLE001 - reuse is an optimisation: never fail a job for it
            log.warning("could not read finished folds from %s (%s); training every fold", self.store, exc)
            return {}

    def finish_job(self, *args: Any, **kwargs: Any) -> None:
        self._call("finish_job", *args, **kwargs)
        self._close_after_failure()

    def fail_job(self, *args: Any, **kwargs: Any) -> None:
        self._call("fail_job", *args, **kwargs)
        self._close_after_failure()

    def _close_after_failure(self) -> None:
        """After a store failure, try once to close the job's runs as FAILED (a lock that came and went), so they
        never stay RUNNING; the complete record is the job folder, to import. If the store is still gone, the next
        job start (or ``make cleanup``) closes them once this process has ended."""
        if self.error is None:
            return
        try:
            # a server that hangs costs its /health timeout here, not every retry again
            check_store(self.store)
            self.tracker.fail_job(
                f"the MLflow store failed during the job ({self.error}); see the job folder"
            )
        except Exception as exc:  # noqa: BLE001 - the store is still unusable
            log.debug("could not close the runs after the store failed: %s", exc)
