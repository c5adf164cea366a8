"""Sweep membership of runs a sweep *resumed*: the jobs it skipped because a FINISHED run already had their
configuration still belong to it, so ``python -m lenbench.report --sweep-id <dir>`` must find them.

A job run carries the tag ``sweep_id`` of the sweep that ran it. When a later sweep skips that configuration, the
job calls :func:`record_resumed`: the reused run gets one more tag, ``sweep_member.<digest of the sweep id>`` =
the sweep id (one tag per sweep, so sweeps never overwrite each other's membership), and the job folder gets a
``resumed.json`` naming the run (the end-of-sweep summary reads it). :func:`member_tag` is the key both sides use;
:func:`job_folders` lists a sweep's job folders for the end-of-sweep summaries of train and tune.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

from lenbench.tracking.local import write_json

log = logging.getLogger(__name__)

MEMBER_PREFIX = "sweep_member."
RESUMED_FILE = "resumed.json"


def member_tag(sweep_id: str) -> str:
    """The tag key marking a run as a member of ``sweep_id`` without having run in it."""
    return MEMBER_PREFIX + hashlib.sha1(sweep_id.encode()).hexdigest()[:12]


def record_resumed(uri: str | None, run_id: str, run_name: str, sweep_id: str, out_dir: Path) -> None:
    """Mark the FINISHED run ``run_id`` as a member of ``sweep_id`` (a tag) and leave ``resumed.json`` in the
    skipped job's folder. Never fails the job: a store problem is logged, the file is still written."""
    if uri and sweep_id:
        try:
            from mlflow import MlflowClient

            MlflowClient(uri).set_tag(run_id, member_tag(sweep_id), sweep_id)
        except Exception as exc:  # noqa: BLE001 - membership is a convenience for reports, not the job's result
            log.warning("could not tag run %s as a member of sweep %s: %s", run_id, sweep_id, exc)
    write_json(Path(out_dir) / RESUMED_FILE, {"run_id": run_id, "run_name": run_name, "sweep_id": sweep_id})


def _natural(path: Path) -> tuple[int, str]:
    head, _, _ = path.name.partition("-")
    return (int(head) if head.isdigit() else 1 << 30, path.name)


def job_folders(sweep_dir: Path) -> list[Path]:
    """The sweep's job folders (each has Hydra's ``.hydra``), in job order."""
    if not sweep_dir.is_dir():
        return []
    return sorted((p for p in sweep_dir.iterdir() if (p / ".hydra").is_dir()), key=_natural)
