"""The console's view of a job's folds while they train: epochs done / total and an ETA per running fold.

On a terminal (stderr is a TTY) each running fold has one live line, redrawn in place at most ten times a second, also
when folds train in parallel processes (their progress reaches the job's process as events). Anywhere else (a log
file, CI, a pipe) the same information becomes plain log lines, one per fold as it passes 25 %, 50 % and 75 % of its
epochs, and again when it trains on well past the ETA last logged: logs stay short and promise no end that does not
come. The ETA: the epochs left at the rate of the fold's last ten reports (start-up is left out, a busier machine
shows). Methods that do not train epochs (trees, rule lists) show no progress line: their folds take milliseconds.
"""

from __future__ import annotations

import logging
import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TextIO

log = logging.getLogger("lenbench.progress")

_MARKS = (0.25, 0.5, 0.75)
_BAR = 20


@dataclass(frozen=True)
class TrainingProgress:
    """``epochs_done`` of ``epochs_total``; ``losses``: the (epoch, loss) points recorded since the last report
    (one every ``trainer.log_every_n_epochs`` epochs, and the last epoch's); ``loss``: the latest checked epoch's (the
    console's). Reported by the training's callback (:class:`lenbench.callbacks.progress.ProgressReporter`)."""

    epochs_done: int
    epochs_total: int
    losses: tuple[tuple[int, float], ...] = ()
    loss: float | None = None


ProgressSink = Callable[[TrainingProgress], None]


@dataclass
class _Fold:
    started: float
    done: int = 0
    total: int = 0
    loss: float | None = None
    reports: deque[tuple[float, int]] = field(default_factory=lambda: deque(maxlen=10))  # (time, epochs done)
    marks: int = 0  # quarter marks already logged (plain mode)
    overdue: float = float("inf")  # plain mode: when the last logged ETA has clearly passed

    def eta(self, now: float) -> float | None:
        at, base = self.reports[0] if self.reports and self.done > self.reports[0][1] else (self.started, 0)
        if self.done <= base or self.total <= 0:
            return None
        return (now - at) / (self.done - base) * (self.total - self.done)


def _seconds(value: float | None) -> str:
    if value is None:
        return "ETA ?"
    return f"ETA {value:.0f} s" if value < 120 else f"ETA {value / 60:.1f} min"


class FoldProgressConsole:
    """Shows the running folds of one job; ``live`` defaults to whether ``stream`` is a terminal."""

    def __init__(self, method: str, stream: TextIO | None = None, live: bool | None = None) -> None:
        self.method = method
        self.stream = stream or sys.stderr
        self.live = self.stream.isatty() if live is None else live
        self.running: dict[int, _Fold] = {}
        self._drawn = 0
        self._last_draw = 0.0

    def started(self, fold: int, at: float | None = None) -> None:
        self.running[fold] = _Fold(started=time.time() if at is None else at)

    def training(self, fold: int, progress: TrainingProgress) -> None:
        now = time.time()
        state = self.running.setdefault(fold, _Fold(started=now))
        state.reports.append((now, progress.epochs_done))
        state.done, state.total = progress.epochs_done, progress.epochs_total
        state.loss = state.loss if progress.loss is None else progress.loss
        if self.live:
            self._draw()
        else:
            self._log_plain(fold, state, now)

    def finished(self, fold: int) -> None:
        self.running.pop(fold, None)

    def line(self, fold: int, state: _Fold, now: float) -> str:
        share = state.done / state.total if state.total else 0.0
        bar = "#" * round(share * _BAR) + "-" * (_BAR - round(share * _BAR))
        loss = "" if state.loss is None else f"  loss {state.loss:.4f}"
        left = "trained, explaining" if 0 < state.total <= state.done else _seconds(state.eta(now))
        return f"{self.method} fold {fold} [{bar}] {state.done}/{state.total} epochs{loss}  {left}"

    def _log_plain(self, fold: int, state: _Fold, now: float) -> None:
        """One line when the fold passes quarter marks, or when it trains on well past the ETA last logged."""
        passed = sum(state.total > 0 and state.done >= mark * state.total for mark in _MARKS)
        if passed > state.marks or now > state.overdue:
            state.marks, eta = passed, state.eta(now)
            state.overdue = float("inf") if eta is None else now + 1.25 * eta + 10.0
            log.info("%s", self.line(fold, state, now))

    def clear(self) -> None:
        """Erase the live lines (before other output); the next progress event draws them again."""
        if self.live and self._drawn:
            self.stream.write(f"\x1b[{self._drawn}F\x1b[J")
            self.stream.flush()
            self._drawn = 0

    def _draw(self) -> None:
        now = time.time()
        if now - self._last_draw < 0.1:  # at most ten redraws a second
            return
        self._last_draw = now
        lines = [self.line(f, s, now) for f, s in sorted(self.running.items()) if s.total]
        self.clear()
        if lines:
            self.stream.write("\n".join(f"\x1b[K{text}" for text in lines) + "\n")
            self.stream.flush()
            self._drawn = len(lines)
