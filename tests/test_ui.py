"""End to end: `make ui` serves the project's MLflow store, and a browser sees the parent runs and their metrics.

The test builds a small store with lenbench's own tracker (parent runs `{method}-s{seed}` with summary metrics and
their data set, two fold child runs each with the job's params and their splits), starts `mlflow ui` exactly as the
Makefile's `ui` target does but on a free loopback port, and opens it in headless Chromium.

The view is the experiment's runs table (`#/experiments/<id>/runs`), the page a user of `make ui` works in.
By default that table shows no metric columns ("Show more columns"), so the test stores a shared view the way
the UI's own "Share" button does: an experiment tag `mlflow.sharedViewState.<key>` holding the UI state
(selected columns: the data set, the two summary metrics and the method/seed/data tags), opened with
`?viewStateShareKey=<key>`. The table then renders one row per parent run (children folded under it) whose
cells hold the run's name and metric values; the test reads them from the rendered DOM (`--dump-dom`) by
ag-grid's row id (the run id) and column id, and saves a screenshot of that same page.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from helpers import HANG_GUARD_S
from ui_helpers import (
    PNG_SIGNATURE,
    MlflowUI,
    RenderedPage,
    find_chromium,
    kill_group,
    parse_page,
    png_size,
    render,
    start_mlflow_ui,
)

from lenbench.tracking.mlflow import MlflowTracker

REPO_ROOT = Path(__file__).resolve().parents[1]
ARTIFACT_DIR = REPO_ROOT / "outputs" / "test-artifacts"
SCREENSHOT = ARTIFACT_DIR / "mlflow_ui.png"
DOM_DUMP = ARTIFACT_DIR / "mlflow_ui.html"

EXPERIMENT = "ui-test"
SHARE_KEY = "lenbench-ui-test"
SUMMARY_METRICS = ("model_accuracy_mean", "explanation_accuracy_mean")
# Distinctive 4-decimal values: the runs table prints them as they are (0.8123 -> "0.8123").
PARENTS = {
    "psi-s0": {"model_accuracy_mean": 0.8123, "explanation_accuracy_mean": 0.7911},
    "psi-s1": {"model_accuracy_mean": 0.8347, "explanation_accuracy_mean": 0.7652},
    "tree-s0": {"model_accuracy_mean": 0.7789, "explanation_accuracy_mean": 0.6934},
}
FOLDS = 2

NAME_COLUMN = "attributes.`Run Name`"
DATASET_COLUMN = "attributes.`Dataset`"
# Virtual time for the single-page app, raised when it was not enough. Virtual time stands still while requests are
# in flight, so it does not run out because the machine is slow; wall-clock limits are hang guards only.
BUDGETS_MS = (5_000, 15_000, 40_000)


def metric_column(key: str) -> str:
    return f"metrics.`{key}`"


def displayed(value: float) -> str:
    return str(value)


@dataclass
class Store:
    uri: str
    artifact_root: Path
    experiment_id: str
    parent_ids: dict[str, str]  # run name -> run id


@pytest.fixture
def chromium() -> str:
    """Headless Chromium; skipped when absent outside CI, a failure when absent in CI (.ci/run installs it)."""
    binary = find_chromium()
    if binary is None:
        if os.environ.get("CI"):
            pytest.fail("CI is set but no chromium binary is on PATH (.ci/run installs Debian's chromium)")
        pytest.skip("no chromium binary on PATH (apt-get install chromium); set CI=1 to make this a failure")
    return binary


@pytest.fixture
def store(tmp_path: Path) -> Store:
    """A small lenbench-shaped store in SQLite, written by lenbench's tracker, plus the shared runs-table view that
    shows its metrics."""
    from mlflow.tracking import MlflowClient

    root = tmp_path / "mlruns"
    artifact_root = root / "artifacts"
    artifact_root.mkdir(parents=True)
    uri = f"sqlite:///{root / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    parent_ids = {}
    rows = np.arange(12)
    for name, metrics in PARENTS.items():
        # The experiment as lenbench creates it (artifacts beside the store, the UI's machine-learning view).
        tracker = MlflowTracker(uri, EXPERIMENT)
        method, seed = name.rsplit("-s", 1)
        tracker.start_job(name, {"method": method, "seed": seed, "data": "mimic"}, {"seed": seed, "lr": 0.01})
        parent_ids[name] = str(tracker.run_id)
        for fold in range(FOLDS):
            test = rows[fold::FOLDS]
            splits = {
                "train": np.setdiff1d(rows, test)[2:],
                "validation": np.setdiff1d(rows, test)[:2],
                "test": test,
            }
            tracker.log_fold_inputs(fold, "mimic", "abc123", splits)
            tracker.log_fold(
                fold, {"model_accuracy": metrics["model_accuracy_mean"] + 0.01 * fold}, "a & b", []
            )
        tracker.finish_job({**metrics, "n_folds": float(FOLDS)}, [], {}, None)
    experiment_id = tracker.experiment_id

    # What the UI's "Share" button stores (it also accepts the state as plain JSON): the columns to show.
    view_state = {
        "selectedColumns": [DATASET_COLUMN, *(metric_column(k) for k in SUMMARY_METRICS)]
        + ["tags.`method`", "tags.`seed`", "tags.`data`"],
        "orderByKey": "attributes.start_time",
        "orderByAsc": False,
    }
    client.set_experiment_tag(experiment_id, f"mlflow.sharedViewState.{SHARE_KEY}", json.dumps(view_state))
    return Store(uri=uri, artifact_root=artifact_root, experiment_id=experiment_id, parent_ids=parent_ids)


@pytest.fixture
def mlflow_ui(store: Store, tmp_path: Path, request: pytest.FixtureRequest) -> MlflowUI:
    """`mlflow ui` from this venv, with the Makefile's arguments, on a free loopback port; always stopped."""
    bin_dir = Path(sys.executable).parent
    assert (bin_dir / "mlflow").is_file(), f"no mlflow entry point beside {sys.executable}"
    ui = start_mlflow_ui(
        store.uri, store.artifact_root, bin_dir, tmp_path / "mlflow-ui.log", timeout_s=HANG_GUARD_S
    )
    request.addfinalizer(lambda: kill_group(ui.proc))
    return ui


def missing_from_table(page: RenderedPage, store: Store) -> list[str]:
    """What the rendered runs table lacks: each parent's row with its name and summary metric values."""
    missing = []
    for name, run_id in store.parent_ids.items():
        if name not in (page.cell(run_id, NAME_COLUMN) or ""):
            missing.append(f"row of {name} ({run_id}) with its name")
        if "mimic" not in (page.cell(run_id, DATASET_COLUMN) or ""):  # the job's data set, on its parent run
            missing.append(f"{name}: its data set (shown: {page.cell(run_id, DATASET_COLUMN)!r})")
        for key, value in PARENTS[name].items():
            if page.cell(run_id, metric_column(key)) != displayed(value):
                shown = page.cell(run_id, metric_column(key))
                missing.append(f"{name}: {key} = {displayed(value)} (shown: {shown!r})")
    return missing


@pytest.mark.e2e
def test_make_ui_shows_parent_runs_with_summary_metrics(
    chromium: str, mlflow_ui: MlflowUI, store: Store
) -> None:
    ui = mlflow_ui
    # The Makefile's command line shape, on the loopback interface.
    assert ui.command[1:3] == ["ui", "--backend-store-uri"]
    assert ui.command[3] == store.uri and ui.command[4] == "--artifacts-destination"
    assert ui.command[6:9] == ["--host", "127.0.0.1", "--port"]

    url = (  # the machine-learning view, as `make ui` prints its address
        f"{ui.base_url}/#/experiments/{store.experiment_id}/runs"
        f"?viewStateShareKey={SHARE_KEY}&workflowType=machine_learning"
    )
    ARTIFACT_DIR.mkdir(parents=True, exist_ok=True)

    # The single-page app renders after its API calls; retry with more virtual time until the table is there.
    # Each try prints the DOM and saves the screenshot of the same page.
    page, missing, result = RenderedPage(), ["(no try)"], None
    for budget in BUDGETS_MS:
        SCREENSHOT.unlink(missing_ok=True)
        result = render(chromium, url, SCREENSHOT, budget, timeout_s=HANG_GUARD_S)
        page = parse_page(result.stdout)
        missing = missing_from_table(page, store)
        if not missing:
            break
    assert result is not None
    DOM_DUMP.write_text(result.stdout)

    stderr = "\n".join(line for line in result.stderr.splitlines() if "dbus" not in line)  # no bus here
    context = (
        f"\nURL: {url}\nchromium exit code {result.returncode}, stderr tail:\n{stderr[-1500:]}"
        f"\npage text: {page.text[:2000]}\nmlflow ui log tail:\n{ui.log_tail()}"
    )
    assert "Error loading shared view state" not in page.text, f"MLflow did not load the shared view{context}"
    for name in PARENTS:
        assert name in page.texts, f"parent run {name} not shown{context}"
    for key in SUMMARY_METRICS:
        assert key in page.texts, f"no {key} column{context}"
    assert displayed(PARENTS["psi-s0"]["model_accuracy_mean"]) in page.texts, context
    assert not missing, f"the runs table lacks: {missing}{context}"

    # The picture, as a test artifact.
    assert SCREENSHOT.is_file(), f"no screenshot written{context}"
    assert SCREENSHOT.read_bytes()[:8] == PNG_SIGNATURE
    assert SCREENSHOT.stat().st_size > 10_000, f"screenshot only {SCREENSHOT.stat().st_size} bytes"
    assert png_size(SCREENSHOT) == (1600, 1000)
