"""The report's tables as text (no files written here): headed by registry labels (``elapsed_time`` reads
"extraction time (s)") with their digits. CSV keeps one number per cell (``<label> mean``, ``<label> sem``, ...);
Markdown and LaTeX show ``mean ± sem`` cells, then ``(best)`` or the Holm-adjusted p-values against the column's best
row, and ``n`` (test folds x seeds) on every row, no column a metric no row has, and :data:`NOT_SHOWN` for a Wilcoxon
test that cannot reach ALPHA at its n; Markdown tables end with their legend, LaTeX (:mod:`.latex`) captions hold it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import pandas as pd

from lenbench.report import latex
from lenbench.report.compare import ALPHA, NAN, TESTS
from lenbench.report.stats import study_titles
from lenbench.scoring import METRICS, MetricSet

ROW_LABEL = "method"
# Column headers for people; a column named in none of these tables keeps its name.
IDENTITY_LABELS = {
    "row": ROW_LABEL,
    "method": "method family",
    "config": "configuration",
    "n_splits": "k (folds of the CV)",
    "n_folds": "test folds",
    "n_seeds": "seeds",
    "n_runs": "runs",
    "seed_consistency": "consistency across seeds",
}
SUFFIX_LABELS = {
    "mean": "mean",
    "sem": "sem",
    "n": "n",
    "seed_sd": "sd across seeds",
    "best": "best row",
    "best_n": "best chosen on n folds",
    "compared": "compared with best",
    "n_pairs": "n pairs vs best",
}
PAIR_LABELS = {
    "row_a": "row a",
    "row_b": "row b",
    "n_pairs": "n (test folds)",
    "mean_a": "mean a",
    "mean_b": "mean b",
    "mean_diff": "mean a - b",
    "t_corrected": "t (corrected)",
    "p_corrected_t": "p corrected t",
    "p_wilcoxon": "p Wilcoxon",
    "p_corrected_t_holm": "p corrected t (Holm)",
    "p_wilcoxon_holm": "p Wilcoxon (Holm)",
    "p_wilcoxon_floor": "smallest attainable p Wilcoxon (Holm)",
}
# ``p corrected t (Holm)`` against the best row: ``p corrected t vs best (Holm)``.
SUFFIX_LABELS |= {k: re.sub(r"( \(Holm\))?$", r" vs best\1", PAIR_LABELS[k], count=1) for k in TESTS}


NOT_SHOWN = "–"  # a Wilcoxon test that could not be significant at its n: no p-value to read
RANK_LABELS = {
    "row": ROW_LABEL,
    "average_rank": "average rank",
    "n_studies": "data sets",
    "friedman_chi2": "Friedman chi2",
    "friedman_p": "Friedman p",
    "iman_davenport_p": "Iman-Davenport p",
    "nemenyi_cd": "Nemenyi CD (0.05)",
}


def n_text(table: pd.DataFrame) -> list[str]:
    """``folds × seeds`` per row (``10 × 3``)."""
    return [f"{int(f)} × {int(s)}" for f, s in zip(table["n_folds"], table["n_seeds"], strict=True)]


def _num(value: float, digits: int = 3) -> str:
    return "n/a" if value != value else f"{value:.{digits}f}"


def p_text(value: float) -> str:
    return "<0.001" if value < 0.001 else _num(value)


def wilcoxon_text(p: float, floor: float) -> str:
    """The Wilcoxon p-value, or :data:`NOT_SHOWN` when its n (and Holm family) keep it above ALPHA whatever the
    data: printing it would look like a test that could have decided."""
    return NOT_SHOWN if floor > ALPHA else p_text(p)


def _labels(names: pd.Series, metrics: MetricSet) -> pd.Series:
    return names.map(lambda name: metrics[name].label if name in metrics else name)


def _comparison(table: pd.DataFrame, name: str, i: int) -> str:
    at = lambda suffix: table[f"{name}_{suffix}"].iloc[i] if f"{name}_{suffix}" in table else NAN  # noqa: E731
    if at("best") != at("best") or at("best") is None:
        return ""
    if f"{name}_compared" in table and not bool(at("compared")):
        return "\n(other folds: not compared)"
    if table["row"].iloc[i] == at("best"):
        return "\n(best)"
    pairs = at("n_pairs")
    fewer = f", n={int(pairs)}" if pairs == pairs and pairs != at("n") else ""
    return f"\n({p_text(at('p_corrected_t_holm'))}/{wilcoxon_text(at('p_wilcoxon_holm'), at('p_wilcoxon_floor'))}{fewer})"


def _cells(table: pd.DataFrame, name: str, digits: int) -> list[str]:
    """``mean ± sem`` per row, then (on a line of its own in LaTeX) ``(best)`` or ``(p_t/p_w)`` (Holm-adjusted)
    where the table holds tests; one row is never called best."""
    means = zip(table[f"{name}_mean"], table[f"{name}_sem"], strict=True)
    cells = [f"{_num(m, digits)} ± {_num(s, digits)}" if m == m else "n/a" for m, s in means]
    if f"{name}_best" not in table or len(table) < 2:
        return cells
    return [cell if cell == "n/a" else cell + _comparison(table, name, i) for i, cell in enumerate(cells)]


def _has_values(table: pd.DataFrame, column: str) -> bool:
    return column in table and bool(table[column].notna().any())


def human_table(table: pd.DataFrame, keys: Sequence[str], metrics: MetricSet = METRICS) -> pd.DataFrame:
    """The summary for people: ``keys`` (a study with the folds that ran, when fewer than its CV has), ``n``, then
    every metric of the set that some row has a value for, in its order (fold metrics as cells, job-level ones as
    values), then consistency across seeds when some row has seeds; columns headed by labels, cells plain text."""
    titles = study_titles(table) if "study" in keys else {}
    out = pd.DataFrame(
        {IDENTITY_LABELS.get(k, k): table[k].map(lambda v: titles.get(v, str(v))) for k in keys}
    )
    out["n (folds × seeds)"] = n_text(table)
    for metric in metrics:
        if metric.level == "fold" and _has_values(table, f"{metric.name}_mean"):
            out[metric.label] = _cells(table, metric.name, metric.digits)
        elif metric.level == "job" and _has_values(table, metric.name):
            out[metric.label] = table[metric.name].map(metric.format)
    if "seed_consistency" in table and table["n_seeds"].max() > 1:
        out[IDENTITY_LABELS["seed_consistency"]] = table["seed_consistency"].map(_num)
    return out


def csv_headers(table: pd.DataFrame, metrics: MetricSet = METRICS) -> pd.DataFrame:
    """The machine table with readable headers: ``<label> <what>`` for metric columns, plain words otherwise."""
    names = {}
    for column in table.columns:
        names[column] = IDENTITY_LABELS.get(column, column)
        for metric in metrics:
            if column == metric.name:
                names[column] = metric.label
            elif column.startswith(metric.name + "_") and column[len(metric.name) + 1 :] in SUFFIX_LABELS:
                names[column] = f"{metric.label} {SUFFIX_LABELS[column[len(metric.name) + 1 :]]}"
    return table.rename(columns=names)


def floor_note(n_pairs: pd.Series, floors: pd.Series) -> str:
    """Why some Wilcoxon cells show :data:`NOT_SHOWN`, with the smallest p each n could reach; "" when none."""
    low = sorted({(int(n), float(f)) for n, f in zip(n_pairs, floors, strict=True) if f > ALPHA})
    at_best = ", ".join(f"n={n}: {f:.3g}" for n, f in low)
    if not low:
        return ""
    return (
        f"{NOT_SHOWN}: a Wilcoxon test that cannot reach p ≤ {ALPHA} at its n, so no p-value is shown (smallest "
        f"two-sided p 2/2^n, times a family's size under Holm; here at best {at_best})."
    )


def summary_note(table: pd.DataFrame, metrics: MetricSet = METRICS, pooled: bool = True) -> str:
    """The legend of a summary table: its study, what rows, n and cells are, how the best row was chosen, which
    tests the p-values are (and which could not be significant), what is not tested."""
    titles = list(study_titles(table).values())
    parts = [
        f"Study: {titles[0]}." * (len(titles) == 1),
        f"Rows: one configuration each (settings that differ from another row of the method in brackets), "
        f"{'seeds pooled' if pooled else 'one per model seed'}. n: test folds × model seeds. Cells: mean ± standard "
        "error over the test folds (seeds averaged on each fold first; n/a for one fold).",
    ]
    compared = [m.name for m in metrics.at("fold") if _has_values(table, f"{m.name}_best")]
    if compared and len(table) > 1:
        floors = [table.get(f"{name}_p_wilcoxon_floor", table[f"{name}_n"] * NAN) for name in compared]
        parts.append(
            "(best): the column's best mean on the test folds every compared row has, the folds its comparisons are "
            "tested on (not held out: this favours small p-values against it). (p_t/p_w): two-sided p-values against "
            "it of the corrected resampled t-test (Nadeau & Bengio 2003) and the Wilcoxon signed-rank test, paired "
            "by test fold, Holm-adjusted over the column; n=…: fewer folds paired than the row has; a row run on "
            f"other folds is not compared. {floor_note(pd.concat([table[f'{c}_n_pairs'] for c in compared]), pd.concat(floors))}"
        )
    shown = [m for m in metrics.at("fold") if _has_values(table, f"{m.name}_mean")]
    untested = [m.label for m in shown if not m.compared or m.higher_is_better is None]
    parts.append(f"Not tested: {', '.join(untested) or 'none'}.")
    if "majority_accuracy" in metrics:
        parts.append(f"{metrics['majority_accuracy'].label.capitalize()}: always predicting the majority.")
    return " ".join(part for part in parts if part)


def to_markdown(table: pd.DataFrame, legend: str = "") -> str:
    """A GitHub-flavoured Markdown table (``|`` escaped, a cell's lines joined), then its legend when given."""
    cells = lambda values: " | ".join(str(v).replace("|", r"\|").replace("\n", " ") for v in values)  # noqa: E731
    lines = [f"| {cells(table.columns)} |", "|" + "---|" * len(table.columns)]
    lines += [f"| {cells(row)} |" for row in table.itertuples(index=False)]
    return "\n".join(lines) + "\n" + (f"\n{legend}\n" if legend else "")


def _texts(
    name: str, machine: pd.DataFrame, people: pd.DataFrame, legend: str, text: int, group: list
) -> dict:
    """``<name>.csv``, ``.md`` (legend below) and ``.tex`` (legend in the caption; ``group`` as headings)."""
    caption = f"{name.replace('_', ' ').capitalize()}. {legend}"
    return {
        f"{name}.csv": machine.to_csv(index=False),
        f"{name}.md": to_markdown(people, legend),
        f"{name}.tex": latex.table(people, caption, f"tab:{name}", text, group),
    }


def summary_texts(
    name: str, table: pd.DataFrame, keys: Sequence[str], metrics: MetricSet = METRICS
) -> dict[str, str]:
    """``<name>.csv`` (readable headers), ``<name>.md`` and ``<name>.tex`` of one summary table; several studies
    are LaTeX headings, not a column."""
    group = ["study"] * ("study" in keys)
    legend = summary_note(table, metrics, pooled="seed" not in keys)
    people = human_table(table, keys, metrics)
    return _texts(name, csv_headers(table, metrics), people, legend, len(keys) - len(group), group)


def pairs_texts(pairs: pd.DataFrame, metrics: MetricSet = METRICS) -> dict[str, str]:
    """``paired_tests.{csv,md,tex}``: every pair of rows of each study with a test fold in common, on every tested
    metric; people's tables show the difference, t and the Holm-adjusted p-values (the rest is in the CSV)."""
    tested = pairs[pairs["n_pairs"] > 0].assign(metric=lambda t: _labels(t["metric"], metrics))
    people = tested.assign(
        mean_diff=tested["mean_diff"].map(lambda v: _num(v, 4)),
        t_corrected=tested["t_corrected"].map(lambda v: _num(v, 4)),
        p_corrected_t_holm=tested["p_corrected_t_holm"].map(p_text),
        p_wilcoxon_holm=list(map(wilcoxon_text, tested["p_wilcoxon_holm"], tested["p_wilcoxon_floor"])),
    )
    drop = ["mean_a", "mean_b", "p_corrected_t", "p_wilcoxon", "p_wilcoxon_floor"]
    people = people.drop(columns=drop + ["study"] * (people["study"].nunique() < 2)).rename(
        columns=PAIR_LABELS
    )
    legend = (
        "Every pair of rows (a, b) of a study on every tested metric, on the test folds both have (n; seeds averaged "
        "on each fold first). t: the corrected resampled t statistic (Nadeau & Bengio 2003) of a - b; p-values "
        "two-sided, of that t-test and of the Wilcoxon signed-rank test, each Holm-adjusted over the metric's pairs "
        "in the study (unadjusted ones: paired_tests.csv). "
        + floor_note(tested["n_pairs"], tested["p_wilcoxon_floor"])
    )
    group = [c for c in ("study", "metric") if c in people]
    return _texts("paired_tests", tested.rename(columns=PAIR_LABELS), people, legend, 2, group)


def ranks_texts(ranks: pd.DataFrame, metrics: MetricSet = METRICS) -> dict[str, str]:
    """``ranks_across_studies.{csv,md,tex}``: average ranks, Friedman and Nemenyi CD per metric."""
    if ranks.empty:
        return {}
    table = ranks.assign(metric=_labels(ranks["metric"], metrics))
    people = table.assign(**{c: table[c].map(_num) for c in ("average_rank", "friedman_chi2", "nemenyi_cd")})
    people = people.assign(**{c: table[c].map(p_text) for c in ("friedman_p", "iman_davenport_p")})
    legend = (
        "Rows present in every study, ranked within each study on each metric (1 = best, ties averaged); average "
        "rank over the data sets, the Friedman test of equal ranks (chi2 and Iman-Davenport's F p-values) and the "
        "Nemenyi critical difference at 0.05: rows whose average ranks differ by less are not told apart (Demšar 2006)."
    )
    machine, people = table.rename(columns=RANK_LABELS), people.rename(columns=RANK_LABELS)
    return _texts("ranks_across_studies", machine, people, legend, 1, ["metric"])
