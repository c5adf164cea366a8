"""What many tests share: small synthetic data, folds, and `python -m train` / `lenbench.report` as subprocesses
with a temporary MLflow store, plus event waits that hold on a busy machine.

Timing rule for every test: wait for an event (a file appearing, a line in a log, a run's status), never for a
fixed time. A timeout is only a hang guard, never shorter than ten minutes: a correct program on a machine loaded
ten times over must not reach it. ``HANG_GUARD_S`` is that guard for the fast suite's jobs (each well under a
minute on an idle core); ``SLOW_HANG_GUARD_S`` for the real MIMIC-II protocol (minutes on an idle core).
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import io
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from subprocess import CompletedProcess

import numpy as np

REPO = Path(__file__).resolve().parents[1]
CONF = REPO / "conf"
# A job's environment for Hydra targets defined in tests/ (bug_targets, store_targets), named by their bare module
# names: torch-explain (a dependency) installs a top-level package ``tests`` that shadows this folder as ``tests``.
TEST_TARGETS = {"PYTHONPATH": str(REPO / "tests")}
# The documentation: the README and the site's pages (mkdocs.yml), whose commands tests run as written.
DOC_PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]

HANG_GUARD_S = 1800.0
SLOW_HANG_GUARD_S = 3600.0


# -- data ----------------------------------------------------------------------------------------------------------


def doc_section(page: str, heading: str) -> str:
    """The section of ``page`` (``README.md``, or a page of docs/ by its file name) under the Markdown heading
    ``heading`` (its text, without the #s), up to the next heading of the same or a higher level; a line starting
    with # inside a code block (a shell comment) is no heading."""
    path = REPO / page if page == "README.md" else REPO / "docs" / page
    lines, fence, level, found = path.read_text().splitlines(keepends=True), False, 0, []
    for line in lines:
        fence ^= line.startswith("```")
        hashes = len(line) - len(line.lstrip("#")) if not fence and re.match(r"#+ ", line) else 0
        if level and hashes and hashes <= level:
            break
        if level:
            found.append(line)
        elif hashes and line[hashes:].strip() == heading:
            level = hashes
    assert level, f"no heading {heading!r} in {path}"
    return "".join(found)


def boolean_rows(n: int = 200, k: int = 8, seed: int = 0, rule: str = "and") -> tuple[np.ndarray, np.ndarray]:
    """Rows of k fair 0/1 concepts (float32) and an int64 label: ``c0 & c1`` (rule="and") or
    ``(c0 & c1) | (c2 & ~c3)`` (rule="dnf"), without noise."""
    rng = np.random.default_rng(seed)
    x = (rng.random((n, k)) > 0.5).astype(np.float32)
    c = x > 0.5
    if rule == "and":
        y = c[:, 0] & c[:, 1]
    elif rule == "dnf":
        y = (c[:, 0] & c[:, 1]) | (c[:, 2] & ~c[:, 3])
    else:
        raise ValueError(f"rule must be 'and' or 'dnf', got {rule!r}")
    return x, y.astype(np.int64)


def fold_of(dataset, fold: int = 0, n_splits: int = 10):  # noqa: ANN001, ANN201
    """Fold ``fold`` of ``dataset`` as the CV protocol builds it (split seed 42, 30 % validation)."""
    from lenbench.data.split import split_fold

    return split_fold(dataset, fold, n_splits)


# -- jobs as subprocesses, each with its own SQLite MLflow store -----------------------------------------------------


def store_uri(tmp_path: Path) -> str:
    """The test's own MLflow store: ``tmp_path/mlflow.db``, a copy of an empty store made once per test process.

    MLflow's migrations cost seconds of CPU per new store and most tests run jobs on one; a test of what happens
    to a new or missing store names its own path (``uri=``)."""
    db = tmp_path / "mlflow.db"
    if not db.exists():
        tmp_path.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(_empty_store(), db)
    return f"sqlite:///{db}"


@functools.cache
def _empty_store() -> Path:
    """An MLflow SQLite store with its schema and nothing else, made by MLflow itself in a process of its own (so
    no connection of this one holds it while it is copied); removed when the test process ends."""
    folder = Path(tempfile.mkdtemp(prefix="lenbench-empty-store-"))
    atexit.register(shutil.rmtree, folder, True)
    db = folder / "mlflow.db"
    script = "import sys; from mlflow import MlflowClient; MlflowClient(sys.argv[1]).search_experiments(max_results=1)"
    subprocess.run(
        [sys.executable, "-c", script, f"sqlite:///{db}"],
        check=True,
        capture_output=True,
        timeout=HANG_GUARD_S,
    )
    return db


def job_env(tmp_path: Path, uri: str | None = None, **extra: str) -> dict[str, str]:
    """This process's environment with MLFLOW_TRACKING_URI on the test's store (or ``uri``), plus ``extra``."""
    return {**os.environ, "MLFLOW_TRACKING_URI": uri or store_uri(tmp_path), **extra}


def train_command(tmp_path: Path, *overrides: str, multirun: bool = False) -> list[str]:
    """``python -m train`` writing into ``tmp_path/job`` (a run) or ``tmp_path/sweep`` (a multirun)."""
    if multirun:
        return [sys.executable, "-m", "train", "-m", f"hydra.sweep.dir={tmp_path / 'sweep'}", *overrides]
    return [sys.executable, "-m", "train", f"hydra.run.dir={tmp_path / 'job'}", *overrides]


def run_command(
    cmd: list[str], env: dict[str, str], timeout: float = HANG_GUARD_S
) -> subprocess.CompletedProcess:
    """Run ``cmd`` in the repository root, capturing text output; ``timeout`` is a hang guard only."""
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)


def run_train(
    tmp_path: Path,
    *overrides: str,
    multirun: bool = False,
    uri: str | None = None,
    env: dict[str, str] | None = None,
    timeout: float = HANG_GUARD_S,
) -> subprocess.CompletedProcess:
    """``python -m train`` (``-m`` when ``multirun``) against the test's store; ``env`` replaces job_env."""
    cmd = train_command(tmp_path, *overrides, multirun=multirun)
    return run_command(cmd, env if env is not None else job_env(tmp_path, uri), timeout)


def main_in_process(
    main: Callable[[list[str]], object], argv: list[str], env: dict[str, str]
) -> CompletedProcess:
    """A command line's ``main(argv)`` run in this process, in the repository root with ``env``: its exit status,
    stdout and stderr as a process's. The cheap way to try many bad inputs (a process of its own costs seconds of
    imports). What a command changes process-wide is put back afterwards: the environment, the working folder, the
    SIGTERM handler, the levels and handlers of the root and ``lenbench`` loggers (Hydra configures logging). The
    loggers start without handlers, as in a new process (else ``logging.basicConfig`` would keep pytest's)."""
    loggers = [logging.getLogger(), logging.getLogger("lenbench")]
    saved = [(log, log.handlers[:], log.propagate, log.level) for log in loggers]
    for log in loggers:
        log.handlers[:] = []
    environment, cwd, sigterm = dict(os.environ), os.getcwd(), signal.getsignal(signal.SIGTERM)
    out, err = io.StringIO(), io.StringIO()
    os.environ.clear()
    os.environ.update(env)
    os.chdir(REPO)
    status = 0
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            main(argv)
    except SystemExit as exc:
        status = exc.code if isinstance(exc.code, int) else 1
    finally:
        os.environ.clear()
        os.environ.update(environment)
        os.chdir(cwd)
        signal.signal(signal.SIGTERM, sigterm)
        for log, handlers, propagate, level in saved:
            log.handlers[:], log.propagate, log.level = handlers, propagate, level
    return CompletedProcess(argv, status, out.getvalue(), err.getvalue())


def hydra_in_process(
    main: Callable[[], object], config_name: str, argv: list[str], env: dict[str, str]
) -> CompletedProcess:
    """A Hydra command line (``python -m train``, ``python -m lenbench.tune``) as its ``__main__`` block runs it
    (:func:`lenbench.config.run_command_line`), in this process (:func:`main_in_process`); Hydra's global state and
    ``sys.argv`` are put back afterwards. HYDRA_MAIN_MODULE: Hydra looks for the configs beside the entry point's
    file, as for ``python -m`` (whose module is ``__main__``)."""
    from hydra.core.global_hydra import GlobalHydra

    from lenbench.config import run_command_line

    def run(args: list[str]) -> None:
        sys.argv = [config_name, *args]
        GlobalHydra.instance().clear()
        try:
            run_command_line(main, REPO / "conf", config_name)
        finally:
            GlobalHydra.instance().clear()

    saved = sys.argv
    try:
        return main_in_process(run, argv, {**env, "HYDRA_MAIN_MODULE": "__main__"})
    finally:
        sys.argv = saved


def train_in_process(tmp_path: Path, *overrides: str, uri: str | None = None) -> CompletedProcess:
    """:func:`run_train` through train's entry point in this process (:func:`hydra_in_process`): for bad inputs and
    short single jobs whose outputs a test reads, where a process of its own would spend seconds on imports (tests of
    signals, threads, exits and sweeps keep their processes)."""
    import train

    argv = [f"hydra.run.dir={tmp_path / 'job'}", *overrides]
    return hydra_in_process(train.main, "train", argv, job_env(tmp_path, uri))


def run_report(tmp_path: Path, experiment: str, out: Path, *args: str) -> CompletedProcess:
    """``python -m lenbench.report`` over the test's store, writing into ``out``, run in this process (its main:
    a process would spend seconds on imports; test_plugin runs the report as a process)."""
    from lenbench.report.__main__ import main

    argv = ["--experiment", experiment, "--out", str(out), *args]
    return main_in_process(lambda argv: sys.exit(main(argv)), argv, job_env(tmp_path))


# -- waiting for events ----------------------------------------------------------------------------------------------


def wait_until(
    condition: Callable[[], object],
    what: str,
    proc: subprocess.Popen | None = None,
    timeout: float = HANG_GUARD_S,
    interval: float = 0.2,
    details: Callable[[], str] | None = None,
) -> object:
    """Poll ``condition`` until it returns something true, and return that.

    Raises AssertionError naming ``what`` when ``proc`` exits first (the event can no longer happen) or when the
    hang guard ``timeout`` passes; ``details`` adds context (a log tail) to the message.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            value = condition()  # the event may have come just before the exit
            if value:
                return value
            extra = f"\n{details()}" if details else ""
            raise AssertionError(f"the process exited ({proc.returncode}) before {what}{extra}")
        if time.monotonic() >= deadline:
            extra = f"\n{details()}" if details else ""
            raise AssertionError(f"no {what} within the {timeout:.0f} s hang guard{extra}")
        time.sleep(interval)


def _terminal_signals() -> None:
    """In the job: SIGINT as a terminal program gets it. A test run started in the background by a non-interactive
    shell inherits SIGINT ignored, and Python then never raises KeyboardInterrupt: Ctrl-C tests would test nothing."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


class Job:
    """A ``python -m train`` process whose stderr (the job's log) is read line by line as it comes.

    ``wait_for_line`` waits for a log line, the cheapest event there is: no polling of the store that would compete
    with the job for the CPU.
    """

    def __init__(self, cmd: list[str], env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            cmd,
            cwd=REPO,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            preexec_fn=_terminal_signals,
        )
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            with self._changed:
                self.lines.append(line)
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    @property
    def stderr(self) -> str:
        with self._changed:
            return "".join(self.lines)

    def wait_for_line(self, pattern: str, count: int = 1, timeout: float = HANG_GUARD_S) -> str:
        """The ``count``-th log line matching the regex ``pattern``; AssertionError if the job ends first."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        seen = found = 0
        with self._changed:
            while True:
                for line in self.lines[seen:]:
                    if regex.search(line):
                        found += 1
                        if found == count:
                            return line
                seen = len(self.lines)
                if not self._reader.is_alive():  # stderr closed: the job is ending
                    self.proc.wait(timeout=timeout)
                    raise AssertionError(
                        f"the job ended (exit {self.proc.returncode}) with {found} of {count} log line(s) matching "
                        f"{pattern!r}:\n{''.join(self.lines)[-3000:]}"
                    )
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(
                        f"no log line matching {pattern!r} within the {timeout:.0f} s hang guard"
                    )
                self._changed.wait(min(remaining, 1.0))

    def __enter__(self) -> Job:
        return self

    def __exit__(self, *exc: object) -> None:
        """Never leave the job running behind a failed test."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def finish(self, timeout: float = HANG_GUARD_S) -> int:
        """Wait for the exit (a hang guard only) and for the last log line; the exit code."""
        self.proc.wait(timeout=timeout)
        self._reader.join(timeout=timeout)
        return self.proc.returncode
