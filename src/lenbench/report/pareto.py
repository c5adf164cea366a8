"""The report's view of tuning studies (:func:`lenbench.tracking.tune_runs.load_fronts`): ``pareto_fronts.png``
overlays every study's front per data set at its test-fold means (validation values where a study did not score the
test folds) with the majority-class accuracy; ``pareto_hypervolume.{csv,md}`` give each front's hypervolume against
its fixed reference point, so fronts of one data set compare as single numbers."""

from __future__ import annotations

import json
import logging
from typing import Any

import pandas as pd

from lenbench.names import file_name
from lenbench.report.render import to_markdown
from lenbench.tracking.pareto_plots import overlay_figure
from lenbench.tracking.tune_runs import load_fronts

log = logging.getLogger(__name__)


def hypervolume_table(studies: list[tuple[dict[str, Any], pd.DataFrame]]) -> pd.DataFrame:
    """One row per study: method, data, trials, front size, validation and test hypervolume, reference point."""
    rows = [
        {
            "data": meta["data"],
            "method": meta["method"],
            "study": meta["study"],
            "completed trials": int(meta.get("n_complete", 0)),
            "front size": int(meta.get("n_pareto", 0)),
            "hypervolume (validation)": meta.get("hypervolume_val", float("nan")),
            "hypervolume (test)": meta.get("hypervolume_test", float("nan")),
            "reference point": ", ".join(f"{k}={v:g}" for k, v in meta["reference"].items()),
        }
        for meta, _ in studies
    ]
    return pd.DataFrame(rows).sort_values(["data", "hypervolume (test)"], ascending=[True, False])


def pareto_outputs(uri: str, experiment: str) -> tuple[dict[str, str], dict[str, Any]]:
    """(tables, figures) of the experiment's tuning studies; both empty when it has none."""
    studies = [(json.loads(tags["study_json"]), table) for tags, table in load_fronts(uri, experiment)]
    if not studies:
        return {}, {}
    table = hypervolume_table(studies)
    shown = table.map(lambda v: f"{v:.4g}" if isinstance(v, float) else v)
    texts = {"pareto_hypervolume.csv": table.to_csv(index=False), "pareto_hypervolume.md": to_markdown(shown)}
    figures = {}
    datasets = sorted({meta["data"] for meta, _ in studies})
    for data in datasets:
        fronts = [(f"{m['method']} ({m['study']})", t, m) for m, t in studies if m["data"] == data]
        name = f"pareto_fronts_{file_name(data)}.png" if len(datasets) > 1 else "pareto_fronts.png"
        figures[name] = overlay_figure(
            fronts,
            f"Pareto fronts on {data}: {len(fronts)} tuning {'study' if len(fronts) == 1 else 'studies'}",
        )
    log.info("report: %d tuning study front(s) overlaid", len(studies))
    return texts, figures
