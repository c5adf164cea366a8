"""Rows are experiments: the report never pools two configurations, code versions or data files, and a sweep
selected with --sweep-id includes the jobs it resumed from earlier runs."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pandas as pd
import pytest
from helpers import run_report, run_train

from lenbench.report.rows import assign_rows, seed_copies, settings_of, short_names

DNF = ("data=dnf", "data.n_samples=300", "cv.n_splits=3", "cv.n_jobs=1")


def _run(run_id: str, method: str, seed: int, commit: str = "c0ffee1234", checksum: str = "aa", **params):  # noqa: ANN003, ANN202
    base = {
        "cv.n_splits": 5,
        "cv.split_seed": 42,
        "cv.n_jobs": "auto",
        "cv.folds": "None",
        "data.label": "y",
        "data.root": f"/somewhere/{run_id}",
        "tracking.uri": f"sqlite:///{run_id}.db",
        "seed": seed,
        "method.explainer.seed": seed,
        "method.explainer.max_depth": 5,
        "trainer.log_every_n_epochs": seed,
        "method.explainer.trainer.log_every_n_epochs": seed,
    }
    return {
        "run_id": run_id,
        "method": method,
        "seed": seed,
        "data": "mimic",
        "label": "y",
        "git_commit": commit,
        "data_checksum": checksum,
        "params": {**base, **params},
    }


def test_seeds_pool_and_other_settings_split() -> None:
    runs = pd.DataFrame(
        [
            _run("r0", "rulelist", 0),
            _run("r1", "rulelist", 1, **{"cv.folds": "[0, 1]", "cv.n_jobs": 1}),
            _run("r2", "rulelist", 2, **{"cv.split_seed": 7}),  # repeated CV: same row, another test fold set
            _run("d1", "rulelist", 0, **{"method.explainer.max_depth": 1}),
            _run("t0", "tree", 0),
        ]
    )
    rows = assign_rows(runs).set_index("run_id")
    assert rows.loc[["r0", "r1", "r2"], "row"].tolist() == ["rulelist (max_depth=5)"] * 3
    assert rows.loc["d1", "row"] == "rulelist (max_depth=1)"
    assert rows.loc["t0", "row"] == "tree"  # a single configuration of its method: the method's name
    assert rows.loc["r2", "split_seed"] == 7 and rows.loc["r0", "n_splits"] == 5
    assert rows["study"].nunique() == 1 and rows.loc["r0", "study"] == "mimic / y / 5-fold"
    assert "max_depth=1" in rows.loc["d1", "config"] and "seed" not in rows.loc["d1", "config"].split("=")[0]


def test_code_versions_split_rows_and_data_files_split_studies(caplog: pytest.LogCaptureFixture) -> None:
    runs = pd.DataFrame(
        [
            _run("a", "psi", 0, commit="aaaaaaa111"),
            _run("b", "psi", 1, commit="bbbbbbb222"),
            _run("c", "psi", 2, commit="aaaaaaa111", checksum="other"),
        ]
    )
    with caplog.at_level(logging.WARNING):
        rows = assign_rows(runs).set_index("run_id")
    assert rows.loc["a", "row"] == "psi (code aaaaaaa)" and rows.loc["b", "row"] == "psi (code bbbbbbb)"
    assert rows.loc["a", "study"] != rows.loc["c", "study"]  # another data file: another study
    assert rows.loc["c", "row"] == "psi"
    text = caplog.text
    assert "2 code versions (aaaaaaa, bbbbbbb) are kept apart" in text
    assert "2 different data files" in text


def test_settings_and_short_names() -> None:
    params = [
        {"seed": 3, "method.explainer.seed": 3, "data.seed": 0, "method.explainer.lr": 0.1, "cv.n_jobs": 2},
        {"seed": 0, "method.explainer.seed": 0, "data.seed": 0, "method.explainer.lr": 0.1, "cv.n_jobs": 1},
    ]
    copies = seed_copies(params, [3, 0])
    assert copies == {"method.explainer.seed"}  # data.seed is fixed (0), not the run's seed
    assert settings_of(params[1], copies) == {"data.seed": "0", "method.explainer.lr": "0.1"}
    names = short_names(["method.explainer.lr", "trainer.lr", "method.explainer.depth"])
    assert names == {
        "method.explainer.lr": "explainer.lr",
        "trainer.lr": "trainer.lr",
        "method.explainer.depth": "depth",
    }


@pytest.mark.e2e
def test_a_hyperparameter_run_is_its_own_row_and_a_sweep_includes_what_it_resumed(tmp_path: Path) -> None:
    # Sweep A: tree and rulelist. Then the command: rulelist with max_depth=1 (seed 0) in the same store.
    first = run_train(
        tmp_path,
        *DNF,
        "method=tree,rulelist",
        "seed=0",
        "hydra.sweep.dir=" + str(tmp_path / "A"),
        multirun=True,
    )
    assert first.returncode == 0, first.stderr[-3000:]
    depth = run_train(
        tmp_path,
        *DNF,
        "method=rulelist",
        "method.explainer.max_depth=1",
        "seed=0",
        "hydra.sweep.dir=" + str(tmp_path / "D"),
        multirun=True,
    )
    assert depth.returncode == 0, depth.stderr[-3000:]
    # Sweep B: tree and rulelist again (resumed: skipped, FINISHED) and rf (new).
    sweep_b = tmp_path / "B"
    second = run_train(
        tmp_path, *DNF, "method=tree,rulelist,rf", "seed=0", f"hydra.sweep.dir={sweep_b}", multirun=True
    )
    assert second.returncode == 0, second.stderr[-3000:]
    assert second.stderr.count("already FINISHED") == 2
    resumed = json.loads((sweep_b / "0-tree-s0" / "resumed.json").read_text())
    assert resumed["sweep_id"] == str(sweep_b)
    # The end-of-sweep summary: one line per job and the report command.
    skipped = next(line for line in second.stdout.splitlines() if "0-tree-s0: already finished" in line)
    assert "0-tree-s0: already finished, not run again: model accuracy" in skipped
    assert "(n=3 folds) -> MLflow run " in skipped
    assert "2-rf-s0: model accuracy" in second.stdout
    assert f"--sweep-id {sweep_b}" in second.stdout

    everything = run_report(tmp_path, "dnf", tmp_path / "all", "--no-mlflow")
    assert everything.returncode == 0, everything.stderr[-3000:]
    rows = pd.read_csv(tmp_path / "all" / "summary_by_experiment.csv")
    assert sorted(rows["method"]) == ["rf", "rulelist (max_depth=1)", "rulelist (max_depth=5)", "tree"]
    assert (rows["test folds"] == 3).all() and (rows["seeds"] == 1).all()  # never 6 folds from 3

    swept = run_report(tmp_path, "dnf", tmp_path / "B-report", "--no-mlflow", "--sweep-id", str(sweep_b))
    assert swept.returncode == 0, swept.stderr[-3000:]
    rows = pd.read_csv(tmp_path / "B-report" / "summary_by_experiment.csv")
    assert sorted(rows["method"]) == ["rf", "rulelist", "tree"]  # the max_depth=1 run is not in sweep B
    provenance = json.loads((tmp_path / "B-report" / "provenance.json").read_text())
    assert len(provenance["runs"]) == 3 and len(provenance["resumed_runs"]) == 2
    assert "2 resumed from earlier runs" in swept.stderr


def test_a_mapping_set_in_one_row_and_null_in_another_is_one_setting() -> None:
    # data=csv: data.thresholds is null in one job and {col: value} (flattened into children) in the other.
    from lenbench.report.rows import _describe

    configs = pd.DataFrame(
        {
            "_settings": [
                {"data.binarize": "quantile", "data.thresholds": "None"},
                {"data.binarize": "threshold", "data.thresholds.age": "70", "data.thresholds.bmi": "30"},
            ]
        }
    )
    assert _describe(configs) == [
        "binarize=quantile, thresholds=None",
        "binarize=threshold, thresholds={age=70, bmi=30}",
    ]
    # A key that is a value and a parent in every row (callbacks.0 = its class, .strength its setting) stays flat.
    configs = pd.DataFrame({"_settings": [{"cb.0": "L1", "cb.0.strength": s} for s in ("0.1", "0.2")]})
    assert _describe(configs) == ["strength=0.1", "strength=0.2"]
