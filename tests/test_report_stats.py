"""The new metrics (balanced accuracy, F1, AUROC) and the report's statistics (paired tests, NaN-safe summaries)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers import run_report, run_train
from scipy import stats
from sklearn.metrics import balanced_accuracy_score, f1_score, roc_auc_score

from lenbench.logic.formula import Formula
from lenbench.logic.metrics import (
    auroc,
    balanced_accuracy,
    explanation_auroc,
    explanation_balanced_accuracy,
    explanation_f1,
    f1,
    mean_and_sem,
)
from lenbench.report import render
from lenbench.report.render import human_table
from lenbench.report.stats import blank_missing_explanations, compare_with_best, paired_tests, summary_table
from lenbench.scoring import METRICS, Metric, MetricSet

# -- metrics -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(5))
def test_metrics_match_scikit_learn(seed: int) -> None:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, 60)
    pred = np.where(rng.random(60) < 0.7, y, 1 - y)
    scores = np.round(rng.random(60) * 0.5 + 0.4 * y, 1)  # rounded: ties
    assert balanced_accuracy(y, pred) == pytest.approx(balanced_accuracy_score(y, pred))
    assert f1(y, pred) == pytest.approx(f1_score(y, pred))
    assert f1(y, pred, positive=0) == pytest.approx(f1_score(y, pred, pos_label=0))
    assert auroc(y, scores) == pytest.approx(roc_auc_score(y, scores))
    assert auroc(y, scores, positive=0) == pytest.approx(roc_auc_score(y == 0, scores))
    # Score matrices are read as the model metrics read them (argmax).
    matrix = np.stack([1 - scores, scores], axis=1)
    assert balanced_accuracy(y, matrix) == pytest.approx(balanced_accuracy_score(y, matrix.argmax(axis=1)))


def test_metric_edge_cases() -> None:
    y = np.array([0, 0, 0, 1])
    never = np.zeros(4, dtype=int)
    assert balanced_accuracy(y, never) == 0.5  # the majority-class predictor, whatever the balance
    assert f1(y, never) == 0.0 and f1(never, never) == 0.0
    assert math.isnan(auroc(y, None))  # a method without scores
    assert math.isnan(auroc(never, np.array([0.1, 0.2, 0.3, 0.4])))  # a fold without positives
    assert auroc(y, np.array([0.1, 0.2, 0.3, 0.9])) == 1.0
    assert auroc(y, np.full(4, 0.5)) == 0.5
    with pytest.raises(ValueError, match="differ in length"):
        f1(y, y[:3])
    with pytest.raises(ValueError):
        balanced_accuracy([], [])


def test_formula_metrics() -> None:
    names = ["a", "b"]
    x = np.array([[1, 0], [1, 1], [0, 1], [0, 0], [1, 0]], dtype=np.float32)
    y = np.array([1, 1, 0, 0, 0])
    formula = Formula.parse("a")  # true on rows 0, 1, 4: TP 2, FP 1, FN 0, TN 2
    assert explanation_balanced_accuracy(formula, x, y, names) == pytest.approx((1.0 + 2 / 3) / 2)
    assert explanation_f1(formula, x, y, names) == pytest.approx(2 * 2 / (2 + 3))
    assert explanation_auroc(formula, x, y, names) == pytest.approx((1.0 + 2 / 3) / 2)
    assert explanation_f1("False", x, y, names) == 0.0
    assert explanation_auroc("True", x, y, names) == 0.5
    # Class 0 as the target: the formula ~a.
    assert explanation_f1(Formula.parse("~a"), x, y, names, target_class=0) == pytest.approx(2 * 2 / (3 + 2))


def test_mean_and_sem_skip_nan() -> None:
    assert mean_and_sem([1.0, float("nan"), 3.0]) == (2.0, pytest.approx(1.0))
    mean, sem = mean_and_sem([float("nan")] * 3)
    assert math.isnan(mean) and math.isnan(sem)


def test_the_new_columns_are_fold_metrics() -> None:
    for name in (
        "model_balanced_accuracy",
        "model_f1",
        "model_auroc",
        "explanation_balanced_accuracy",
        "explanation_f1",
        "explanation_auroc",
        "majority_accuracy",
    ):
        assert name in METRICS.fold_names


# -- paired tests ------------------------------------------------------------------------------------------------


def _folds() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = []
    for seed in (0, 1):
        for fold in range(6):
            base = rng.random()
            for method, shift in (("a", 0.0), ("b", 0.05), ("c", 0.0)):
                rows.append(
                    {
                        "method": method,
                        "seed": seed,
                        "fold": fold,
                        "run_id": f"{method}{seed}",
                        "formula": "x" if method != "c" else "y & x",
                        "model_accuracy": base + shift + 0.01 * rng.standard_normal(),
                        "explanation_accuracy": base,  # identical for every method
                        "explanation_complexity": {"a": 3.0, "b": 2.0, "c": 5.0}[method] + fold % 2,
                        "explanation_f1": float("nan") if method == "c" else base,
                    }
                )
    # Method a also has a seed the others lack: those folds have no partner and must not be paired.
    rows.append({"method": "a", "seed": 9, "fold": 0, "run_id": "a9", "formula": "x", "model_accuracy": 0.0})
    return pd.DataFrame(rows)


def test_paired_tests_pair_folds_by_seed_and_fold() -> None:
    folds = _folds()
    table = paired_tests(folds, ["model_accuracy", "explanation_accuracy", "explanation_f1"])
    row = table[(table.metric == "model_accuracy") & (table.method_a == "a") & (table.method_b == "b")].iloc[
        0
    ]
    a = (
        folds[(folds.method == "a") & (folds.seed < 9)]
        .sort_values(["seed", "fold"])["model_accuracy"]
        .to_numpy()
    )
    b = folds[folds.method == "b"].sort_values(["seed", "fold"])["model_accuracy"].to_numpy()
    assert row.n_pairs == 12
    assert row.mean_diff == pytest.approx(np.mean(a - b))
    assert row.p_wilcoxon == pytest.approx(stats.wilcoxon(a, b).pvalue)
    assert row.p_ttest == pytest.approx(stats.ttest_rel(a, b).pvalue)
    assert row.p_wilcoxon < 0.01 and row.p_ttest < 0.01
    same = table[table.metric == "explanation_accuracy"]
    assert (same.p_wilcoxon == 1.0).all() and (same.p_ttest == 1.0).all()  # identical results
    undefined = table[(table.metric == "explanation_f1") & (table.method_b == "c")]
    assert (undefined.n_pairs == 0).all() and undefined.p_wilcoxon.isna().all()
    assert len(table) == 3 * 3  # 3 metrics x 3 pairs


def test_repeated_runs_of_a_configuration_are_averaged_not_double_counted() -> None:
    folds = _folds()
    repeat = folds[(folds.method == "b") & (folds.seed == 0)].assign(run_id="b0-again")
    table = paired_tests(pd.concat([folds, repeat]), ["model_accuracy"])
    assert table[(table.method_a == "a") & (table.method_b == "b")].n_pairs.iloc[0] == 12


def test_summary_table_and_compare_with_best() -> None:
    folds = _folds()
    folds.loc[folds.method == "c", "explanation_f1"] = float("nan")
    by_method = summary_table(folds, ["method"])
    c = by_method.set_index("method").loc["c"]
    assert math.isnan(c["explanation_f1_mean"]) and math.isnan(c["explanation_f1_sem"])
    tests = compare_with_best(folds, by_method)
    assert set(tests["model_accuracy_best"]) == {"b"}
    assert set(tests["explanation_complexity_best"]) == {"b"}  # lower is better
    assert math.isnan(tests.set_index("method").loc["b", "model_accuracy_p_wilcoxon"])
    assert tests.set_index("method").loc["a", "model_accuracy_p_ttest"] < 0.01
    pretty = human_table(by_method.merge(tests, on="method"), ["method"]).set_index("method")
    assert pretty.loc["b", "model_accuracy"].endswith("(best)")
    assert pretty.loc["a", "model_accuracy"].endswith("(<0.001/<0.001)")
    assert pretty.loc["c", "explanation_f1"] == "n/a"
    assert "majority_accuracy" not in METRICS.compared_names


def test_folds_without_explanation_get_nan_in_every_formula_metric() -> None:
    length = Metric(
        "formula_length",
        "formula length",
        lambda e: 0.0,
        higher_is_better=False,
        needs=frozenset({"formula"}),
    )
    metrics = METRICS.with_metric(length)
    folds = pd.DataFrame(
        {
            "method": ["rf", "tree"],
            "seed": [0, 0],
            "fold": [0, 0],
            "run_id": ["r", "t"],
            "formula": ["False", "x"],
            "model_accuracy": [0.9, 0.8],
            "training_time": [1.0, 2.0],
            "explanation_accuracy": [
                float("nan"),
                0.7,
            ],  # rf explains nothing; an old record says so only here
            "explanation_complexity": [0.0, 1.0],
            "elapsed_time": [0.1, 0.2],
            "formula_length": [5.0, 1.0],
        }
    )
    blanked = blank_missing_explanations(folds, metrics).set_index("method")
    for name in (
        "explanation_complexity",
        "elapsed_time",
        "formula_length",
    ):  # every metric needing a formula
        assert (
            math.isnan(blanked.loc["rf", name])
            and blanked.loc["tree", name] == folds.set_index("method").loc["tree", name]
        )
    assert blanked.loc["rf", "model_accuracy"] == 0.9 and blanked.loc["rf", "training_time"] == 1.0
    by_method = summary_table(blanked.reset_index(), ["method"], metrics).set_index("method")
    assert math.isnan(by_method.loc["rf", "explanation_consistency"])  # job-level metrics from the registry
    assert by_method.loc["tree", "explanation_consistency"] == 1.0
    assert "formula_length_mean" in by_method and math.isnan(by_method.loc["rf", "formula_length_mean"])


def test_human_tables_take_labels_digits_and_order_from_the_registry() -> None:
    folds = _folds()
    by_method = summary_table(folds, ["method"])
    table = human_table(by_method, ["method"])
    order = [name for name in METRICS.names if name in table]
    assert list(table.columns) == ["method", *order]
    assert (
        table.set_index("method").loc["b", "explanation_complexity"].count(".") == 2
    )  # digits=1: "2.5 ± 0.2"
    assert (
        len(table.set_index("method").loc["b", "explanation_complexity"].split(" ± ")[0].split(".")[1]) == 1
    )
    markdown = render.summary_texts("s", by_method, ["method"])["s.md"]
    assert METRICS["explanation_complexity"].label in markdown and "explanation_complexity" not in markdown
    fewer = MetricSet([m for m in METRICS if m.name != "model_accuracy"])
    texts = render.summary_texts("s", summary_table(folds, ["method"], fewer), ["method"], fewer)
    assert not any("model_accuracy" in text or "model accuracy" in text for text in texts.values())


# -- end to end: make report -------------------------------------------------------------------------------------


def test_report_shows_every_method_with_new_metrics_and_paired_tests(tmp_path: Path) -> None:
    sweep = ("data=dnf", "data.n_samples=300", "method=tree,rulelist,rf", "cv.n_splits=4", "cv.n_jobs=1")
    proc = run_train(tmp_path, *sweep, multirun=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = tmp_path / "report"
    report = run_report(tmp_path, "dnf", out)
    assert report.returncode == 0, report.stderr[-3000:]
    by_method = pd.read_csv(out / "summary_by_method.csv")
    assert sorted(by_method["method"]) == ["rf", "rulelist", "tree"]
    for column in (
        "model_auroc_mean",
        "explanation_f1_mean",
        "model_accuracy_p_wilcoxon",
        "model_f1_p_ttest",
    ):
        assert column in by_method, column
    rf = by_method.set_index("method").loc["rf"]
    assert math.isnan(rf["explanation_accuracy_mean"]) and rf["model_auroc_mean"] > 0.5
    pairs = pd.read_csv(out / "paired_tests.csv")
    assert set(pairs["metric"]) == set(METRICS.compared_names)
    assert (pairs["n_pairs"] > 0).any()
    printed = report.stdout
    labels = (METRICS["model_auroc"].label, METRICS["explanation_balanced_accuracy"].label)
    for text in (*labels, "(best)", "p_wilcoxon", "rulelist", "rf"):
        assert text in printed, text
    for name in ("paired_tests.md", "paired_tests.tex", "summary_by_method.tex"):
        assert (out / name).stat().st_size > 0
