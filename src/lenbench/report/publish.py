"""Where a report goes: its files under the output folder (atomically), its provenance, and a ``report`` run in
MLflow holding them all (logged through :func:`lenbench.tracking.mlflow.log_report_run`, never MLflow directly)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from lenbench.tracking.local import write_json, write_text
from lenbench.tracking.mlflow import log_report_run

log = logging.getLogger(__name__)


def provenance(
    runs: pd.DataFrame, experiment: str, sweep_id: str | None, filter_string: str
) -> dict[str, Any]:
    """Which runs, code versions and data files the report pools; warns when it pools more than one of either."""
    record = {
        "experiment": experiment,
        "sweep_id": sweep_id,
        "filter": filter_string,
        "runs": runs["run_id"].tolist(),
        "git_commits": sorted(set(runs["git_commit"])),
        "data_checksums": sorted(set(runs["data_checksum"])),
    }
    if len(record["git_commits"]) > 1:
        log.warning(
            "the pooled runs come from %d code versions: %s",
            len(record["git_commits"]),
            ", ".join(c[:10] for c in record["git_commits"]),
        )
    if len(record["data_checksums"]) > 1:
        log.warning("the pooled runs used %d different data files", len(record["data_checksums"]))
    return record


def write_files(
    out_dir: Path, texts: Mapping[str, str], figures: Mapping[str, Any], meta: Mapping[str, Any]
) -> dict[str, Path]:
    """Write the tables (``texts``), ``provenance.json`` (``meta``) and the figures; returns the paths by name."""
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    files = {name: write_text(out_dir / name, text) for name, text in texts.items()}
    files["provenance.json"] = write_json(out_dir / "provenance.json", dict(meta))
    for name, figure in figures.items():
        files[name] = out_dir / name
        try:
            figure.savefig(files[name], dpi=120)
        finally:
            plt.close(figure)
    return files


def log_to_mlflow(uri: str, experiment: str, files: Mapping[str, Path], sweep_id: str | None) -> str:
    """The report's files as one FINISHED ``report`` run of the experiment; returns its run id."""
    return log_report_run(uri, experiment, list(files.values()), sweep_id)
