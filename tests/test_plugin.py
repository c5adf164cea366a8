"""The out-of-tree example package ``examples/plugin`` as a researcher uses it: installed, its method trains on
MIMIC-II, is tracked with its package's metric, appears in the report, is tuned over its own search space, and its
logged model predicts and explains new rows through ``lenbench.explain`` and ``mlflow models predict`` alike.

The package is installed with the command of docs/extending.md (``pip install -e examples/plugin``, with
``--no-build-isolation``: nothing downloads) into a virtual environment of the test's own that sees the suite's
packages: the rest of the suite runs without it. Nothing under ``src/`` names it: lenbench finds it through Hydra's search path and the entry points.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
import sysconfig
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers import REPO, doc_section, job_env, run_command, store_uri
from mlflow import MlflowClient

from lenbench.config import default_data_root

pytestmark = pytest.mark.e2e

PLUGIN = REPO / "examples" / "plugin"
# The commands of docs/extending.md ("A complete example outside the repository"), read from the page, each run with
# --out/hydra.run.dir into the test's folder; data.path of the explain command is the MIMIC-II file of the data root.
PAGE = re.search(
    r"```bash\n(.*?)```", doc_section("extending.md", "A complete example outside the repository"), re.S
)
COMMANDS = [shlex.split(line, comments=True) for line in PAGE.group(1).splitlines()]


def _page_command(*prefix: str) -> list[str]:
    """The arguments of the page's one command that starts with ``prefix``."""
    [found] = [c[len(prefix) :] for c in COMMANDS if tuple(c[: len(prefix)]) == prefix]
    return found


INSTALL = _page_command(".venv/bin/pip", "install")
TRAIN = [a for a in _page_command(".venv/bin/python", "-m", "train") if not a.startswith("method=")]
TUNE = _page_command(".venv/bin/python", "-m", "lenbench.tune")
REPORT = _page_command("make", "report")[0].removeprefix("ARGS=").split()
EXPLAIN = [
    a for a in _page_command(".venv/bin/python", "-m", "lenbench.explain") if not a.startswith("data.path=")
]


def _venv_over_ours(folder: Path) -> Path:
    """A virtual environment that sees this one's packages (lenbench, torch, pip, setuptools) and installs into
    itself: the page's ``pip install -e examples/plugin`` runs in it without touching the suite's environment."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(folder)], check=True, timeout=600)
    [site] = (folder / "lib").glob("python3.*/site-packages")
    ours = sysconfig.get_paths()["purelib"]  # its .pth files (lenbench's editable install) are read too
    (site / "lenbench_env.pth").write_text(f"import site; site.addsitedir({ours!r})\n")
    return folder / "bin" / "python"


@pytest.fixture(scope="module")
def plugin(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The package installed as docs/extending.md says (offline: no build isolation) into an environment of its own, one
    MIMIC-II job of its method and one of ``tree`` to compare with, in a fresh store."""
    tmp = tmp_path_factory.mktemp("plugin")
    python = _venv_over_ours(tmp / "venv")
    pip = [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", "--no-build-isolation"]
    installed = run_command([*pip, *INSTALL], job_env(tmp))
    assert installed.returncode == 0, installed.stderr[-3000:]
    env = job_env(tmp)
    for folder, method in (("job", "method=l1logreg"), ("builtin", "method=tree")):
        cmd = [str(python), "-m", "train", f"hydra.run.dir={tmp / folder}", method, *TRAIN]
        done = run_command(cmd, env)
        assert done.returncode == 0, done.stderr[-3000:]
    return {"tmp": tmp, "env": env, "python": str(python)}


def test_nothing_under_src_names_the_plugin() -> None:
    sources = [p for p in (REPO / "src").rglob("*") if p.is_file() and not _built(p)]
    assert len(sources) > 100  # the source tree was really read
    assert not [p for p in sources if "l1logreg" in p.read_text(errors="ignore")]


def _built(path: Path) -> bool:
    """Build output under src/ (the install's egg-info copies the README; byte code), not source."""
    return any(part.endswith(".egg-info") or part == "__pycache__" for part in path.parts)


def test_its_method_trains_on_mimic_and_is_tracked_with_its_metric(plugin: dict) -> None:
    results = pd.read_csv(plugin["tmp"] / "job" / "results.csv")
    assert set(results["method"]) == {"l1logreg"} and sorted(results["split"]) == list(range(10))
    assert results["explanation"].str.len().min() > 0
    assert (results["model_accuracy"] > results["majority_accuracy"] - 0.05).all()
    assert results["explanation_precision"].between(0, 1).all()  # the package's metric, a registry entry
    client = MlflowClient(store_uri(plugin["tmp"]))
    runs = client.search_runs([client.get_experiment_by_name("mimic").experiment_id])
    folds = [r for r in runs if "fold" in r.data.tags]
    runs = [r for r in runs if r.data.tags["method"] == "l1logreg"]
    folds = [r for r in folds if r.data.tags["method"] == "l1logreg"]
    assert len(runs) == 11 and len(folds) == 10
    assert all("explanation_precision" in r.data.metrics for r in folds)
    assert all(r.data.tags.get("lenbench.model_id") for r in folds)  # each fold logged its model


def test_it_appears_in_the_report(plugin: dict) -> None:
    out = plugin["tmp"] / "report"
    cmd = [plugin["python"], "-m", "lenbench.report", *REPORT, "--out", str(out)]
    done = run_command(cmd, plugin["env"])
    assert done.returncode == 0, done.stderr[-3000:]
    assert "l1logreg" in done.stdout and "tree" in done.stdout
    summary = pd.read_csv(out / "summary_by_experiment.csv")
    assert set(summary["method"]) == {"l1logreg", "tree"}  # beside a built-in method, on the same folds
    assert summary["explanation precision mean"].between(0, 1).all()  # the package's metric, for both


def test_it_is_tuned_over_its_own_search_space(plugin: dict) -> None:
    tmp = plugin["tmp"]
    cmd = [plugin["python"], "-m", "lenbench.tune", f"hydra.run.dir={tmp / 'tune'}", *TUNE]
    done = run_command(cmd, plugin["env"])
    assert done.returncode == 0, done.stderr[-3000:]
    trials = pd.read_csv(tmp / "tune" / "trials.csv")
    assert len(trials) == 6 and set(trials["state"]) == {"COMPLETE"}
    assert {"param_C", "param_max_literals"} <= set(
        trials.columns
    )  # conf/search/l1logreg.yaml, from the package
    front = pd.read_csv(tmp / "tune" / "pareto.csv")
    assert len(front) >= 1 and front["test_run_id"].notna().all()  # the front's members ran on the test folds


def test_its_model_predicts_and_explains_new_rows(plugin: dict) -> None:
    tmp, env = plugin["tmp"], plugin["env"]
    table = Path(default_data_root()) / "mimic-ii" / "full_cohort_data.csv"
    out = tmp / "fold0.csv"
    cmd = [plugin["python"], "-m", "lenbench.explain", *EXPLAIN]
    done = run_command([*cmd, f"data.path={table}", f"out={out}"], env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "l1logreg fold 0 model" in done.stdout
    ours = pd.read_csv(out, keep_default_na=False)
    assert ours["local_explanation"].str.len().min() > 0  # each row's values of the strongest concepts

    client = MlflowClient(store_uri(tmp))
    experiment = client.get_experiment_by_name("mimic").experiment_id
    run = client.search_runs([experiment], "attributes.run_name = 'l1logreg-s42-fold0'")[0]
    raw = pd.read_csv(table)
    doubles = {c: float for c in raw.select_dtypes("number").columns}  # MLflow's schema takes no integers
    new = raw.head(40).astype(doubles)
    new.to_csv(tmp / "new.csv", index=False)
    pred = tmp / "pred.json"
    mlflow = [
        plugin["python"],
        "-m",
        "mlflow",
        "models",
        "predict",
        "-m",
        f"runs:/{run.info.run_id}/{run.info.run_name}",
    ]
    done = run_command(
        [*mlflow, "-i", str(tmp / "new.csv"), "-t", "csv", "--env-manager", "local", "-o", str(pred)], env
    )
    assert done.returncode == 0, done.stderr[-3000:]
    theirs = pd.DataFrame(json.loads(pred.read_text())["predictions"])
    ours = ours.head(40)
    assert np.array_equal(theirs["predicted_class"], ours["predicted_class"])
    assert np.array_equal(theirs["score"].to_numpy(float), ours["score"].to_numpy(float))
    assert list(theirs["local_explanation"]) == list(ours["local_explanation"])
