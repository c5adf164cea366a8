"""The Performance and Numerics pages' tables (``make readme-tables``), from the committed ``benchmarks/results/`` files:
``performance`` and ``performance_folds`` from ``latest.json`` (``make bench``), ``performance_history`` from its
dated copies, ``numerics`` from
``numerics-<cpu>.json`` (``make numerics``), ``performance_gpu`` from the newest ``gpu-<date>.json``
(``benchmarks/gpu_check.sh``); a missing file gives one line saying what to run."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path

import pandas as pd

from lenbench.report import render

# As the pages name it (the file itself may lie elsewhere: --bench).
LATEST = "benchmarks/results/latest.json"
VERDICT = {True: "yes", False: "**no**", None: "not judged"}
EQUAL, ONE_THREAD, SWEEP_EQUAL = "study_equals_sequential", "one_thread_per_fold", "seed_sweep_equals_jobs"


def _formatter(spec: str, unit: str = "") -> Callable[[object], str]:
    """Writes a figure with ``spec`` and ``unit``, and a missing one (None) as ``n/a``."""
    return lambda value: "n/a" if value is None else f"{value:{spec}}{unit}"


_s = _formatter(".1f", " s")
_x = _formatter(".2f")
_share = _formatter(".0%")
_g = _formatter(".2g")
_text = _formatter("")
_mb = _formatter(".0f", " MB")


def _divide(a: float | None, b: float | None) -> float | None:
    return None if a is None or not b else a / b


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
    ("psi_seed_sweep_s", "`python -m train method=psi -m seed=0,1,2`: seeds trained together", _s, ""),
    ("psi_three_jobs_s", "the same three jobs as three commands, one after another", _s, ""),
    ("seed_sweep_speedup", "psi_three_jobs_s / psi_seed_sweep_s", _x, ""),
    ("psi_seed_sweep_fast_s", "the sweep with `trainer.batching=fast`", _s, ""),
    ("psi_three_jobs_fast_s", "the three jobs with `trainer.batching=fast`, one after another", _s, ""),
    ("seed_sweep_speedup_fast", "psi_three_jobs_fast_s / psi_seed_sweep_fast_s", _x, ""),
    (
        "seed_sweep_speedup_best",
        "the larger of seed_sweep_speedup and seed_sweep_speedup_fast",
        _x,
        "seed_sweep_speedup",
    ),
    (
        "seed_sweep_ceiling",
        "3(F+W)/(F+3W), F = psi_job_s - psi_folds_s, W = psi_folds_s: the most sharing fixed costs can give",
        _x,
        "",
    ),
    ("model_logging_share", "logging the folds' models / study_s", _x, "model_logging_under_5_percent"),
    ("peak_rss_mb", "peak memory of the study's process tree", _mb, ""),
)
# Each check's target: "<op> <key of the targets in latest.json>".
CHECK_TARGETS = {
    "study_over_plain_parallel": "<= study_over_plain_parallel",
    "study_ratio": "<= study_ratio",
    "study_ratio_fast_stretch": "<= study_ratio_fast",
    "psi_speedup": ">= psi_speedup",
    "seed_sweep_speedup": ">= seed_sweep_speedup",
    "model_logging_under_5_percent": "<= model_logging_share",
}


def seed_sweep_ceiling(report: Mapping) -> float | None:
    """The most a 3-seed sweep can gain over three commands when it shares only their fixed costs: with ``F`` a
    command's fixed cost and ``W`` its folds' training, ``3(F+W) / (F+3W)`` (below 2 unless ``F > 3W``)."""
    job, folds = report.get("psi_job_s"), report.get("psi_folds_s")
    if job is None or folds is None:
        return None
    fixed = max(job - folds, 0.0)
    return 3 * (fixed + folds) / (fixed + 3 * folds)


def seed_sweep_speedup_best(report: Mapping) -> float | None:
    """The larger of the sweep's speedups in the configured batching and in fast mode (each against three commands
    in that mode): what the issue's sweep target is judged on, as ``psi_speedup`` takes the faster psi mode."""
    speedups = [report.get(k) for k in ("seed_sweep_speedup", "seed_sweep_speedup_fast")]
    return max((v for v in speedups if v is not None), default=None)


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
    figures = {
        **report,
        "seed_sweep_ceiling": seed_sweep_ceiling(report),
        "seed_sweep_speedup_best": seed_sweep_speedup_best(report),
    }
    for key, what, form, check in PERFORMANCE_ROWS:
        op, _, name = CHECK_TARGETS.get(check, "").partition(" ")
        bound = f"{op} {targets.get(name, '?')}" if op else ""
        rows.append(
            (f"`{key}`: {what}", form(figures.get(key)), bound, VERDICT[ok.get(check)] if check else "")
        )
    seq = details.get("sequential")
    same = "not run" if seq is None else VERDICT[seq.get("identical_metrics")]
    rows.append(("same metrics and formulas as the sequential run", same, "same", VERDICT[ok.get(EQUAL)]))
    sweep = details.get("seed_sweep")
    same = "not run" if sweep is None else VERDICT[sweep.get("identical_results")]
    what = "seed sweep: every job's results equal its command alone"
    rows.append((what, same, "same", VERDICT[ok.get(SWEEP_EQUAL)]))
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


def _setting_name(name: str) -> str:
    return "default" if name == "default" else f"`{name.replace(',', ' ')}`"


def across_machines(records: Mapping[str, Mapping]) -> pd.DataFrame | None:
    """Per setting and method, whether every machine's ``make numerics`` gave the same folds (formulas and metrics,
    bit for bit); None when fewer than two machines ran the same folds. ``records``: file name -> its record."""
    kinds = [_run_kind(r) for r in records.values()]
    runs = [r for r, kind in zip(records.values(), kinds, strict=True) if kind == kinds[0]]
    if len(runs) < 2:
        return None
    first = runs[0]["settings"]
    rows = []
    for name, by_method in first.items():
        row = {"setting": _setting_name(name)}
        for method, result in by_method.items():
            theirs = [r["settings"].get(name, {}).get(method) for r in runs[1:]]
            same = all(t is not None and t["folds"] == result["folds"] for t in theirs)
            row[f"{method}: same on every machine"] = VERDICT[same]
        rows.append(row)
    return pd.DataFrame(rows)


def _run_kind(record: Mapping) -> tuple[str, str]:
    """The folds and the precision a ``make numerics`` record ran: only records of one kind compare."""
    return str(record.get("folds_run")), str(record.get("precision", "32-true"))


def _float32_line(record: Mapping) -> str:
    """For a float64 record: its cost against float32 and whether float32 gave its folds, per method."""
    against = record.get("float32_default")
    if not against:
        return ""
    each = ", ".join(
        f"{method} {r['time_of_this_precision']:.2f}x the float32 time, "
        f"{'the same folds as' if r['equals_this_precision'] else 'other folds than'} float32"
        for method, r in against.items()
    )
    return f" Default setting against float32: {each}."


def numerics_tables(bench: Path) -> str:
    """Per committed ``numerics-<cpu>.json``: each setting's agreement with the default and its relative time; with
    two machines or more, whether each setting gave the same folds on all of them."""
    parts, records = [], {}
    for path in sorted(bench.glob("numerics-*.json")):
        record = records[path.name] = json.loads(path.read_text())
        settings = record["settings"]
        methods = list(next(iter(settings.values())))
        rows = [
            {"setting": _setting_name(name)}
            | {
                f"{m}: same as default / time": f"{VERDICT[r[m]['equals_default']]} / {r[m]['time_vs_default']:.2f}x"
                for m in methods
            }
            for name, r in settings.items()
        ]
        load = record.get("load_before") or [float("nan")]
        parts.append(
            f"`{path.name}` (`make numerics`): {record['cpu_model']}, MIMIC-II folds {record['folds_run']}, "
            f"{record.get('precision', '32-true')}, load average {load[0]:.1f} when it started."
            f"{_float32_line(record)}\n\n" + render.to_markdown(pd.DataFrame(rows))
        )
    float32 = {name: r for name, r in records.items() if _run_kind(r)[1] == "32-true"}
    table = across_machines(float32)
    if table is not None:
        names = ", ".join(f"{r['cpu_model']} (`{name}`)" for name, r in float32.items())
        parts.append(f"Across machines: {names}.\n\n" + render.to_markdown(table))
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


# The history table's ratio columns: keys of the run's file.
HISTORY_COLUMNS = (
    "study_over_plain_parallel",
    "study_ratio",
    "psi_speedup",
    "seed_sweep_speedup",
    "seed_sweep_speedup_fast",
)


def bench_history(bench: Path) -> str:
    """Every committed dated ``make bench`` run (``<date>-<cpu>-<batching>.json``), oldest first: the machine and
    commit, the issue's ratios and how many of the run's checks passed. Why: the ratios depend on the CPU (the plain
    loop's per-operation cost differs), so the latest run alone does not say how another machine fares."""
    rows = []
    for path in sorted(bench.glob("20[0-9][0-9]-*.json")):
        report = json.loads(path.read_text())
        where, checks = report.get("machine", {}), report.get("checks", {})
        judged = [v for v in checks.values() if v is not None]
        row = {
            "run": f"`{path.name}`",
            "CPU": where.get("cpu", "?"),
            "commit": f"`{str(where.get('git_commit', '?'))[:10]}`",
            "batching": report.get("batching", "default"),
        }
        row |= {f"`{key}`": _x(report.get(key)) for key in HISTORY_COLUMNS}
        row["checks met"] = f"{sum(judged)} of {len(judged)}"
        rows.append(row)
    if not rows:
        return "No dated `make bench` result committed yet: run `make bench`.\n"
    return render.to_markdown(pd.DataFrame(rows))


def performance_tables(bench: Path) -> dict[str, str]:
    """The Performance section's tables from ``bench`` (``benchmarks/results``)."""
    out = {
        "numerics": numerics_tables(bench),
        "performance_gpu": gpu_table(bench),
        "performance_history": bench_history(bench),
    }
    latest = bench / "latest.json"
    if not latest.is_file():
        missing = f"No benchmark result committed yet: run `make bench` (it writes `{LATEST}`), then `make readme-tables`.\n"
        return {**out, "performance": missing, "performance_folds": missing}
    report = json.loads(latest.read_text())
    return {**out, "performance": performance(report), "performance_folds": performance_folds(report)}
