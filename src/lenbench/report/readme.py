"""``make readme-tables``: every results table of the README, regenerated from the committed ``results/`` snapshot.

The README holds each generated table between ``<!-- BEGIN table:<name> -->`` and ``<!-- END table:<name> -->``;
this module computes the tables with the report's own pipeline (:func:`lenbench.report.build.analyse` over
:func:`lenbench.report.snapshot.load`) and rewrites those blocks, nothing else. Published figures the tables set
beside lenbench's (the notebook's summary, the papers' tables) are files under ``results/reference/``, each with
its source. ``--check`` only compares, and fails when the README is not what the snapshot gives.

Tables: ``reproduction`` (the notebook's four methods, notebook in brackets), ``every_method_model`` and
``every_method_explanation`` (every method of ``results/mimic``: metrics without and with a formula),
``entropy_paper`` (the entropy LEN paper beside lenbench's runs), ``entropy_paper_more`` (lenbench's other
metrics on that study) and ``brl_paper`` (the LEN paper's BRL beside lenbench's); with a ``results/suite``
snapshot (``experiment=suite``), ``suite`` (every task and method) and ``suite_ranks`` (ranks across the tasks).

The "Performance" section's tables come from the committed ``benchmarks/results/`` files: ``performance`` and
``performance_folds`` from ``latest.json`` (``make bench``), ``numerics`` from ``numerics-<cpu>.json`` (``make
numerics``), ``performance_gpu`` from the newest ``gpu-<date>.json`` (``benchmarks/gpu_check.sh``); a missing file
gives one line saying what to run.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Mapping
from pathlib import Path

import pandas as pd

from lenbench.report import compare, render, snapshot
from lenbench.report.build import Analysis, analyse
from lenbench.scoring import METRICS, Metric, MetricSet

BLOCK = re.compile(
    r"(<!-- BEGIN table:(?P<name>[\w-]+) -->\n)(?P<body>.*?)(<!-- END table:(?P=name) -->)", re.S
)
MAIN_STUDY, ENTROPY_STUDY, REFERENCE = "mimic", "mimic_entropy_paper", "reference"
SUITE_STUDY = "suite"
# The suite table's columns besides the headline metrics: how well formulas recover a known truth.
SUITE_EXTRA = ("truth_agreement", "truth_exact", "concept_accuracy")
BENCH_RESULTS = Path("benchmarks") / "results"
LATEST = (
    "benchmarks/results/latest.json"  # as the README names it (the file itself may lie elsewhere: --bench)
)
VERDICT = {True: "yes", False: "**no**", None: "not judged"}
EQUAL, ONE_THREAD = "study_equals_sequential", "one_thread_per_fold"


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


def with_values(analysis: Analysis, metrics: MetricSet) -> MetricSet:
    """The metrics some row of the study has a value for: a metric no row can have (the truth metrics on a data set
    without a known formula, concept accuracy without a concept encoder) is no column of a README table."""
    rows = analysis.by_row
    kept = []
    for metric in metrics:
        column = f"{metric.name}_mean" if metric.level == "fold" else metric.name
        if column not in rows or rows[column].notna().any():
            kept.append(metric)
    return MetricSet(kept)


def every_method(analysis: Analysis, with_formula: bool, metrics: MetricSet = METRICS) -> str:
    """All rows of the study on the metrics that need a formula (``with_formula``) or do not."""
    subset = with_values(analysis, MetricSet([m for m in metrics if ("formula" in m.needs) == with_formula]))
    table = render.human_table(ordered(analysis), ["row"], subset)
    return render.to_markdown(table)


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
    reference = root / REFERENCE
    entropy_paper = pd.read_csv(reference / "entropy_paper.csv", comment="#")
    paper_metrics = {m.name for m in _reference_metrics(entropy_paper, metrics)}
    entropy_rows = list(dict.fromkeys(entropy.runs["row"]))
    brl_rows = [r for r in dict.fromkeys(main.runs["row"]) if r.split(" ")[0] == "brl"]
    return {
        "reproduction": reproduction(
            main, pd.read_csv(reference / "notebook_mimic.csv", comment="#"), metrics
        ),
        "every_method_model": every_method(main, with_formula=False, metrics=metrics),
        "every_method_explanation": every_method(main, with_formula=True, metrics=metrics),
        "entropy_paper": against_paper(entropy, entropy_paper, entropy_rows, metrics),
        "entropy_paper_more": render.to_markdown(
            render.human_table(
                ordered(entropy),
                ["row"],
                with_values(entropy, MetricSet([m for m in metrics if m.name not in paper_metrics])),
            )
        ),
        "brl_paper": against_paper(
            main, pd.read_csv(reference / "brl_paper.csv", comment="#"), brl_rows, metrics
        ),
        **suite_tables(root, metrics),
        **performance_tables(root.parent / BENCH_RESULTS if bench is None else bench),
    }


def suite_tables(root: Path, metrics: MetricSet = METRICS) -> dict[str, str]:
    """``suite``: every task (study) and method on the headline and ground-truth metrics; ``suite_ranks``: the
    methods' average ranks across the tasks, Friedman test and Nemenyi CD. Empty without a suite snapshot."""
    folder = root / SUITE_STUDY
    if not folder.is_dir():
        return {}
    suite = analyse(*snapshot.load(folder, metrics), metrics)
    shown = MetricSet([m for m in metrics if m.headline or m.name in SUITE_EXTRA])
    by_row = suite.by_row.sort_values(["study", "row"], kind="stable")
    table = render.human_table(by_row, ["study", "row"], with_values(suite, shown))
    ranks = render.ranks_texts(compare.ranks_table(suite.ranks, metrics), metrics)
    return {"suite": render.to_markdown(table), "suite_ranks": ranks.get("ranks_across_studies.md", "")}


# -- the Performance section: benchmarks/results/ -------------------------------------------------------------------


def _s(seconds: float | None) -> str:
    return "n/a" if seconds is None else f"{seconds:.1f} s"


def _x(ratio: float | None) -> str:
    return "n/a" if ratio is None else f"{ratio:.2f}"


def _share(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0%}"


def _g(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2g}"


def _divide(a: float | None, b: float | None) -> float | None:
    return None if a is None or not b else a / b


def _text(value: object) -> str:
    return "n/a" if value is None else str(value)


def _mb(megabytes: float | None) -> str:
    return "n/a" if megabytes is None else f"{megabytes:.0f} MB"


# The performance table: (key of latest.json, what it is, its format, the key of its check in ``checks``).
PERFORMANCE_ROWS = (
    ("study_s", "`make paper`, wall time (median of its runs)", _s, ""),
    ("plain_parallel_s", "the plain loop over the same network folds, every core, longest first", _s, ""),
    ("plain_sum_s", "those plain folds' times summed (one process)", _s, ""),
    ("study_over_plain_parallel", "study_s / plain_parallel_s", _x, "study_over_plain_parallel"),
    ("study_ratio", "study_s / plain_sum_s", _x, "study_ratio"),
    ("study_ratio", "stretch target, judged with batching `fast`", _x, "study_ratio_fast_stretch"),
    ("psi_folds_s", "psi's 10 folds through lenbench's fold runner, the configured (exact) batching", _s, ""),
    ("psi_folds_fast_s", "the same with `trainer.batching=fast`", _s, ""),
    ("psi_fast_same_formulas", "folds where fast gives exact's formula", _text, ""),
    ("psi_plain_sequential_s", "psi's plain folds summed", _s, ""),
    ("psi_speedup", "psi_plain_sequential_s / the faster of the two", _x, "psi_speedup"),
    ("psi_job_s", "psi's whole job, `python -m train` (start-up and tracking included)", _s, ""),
    ("model_logging_share", "logging the folds' models / study_s", _x, "model_logging_under_5_percent"),
    ("peak_rss_mb", "peak memory of the study's process tree", _mb, ""),
)
# Each check's target: "<op> <key of the targets in latest.json>".
CHECK_TARGETS = {
    "study_over_plain_parallel": "<= study_over_plain_parallel",
    "study_ratio": "<= study_ratio",
    "study_ratio_fast_stretch": "<= study_ratio_fast",
    "psi_speedup": ">= psi_speedup",
    "model_logging_under_5_percent": "<= model_logging_share",
}


def bench_machine(report: Mapping, name: str, command: str) -> str:
    """One line: which file, which command, on what machine, when, at which commit, under which load."""
    where = report.get("machine", {})
    blas = (where.get("numerics") or {}).get("blas", "unknown")
    load = [f"{where[k][0]:.2f}" if where.get(k) else "n/a" for k in ("load_before", "load_after")]
    dirty = " (with uncommitted changes)" if where.get("git_dirty") else ""
    quick = " **Quick run (folds 0-1): no verdicts.**" if report.get("quick") else ""
    return (
        f"`{name}` (`{command}`): {where.get('cpu', '?')}, {where.get('cores', '?')} cores, torch "
        f"{where.get('torch', '?')} ({blas}), torch threads per process: {where.get('torch_threads', '?')}; "
        f"{where.get('date', '?')}, commit `{str(where.get('git_commit', '?'))[:10]}`{dirty}; batching "
        f"`{report.get('batching', 'default')}`; load average {load[0]} before, {load[1]} after.{quick}\n"
    )


def performance(report: Mapping) -> str:
    """The study against the plain loop, psi's job against its plain folds, and the study's other checks."""
    targets, ok, details = report.get("targets", {}), report.get("checks", {}), report.get("details", {})
    rows = []
    for key, what, form, check in PERFORMANCE_ROWS:
        op, _, name = CHECK_TARGETS.get(check, "").partition(" ")
        bound = f"{op} {targets.get(name, '?')}" if op else ""
        rows.append(
            (f"`{key}`: {what}", form(report.get(key)), bound, VERDICT[ok.get(check)] if check else "")
        )
    seq = details.get("sequential")
    same = "not run" if seq is None else VERDICT[seq.get("identical_metrics")]
    rows.append(("same metrics and formulas as the sequential run", same, "same", VERDICT[ok.get(EQUAL)]))
    threads = details.get("study", {}).get("torch_threads_per_fold") or {}
    one = "1 everywhere" if threads and all(v == [1] for v in threads.values()) else str(threads or "n/a")
    rows.append(("torch threads per fold (read back from MLflow)", one, "1", VERDICT[ok.get(ONE_THREAD)]))
    table = render.to_markdown(pd.DataFrame(rows, columns=["figure", "value", "target", "met"]))
    return bench_machine(report, LATEST, "make bench") + "\n" + table


def performance_folds(report: Mapping) -> str:
    """One process's folds per method: the framework against the plain loop, the extraction against the notebook's."""
    folds, ok = report.get("details", {}).get("folds", {}), report.get("checks", {})
    targets = report.get("targets", {}).get("fold_ratio", {})
    plain_sums = report.get("per_method_plain_sum_s") or {}
    records = []
    for method, row in report.get("methods", {}).items():
        detail = folds.get(method, {})
        records.append(
            {
                "method": method,
                "lenbench, per fold": _s(row["framework_s"]),
                "plain loop, per fold": _s(row["plain_s"]),
                "fold_ratio (target)": f"{row['fold_ratio']:.2f} (<= {targets.get(method, '?')})",
                "met": VERDICT[ok.get(f"fold_ratio_{method}")],
                "same weights": VERDICT[detail.get("identical_weights")],
                "extraction": f"{row['extraction_s']:.4f} s",
                "notebook's extraction": f"{detail.get('notebook_extraction_s', float('nan')):.3f} s",
                "plain folds of the study, summed": _s(plain_sums.get(method)),
                "fast, per fold": _s(detail.get("fast_s")),
                "fast / plain": _x(_divide(detail.get("fast_s"), row["plain_s"])),
                "fast: same formulas": _text(detail.get("fast_same_formulas")),
            }
        )
    first = next(iter(folds.values()), {})
    runs, size = len(first.get("framework_runs_s", [])), first.get("networks_per_module", 1)
    return render.to_markdown(pd.DataFrame(records)) + (
        f"\nThe {size} MIMIC-II folds one study process trains, through lenbench (`run_folds`: their networks "
        f"trained together in one LightningModule, standard hooks) and through the plain loop one after another, "
        f"per fold; median of {runs}.\n"
    )


def numerics_tables(bench: Path) -> str:
    """Per committed ``numerics-<cpu>.json``: each setting's agreement with the default and its relative time."""
    parts = []
    for path in sorted(bench.glob("numerics-*.json")):
        record = json.loads(path.read_text())
        settings = record["settings"]
        methods = list(next(iter(settings.values())))
        records = [
            {"setting": "default" if name == "default" else f"`{name.replace(',', ' ')}`"}
            | {
                f"{m}: same as default / time": f"{VERDICT[r[m]['equals_default']]} / {r[m]['time_vs_default']:.2f}x"
                for m in methods
            }
            for name, r in settings.items()
        ]
        load = record.get("load_before") or [float("nan")]
        parts.append(
            f"`{path.name}` (`make numerics`): {record['cpu_model']}, MIMIC-II folds {record['folds_run']}, load "
            f"average {load[0]:.1f} when it started.\n\n" + render.to_markdown(pd.DataFrame(records))
        )
    return "\n".join(parts) or "No `make numerics` result committed yet: run `make numerics`.\n"


def gpu_table(bench: Path) -> str:
    """The newest ``gpu-<date>.json``: the GPU runs' times and their agreement with the CPU reference."""
    found = sorted(bench.glob("gpu-*.json"))
    if not found:
        return (
            "No GPU result committed yet: run `bash benchmarks/gpu_check.sh` on a machine with a CUDA GPU.\n"
        )
    record = json.loads(found[-1].read_text())
    runs = [
        (f"`{r['command']}`", _s(r.get("wall_s")), VERDICT[r.get("finished")], r.get("folds", "n/a"))
        for r in record["runs"].values()
    ]
    columns = ["GPU run", "wall time", "finished in its time limit", "folds"]
    agreement = [
        (run, record["reference"].get(run), method, row["folds"], _share(row.get("same_formula")))
        + (_g(row.get("max_abs_metric_difference")), _g(row.get("max_abs_job_metric_difference")))
        for run, by_method in record["agreement"].items()
        for method, row in (by_method or {}).items()
    ]
    compared = "No CPU reference to compare with.\n"
    if agreement:
        names = ["run", "CPU reference", "method", "folds compared", "same formula"]
        names += ["max abs fold metric difference", "max abs job metric difference (same folds only)"]
        compared = render.to_markdown(pd.DataFrame(agreement, columns=names))
    where = f"{record['device']}, torch {record.get('torch', '?')}, {record.get('date', '?')}"
    return (
        f"`{found[-1].name}` (`bash benchmarks/gpu_check.sh`): {where}, commit "
        f"`{str(record.get('git_commit', '?'))[:10]}`.\n\n"
        + render.to_markdown(pd.DataFrame(runs, columns=columns))
        + "\n"
        + compared
    )


def performance_tables(bench: Path) -> dict[str, str]:
    """The Performance section's tables from ``bench`` (``benchmarks/results``)."""
    out = {"numerics": numerics_tables(bench), "performance_gpu": gpu_table(bench)}
    latest = bench / "latest.json"
    if not latest.is_file():
        missing = f"No benchmark result committed yet: run `make bench` (it writes `{LATEST}`), then `make readme-tables`.\n"
        return {**out, "performance": missing, "performance_folds": missing}
    report = json.loads(latest.read_text())
    return {**out, "performance": performance(report), "performance_folds": performance_folds(report)}


def rewrite(readme: str, generated: Mapping[str, str]) -> str:
    """The README with each ``table:<name>`` block replaced by ``generated[name]``; every block must have a
    table and every table a block."""
    names = [m.group("name") for m in BLOCK.finditer(readme)]
    missing = sorted(set(generated) - set(names))
    unknown = sorted(set(names) - set(generated))
    if missing or unknown:
        raise ValueError(f"README table blocks: missing {missing}, without a generated table {unknown}")
    return BLOCK.sub(lambda m: m.group(1) + generated[m.group("name")] + m.group(4), readme)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m lenbench.report.readme", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--results", type=Path, default=Path("results"), help="the snapshot (default results/)"
    )
    parser.add_argument(
        "--bench", type=Path, default=BENCH_RESULTS, help="benchmark results (default benchmarks/results/)"
    )
    parser.add_argument("--readme", type=Path, default=Path("README.md"))
    parser.add_argument("--check", action="store_true", help="only compare; exit 1 when the README differs")
    args = parser.parse_args(argv)
    current = args.readme.read_text()
    updated = rewrite(current, tables(args.results, bench=args.bench))
    if args.check:
        if updated != current:
            print(
                f"{args.readme}: its tables differ from what {args.results}/ and {args.bench}/ give; "
                "run `make readme-tables`"
            )
            return 1
        print(f"{args.readme}: every table matches {args.results}/ and {args.bench}/")
        return 0
    if updated != current:
        args.readme.write_text(updated)
    print(
        f"{args.readme}: {len(BLOCK.findall(updated))} table(s) regenerated from {args.results}/ and {args.bench}/"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
