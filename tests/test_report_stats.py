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
from lenbench.report import significance as sig
from lenbench.report.build import analyse
from lenbench.report.compare import compare_with_best, compared_names, paired_tests
from lenbench.report.render import human_table
from lenbench.report.stats import blank_missing_explanations, summary_table
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
    mean, sem = mean_and_sem([0.7, float("nan")])  # one value: no standard error, not 0
    assert mean == 0.7 and math.isnan(sem)


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


# -- summaries and comparisons -----------------------------------------------------------------------------------

K = 6  # 6-fold CV: the corrected t-test's n_test/n_train is 1/5


def _folds(seeds: tuple[int, ...] = (0, 1)) -> pd.DataFrame:
    """Rows a, b, c of one study, ``seeds`` model seeds on each of 6 test folds; b is 0.05 better than a on model
    accuracy, every row equal on explanation accuracy, c without F1."""
    rng = np.random.default_rng(0)
    records = []
    for seed in seeds:
        for fold in range(K):
            base = rng.random()
            for row, shift in (("a", 0.0), ("b", 0.05), ("c", 0.0)):
                records.append(
                    {
                        "study": "s",
                        "row": row,
                        "method": row,
                        "seed": seed,
                        "split_seed": 42,
                        "n_splits": K,
                        "fold": fold,
                        "run_id": f"{row}{seed}",
                        "formula": "x" if row != "c" else "y & x",
                        "model_accuracy": base + shift + 0.01 * rng.standard_normal(),
                        "explanation_accuracy": base,  # identical for every row
                        "explanation_complexity": {"a": 3.0, "b": 2.0, "c": 5.0}[row] + fold % 2,
                        "explanation_f1": float("nan") if row == "c" else base,
                        "training_time": rng.random(),
                        "majority_accuracy": 0.8,
                    }
                )
    return pd.DataFrame(records)


def _per_fold(folds: pd.DataFrame, row: str, metric: str) -> np.ndarray:
    """The row's values per test fold, its seeds averaged first."""
    return folds[folds.row == row].groupby("fold")[metric].mean().sort_index().to_numpy()


def test_the_unit_of_pairing_is_the_test_fold_and_seeds_are_averaged_first() -> None:
    folds = _folds(seeds=(0, 1, 2))
    table = paired_tests(folds, ["model_accuracy", "explanation_accuracy", "explanation_f1"])
    pair = table[(table.metric == "model_accuracy") & (table.row_a == "a") & (table.row_b == "b")].iloc[0]
    diff = _per_fold(folds, "a", "model_accuracy") - _per_fold(folds, "b", "model_accuracy")
    assert pair.n_pairs == K  # 6 test folds, not 18 (fold, seed) pairs
    assert pair.mean_diff == pytest.approx(diff.mean())
    assert pair.p_wilcoxon == pytest.approx(stats.wilcoxon(diff).pvalue)
    # Nadeau-Bengio: variance inflated by 1/J + n_test/n_train = 1/6 + 1/5.
    t = diff.mean() / math.sqrt((1 / K + 1 / (K - 1)) * diff.var(ddof=1))
    assert pair.t_corrected == pytest.approx(t)
    assert pair.p_corrected_t == pytest.approx(2 * stats.t.sf(abs(t), K - 1))
    assert pair.p_corrected_t > stats.ttest_rel(*[_per_fold(folds, r, "model_accuracy") for r in "ab"]).pvalue
    same = table[table.metric == "explanation_accuracy"]
    assert (same.p_wilcoxon == 1.0).all() and (same.p_corrected_t == 1.0).all()  # identical results
    undefined = table[(table.metric == "explanation_f1") & (table.row_b == "c")]
    assert (undefined.n_pairs == 0).all() and undefined.p_wilcoxon.isna().all()
    assert len(table) == 3 * 3  # 3 metrics x 3 pairs
    # Holm within each metric's family: the adjusted p-values are Holm's of that metric's raw ones.
    for _, family in table.groupby("metric"):
        assert family.p_wilcoxon_holm.to_numpy() == pytest.approx(
            sig.holm(family.p_wilcoxon.to_numpy()), nan_ok=True
        )


def test_repeated_runs_of_a_configuration_are_averaged_not_double_counted() -> None:
    folds = _folds()
    repeat = folds[(folds.row == "b") & (folds.seed == 0)].assign(run_id="b0-again")
    table = paired_tests(pd.concat([folds, repeat]), ["model_accuracy"])
    assert table[(table.row_a == "a") & (table.row_b == "b")].n_pairs.iloc[0] == K


def test_no_test_on_times_or_baselines() -> None:
    tested = compared_names(METRICS)
    for metric in METRICS.at("fold"):
        if metric.unit == "s" or metric.higher_is_better is None:
            assert metric.name not in tested, metric.name
    folds = _folds()
    pairs = paired_tests(folds, METRICS)
    assert not {"training_time", "elapsed_time", "majority_accuracy"} & set(pairs["metric"])
    versus = compare_with_best(folds, METRICS)
    assert not [c for c in versus if c.startswith(("training_time_", "elapsed_time_", "majority_accuracy_"))]


def test_summary_pools_seeds_per_test_fold_and_one_fold_has_no_sem() -> None:
    folds = _folds(seeds=(0, 1, 2))
    by_row = summary_table(folds).set_index("row")
    a = by_row.loc["a"]
    assert (a["n_folds"], a["n_seeds"], a["n_runs"]) == (K, 3, 3)
    per_fold = _per_fold(folds, "a", "model_accuracy")
    assert a["model_accuracy_mean"] == pytest.approx(per_fold.mean())
    assert a["model_accuracy_sem"] == pytest.approx(
        per_fold.std(ddof=1) / math.sqrt(K)
    )  # over 6 folds, not 18
    assert a["model_accuracy_n"] == K
    one = summary_table(folds[folds.fold == 0]).set_index("row")
    assert one.loc["a", "n_folds"] == 1 and math.isnan(one.loc["a", "model_accuracy_sem"])
    cell = human_table(one.reset_index(), ["row"]).set_index("method").loc["a", "model accuracy"]
    assert cell.startswith(f"{one.loc['a', 'model_accuracy_mean']:.3f} ± n/a")


def test_the_best_row_is_chosen_on_the_folds_every_row_has() -> None:
    # a: every fold, high on fold 0 only; b: only fold 0 (an easy fold), where a is better. Over its own folds b
    # has the higher mean, but on the common fold a wins: a is the best.
    records = [
        {
            "study": "s",
            "row": "a",
            "seed": 0,
            "split_seed": 42,
            "n_splits": 5,
            "fold": f,
            "run_id": "a",
            "v": v,
        }
        for f, v in enumerate([0.90, 0.70, 0.70, 0.70, 0.70])
    ]
    records.append(
        {
            "study": "s",
            "row": "b",
            "seed": 0,
            "split_seed": 42,
            "n_splits": 5,
            "fold": 0,
            "run_id": "b",
            "v": 0.85,
        }
    )
    folds = pd.DataFrame(records).rename(columns={"v": "model_accuracy"})
    versus = compare_with_best(folds, METRICS).set_index("row")
    assert versus.loc["a", "model_accuracy_best"] == "a" and versus.loc["a", "model_accuracy_best_n"] == 1
    assert versus.loc["b", "model_accuracy_n_pairs"] == 1
    # b also on fold 1, c on fold 4 only, which b lacks: no fold is common to all three, so c (the fewest folds)
    # is left out and says so; a and b are still compared, on folds 0 and 1.
    extra = [{**records[0], "row": "b", "run_id": "b", "fold": 1, "v": 0.60}]
    extra.append({**records[0], "row": "c", "run_id": "c", "fold": 4, "v": 0.99})
    with_c = pd.concat(
        [folds, pd.DataFrame(extra).rename(columns={"v": "model_accuracy"})], ignore_index=True
    )
    versus = compare_with_best(with_c, METRICS).set_index("row")
    assert versus.loc["a", "model_accuracy_best"] == "a" and not versus.loc["c", "model_accuracy_compared"]
    assert versus.loc["b", "model_accuracy_compared"] and versus.loc["b", "model_accuracy_n_pairs"] == 2
    by_row = summary_table(with_c).merge(versus.reset_index(), on=["study", "row"])
    cell = human_table(by_row, ["row"]).set_index("method").loc["c", "model accuracy"]
    assert cell.endswith("(other folds: not compared)")


def test_summary_table_and_compare_with_best() -> None:
    folds = _folds()
    folds.loc[folds.row == "c", "explanation_f1"] = float("nan")
    by_row = summary_table(folds)
    c = by_row.set_index("row").loc["c"]
    assert math.isnan(c["explanation_f1_mean"]) and math.isnan(c["explanation_f1_sem"])
    versus = compare_with_best(folds, METRICS)
    assert set(versus["model_accuracy_best"]) == {"b"}
    assert set(versus["explanation_complexity_best"]) == {"b"}  # lower is better
    assert math.isnan(versus.set_index("row").loc["b", "model_accuracy_p_wilcoxon"])
    a = versus.set_index("row").loc["a"]
    assert a["model_accuracy_p_corrected_t"] < 0.01
    assert a["model_accuracy_p_corrected_t_holm"] >= a["model_accuracy_p_corrected_t"]
    pretty = human_table(by_row.merge(versus, on=["study", "row"]), ["row"]).set_index("method")
    assert pretty.loc["b", "model accuracy"].endswith("(best)")
    # 6 folds, 2 comparisons: the Wilcoxon test can at best give 2 x 2/2^6 = 0.0625, so it shows no p-value.
    assert a["model_accuracy_p_wilcoxon_floor"] == pytest.approx(0.0625)
    assert pretty.loc["a", "model accuracy"].endswith(f"(<0.001/{render.NOT_SHOWN})")
    assert pretty.loc["c", "explanation F1"] == "n/a"
    assert (pretty["n (folds × seeds)"] == f"{K} × 2").all()


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
            "study": ["s", "s"],
            "row": ["rf", "tree"],
            "seed": [0, 0],
            "split_seed": [42, 42],
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
    blanked = blank_missing_explanations(folds, metrics).set_index("row")
    for name in (
        "explanation_complexity",
        "elapsed_time",
        "formula_length",
    ):  # every metric needing a formula
        assert math.isnan(blanked.loc["rf", name])
        assert blanked.loc["tree", name] == folds.set_index("row").loc["tree", name]
    assert blanked.loc["rf", "model_accuracy"] == 0.9 and blanked.loc["rf", "training_time"] == 1.0
    by_row = summary_table(blanked.reset_index(), metrics=metrics).set_index("row")
    assert math.isnan(by_row.loc["rf", "explanation_consistency"])  # job-level metrics from the registry
    assert by_row.loc["tree", "explanation_consistency"] == 1.0
    assert "formula_length_mean" in by_row and math.isnan(by_row.loc["rf", "formula_length_mean"])


def test_job_level_metrics_are_the_jobs_own_values() -> None:
    """Consistency is each job's own (from its run, computed on full formulas), averaged over the row's jobs; the
    fold table's formulas are only the fallback."""
    folds = _folds()
    runs = pd.DataFrame({"run_id": ["a0", "a1"], "explanation_consistency": [0.2, 0.4]})
    by_row = summary_table(folds, metrics=METRICS, runs=runs).set_index("row")
    assert by_row.loc["a", "explanation_consistency"] == pytest.approx(0.3)
    assert by_row.loc["b", "explanation_consistency"] == 1.0  # not in runs: computed from its formulas


def test_human_tables_take_labels_digits_and_order_from_the_registry() -> None:
    folds = _folds()
    by_row = summary_table(folds)
    table = human_table(by_row, ["row"])
    order = [m.label for m in METRICS if m.name in METRICS.fold_names or m.name in by_row]
    assert list(table.columns) == ["method", "n (folds × seeds)", *[c for c in order if c in table]]
    complexity = table.set_index("method").loc["b", "complexity"]
    assert complexity.count(".") == 2 and len(complexity.split(" ± ")[0].split(".")[1]) == 1  # digits=1
    markdown = render.summary_texts("s", by_row, ["row"])["s.md"]
    assert METRICS["explanation_complexity"].label in markdown and "explanation_complexity" not in markdown
    fewer = MetricSet([m for m in METRICS if m.name != "model_accuracy"])
    texts = render.summary_texts("s", summary_table(folds, metrics=fewer), ["row"], fewer)
    assert not any("model_accuracy" in text or "model accuracy" in text for text in texts.values())


def test_analyse_keeps_configurations_apart() -> None:
    """Two configurations of one method never share a row, whatever their seeds."""
    folds = _folds()
    folds["method"] = folds["row"].replace({"c": "a"})  # c is method a with another hyper-parameter
    runs = (
        folds[["run_id", "method", "seed"]]
        .drop_duplicates()
        .assign(data="d", label="y", git_commit="1234567abc", data_checksum="ff", config_hash="")
    )
    runs["params"] = [
        {
            "cv.n_splits": K,
            "method.explainer.depth": 3 if r.startswith("c") else 5,
            "method.explainer.seed": s,
        }
        for r, s in zip(runs["run_id"], runs["seed"], strict=True)
    ]
    result = analyse(folds.drop(columns=["study", "row", "split_seed", "n_splits"]), runs)
    assert sorted(result.by_row["row"]) == ["a (depth=3)", "a (depth=5)", "b"]
    assert (result.by_row["n_folds"] == K).all() and (result.by_row["n_seeds"] == 2).all()


# -- end to end: make report -------------------------------------------------------------------------------------


@pytest.mark.e2e
def test_report_shows_every_method_with_new_metrics_and_paired_tests(tmp_path: Path) -> None:
    sweep = ("data=dnf", "data.n_samples=300", "method=tree,rulelist,rf", "cv.n_splits=4", "cv.n_jobs=1")
    proc = run_train(tmp_path, *sweep, multirun=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = tmp_path / "report"
    report = run_report(tmp_path, "dnf", out)
    assert report.returncode == 0, report.stderr[-3000:]
    by_row = pd.read_csv(out / "summary_by_experiment.csv")
    assert sorted(by_row["method"]) == ["rf", "rulelist", "tree"]
    label = {m.name: m.label for m in METRICS}
    for column in (
        f"{label['model_auroc']} mean",
        f"{label['explanation_f1']} mean",
        f"{label['model_accuracy']} p Wilcoxon vs best (Holm)",
        f"{label['model_f1']} p corrected t vs best",
        "test folds",
    ):
        assert column in by_row, column
    assert not [c for c in by_row.columns if any(c.startswith(name) for name in METRICS.names)]  # no raw keys
    rf = by_row.set_index("method").loc["rf"]
    assert (
        math.isnan(rf[f"{label['explanation_accuracy']} mean"]) and rf[f"{label['model_auroc']} mean"] > 0.5
    )
    pairs = pd.read_csv(out / "paired_tests.csv")
    assert set(pairs["metric"]) == {label[name] for name in compared_names(METRICS)}
    assert (pairs.loc[pairs["metric"] == label["model_accuracy"], "n (test folds)"] == 4).all()
    assert set(pairs["n (test folds)"]) == {4}  # rf has no formula to pair: no row for those pairs
    printed = report.stdout
    for text in (
        label["model_accuracy"],
        label["explanation_accuracy"],
        "(best)",
        "n (folds × seeds)",
        "rulelist",
        "not held out",  # the console table's legend
        "Study: dnf / y / 4-fold.",
    ):
        assert text in printed, text
    assert "elapsed_time" not in printed and "model_accuracy" not in printed  # labels only
    assert "%|" not in report.stderr  # no tqdm progress bar from artifact downloads
    for name in ("paired_tests.md", "paired_tests.tex", "summary_headline.tex", "provenance.json"):
        assert (out / name).stat().st_size > 0
        assert (out / name).stat().st_mode & 0o777 == 0o644, name


def test_a_single_row_is_not_called_best() -> None:
    one = pd.DataFrame(
        {
            "method": ["psi"],
            "row": ["psi"],
            "n_folds": [10],
            "n_seeds": [3],
            "model_accuracy_mean": [0.8],
            "model_accuracy_sem": [0.01],
            "model_accuracy_best": ["psi"],
        }
    )
    assert human_table(one, ["method"])["model accuracy"].tolist() == ["0.800 ± 0.010"]
