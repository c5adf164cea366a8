"""A tracking server that dies: a job waits seconds, not minutes, for a dead one and says once how to import its
results."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
from helpers import Job, job_env, train_command
from test_tracking_record import start_server
from ui_helpers import kill_group

TINY = ("data=xor", "data.n_samples=300", "method=tree", "cv.n_splits=3", "cv.n_jobs=1")


@pytest.mark.e2e
def test_a_server_killed_mid_job_costs_seconds_and_the_job_says_once_how_to_import(tmp_path: Path) -> None:
    uri, server = start_server(tmp_path / "server")
    try:
        with Job(train_command(tmp_path, *TINY), job_env(tmp_path, uri)) as job:
            job.wait_for_line(r"fold 0 \(1/3\)")
            os.kill(job.proc.pid, signal.SIGSTOP)  # the server dies after fold 0, before fold 1 is logged
            kill_group(server)
            killed = time.monotonic()
            os.kill(job.proc.pid, signal.SIGCONT)
            code = job.finish()
            took = time.monotonic() - killed
    finally:
        kill_group(server)
    assert code == 2, job.stderr[-3000:]
    assert took < 60, f"the job ended {took:.0f} s after the server died"
    last = job.stderr.strip().splitlines()[-1]
    assert "the MLflow store failed during the job" in last and "import_results" in last, last
    assert job.stderr.count("import_results") == 1, job.stderr[-3000:]
    assert "Retrying" not in job.stderr and "urllib3" not in job.stderr, job.stderr[-3000:]
    assert "Traceback" not in job.stderr
    assert (tmp_path / "job" / "results.csv").read_text().count("\n") == 4  # header and the 3 folds
