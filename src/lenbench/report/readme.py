"""``make readme-tables``: every results table of the README and of docs/, regenerated from the committed snapshot.

Each table sits between ``<!-- BEGIN table:<name> -->`` and ``<!-- END table:<name> -->`` in exactly one file; the
report's own pipeline (:func:`~lenbench.report.build.analyse` over :func:`~lenbench.report.snapshot.load`) computes
them, beside the published figures under ``results/reference/`` (each with its source). ``--check`` only compares.
The Performance and Numerics pages' tables come from ``benchmarks/results/`` (:mod:`.readme_performance`).
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable, Mapping
from pathlib import Path

import pandas as pd

from lenbench.report import compare, render, snapshot
from lenbench.report.build import Analysis, analyse
from lenbench.report.readme_performance import performance_tables
from lenbench.scoring import METRICS, Metric, MetricSet

BLOCK = re.compile(
    r"(<!-- BEGIN table:(?P<name>[\w-]+) -->\n)(?P<body>.*?)(<!-- END table:(?P=name) -->)", re.S
)
MAIN_STUDY, ENTROPY_STUDY, REFERENCE = "mimic", "mimic_entropy_paper", "reference"
# Each suite's table columns (a study under results/ with its table and its ranks, when it is there): the suite's
# headline metrics and how well formulas recover a known truth; the concept suite's task, concept and explanation
# figures and the accuracy at 0, 50 (both orders) and 100 % concept interventions.
SUITE_COLUMNS: dict[str, Callable[[Metric], bool]] = {
    "suite": lambda m: m.headline or m.name in ("truth_agreement", "truth_exact", "concept_accuracy"),
    "concept_suite": lambda m: (
        m.name
        in (
            "model_accuracy",
            "concept_accuracy",
            "explanation_accuracy",
            "explanation_fidelity",
            "explanation_complexity",
            "truth_exact",
            "intervention_accuracy_0",
            "intervention_accuracy_random_50",
            "intervention_accuracy_uncertain_50",
            "intervention_accuracy_100",
        )
    ),
}
BENCH_RESULTS = Path("benchmarks") / "results"


def ordered(analysis: Analysis) -> pd.DataFrame:
    """The by-row table in the order the snapshot's jobs first appear (the sweep's job order)."""
    order = list(dict.fromkeys(analysis.runs["row"]))
    return analysis.by_row.set_index("row").loc[order].reset_index()


def _fraction(metric: Metric) -> bool:
    return metric.unit == "" and metric.digits == 3 and metric.level == "fold"


def _value(metric: Metric, mean: float | str, sem: float | None, percent: bool) -> str:
    if isinstance(mean, str):
        return mean
    if mean != mean:
        return "n/a"
    scale, digits, unit = (100, 2, " %") if percent and _fraction(metric) else (1, metric.digits, "")
    spread = "" if sem is None or sem != sem else f" ± {sem * scale:.{digits}f}"
    return f"{mean * scale:.{digits}f}{spread}{unit}"


def _reference_metrics(reference: pd.DataFrame, metrics: MetricSet) -> list[Metric]:
    return [m for m in metrics if f"{m.name}_mean" in reference or m.name in reference]


def _ref(reference: pd.Series, metric: Metric) -> tuple[float | str, float | None]:
    """A published figure: (mean, sem or None); a text (``about 500``) stays text."""
    if f"{metric.name}_mean" in reference:
        sem = reference.get(f"{metric.name}_sem")
        return float(reference[f"{metric.name}_mean"]), None if sem is None or sem != sem else float(sem)
    value = reference[metric.name]
    try:
        return float(value), None
    except ValueError:
        return str(value), None


def reproduction(analysis: Analysis, notebook: pd.DataFrame, metrics: MetricSet = METRICS) -> str:
    """lenbench's means with the notebook's in brackets, for the notebook's methods and metrics."""
    shown = _reference_metrics(notebook, metrics)
    ours = analysis.by_row.set_index("row")
    records = []
    for _, ref in notebook.iterrows():
        row = ours.loc[ref["method"]]
        record = {
            render.ROW_LABEL: ref["method"],
            "n (folds × seeds)": f"{row['n_folds']} × {row['n_seeds']}",
        }
        for metric in shown:
            mine = row[f"{metric.name}_mean"] if metric.level == "fold" else row[metric.name]
            record[metric.label] = f"{metric.format(mine)} ({metric.format(_ref(ref, metric)[0])})"
        records.append(record)
    majority = analysis.folds.groupby(["split_seed", "fold"])["majority_accuracy"].mean().mean()
    return render.to_markdown(pd.DataFrame(records)) + (
        f"\nMeans over the test folds; the notebook's figures in brackets. "
        f"{metrics['majority_accuracy'].label.capitalize()} (mean over the test folds): {majority:.3f}.\n"
    )


def study_table(analysis: Analysis, keep: Callable[[Metric], bool], metrics: MetricSet = METRICS) -> str:
    """All rows of the study, in job order, on the metrics ``keep`` picks (those some row has a value for)."""
    shown = MetricSet([m for m in metrics if keep(m)])
    return render.to_markdown(render.human_table(ordered(analysis), ["row"], shown))


def against_paper(
    analysis: Analysis, reference: pd.DataFrame, rows: list[str], metrics: MetricSet = METRICS
) -> str:
    """The paper's row(s) (``reference``, column ``source``) above lenbench's ``rows``, on the paper's metrics;
    accuracies in percent as papers print them."""
    shown = _reference_metrics(reference, metrics)
    records = []
    for _, ref in reference.iterrows():
        record = {"": ref["source"], "n": ref.get("n", "")}
        record.update({m.label: _value(m, *_ref(ref, m), percent=True) for m in shown})
        records.append(record)
    ours = analysis.by_row.set_index("row")
    for row in rows:
        line = ours.loc[row]
        record = {"": f"lenbench: {row}", "n": f"{line['n_folds']} × {line['n_seeds']}"}
        for metric in shown:
            if metric.level == "fold":
                mean, sem = line[f"{metric.name}_mean"], line[f"{metric.name}_sem"]
            else:
                mean, sem = line[metric.name], None
            record[metric.label] = _value(metric, mean, sem, percent=True)
        records.append(record)
    return render.to_markdown(pd.DataFrame(records).rename(columns={"n": "n (folds × seeds)"}))


def tables(root: Path, metrics: MetricSet = METRICS, bench: Path | None = None) -> dict[str, str]:
    """Every README table by name, from the snapshot under ``root`` (``results/``) and the benchmark results under
    ``bench`` (default: ``benchmarks/results`` beside ``root``)."""
    main = analyse(*snapshot.load(root / MAIN_STUDY, metrics), metrics)
    entropy = analyse(*snapshot.load(root / ENTROPY_STUDY, metrics), metrics)
    notebook, entropy_paper, brl_paper = (
        pd.read_csv(root / REFERENCE / f"{name}.csv", comment="#")
        for name in ("notebook_mimic", "entropy_paper", "brl_paper")
    )
    paper_metrics = {m.name for m in _reference_metrics(entropy_paper, metrics)}
    entropy_rows = list(dict.fromkeys(entropy.runs["row"]))
    brl_rows = [r for r in dict.fromkeys(main.runs["row"]) if r.split(" ")[0] == "brl"]
    return {
        "reproduction": reproduction(main, notebook, metrics),
        "every_method_model": study_table(main, lambda m: "formula" not in m.needs, metrics),
        "every_method_explanation": study_table(main, lambda m: "formula" in m.needs, metrics),
        "entropy_paper": against_paper(entropy, entropy_paper, entropy_rows, metrics),
        "entropy_paper_more": study_table(entropy, lambda m: m.name not in paper_metrics, metrics),
        "brl_paper": against_paper(main, brl_paper, brl_rows, metrics),
        **suite_tables(root, metrics),
        **performance_tables(root.parent / BENCH_RESULTS if bench is None else bench),
    }


def suite_tables(root: Path, metrics: MetricSet = METRICS) -> dict[str, str]:
    """Per suite of :data:`SUITE_COLUMNS` with a snapshot under ``root``: ``<study>``, every task and method on its
    columns, and ``<study>_ranks``, the methods' average ranks across the tasks, Friedman test and Nemenyi CD."""
    generated = {}
    for study, keep in SUITE_COLUMNS.items():
        if not (root / study).is_dir():
            continue
        suite = analyse(*snapshot.load(root / study, metrics), metrics)
        by_row = suite.by_row.sort_values(["study", "row"], kind="stable")
        table = render.human_table(by_row, ["study", "row"], MetricSet([m for m in metrics if keep(m)]))
        ranks = render.ranks_texts(compare.ranks_table(suite.ranks, metrics), metrics)
        generated[study] = render.to_markdown(table)
        generated[f"{study}_ranks"] = ranks.get("ranks_across_studies.md", "")
    return generated


def rewrite(texts: Mapping[Path, str], generated: Mapping[str, str]) -> dict[Path, str]:
    """Each file's text with each ``table:<name>`` block replaced by ``generated[name]``; every table must have
    exactly one block among the files, and every block a table."""
    names = [m.group("name") for text in texts.values() for m in BLOCK.finditer(text)]
    missing, unknown = sorted(set(generated) - set(names)), sorted(set(names) - set(generated))
    twice = sorted({name for name in names if names.count(name) > 1})
    if missing or unknown or twice:
        raise ValueError(f"table blocks: missing {missing}, without a table {unknown}, twice {twice}")
    sub = lambda m: m.group(1) + generated[m.group("name")] + m.group(4)  # noqa: E731
    return {path: BLOCK.sub(sub, text) for path, text in texts.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m lenbench.report.readme", description=__doc__.split("\n")[0]
    )
    add = parser.add_argument
    add("--results", type=Path, default=Path("results"), help="the snapshot (default results/)")
    add("--bench", type=Path, default=BENCH_RESULTS, help="benchmark results (default benchmarks/results/)")
    add("files", nargs="*", type=Path, help="default: README.md and docs/*.md")
    add("--check", action="store_true", help="only compare; exit 1 when a file differs")
    args = parser.parse_args(argv)
    files = args.files or [Path("README.md"), *sorted(Path("docs").glob("*.md"))]
    current = {path: path.read_text() for path in files}
    updated = rewrite(current, tables(args.results, bench=args.bench))
    stale = [path for path in files if updated[path] != current[path]]
    sources = f"{args.results}/ and {args.bench}/"
    if args.check:
        verdict = f"differ: {', '.join(map(str, stale))}; run `make readme-tables`" if stale else "match"
        print(f"the tables of {len(files)} file(s) and what {sources} give {verdict}")
        return 1 if stale else 0
    for path in stale:
        path.write_text(updated[path])
    print(f"{sum(len(BLOCK.findall(t)) for t in updated.values())} table(s) regenerated from {sources}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
