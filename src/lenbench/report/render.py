"""The report's tables as text: CSV, Markdown and LaTeX, all headed by readable labels (no files written here).

Every metric column is headed by its registry label (``elapsed_time`` reads "extraction time (s)"), with its
digits. CSV keeps one number per cell (``<label> mean``, ``<label> sem``, ``<label> n``, p-values ...); Markdown
and LaTeX show ``mean ± sem`` cells, then ``(best)`` or the Holm-adjusted p-values against the column's best row,
and an ``n`` column (test folds x seeds) on every row. LaTeX is booktabs-style with ``_ % & # $ { } ~ ^ \\``
escaped and math only where math is meant (``$\\pm$``, ``$<0.001$``), so a table compiles as it is.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import pandas as pd

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
    "p_corrected_t": "p corrected t vs best",
    "p_wilcoxon": "p Wilcoxon vs best",
    "p_corrected_t_holm": "p corrected t vs best (Holm)",
    "p_wilcoxon_holm": "p Wilcoxon vs best (Holm)",
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
}


@dataclass(frozen=True)
class Style:
    """How a human table writes its cells: Markdown or LaTeX."""

    pm: str
    below: str  # "<0.001"
    escape: Callable[[str], str]


_LATEX_SPECIAL = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "<": r"\textless{}",
    ">": r"\textgreater{}",
}


def latex_escape(text: str) -> str:
    """Text for LaTeX's text mode: every special character escaped, ``±`` as ``$\\pm$``."""
    escaped = re.sub(r"[\\&%$#_{}~^<>]", lambda m: _LATEX_SPECIAL[m.group()], str(text))
    return escaped.replace("±", r"$\pm$").replace("×", r"$\times$")


def markdown_escape(text: str) -> str:
    return str(text).replace("|", r"\|")


MARKDOWN = Style(pm="±", below="<0.001", escape=markdown_escape)
LATEX = Style(pm=r"$\pm$", below=r"$<0.001$", escape=latex_escape)


def p_text(value: float, style: Style = MARKDOWN) -> str:
    if value != value:
        return "n/a"
    return style.below if value < 0.001 else f"{value:.3f}"


def n_text(table: pd.DataFrame) -> list[str]:
    """``folds × seeds`` per row (``10 × 3``)."""
    return [f"{int(f)} × {int(s)}" for f, s in zip(table["n_folds"], table["n_seeds"], strict=True)]


def _mean_sem(mean: float, sem: float, digits: int, style: Style) -> str:
    if mean != mean:
        return "n/a"
    spread = "n/a" if sem != sem else f"{sem:.{digits}f}"
    return f"{mean:.{digits}f} {style.pm} {spread}"


def _comparison(table: pd.DataFrame, name: str, i: int, style: Style) -> str:
    best = table[f"{name}_best"].iloc[i]
    if best != best or best is None:
        return ""
    if f"{name}_compared" in table and not bool(table[f"{name}_compared"].iloc[i]):
        return " (other folds: not compared)"
    if table["row"].iloc[i] == best:
        return " (best)"
    p_t, p_w = table[f"{name}_p_corrected_t_holm"].iloc[i], table[f"{name}_p_wilcoxon_holm"].iloc[i]
    pairs, n = table[f"{name}_n_pairs"].iloc[i], table[f"{name}_n"].iloc[i]
    fewer = f", n={int(pairs)}" if pairs == pairs and pairs != n else ""
    return f" ({p_text(p_t, style)}/{p_text(p_w, style)}{fewer})"


def _cells(table: pd.DataFrame, name: str, digits: int, style: Style) -> list[str]:
    """``mean ± sem`` per row, then ``(best)`` or ``(p_t/p_w)`` (Holm-adjusted) where the table holds tests."""
    cells = [
        _mean_sem(m, s, digits, style)
        for m, s in zip(table[f"{name}_mean"], table[f"{name}_sem"], strict=True)
    ]
    if f"{name}_best" not in table or len(table) < 2:  # one row: nothing was compared, nothing is best
        return cells
    for i, cell in enumerate(cells):
        if cell != "n/a":
            cells[i] = cell + _comparison(table, name, i, style)
    return cells


def human_table(
    table: pd.DataFrame, keys: Sequence[str], metrics: MetricSet = METRICS, style: Style = MARKDOWN
) -> pd.DataFrame:
    """The summary for people: ``keys`` (escaped), ``n``, then every metric of the set in its order (fold
    metrics as cells, job-level ones as values), then consistency across seeds when some row has seeds; columns
    headed by labels."""
    out = pd.DataFrame(
        {IDENTITY_LABELS.get(k, k): table[k].map(lambda v: style.escape(str(v))) for k in keys}
    )
    out["n (folds × seeds)"] = n_text(table)
    for metric in metrics:
        if metric.level == "fold" and f"{metric.name}_mean" in table:
            out[metric.label] = _cells(table, metric.name, metric.digits, style)
        elif metric.level == "job" and metric.name in table:
            out[metric.label] = table[metric.name].map(metric.format)
    if "seed_consistency" in table and table["n_seeds"].max() > 1:
        out[IDENTITY_LABELS["seed_consistency"]] = table["seed_consistency"].map(
            lambda v: "n/a" if v != v else f"{v:.3f}"
        )
    out.columns = [style.escape(c) if style is LATEX else c for c in out.columns]
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


def note(metrics: MetricSet = METRICS) -> str:
    """What the cells of the by-row table mean, and which metrics are not compared."""
    untested = ", ".join(m.label for m in metrics.at("fold") if not m.compared or m.higher_is_better is None)
    text = (
        "Rows are experiments: one configuration (method and hyper-parameters; the settings that differ from "
        "another row of the same method in brackets), its seeds pooled. n: test folds × model seeds. Cells: mean "
        "± standard error over test folds (seeds averaged on each fold first; n/a for one fold). (p_t/p_w): "
        "two-sided p-values against the column's best row (chosen on the test folds every compared row has; "
        "a row run on other folds is not compared) of the "
        "corrected resampled t-test (Nadeau & Bengio 2003) and the Wilcoxon signed-rank test, paired by test "
        "fold, Holm-adjusted over the column's comparisons; n=… when fewer folds were paired than the row "
        f"has. All pairs: paired_tests.csv. Not tested (no score of the method): {untested or 'none'}."
    )
    if "majority_accuracy" in metrics:
        text += f" {metrics['majority_accuracy'].label}: always predicting the test fold's majority class."
    return text


def to_markdown(table: pd.DataFrame) -> str:
    """A GitHub-flavoured Markdown table (cells as they are; escape them before)."""
    header = "| " + " | ".join(map(str, table.columns)) + " |"
    rule = "|" + "---|" * len(table.columns)
    body = ["| " + " | ".join(map(str, row)) + " |" for row in table.itertuples(index=False)]
    return "\n".join([header, rule, *body]) + "\n"


def to_latex(table: pd.DataFrame) -> str:
    """A booktabs ``tabular`` (needs ``\\usepackage{booktabs}``); cells and headers as they are (escaped before):
    the first column left-aligned, the others right-aligned."""
    spec = "l" + "r" * (len(table.columns) - 1)
    lines = [rf"\begin{{tabular}}{{{spec}}}", r"\toprule", " & ".join(map(str, table.columns)) + r" \\"]
    lines.append(r"\midrule")
    lines += [" & ".join(map(str, row)) + r" \\" for row in table.itertuples(index=False)]
    lines += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(lines) + "\n"


def summary_texts(
    name: str, table: pd.DataFrame, keys: Sequence[str], metrics: MetricSet = METRICS, with_note: bool = False
) -> dict[str, str]:
    """``<name>.csv`` (readable headers), ``<name>.md`` and ``<name>.tex`` of one summary table."""
    extra = f"\n{note(metrics)}\n" if with_note else ""
    return {
        f"{name}.csv": csv_headers(table, metrics).to_csv(index=False),
        f"{name}.md": to_markdown(human_table(table, keys, metrics, MARKDOWN)) + extra,
        f"{name}.tex": to_latex(human_table(table, keys, metrics, LATEX)),
    }


def _pairs_for_people(pairs: pd.DataFrame, metrics: MetricSet, style: Style) -> pd.DataFrame:
    out = pairs.copy()
    out["metric"] = out["metric"].map(lambda name: metrics[name].label if name in metrics else name)
    for column in ("study", "metric", "row_a", "row_b"):
        out[column] = out[column].map(lambda v: style.escape(str(v)))
    for column in ("mean_a", "mean_b", "mean_diff", "t_corrected"):
        out[column] = out[column].map(lambda v: "n/a" if v != v else f"{v:.4f}")
    for column in [c for c in out.columns if c.startswith("p_")]:
        out[column] = out[column].map(lambda v: p_text(v, style))
    out = out.rename(columns=PAIR_LABELS)
    out.columns = [style.escape(c) for c in out.columns]
    return out


def pairs_texts(pairs: pd.DataFrame, metrics: MetricSet = METRICS) -> dict[str, str]:
    """``paired_tests.csv``, ``.md`` and ``.tex``: every pair of rows of each study on every tested metric."""
    machine = pairs.copy()
    machine["metric"] = machine["metric"].map(lambda name: metrics[name].label if name in metrics else name)
    return {
        "paired_tests.csv": machine.rename(columns=PAIR_LABELS).to_csv(index=False),
        "paired_tests.md": to_markdown(_pairs_for_people(pairs, metrics, MARKDOWN)),
        "paired_tests.tex": to_latex(_pairs_for_people(pairs, metrics, LATEX)),
    }


def ranks_texts(ranks: pd.DataFrame, metrics: MetricSet = METRICS) -> dict[str, str]:
    """``ranks_across_studies.{csv,md,tex}``: average ranks, Friedman and Nemenyi CD per metric."""
    if ranks.empty:
        return {}
    table = ranks.copy()
    table["metric"] = table["metric"].map(lambda name: metrics[name].label if name in metrics else name)
    labels = {
        "row": ROW_LABEL,
        "average_rank": "average rank",
        "n_studies": "data sets",
        "friedman_chi2": "Friedman chi2",
        "friedman_p": "Friedman p",
        "iman_davenport_p": "Iman-Davenport p",
        "nemenyi_cd": "Nemenyi CD (0.05)",
    }
    texts = {"ranks_across_studies.csv": table.rename(columns=labels).to_csv(index=False)}
    for style, suffix, render in ((MARKDOWN, "md", to_markdown), (LATEX, "tex", to_latex)):
        people = table.copy()
        for column in ("average_rank", "friedman_chi2", "nemenyi_cd"):
            people[column] = people[column].map(lambda v: f"{v:.3f}")
        for column in ("friedman_p", "iman_davenport_p"):
            people[column] = people[column].map(lambda v, s=style: p_text(v, s))
        for column in ("metric", "row"):
            people[column] = people[column].map(lambda v, s=style: s.escape(str(v)))
        people = people.rename(columns=labels)
        people.columns = [style.escape(c) for c in people.columns]
        texts[f"ranks_across_studies.{suffix}"] = render(people)
    return texts
