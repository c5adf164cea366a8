"""A tracking server that dies or is shared: a job waits seconds, not minutes, for a dead one and says once how to
import its results; ``make server`` / ``make ui`` warn before opening the store to the network without a login,
and the login server refuses a request without credentials."""

from __future__ import annotations

import os
import signal
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from helpers import REPO, Job, job_env, run_command, run_train, train_command
from test_tracking_record import serve, start_server
from ui_helpers import free_port, kill_group

TINY = ("data=xor", "data.n_samples=300", "method=tree", "cv.n_splits=3", "cv.n_jobs=1")


@pytest.mark.e2e
def test_a_server_killed_mid_job_costs_seconds_and_the_job_says_once_how_to_import(tmp_path: Path) -> None:
    """The issue's case: a 3-fold psi job, cv.n_jobs=1, its folds trained one after another; the job is stopped at
    fold 0's line, so fold 1 is still training when the server dies, however short its training."""
    uri, server = start_server(tmp_path / "server")
    psi = (
        "data=xor",
        "data.n_samples=300",
        "method=psi",
        "method.explainer.epochs=1000",
        "method.explainer.callbacks.1.epoch=500",
        "cv.n_splits=3",
        "cv.n_jobs=1",
        "trainer.batching=off",
    )
    try:
        with Job(train_command(tmp_path, *psi), job_env(tmp_path, uri)) as job:
            job.wait_for_line(r"fold 0 \(1/3\)")
            os.kill(job.proc.pid, signal.SIGSTOP)  # the server dies after fold 0, while fold 1 trains
            kill_group(server)
            killed = time.monotonic()
            os.kill(job.proc.pid, signal.SIGCONT)
            code = job.finish()
            took = time.monotonic() - killed
    finally:
        kill_group(server)
    assert code == 2, job.stderr[-3000:]
    assert took < 60, f"the job ended {took:.0f} s after the server died"
    lines = job.stderr.strip().splitlines()
    failed = next(i for i, line in enumerate(lines) if "MLflow store" in line and "failed (" in line)
    assert failed < next(i for i, line in enumerate(lines) if "fold 1 (2/3)" in line), "fold 1 logged after"
    assert "the MLflow store failed during the job" in lines[-1] and "import_results" in lines[-1], lines[-1]
    assert job.stderr.count("import_results") == 1, job.stderr[-3000:]
    assert "Retrying" not in job.stderr and "urllib3" not in job.stderr, job.stderr[-3000:]
    assert "Traceback" not in job.stderr
    assert (tmp_path / "job" / "results.csv").read_text().count("\n") == 4  # header and the 3 folds


def _make(target: str, tmp_path: Path, *args: str) -> list[str]:
    """``make <target>`` over a store, artifacts and login database in ``tmp_path``, on a free port."""
    store = f"STORE=sqlite:///{tmp_path / 'mlflow.db'}"
    files = (f"ARTIFACTS={tmp_path / 'artifacts'}", f"AUTH_CONFIG={tmp_path / 'auth' / 'basic_auth.ini'}")
    return ["make", "-s", "-C", str(REPO), target, store, *files, f"PORT={free_port()}", *args]


@pytest.mark.e2e
def test_make_server_warns_before_opening_the_store_to_the_network_without_a_login(tmp_path: Path) -> None:
    # 192.0.2.1 (TEST-NET-1) is no address of this machine: the server cannot bind it and stops, after the warning.
    done = run_command(_make("server", tmp_path, "HOST=192.0.2.1"), dict(os.environ))
    warning = [line for line in done.stderr.splitlines() if line.startswith("WARNING: make server")]
    assert len(warning) == 1, done.stderr[-3000:]
    for needle in (
        "HOST=192.0.2.1 without AUTH=1",
        "can read and write every run",
        "can run code",
        "lenbench.explain",
    ):
        assert needle in warning[0], warning[0]
    # An exported HOST does not open make ui (only HOST=... on make's command line does); AUTH=1 adds the login.
    dry = run_command(_make("ui", tmp_path, "-n"), {**os.environ, "HOST": "0.0.0.0"})
    assert "--host 127.0.0.1" in dry.stdout and "0.0.0.0" not in dry.stdout, dry.stdout
    dry = run_command(_make("ui", tmp_path, "-n", "HOST=0.0.0.0", "AUTH=1"), dict(os.environ))
    assert "ui --backend-store-uri" in dry.stdout and "--host 0.0.0.0" in dry.stdout
    assert "--app-name basic-auth" in dry.stdout and "MLFLOW_AUTH_CONFIG_PATH=" in dry.stdout


@pytest.mark.e2e
def test_make_server_with_auth_refuses_requests_without_a_login(tmp_path: Path) -> None:
    """``make server AUTH=1`` as the Slurm page (docs/scaling-out.md) runs it: a request or a job without credentials is
    refused, a job with MLFLOW_TRACKING_USERNAME/PASSWORD logs its runs."""
    secrets = {
        "MLFLOW_AUTH_ADMIN_PASSWORD": "a-long-Passw0rd-here",
        "MLFLOW_FLASK_SERVER_SECRET_KEY": "test-key",
    }
    cmd = _make("server", tmp_path, "AUTH=1")
    uri = "http://127.0.0.1:" + next(a for a in cmd if a.startswith("PORT=")).removeprefix("PORT=")
    server = serve(cmd, tmp_path, uri, env={**os.environ, **secrets})
    try:
        with pytest.raises(urllib.error.HTTPError) as refused:
            no_proxy = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: never a proxy
            no_proxy.open(f"{uri}/api/2.0/mlflow/experiments/search?max_results=1", timeout=600)
        assert refused.value.code == 401
        done = run_train(tmp_path / "anonymous", *TINY, uri=uri)  # no login: one line, before training
        assert done.returncode == 2 and "You are not authenticated" in done.stderr, done.stderr[-3000:]
        assert "fix: export MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD" in done.stderr
        assert "Traceback" not in done.stderr and "fold 0" not in done.stderr
        login = {
            "MLFLOW_TRACKING_USERNAME": "admin",
            "MLFLOW_TRACKING_PASSWORD": secrets["MLFLOW_AUTH_ADMIN_PASSWORD"],
        }
        done = run_train(tmp_path, *TINY, env=job_env(tmp_path, uri, **login))
        assert done.returncode == 0, done.stderr[-3000:]
    finally:
        kill_group(server)
    assert (
        tmp_path / "auth" / "basic_auth.db"
    ).is_file()  # the users live beside AUTH_CONFIG, not in the repository
