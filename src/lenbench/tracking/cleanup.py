"""``python -m lenbench.tracking.cleanup``: find the runs whose process died and close them as KILLED.

A job that Python survives closes its runs itself (FINISHED, FAILED or KILLED). A process killed outright
(``kill -9``, a power loss, an out-of-memory kill) cannot: its runs would stay RUNNING forever. Every job therefore
tags its runs with the host, PID and process start time of the process that writes them; a RUNNING run whose process
no longer exists on this host is *stale*. Every job start closes the stale runs of its experiment, and this command
lists (``--dry-run``) or closes them in every experiment of a store. Runs written on another host are listed as
unknown and left alone: only that host can tell whether their process is alive.
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
import sys
from pathlib import Path
from typing import Any

from lenbench.tracking.errors import TrackingError
from lenbench.tracking.store import check_store, default_tracking_uri

log = logging.getLogger(__name__)

HOST_TAG = "lenbench.host"
PID_TAG = "lenbench.pid"
PROCESS_START_TAG = "lenbench.process_start"


def _process_start(pid: int) -> str:
    """The process's start time in clock ticks since boot (Linux), "" where unknown: tells a reused PID apart."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    return stat.rsplit(")", 1)[-1].split()[19]


def process_tags() -> dict[str, str]:
    """The tags that identify this process on its runs."""
    pid = os.getpid()
    return {HOST_TAG: socket.gethostname(), PID_TAG: str(pid), PROCESS_START_TAG: _process_start(pid)}


def process_alive(tags: dict[str, str]) -> bool | None:
    """Whether the process that wrote a run still runs: None when unknown (another host, or no process tags)."""
    if tags.get(HOST_TAG) != socket.gethostname() or not tags.get(PID_TAG, "").isdigit():
        return None
    pid = int(tags[PID_TAG])
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by someone else
    started = tags.get(PROCESS_START_TAG, "")
    return not started or _process_start(pid) in ("", started)


def stale_runs(client: Any, experiment_ids: list[str]) -> tuple[list[Any], list[Any]]:
    """(RUNNING runs whose process is gone, RUNNING runs of other hosts whose state is unknown)."""
    dead, unknown = [], []
    for run in client.search_runs(experiment_ids, "attributes.status = 'RUNNING'", max_results=50000):
        alive = process_alive(run.data.tags)
        if alive is False:
            dead.append(run)
        elif alive is None and run.data.tags.get(HOST_TAG) not in (None, socket.gethostname()):
            unknown.append(run)
    return dead, unknown


def close_runs(client: Any, runs: list[Any]) -> None:
    for run in runs:
        client.set_tag(run.info.run_id, "error", "its process died before closing it; closed as KILLED")
        client.set_terminated(run.info.run_id, "KILLED")


def close_stale_runs(client: Any, experiment_ids: list[str]) -> int:
    """Close the stale runs of these experiments as KILLED; returns how many."""
    dead, _ = stale_runs(client, experiment_ids)
    close_runs(client, dead)
    if dead:
        log.info("closed %d run(s) left RUNNING by a process that died, as KILLED", len(dead))
    return len(dead)


def _describe(run: Any) -> str:
    tags = run.data.tags
    return (
        f"{run.info.run_id}  {tags.get('mlflow.runName', '?'):<20} experiment {run.info.experiment_id}  "
        f"host {tags.get(HOST_TAG, '?')} pid {tags.get(PID_TAG, '?')}"
    )


def main(argv: list[str] | None = None) -> int:
    from mlflow import MlflowClient

    parser = argparse.ArgumentParser(
        prog="python -m lenbench.tracking.cleanup", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--uri", default=os.environ.get("MLFLOW_TRACKING_URI") or default_tracking_uri(Path.cwd())
    )
    parser.add_argument("--experiment", default=None, help="only this experiment (default: every experiment)")
    parser.add_argument("--dry-run", action="store_true", help="list the stale runs, close nothing")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="[%(levelname)s] %(message)s")
    try:
        check_store(args.uri)
        client = MlflowClient(args.uri)
        experiments = [
            e.experiment_id for e in client.search_experiments() if args.experiment in (None, e.name)
        ]
        if args.experiment and not experiments:
            raise TrackingError(f"no MLflow experiment named {args.experiment!r} at {args.uri}")
    except TrackingError as exc:
        log.error("%s", exc)
        return 2
    dead, unknown = stale_runs(client, experiments) if experiments else ([], [])
    for run in dead:
        print(("stale (would close)  " if args.dry_run else "closed as KILLED  ") + _describe(run))
    for run in unknown:
        print("running on another host, left alone  " + _describe(run))
    if not args.dry_run:
        close_runs(client, dead)
    print(f"{len(dead)} stale run(s){' found' if args.dry_run else ' closed'}, {len(unknown)} on other hosts")
    return 0


if __name__ == "__main__":
    sys.exit(main())
