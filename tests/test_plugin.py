"""The out-of-tree example package ``examples/plugin`` as a researcher uses it: installed, its method trains on
MIMIC-II, is tracked with its package's metric, appears in the report, is tuned over its own search space, and its
logged model predicts and explains new rows through ``lenbench.explain`` and ``mlflow models predict`` alike.

The package is built and installed into a folder of the test's own (``pip install --target``, no download: no
dependencies, no build isolation) that only these commands see, through ``PYTHONPATH``: the rest of the suite runs
without it. Nothing under ``src/`` names it: lenbench finds it through Hydra's search path and the entry points.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

from lenbench.config import default_data_root
from tests.helpers import REPO, job_env, run_command, run_train, store_uri, train_command

pytestmark = pytest.mark.e2e

PLUGIN = REPO / "examples" / "plugin"
TRAIN = ("method=l1logreg", "data=mimic", "cv.folds=[0,1]")


@pytest.fixture(scope="module")
def plugin(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The package installed into its own folder, one MIMIC-II job of its method (folds 0 and 1) in a fresh store."""
    tmp = tmp_path_factory.mktemp("plugin")
    site, source = tmp / "site", tmp / "plugin"
    shutil.copytree(
        PLUGIN, source, ignore=shutil.ignore_patterns("build", "*.egg-info")
    )  # builds write there
    pip = [sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check", "--no-deps"]
    pip += ["--no-build-isolation", "--no-index", "--target", str(site), str(source)]
    installed = subprocess.run(pip, capture_output=True, text=True, timeout=600)
    assert installed.returncode == 0, installed.stderr[-3000:]
    env = job_env(tmp, PYTHONPATH=str(site))
    done = run_train(tmp, *TRAIN, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    builtin = run_command(train_command(tmp / "builtin", "method=tree", *TRAIN[1:]), env)  # to compare with
    assert builtin.returncode == 0, builtin.stderr[-3000:]
    return {"tmp": tmp, "env": env}


def test_nothing_under_src_names_the_plugin() -> None:
    named = [
        p for p in (REPO / "src").rglob("*") if p.is_file() and "l1logreg" in p.read_text(errors="ignore")
    ]
    assert not named


def test_its_method_trains_on_mimic_and_is_tracked_with_its_metric(plugin: dict) -> None:
    results = pd.read_csv(plugin["tmp"] / "job" / "results.csv")
    assert list(results["method"]) == ["l1logreg", "l1logreg"] and list(results["split"]) == [0, 1]
    assert results["explanation"].str.len().min() > 0
    assert (results["model_accuracy"] > results["majority_accuracy"] - 0.05).all()
    assert results["explanation_precision"].between(0, 1).all()  # the package's metric, a registry entry
    client = MlflowClient(store_uri(plugin["tmp"]))
    runs = client.search_runs([client.get_experiment_by_name("mimic").experiment_id])
    folds = [r for r in runs if "fold" in r.data.tags]
    runs = [r for r in runs if r.data.tags["method"] == "l1logreg"]
    folds = [r for r in folds if r.data.tags["method"] == "l1logreg"]
    assert len(runs) == 3 and len(folds) == 2
    assert all("explanation_precision" in r.data.metrics for r in folds)
    assert all(r.data.tags.get("lenbench.model_id") for r in folds)  # each fold logged its model


def test_it_appears_in_the_report(plugin: dict) -> None:
    out = plugin["tmp"] / "report"
    cmd = [sys.executable, "-m", "lenbench.report", "--experiment", "mimic", "--out", str(out)]
    done = run_command(cmd, plugin["env"])
    assert done.returncode == 0, done.stderr[-3000:]
    assert "l1logreg" in done.stdout and "tree" in done.stdout
    summary = pd.read_csv(out / "summary_by_experiment.csv")
    assert set(summary["method"]) == {"l1logreg", "tree"}  # beside a built-in method, on the same folds
    assert summary["explanation precision mean"].between(0, 1).all()  # the package's metric, for both


def test_it_is_tuned_over_its_own_search_space(plugin: dict) -> None:
    tmp = plugin["tmp"]
    cmd = [sys.executable, "-m", "lenbench.tune", f"hydra.run.dir={tmp / 'tune'}", "method=l1logreg"]
    cmd += [
        "data=majority",
        "data.n_samples=300",
        "cv.n_splits=3",
        "tune.n_trials=3",
        "tune.score_test=false",
    ]
    done = run_command(cmd, plugin["env"])
    assert done.returncode == 0, done.stderr[-3000:]
    trials = pd.read_csv(tmp / "tune" / "trials.csv")
    assert len(trials) == 3 and set(trials["state"]) == {"COMPLETE"}
    assert {"param_C", "param_max_literals"} <= set(
        trials.columns
    )  # conf/search/l1logreg.yaml, from the package


def test_its_model_predicts_and_explains_new_rows(plugin: dict) -> None:
    tmp, env = plugin["tmp"], plugin["env"]
    raw = pd.read_csv(Path(default_data_root()) / "mimic-ii" / "full_cohort_data.csv")
    numeric = raw.select_dtypes("number").columns
    new = raw.head(40).astype({c: float for c in numeric})  # MLflow's schema takes doubles, not integers
    new.to_csv(tmp / "new.csv", index=False)
    out = tmp / "fold0.csv"
    cmd = [sys.executable, "-m", "lenbench.explain", "run=l1logreg-s42-fold0", f"data.path={tmp / 'new.csv'}"]
    done = run_command([*cmd, f"out={out}"], env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "l1logreg fold 0 model" in done.stdout
    ours = pd.read_csv(out, keep_default_na=False)
    assert ours["local_explanation"].str.len().min() > 0  # each row's values of the strongest concepts

    run = MlflowClient(store_uri(tmp)).search_runs(
        [MlflowClient(store_uri(tmp)).get_experiment_by_name("mimic").experiment_id],
        "attributes.run_name = 'l1logreg-s42-fold0'",
    )[0]
    pred = tmp / "pred.json"
    mlflow = [
        str(Path(sys.executable).parent / "mlflow"),
        "models",
        "predict",
        "-m",
        f"runs:/{run.info.run_id}/model",
    ]
    done = run_command(
        [*mlflow, "-i", str(tmp / "new.csv"), "-t", "csv", "--env-manager", "local", "-o", str(pred)], env
    )
    assert done.returncode == 0, done.stderr[-3000:]
    theirs = pd.DataFrame(json.loads(pred.read_text())["predictions"])
    assert np.array_equal(theirs["predicted_class"], ours["predicted_class"])
    assert np.array_equal(theirs["score"].to_numpy(float), ours["score"].to_numpy(float))
    assert list(theirs["local_explanation"]) == list(ours["local_explanation"])
