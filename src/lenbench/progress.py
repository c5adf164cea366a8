"""The console's view of a job's folds while they train: epochs done / total and an ETA per running fold.

On a terminal (stderr is a TTY) each running fold has one live line, redrawn in place at most ten times a second, also
when folds train in parallel processes (their progress reaches the job's process as events). Anywhere else (a log
file, CI, a pipe) the same information becomes plain log lines, one per fold at 25 %, 50 % and 75 % of its epochs,
so logs stay short and readable. Methods that do not train epochs (trees, rule lists) show no progress line: their
folds take milliseconds.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TextIO

log = logging.getLogger("lenbench.progress")

_MARKS = (0.25, 0.5, 0.75)
_BAR = 20


@dataclass(frozen=True)
class TrainingProgress:
    """``epochs_done`` of ``epochs_total``; ``losses``: the (epoch, loss) points recorded since the last report
    (one every ``trainer.log_every_n_epochs`` epochs, and the last epoch's). Reported by the training's callback
    (:class:`lenbench.callbacks.progress.ProgressReporter`) to a sink the fold loop provides."""

    epochs_done: int
    epochs_total: int
    losses: tuple[tuple[int, float], ...] = ()


ProgressSink = Callable[[TrainingProgress], None]


@dataclass
class _Fold:
    started: float
    done: int = 0
    total: int = 0
    loss: float | None = None
    marks: int = 0  # quarter marks already logged (plain mode)

    def eta(self, now: float) -> float | None:
        if self.done <= 0 or self.total <= 0:
            return None
        return (now - self.started) / self.done * (self.total - self.done)


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
        state = self.running.setdefault(fold, _Fold(started=time.time()))
        state.done, state.total = progress.epochs_done, progress.epochs_total
        if progress.losses:
            state.loss = progress.losses[-1][1]
        if self.live:
            self._draw()
        else:
            self._log_marks(fold, state)

    def finished(self, fold: int) -> None:
        self.running.pop(fold, None)

    def line(self, fold: int, state: _Fold, now: float) -> str:
        share = state.done / state.total if state.total else 0.0
        bar = "#" * round(share * _BAR) + "-" * (_BAR - round(share * _BAR))
        loss = "" if state.loss is None else f"  loss {state.loss:.4f}"
        return f"{self.method} fold {fold} [{bar}] {state.done}/{state.total} epochs{loss}  {_seconds(state.eta(now))}"

    def _log_marks(self, fold: int, state: _Fold) -> None:
        share = state.done / state.total if state.total else 0.0
        while state.marks < len(_MARKS) and share >= _MARKS[state.marks]:
            state.marks += 1
            log.info("%s", self.line(fold, state, time.time()))

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
