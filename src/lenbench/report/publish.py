"""Where a report goes: its files under the output folder (atomically, mode 0644 under the usual umask) and its
provenance; :mod:`.build` then logs them all as a ``report`` run in MLflow
(:func:`lenbench.tracking.mlflow.log_report_run`, never MLflow directly)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from lenbench.tracking.local import write_json, write_text
from lenbench.tracking.pareto_plots import save

log = logging.getLogger(__name__)


def _rows_record(runs: pd.DataFrame) -> list[dict[str, Any]]:
    """Per row (experiment): its study, method, settings, and the runs it pools with their seeds and commits."""
    return [
        {
            "study": study,
            "row": row,
            "method": group["method"].iloc[0],
            "settings": group["config"].iloc[0],
            "seeds": sorted(int(s) for s in group["seed"].unique()),
            "runs": group["run_id"].tolist(),
            "git_commits": sorted(set(group["git_commit"])),
            "data_checksums": sorted(set(group["data_checksum"])),
        }
        for (study, row), group in runs.groupby(["study", "row"], sort=True)
    ]


def sweep_jobs_on_disk(sweep_id: str | None) -> int | None:
    """How many job folders a sweep folder holds (Hydra writes ``<n>-.../.hydra`` per job); None when the sweep
    id is not a folder here."""
    if not sweep_id or not Path(sweep_id).is_dir():
        return None
    return sum(1 for path in Path(sweep_id).iterdir() if (path / ".hydra").is_dir())


def provenance(
    runs: pd.DataFrame, experiment: str, sweep_id: str | None, filter_string: str
) -> dict[str, Any]:
    """Which runs, rows, code versions and data files the report holds; for a sweep, which runs it ran and which
    it resumed from earlier sweeps (and a warning when its folder has more jobs than the report found)."""
    membership = runs["membership"] if "membership" in runs else pd.Series("", index=runs.index)
    record = {
        "experiment": experiment,
        "sweep_id": sweep_id,
        "filter": filter_string,
        "runs": runs["run_id"].tolist(),
        "resumed_runs": runs.loc[membership == "resumed", "run_id"].tolist(),
        "git_commits": sorted(set(runs["git_commit"])),
        "data_checksums": sorted(set(runs["data_checksum"])),
        "rows": _rows_record(runs) if "row" in runs else [],
    }
    if record["resumed_runs"]:
        log.info(
            "sweep %s: %d job(s) ran in it, %d resumed from earlier runs (%s); all are reported",
            sweep_id,
            int((membership == "ran").sum()),
            len(record["resumed_runs"]),
            ", ".join(runs.loc[membership == "resumed", "run_name"]),
        )
    on_disk = sweep_jobs_on_disk(sweep_id)
    if on_disk is not None and on_disk > len(runs):
        log.warning(
            "sweep %s has %d job folders but only %d FINISHED runs were found: failed jobs, or jobs resumed from "
            "runs recorded before sweep membership was (rerun the sweep to tag them)",
            sweep_id,
            on_disk,
            len(runs),
        )
    record["jobs_on_disk"] = on_disk
    return record


def write_files(
    out_dir: Path, texts: Mapping[str, str], figures: Mapping[str, Any], meta: Mapping[str, Any]
) -> dict[str, Path]:
    """Write the tables (``texts``), ``provenance.json`` (``meta``) and the figures; returns the paths by name."""
    out_dir.mkdir(parents=True, exist_ok=True)
    files = {name: write_text(out_dir / name, text) for name, text in texts.items()}
    files["provenance.json"] = write_json(out_dir / "provenance.json", dict(meta))
    for name, figure in figures.items():
        files[name] = out_dir / name
        save(figure, files[name])
    return files
