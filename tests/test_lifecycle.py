"""Runs that never lie or linger: live fold runs, interrupts that keep finished folds, reruns that reuse them,
and runs of a killed process closed on the next start."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from helpers import REPO, Job, job_env, run_command, store_uri, train_command, wait_until

# Small but not instant: each psi fold trains a few seconds, so signals arrive while folds train.
PSI = ("data=dnf", "method=psi", "method.explainer.epochs=4000", "cv.n_splits=4")
# One process trains the 4 folds together, so a signal after fold 0's line lands while the others are scored and
# recorded, whatever the epochs: a quarter of the training, fan-in pruning at the same share of it.
PSI_TOGETHER = (
    "data=dnf",
    "method=psi",
    "method.explainer.epochs=1000",
    "method.explainer.callbacks.1.epoch=500",
)
PSI_TOGETHER += ("cv.n_splits=4", "cv.n_jobs=1")


def _client(tmp_path: Path):  # noqa: ANN202
    from mlflow import MlflowClient

    return MlflowClient(store_uri(tmp_path))


def _runs(tmp_path: Path, experiment: str = "dnf") -> list:
    client = _client(tmp_path)
    found = client.get_experiment_by_name(experiment)
    return [] if found is None else client.search_runs([found.experiment_id], max_results=1000)


def _folds(runs: list) -> list:
    return [r for r in runs if "fold" in r.data.tags]


@pytest.mark.e2e
def test_fold_runs_are_open_while_their_fold_trains_and_log_the_loss_as_it_goes(tmp_path: Path) -> None:
    # Two folds (four cost twice the CPU and add nothing here), trained together in the job's one process.
    two_folds = (*PSI[:-1], "cv.n_splits=2", "cv.n_jobs=1", "trainer.log_every_n_epochs=500")
    with Job(train_command(tmp_path, *two_folds), job_env(tmp_path)) as job:
        job.wait_for_line(r"psi fold 0 \[.*1000/4000 epochs")  # the progress line at 25 % of fold 0

        def live_fold_run() -> object:
            client = _client(tmp_path)
            running = [r for r in _folds(_runs(tmp_path)) if r.info.status == "RUNNING"]
            return running and client.get_metric_history(running[0].info.run_id, "train_loss")

        history = wait_until(live_fold_run, "a RUNNING fold run with training-loss points", job.proc)
        assert [m.step for m in history][:2] == [0, 500]
        assert job.finish() == 0, job.stderr[-3000:]
    folds = _folds(_runs(tmp_path))
    assert len(folds) == 2 and {r.info.status for r in folds} == {"FINISHED"}
    for run in folds:
        duration = (run.info.end_time - run.info.start_time) / 1000
        assert duration >= run.data.metrics["training_time"], (duration, run.data.metrics["training_time"])
        steps = [m.step for m in _client(tmp_path).get_metric_history(run.info.run_id, "train_loss")]
        assert steps == [0, 500, 1000, 1500, 2000, 2500, 3000, 3500, 3999]  # each point once
        inputs = run.inputs.dataset_inputs  # the fold's rows, as MLflow dataset inputs
        assert sorted(tag.value for i in inputs for tag in i.tags) == ["test", "train", "validation"]
        assert {i.dataset.name for i in inputs} == {"dnf"} and len({i.dataset.digest for i in inputs}) == 3
    parent = next(r for r in _runs(tmp_path) if "fold" not in r.data.tags)
    assert not set(parent.data.metrics) & {"model_accuracy", "train_loss"}


def _interrupt_and_rerun(tmp_path: Path, send: signal.Signals, n_jobs: int) -> None:
    cmd = train_command(tmp_path, *(PSI_TOGETHER if n_jobs == 1 else (*PSI, f"cv.n_jobs={n_jobs}")))
    with Job(cmd, job_env(tmp_path)) as job:
        job.wait_for_line(r"psi fold \d+ \(1/4\)")  # a fold finished (its run is FINISHED by then)
        job.proc.send_signal(send)
        code = job.finish()
    assert code == 130, job.stderr[-3000:]
    assert "Traceback" not in job.stderr, job.stderr[-3000:]
    lines = [line for line in job.stderr.splitlines() if "interrupted: kept" in line]
    assert len(lines) == 1, job.stderr[-3000:]
    kept = pd.read_csv(tmp_path / "job" / "results.csv")
    assert 1 <= len(kept) < 4 and f"kept {len(kept)} finished fold(s) of 4" in lines[0]
    runs = _runs(tmp_path)
    assert "RUNNING" not in {r.info.status for r in runs}
    assert {r.info.status for r in runs if "fold" not in r.data.tags} == {"KILLED"}

    rerun = run_command(cmd, job_env(tmp_path))
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert f"reusing {len(kept)} fold(s)" in rerun.stderr
    assert len(kept) == rerun.stderr.count(" reused from run ")
    summary = json.loads((tmp_path / "job" / "summary.json").read_text())
    assert summary["complete"] is True and summary["n_folds"] == 4
    final = next(r for r in _runs(tmp_path) if "fold" not in r.data.tags and r.info.status == "FINISHED")
    children = [r for r in _folds(_runs(tmp_path)) if r.data.tags["mlflow.parentRunId"] == final.info.run_id]
    assert sorted(int(r.data.tags["fold"]) for r in children) == [0, 1, 2, 3]
    reused = {int(r.data.tags["fold"]) for r in children if "reused_from" in r.data.tags}
    assert reused == set(kept["split"])


@pytest.mark.e2e
def test_sigterm_with_parallel_folds_keeps_finished_folds_and_the_rerun_reuses_them(tmp_path: Path) -> None:
    _interrupt_and_rerun(tmp_path, signal.SIGTERM, n_jobs=2)


@pytest.mark.e2e
def test_ctrl_c_on_a_sequential_job_is_one_line_and_exit_130(tmp_path: Path) -> None:
    """SIGINT, as Ctrl-C sends it (inside Lightning's fit, which turns it into SystemExit)."""
    _interrupt_and_rerun(tmp_path, signal.SIGINT, n_jobs=1)


@pytest.mark.e2e
def test_runs_of_a_killed_process_are_closed_by_cleanup_and_on_the_next_start(tmp_path: Path) -> None:
    cmd = train_command(tmp_path, *PSI_TOGETHER)
    with Job(cmd, job_env(tmp_path)) as job:
        job.wait_for_line(r"psi fold 0 \(1/4\)")
        job.proc.kill()  # SIGKILL: Python cannot close anything
        job.proc.wait()
    assert "RUNNING" in {r.info.status for r in _runs(tmp_path)}
    cleanup = [sys.executable, "-m", "lenbench.tracking.cleanup"]
    listed = run_command([*cleanup, "--dry-run"], job_env(tmp_path))
    assert listed.returncode == 0 and "stale (would close)" in listed.stdout, listed.stdout + listed.stderr
    assert "RUNNING" in {r.info.status for r in _runs(tmp_path)}  # a dry run closes nothing
    closed = subprocess.run([*cleanup], cwd=REPO, env=job_env(tmp_path), capture_output=True, text=True)
    assert closed.returncode == 0 and "closed as KILLED" in closed.stdout
    assert {r.info.status for r in _runs(tmp_path)} <= {"FINISHED", "KILLED"}


@pytest.mark.e2e
def test_a_job_start_closes_runs_its_dead_predecessor_left_running(tmp_path: Path) -> None:
    with Job(train_command(tmp_path, *PSI_TOGETHER), job_env(tmp_path)) as job:
        job.wait_for_line(r"psi fold 0 \(1/4\)")
        job.proc.kill()
        job.proc.wait()
    rerun = run_command(train_command(tmp_path, *PSI_TOGETHER), job_env(tmp_path))
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    # The parent, and the runs of the folds that were still training with fold 0 when the process died.
    assert re.search(r"closed [1-4] run\(s\) left RUNNING by a process that died", rerun.stderr), rerun.stderr
    assert "reusing 1 fold(s)" in rerun.stderr
    assert "RUNNING" not in {r.info.status for r in _runs(tmp_path)}


def _children(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (read from /proc: the job's forked fold workers)."""
    return [int(p.name) for p in Path("/proc").glob("[0-9]*") if (_stat(int(p.name)) or ("", 0))[1] == pid]


def _stat(pid: int) -> tuple[str, int] | None:
    """(state, parent pid) of a process, None once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return None
    return fields[0], int(fields[1])


@pytest.mark.e2e
@pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="the kernel's parent-death signal is Linux's"
)
def test_fold_workers_die_with_a_job_killed_by_sigkill(tmp_path: Path) -> None:
    """kill -9 of the job runs none of its code: the kernel ends the forked fold workers (PR_SET_PDEATHSIG)."""
    cmd = train_command(tmp_path, *PSI, "cv.n_jobs=2")
    with Job(cmd, job_env(tmp_path)) as job:
        job.wait_for_line(r"psi fold \d \[")  # a worker reports training progress
        workers = wait_until(lambda: (w := _children(job.proc.pid)) and len(w) >= 2 and w, "2 fold workers")
        job.proc.kill()
        assert (
            job.proc.wait() == -signal.SIGKILL
        )  # killed while its workers trained (their stderr stays open)

    def alive() -> list[int]:
        return [pid for pid in workers if (_stat(pid) or ("Z", 0))[0] != "Z"]  # a zombie has ended

    wait_until(
        lambda: not alive(), "the fold workers' end", timeout=600.0, details=lambda: f"alive: {alive()}"
    )


def test_an_interrupt_before_any_fold_finished_says_nothing_was_kept() -> None:
    from lenbench.experiment import JobInterrupted

    nothing = str(JobInterrupted(0, 4, Path("job")))
    assert nothing == "interrupted before any fold finished: nothing was kept; the same command trains all 4"
    some = str(JobInterrupted(1, 4, Path("job")))
    assert some.startswith("interrupted: kept 1 finished fold(s) of 4; their results are in job/results.csv")
