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

import pytest
from helpers import HANG_GUARD_S, REPO, job_env, train_command

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
    console.training(0, TrainingProgress(1000, 4000, ((999, 0.5),)))
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
