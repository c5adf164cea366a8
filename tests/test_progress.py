"""Per-fold progress on the console: live lines on a terminal, quarter-mark log lines elsewhere."""

from __future__ import annotations

import io
import logging
import os
import pty
import select
import subprocess
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from helpers import HANG_GUARD_S, REPO, job_env, train_command

from lenbench import progress
from lenbench.callbacks.progress import ProgressReporter
from lenbench.experiment import _log_fold
from lenbench.folds import FoldResult
from lenbench.logic.formula import Formula
from lenbench.progress import FoldProgressConsole, TrainingProgress


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_live_lines_one_per_running_fold_redrawn_in_place() -> None:
    screen = _Terminal()
    console = FoldProgressConsole("psi", stream=screen)
    assert console.live
    console.started(0, at=time.time() - 10)
    console.started(1, at=time.time() - 10)
    console.training(0, TrainingProgress(1000, 4000, ((999, 0.5),), loss=0.5))
    console._last_draw = 0.0  # the next event draws at once (draws are throttled to ten a second)
    console.training(1, TrainingProgress(2000, 4000, ()))
    text = screen.getvalue()
    assert "psi fold 0 [#####---------------] 1000/4000 epochs  loss 0.5000  ETA 30 s" in text
    assert "psi fold 1 [##########----------] 2000/4000 epochs  ETA 10 s" in text
    assert "\x1b[1F\x1b[J" in text  # the first drawing (one line) is erased before the two-line one
    console.clear()
    assert screen.getvalue().endswith("\x1b[2F\x1b[J")


def test_plain_stream_gets_quarter_mark_log_lines(caplog: pytest.LogCaptureFixture) -> None:
    console = FoldProgressConsole("pruning", stream=io.StringIO())
    assert not console.live
    console.started(3)
    with caplog.at_level(logging.INFO, logger="lenbench.progress"):
        for done in range(100, 5001, 100):
            console.training(3, TrainingProgress(done, 5000, ()))
    lines = [r.getMessage() for r in caplog.records]
    assert [line.split("] ")[1].split(" epochs")[0] for line in lines] == [
        "1300/5000",
        "2500/5000",
        "3800/5000",
    ]
    assert all(line.startswith("pruning fold 3 [") and "ETA" in line for line in lines)


def test_a_report_passing_several_marks_logs_one_line(caplog: pytest.LogCaptureFixture) -> None:
    """A short training reports every 100 epochs: 100 of 200 passes the 25 % and 50 % marks at once (entropy's
    progress lines printed twice before)."""
    console = FoldProgressConsole("entropy", stream=io.StringIO())
    console.started(0)
    with caplog.at_level(logging.INFO, logger="lenbench.progress"):
        console.training(0, TrainingProgress(100, 200, (), loss=0.69))
        console.training(0, TrainingProgress(200, 200, (), loss=0.29))
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == len(set(lines)) == 2
    assert lines[0].startswith("entropy fold 0 [##########----------] 100/200 epochs  loss 0.6900  ETA ")
    # training done: what remains is the read-out, not an ETA of 0 s
    assert (
        lines[1] == "entropy fold 0 [####################] 200/200 epochs  loss 0.2900  trained, explaining"
    )


def test_the_live_loss_is_the_latest_reported_not_the_last_curve_point() -> None:
    """The loss curve keeps a point every log_every_n_epochs (500) epochs; the line shows each report's latest."""
    screen = _Terminal()
    console = FoldProgressConsole("psi", stream=screen)
    console.started(0)
    for done, loss in ((100, 0.61), (200, 0.52)):
        console._last_draw = 0.0  # draw now (draws are throttled to ten a second)
        console.training(0, TrainingProgress(done, 5000, ((0, 0.7),) if done == 100 else (), loss=loss))
        assert f"{done}/5000 epochs  loss {loss:.4f}" in screen.getvalue()


def test_a_fold_line_cuts_a_long_formula_saying_where_the_whole_one_is(
    caplog: pytest.LogCaptureFixture,
) -> None:
    metrics = {
        "model_accuracy": 0.9,
        "explanation_accuracy": 0.8,
        "explanation_fidelity": 0.85,
        "explanation_complexity": 4.0,
    }
    short, long = (
        Formula.parse(" | ".join(f"(c{i}_HIGH & ~c{i + 1}_LOW)" for i in range(n))) for n in (2, 9)
    )
    with caplog.at_level(logging.INFO, logger="lenbench.experiment"):
        for position, formula in enumerate((short, long), start=1):
            _log_fold("entropy", FoldResult(position, formula, metrics, [(199, 0.29)]), position, 2)
    first, second = (r.getMessage() for r in caplog.records)
    assert first == (
        "entropy fold 1 (1/2) epoch 199 loss 0.2900: model 0.9000 | explanation 0.8000 | fidelity 0.8500 | "
        f"complexity 4 | {short}"
    )
    assert second.endswith(f"| {str(long)[:80]} ... [whole: explanations.json]")


def test_each_report_carries_the_latest_checked_loss_not_only_the_curve_points() -> None:
    """The module checks its losses every 100 epochs (one sync; ``final_losses`` then holds the last checked epoch's,
    on the CPU) and keeps a curve point every 500: each report carries both, the console shows the first."""
    reports: list[TrainingProgress] = []
    module = SimpleNamespace(
        checked_epochs=0, last_epoch=4999, loss_curves=[[(0, 0.7)]], final_losses=lambda: [0.61]
    )
    trainer = SimpleNamespace(global_rank=0)
    reporter = ProgressReporter(reports.append)
    reporter.on_train_start(trainer, module)
    for checked, latest in (
        (100, 0.61),
        (100, 0.61),
        (200, 0.52),
    ):  # an epoch end without a new check: no report
        module.checked_epochs, module.final_losses = checked, lambda v=latest: [v]
        reporter.on_train_epoch_end(trainer, module)
    assert reports == [TrainingProgress(100, 5000, ((0, 0.7),), 0.61), TrainingProgress(200, 5000, (), 0.52)]


def test_the_eta_follows_the_recent_rate_and_a_broken_one_is_logged_again(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The rate is that of the last ten reports: the start-up before the first (fork, data, Trainer) is not training,
    and a machine getting busier shows. A fold still training well past the ETA last logged gets a fresh line (a
    file-logged psi job printed ETA 22 s, then nothing for 44 s)."""
    clock = [0.0]
    monkeypatch.setattr(progress.time, "time", lambda: clock[0])
    console = FoldProgressConsole("psi", stream=io.StringIO())
    console.started(0, at=0.0)
    with caplog.at_level(logging.INFO, logger="lenbench.progress"):
        clock[0] = 29.0  # 29 s of start-up, then 100 epochs a second up to 3800, then 20 a second
        for done in range(100, 5001, 100):
            clock[0] += 1.0 if done <= 3800 else 5.0
            console.training(0, TrainingProgress(done, 5000, (), loss=0.5))
    lines = [r.getMessage() for r in caplog.records]
    assert [line.split("] ")[1].split(" epochs")[0] for line in lines] == [
        "1300/5000",
        "2500/5000",
        "3800/5000",
        "4400/5000",  # 30 s after the 75 % line's ETA 12 s: over 1.25 x 12 s + 10 s late
    ]
    # since the start: 120 s at 1300 epochs; 22 s at 4400 (the slower rate is 7 of the 10 last reports)
    assert [line.split("  ")[-1] for line in lines] == ["ETA 37 s", "ETA 25 s", "ETA 12 s", "ETA 22 s"]


@pytest.mark.e2e
def test_a_job_on_a_terminal_shows_live_progress_lines(tmp_path: Path) -> None:
    """``python -m train`` with stderr on a pseudo-terminal: its fold lines are drawn with cursor controls."""
    master, slave = pty.openpty()
    cmd = train_command(tmp_path, "data=dnf", "method=psi", "method.explainer.epochs=3000", "cv.n_splits=2")
    proc = subprocess.Popen(cmd, cwd=REPO, env=job_env(tmp_path), stdout=subprocess.DEVNULL, stderr=slave)
    os.close(slave)
    chunks = []
    deadline = time.monotonic() + HANG_GUARD_S
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 1.0)
        if ready:
            try:
                data = os.read(master, 65536)
            except OSError:  # the job closed the terminal: it ended
                break
            if not data:
                break
            chunks.append(data)
        elif proc.poll() is not None:
            break
    os.close(master)
    assert proc.wait(timeout=HANG_GUARD_S) == 0
    screen = b"".join(chunks).decode(errors="replace")
    assert "\x1b[K" in screen and "epochs" in screen and "ETA" in screen
    assert "psi fold 0 (1/2)" in screen or "psi fold 1 (1/2)" in screen
