"""The benchmark's pure helpers (benchmarks/): scheduling, result files, ratios and checks, the README's
performance tables generated from a benchmark result, the GPU check's comparison and its no-GPU exit."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

from lenbench.report import readme, readme_performance

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
import bench  # noqa: E402
import bench_record  # noqa: E402
import gpu_compare  # noqa: E402
import plain_study  # noqa: E402

sys.path.pop(0)


def test_folds_are_handed_out_longest_first() -> None:
    jobs = plain_study.longest_first(["psi", "pruning", "weights"], [0, 1], {"psi": 4.0, "pruning": 9.0})
    # weights has no measured cost: the default (10 s) puts it first; ties keep the folds' order
    assert jobs == [("weights", 0), ("weights", 1), ("pruning", 0), ("pruning", 1), ("psi", 0), ("psi", 1)]


def test_plain_parallel_summary_sums_the_folds_per_method_and_per_process() -> None:
    results = [("psi", 1, 2.0, 11), ("pruning", 0, 5.0, 10), ("psi", 0, 3.0, 11), ("pruning", 1, 4.0, 10)]
    out = plain_study.summarise(results, ["pruning", "psi"], wall=8.0)
    assert out["plain_parallel_s"] == 8.0
    assert out["plain_sum_s"] == 14.0
    assert out["per_method_plain_sum_s"] == {"pruning": 9.0, "psi": 5.0}
    assert out["fold_s"] == {"pruning": {0: 5.0, 1: 4.0}, "psi": {0: 3.0, 1: 2.0}}
    assert out["process_busy_s"] == [9.0, 5.0]
    assert out["finish_order"] == ["psi:1", "pruning:0", "psi:0", "pruning:1"]


def test_result_file_names() -> None:
    assert bench_record.cpu_slug("AMD EPYC") == "amd-epyc"
    assert bench_record.cpu_slug("Intel(R) Xeon(R) CPU @ 2.20GHz") == "intel-r-xeon-r-cpu-2-20ghz"
    assert bench_record.result_names("2025-01-31", "AMD EPYC", None, quick=False) == (
        "latest.json",
        "2025-01-31-amd-epyc-default.json",
    )
    assert bench_record.result_names("2025-01-31", "AMD EPYC", "fast", quick=True) == (
        "quick-latest.json",
        "2025-01-31-amd-epyc-fast-quick.json",
    )


def test_a_quick_run_never_touches_latest(tmp_path: Path) -> None:
    report = {"machine": {"date": "2025-01-31T10:00:00+00:00", "cpu": "AMD EPYC"}, "batching": "default"}
    (tmp_path / "latest.json").write_text("{}")
    paths = bench_record.write_results({**report, "quick": True}, tmp_path)
    assert [p.name for p in paths] == ["quick-latest.json", "2025-01-31-amd-epyc-default-quick.json"]
    assert (tmp_path / "latest.json").read_text() == "{}"
    paths = bench_record.write_results({**report, "quick": False}, tmp_path)
    assert [p.name for p in paths] == ["latest.json", "2025-01-31-amd-epyc-default.json"]
    assert json.loads((tmp_path / "latest.json").read_text())["quick"] is False


def test_the_results_are_committed_and_quick_runs_are_not() -> None:
    def ignored(name: str) -> bool:
        done = subprocess.run(["git", "check-ignore", "-q", f"benchmarks/results/{name}"], cwd=REPO)
        return done.returncode == 0

    for name in (
        "latest.json",
        "2025-01-31-amd-epyc-fast.json",
        "gpu-2025-01-31.json",
        "numerics-amd-epyc.json",
    ):
        assert not ignored(name), name
    for name in ("quick-latest.json", "2025-01-31-amd-epyc-default-quick.json", "scratch.txt"):
        assert ignored(name), name


def test_the_sequential_reference_keeps_its_overrides() -> None:
    commands = bench.sequential_commands(["pruning", "psi", "tree"], {"pruning": 10.0, "psi": 4.0}, ["x=1"])
    assert commands == [
        (*bench.SEQUENTIAL_ARGS, "method=pruning", "x=1"),
        (*bench.SEQUENTIAL_ARGS, "method=psi,tree", "x=1"),
    ]


def fake_report(**changes: object) -> dict:
    """A full benchmark result of the shape bench.main writes (figures invented)."""
    methods = {
        m: {"framework_s": f, "plain_s": p, "fold_ratio": f / p, "extraction_s": 0.002}
        for m, f, p in (("pruning", 10.2, 10.0), ("weights", 10.1, 9.6), ("psi", 4.8, 4.3))
    }
    folds = {
        m: {**row, "identical_weights": True, "notebook_extraction_s": bench.NOTEBOOK_EXTRACTION_S[m]}
        | {"framework_runs_s": [row["framework_s"]] * 3}
        for m, row in methods.items()
    }
    report = {
        "methods": methods,
        "batching": "default",
        "quick": False,
        "study_s": 100.0,
        "plain_parallel_s": 120.0,
        "plain_sum_s": 240.0,
        "per_method_plain_sum_s": {"pruning": 100.0, "weights": 96.0, "psi": 44.0},
        "psi_folds_s": 16.0,
        "psi_job_s": 24.0,
        "psi_plain_sequential_s": 44.0,
        "psi_seed_sweep_s": 30.0,
        "psi_three_jobs_s": 75.0,
        "model_logging_share": 0.01,
        "peak_rss_mb": 1640.0,
        "targets": bench.TARGETS,
        "machine": {
            "cpu": "AMD EPYC",
            "cores": 2,
            "torch": "2.13.0",
            "torch_threads": 1,
            "numerics": {"blas": "mkl"},
            "git_commit": "0123456789abcdef",
            "git_dirty": False,
            "date": "2025-01-31T10:00:00+00:00",
            "load_before": [0.1, 0.2, 0.3],
            "load_after": [1.9, 1.0, 0.5],
        },
        "details": {
            "folds": folds,
            "plain": {"processes": 2},
            "study": {"runs_s": [100.0] * 3, "folds_per_method": 10, "torch_threads_per_fold": {"psi": [1]}},
            "sequential": {"identical_metrics": True, "torch_threads_per_fold": {"psi": [1]}},
            "seed_sweep": {"identical_results": True},
        },
    }
    report.update(changes)
    report.update(bench.ratios(report))
    report["checks"] = bench.checks(report, list(methods))
    return report


def test_ratios_and_checks() -> None:
    report = fake_report()
    assert report["study_ratio"] == pytest.approx(100 / 240)
    assert report["study_over_plain_parallel"] == pytest.approx(100 / 120)
    assert report["psi_speedup"] == pytest.approx(44 / 16)
    assert report["seed_sweep_speedup"] == pytest.approx(75 / 30)
    checks = report["checks"]
    assert checks["study_ratio"] and checks["study_over_plain_parallel"] and checks["psi_speedup"]
    assert checks["seed_sweep_speedup"] and checks["seed_sweep_equals_jobs"]
    assert checks["study_ratio_fast_stretch"] is None  # judged in fast mode only
    assert checks["study_equals_sequential"] and checks["one_thread_per_fold"]
    slow = fake_report(study_s=130.0, psi_folds_s=20.0, psi_seed_sweep_s=50.0, batching="fast")
    assert slow["checks"]["seed_sweep_speedup"] is False  # 1.5 < 2
    assert slow["checks"]["seed_sweep_equals_jobs"] is None  # fast mode: not judged
    assert slow["checks"]["study_ratio"] is False  # 0.54 > 0.50
    assert slow["checks"]["study_over_plain_parallel"] is False  # 1.08 > 0.95
    assert slow["checks"]["psi_speedup"] is False  # 2.2 < 2.5
    assert slow["checks"]["study_ratio_fast_stretch"] is False
    assert slow["checks"]["study_equals_sequential"] is None  # fast mode is not bit-identical by design
    quick = fake_report(quick=True)
    assert {quick["checks"][k] for k in ("study_ratio", "study_over_plain_parallel", "psi_speedup")} == {None}
    assert bench.ratios({"study_s": 1.0, "plain_sum_s": None}) == {
        "study_ratio": None,
        "study_over_plain_parallel": None,
        "psi_speedup": None,
        "seed_sweep_speedup": None,
        "seed_sweep_speedup_fast": None,
    }
    # the sweep target is judged on the better of the configured batching and fast, as psi_speedup is
    both = fake_report(psi_seed_sweep_s=50.0, psi_seed_sweep_fast_s=20.0, psi_three_jobs_fast_s=42.0)
    assert both["seed_sweep_speedup"] == pytest.approx(1.5)
    assert both["seed_sweep_speedup_fast"] == pytest.approx(2.1)
    assert both["checks"]["seed_sweep_speedup"] is True
    short = fake_report(psi_seed_sweep_s=50.0, psi_seed_sweep_fast_s=25.0, psi_three_jobs_fast_s=42.0)
    assert short["checks"]["seed_sweep_speedup"] is False  # 1.5 and 1.68, both < 2


PERFORMANCE_README = "".join(
    f"## Performance\n\n<!-- BEGIN table:{name} -->\nstale\n<!-- END table:{name} -->\n"
    for name in ("performance", "performance_folds", "numerics", "performance_gpu", "performance_history")
)


def test_readme_performance_tables_from_a_benchmark_result(tmp_path: Path) -> None:
    (tmp_path / "latest.json").write_text(json.dumps(fake_report()))
    tables = readme_performance.performance_tables(tmp_path)
    assert set(tables) == {
        "performance",
        "performance_folds",
        "numerics",
        "performance_gpu",
        "performance_history",
    }
    text = tables["performance"]
    assert "`benchmarks/results/latest.json` (`make bench`): AMD EPYC, 2 cores, torch 2.13.0 (mkl)" in text
    assert "load average 0.10 before, 1.90 after" in text
    assert "| `study_s`: `make paper`, wall time (median of its runs) | 100.0 s |  |  |" in text
    assert "| `study_ratio`: study_s / plain_sum_s | 0.42 | <= 0.5 | yes |" in text
    assert "| `psi_speedup`: psi_plain_sequential_s / the faster of the two | 2.75 | >= 2.5 | yes |" in text
    assert "| `peak_rss_mb`: peak memory of the study's process tree | 1640 MB |  |  |" in text
    assert "| torch threads per fold (read back from MLflow) | 1 everywhere | 1 | yes |" in text
    assert "| `seed_sweep_speedup`: psi_three_jobs_s / psi_seed_sweep_s | 2.50 |  |  |" in text
    assert "| `seed_sweep_speedup_fast`: psi_three_jobs_fast_s / psi_seed_sweep_fast_s | n/a |  |  |" in text
    assert (
        "| `seed_sweep_speedup_best`: the larger of seed_sweep_speedup and seed_sweep_speedup_fast | 2.50 "
        "| >= 2.0 | yes |" in text
    )
    assert "| seed sweep: every job's results equal its command alone | yes | same | yes |" in text
    # F = 24 - 16 = 8 s fixed, W = 16 s training: 3 * 24 / (8 + 48)
    assert "| `seed_sweep_ceiling`: 3(F+W)/(F+3W), F = psi_job_s - psi_folds_s, W = psi_folds_s" in text
    assert "the most sharing fixed costs can give | 1.29 |  |  |" in text
    folds = tables["performance_folds"]
    assert (
        "| pruning | 10.2 s | 10.0 s | 1.02 (<= 1.1) | yes | yes | 0.0020 s | 0.066 s | 100.0 s | n/a | n/a | n/a |"
        in folds
    )
    assert "median of 3" in folds
    assert tables["numerics"].startswith("No `make numerics` result committed yet")
    assert tables["performance_gpu"].startswith("No GPU result committed yet")
    updated = readme.rewrite({Path("performance.md"): PERFORMANCE_README}, tables)
    assert "stale" not in updated[Path("performance.md")] and readme.rewrite(updated, tables) == updated


def test_bench_history_lists_every_dated_run_oldest_first(tmp_path: Path) -> None:
    (tmp_path / "latest.json").write_text(json.dumps(fake_report()))  # not a dated run
    older = fake_report(study_s=130.0)  # misses both study targets
    older["machine"] |= {"cpu": "AMD EPYC", "git_commit": "aaaaaaaaaaaa"}
    newer = fake_report(psi_seed_sweep_fast_s=20.0, psi_three_jobs_fast_s=42.0)
    newer["machine"] |= {"cpu": "Intel Xeon", "git_commit": "bbbbbbbbbbbb"}
    (tmp_path / "2026-12-01-intel-xeon-default.json").write_text(json.dumps(newer))
    (tmp_path / "2026-11-30-amd-epyc-default.json").write_text(json.dumps(older))
    text = readme_performance.performance_tables(tmp_path)["performance_history"]
    lines = [line for line in text.splitlines() if line.startswith("| `2026")]
    assert len(lines) == 2 and "amd-epyc" in lines[0] and "intel-xeon" in lines[1]
    judged_old = sum(v is not None for v in older["checks"].values())
    passed_old = sum(bool(v) for v in older["checks"].values())
    assert passed_old < judged_old
    assert f"| {1.08:.2f} | {130 / 240:.2f} | 2.75 | 2.50 | n/a | {passed_old} of {judged_old} |" in lines[0]
    assert "| `bbbbbbbbbb` | default | 0.83 | 0.42 | 2.75 | 2.50 | 2.10 |" in lines[1]
    assert "No dated" in readme_performance.bench_history(tmp_path / "nothing")


def test_readme_performance_tables_without_a_benchmark_result(tmp_path: Path) -> None:
    tables = readme_performance.performance_tables(tmp_path)
    assert tables["performance"] == tables["performance_folds"]
    assert tables["performance"].count("\n") == 1
    assert "run `make bench`" in tables["performance"]


def test_readme_tables_of_an_old_result_do_not_crash(tmp_path: Path) -> None:
    old = fake_report()
    for key in ("plain_parallel_s", "psi_folds_s", "targets", "checks"):
        old.pop(key)
    old["details"].pop("sequential")
    (tmp_path / "latest.json").write_text(json.dumps(old))
    text = readme_performance.performance_tables(tmp_path)["performance"]
    assert "| `plain_parallel_s`: " in text and "| n/a |" in text and "not run" in text
    assert readme_performance.seed_sweep_ceiling(old) is None  # no psi_folds_s


def numerics_record(cpu: str, compatible_formula: str) -> dict:
    """A ``make numerics`` record of one machine: its default folds, and MKL_CBWR=COMPATIBLE's fold formula."""

    def result(formula: str) -> dict:
        folds = [{"split": 0, "model_accuracy": 0.84, "explanation": formula}]
        return {"seconds": 1.0, "folds": folds, "equals_default": True, "time_vs_default": 1.0}

    settings = {
        "default": {"psi": result("a"), "pruning": result(f"b_{cpu}")},
        "MKL_CBWR=COMPATIBLE": {"psi": result("a"), "pruning": result(compatible_formula)},
    }
    return {"cpu_model": cpu, "folds_run": "[0]", "load_before": [0.5], "settings": settings}


def test_numerics_tables_compare_the_machines(tmp_path: Path) -> None:
    """One machine: its table only. Two that ran the same folds: a setting is the same on every machine only when
    each method's folds are equal on both (here psi always, pruning under COMPATIBLE only)."""
    (tmp_path / "numerics-amd.json").write_text(json.dumps(numerics_record("AMD", "c")))
    assert "Across machines" not in readme_performance.numerics_tables(tmp_path)
    (tmp_path / "numerics-intel.json").write_text(json.dumps(numerics_record("Intel", "c")))
    text = readme_performance.numerics_tables(tmp_path)
    assert "Across machines: AMD (`numerics-amd.json`), Intel (`numerics-intel.json`)." in text
    assert "| default | yes | **no** |" in text
    assert "| `MKL_CBWR=COMPATIBLE` | yes | yes |" in text
    (tmp_path / "numerics-intel.json").write_text(json.dumps(numerics_record("Intel", "d")))
    table = readme_performance.across_machines(
        {p.name: json.loads(p.read_text()) for p in sorted(tmp_path.glob("numerics-*.json"))}
    )
    assert table["pruning: same on every machine"].tolist() == ["**no**", "**no**"]
    assert table["psi: same on every machine"].tolist() == ["yes", "yes"]
    other_folds = numerics_record("Intel", "c") | {"folds_run": "[0,1]"}
    assert readme_performance.across_machines({"a": numerics_record("AMD", "c"), "b": other_folds}) is None


def test_a_float64_numerics_record_has_its_own_table_and_its_cost_against_float32(tmp_path: Path) -> None:
    """``--precision 64-true`` writes a record of its own: listed with its precision and its default setting against
    float32, never compared across machines with float32 records."""
    (tmp_path / "numerics-amd.json").write_text(json.dumps(numerics_record("AMD", "c")))
    (tmp_path / "numerics-intel.json").write_text(json.dumps(numerics_record("Intel", "c")))
    against = {"psi": {"time_of_this_precision": 1.25, "equals_this_precision": True}}
    against["pruning"] = {"time_of_this_precision": 2.0, "equals_this_precision": False}
    float64 = numerics_record("Intel", "c") | {"precision": "64-true", "float32_default": against}
    (tmp_path / "numerics-intel-64-true.json").write_text(json.dumps(float64))
    text = readme_performance.numerics_tables(tmp_path)
    assert "`numerics-intel-64-true.json` (`make numerics`): Intel, MIMIC-II folds [0], 64-true" in text
    assert "psi 1.25x the float32 time, the same folds as float32" in text
    assert "pruning 2.00x the float32 time, other folds than float32" in text
    assert "Across machines: AMD (`numerics-amd.json`), Intel (`numerics-intel.json`)." in text
    assert readme_performance.across_machines({"a": numerics_record("AMD", "c"), "b": float64}) is None


def folds_table(
    method: str, formulas: list[str], accuracy: list[float], consistency: float = 0.5
) -> pd.DataFrame:
    n = len(formulas)
    return pd.DataFrame(
        {
            "method": [method] * n,
            "split": list(range(n)),
            "explanation": formulas,
            "model_accuracy": accuracy,
            "concept_accuracy": [float("nan")] * n,
            "explanation_consistency": [consistency] * n,  # a job metric: over the folds the job ran
            "elapsed_time": [0.1 * (i + 1) for i in range(n)],
        }
    )


def write_job(folder: Path, table: pd.DataFrame, seed: int) -> None:
    folder.mkdir(parents=True)
    table.to_csv(folder / "results.csv", index=False)
    (folder / "job.json").write_text(json.dumps({"tags": {"method": table["method"][0], "seed": str(seed)}}))


def test_gpu_agreement_fold_by_fold(tmp_path: Path) -> None:
    write_job(tmp_path / "cpu" / "0-psi-s42", folds_table("psi", ["a", "b | c", "d"], [0.8, 0.9, 0.7]), 42)
    write_job(tmp_path / "cpu" / "1-psi-s0", folds_table("psi", ["x", "y", "z"], [0.5, 0.5, 0.5]), 0)
    # stopped after two folds: its consistency is over two folds, not comparable with the CPU job's
    gpu = folds_table("psi", ["a", "b | d"], [0.8, 0.9], consistency=0.9)
    write_job(tmp_path / "gpu" / "0", gpu, 42)
    write_job(tmp_path / "gpu" / "1", folds_table("pruning", ["p"], [0.8]), 42)  # no CPU fold to compare with
    out = gpu_compare.agreement(
        gpu_compare.load_folds(tmp_path / "gpu"), gpu_compare.load_folds(tmp_path / "cpu")
    )
    assert out["psi"] == {
        "folds": 2,
        "same_formula": 0.5,
        "max_abs_metric_difference": 0.0,  # timings are no metric; NaN in both is equal
        "worst_metric": None,
        "max_abs_job_metric_difference": None,
    }
    assert out["pruning"]["folds"] == 0 and out["pruning"]["same_formula"] is None
    complete = folds_table("psi", ["a", "b | c", "d"], [0.8, 0.9, 0.75], consistency=0.55)
    write_job(tmp_path / "gpu2" / "0", complete, 42)
    out = gpu_compare.agreement(
        gpu_compare.load_folds(tmp_path / "gpu2"), gpu_compare.load_folds(tmp_path / "cpu")
    )
    assert out["psi"]["same_formula"] == 1.0
    assert out["psi"]["max_abs_metric_difference"] == pytest.approx(0.05)
    assert out["psi"]["worst_metric"] == "model_accuracy"
    assert out["psi"]["max_abs_job_metric_difference"] == pytest.approx(0.05)


def test_gpu_agreement_of_the_committed_snapshot_with_itself() -> None:
    folds = gpu_compare.load_folds(REPO / "results" / "mimic")
    out = gpu_compare.agreement(folds, folds)
    assert out["psi"] == {
        "folds": 10,
        "same_formula": 1.0,
        "max_abs_metric_difference": 0.0,
        "worst_metric": None,
        "max_abs_job_metric_difference": 0.0,
    }


def test_gpu_record_and_its_readme_table(tmp_path: Path) -> None:
    write_job(tmp_path / "cpu" / "0", folds_table("psi", ["a", "b"], [0.8, 0.9]), 42)
    write_job(tmp_path / "gpu" / "0", folds_table("psi", ["a", "c"], [0.8, 0.9]), 42)
    record = gpu_compare.record(
        [
            [
                "study",
                str(tmp_path / "gpu"),
                str(tmp_path / "cpu"),
                "12.5",
                "0",
                "240",
                "python -m train -m x",
            ],
            [
                "psi_seeds",
                str(tmp_path / "none"),
                "-",
                "180.2",
                "124",
                "180",
                "python -m train -m y seed=0,1",
            ],
        ]
    )
    assert record["runs"]["study"] == {
        "command": "python -m train -m x",
        "wall_s": 12.5,
        "exit_status": 0,
        "finished": True,
        "timeout_s": 240.0,
        "folds": 2,
    }
    assert record["runs"]["psi_seeds"]["finished"] is False and record["agreement"]["psi_seeds"] is None
    assert record["agreement"]["study"]["psi"]["same_formula"] == 0.5
    (tmp_path / "gpu-2025-01-31.json").write_text(json.dumps(record))
    text = readme_performance.performance_tables(tmp_path)["performance_gpu"]
    assert "| `python -m train -m x` | 12.5 s | yes | 2 |" in text
    assert "| `python -m train -m y seed=0,1` | 180.2 s | **no** | 0 |" in text
    assert f"| study | {tmp_path / 'cpu'} | psi | 2 | 50% | 0 | 0 |" in text


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is here: the script would run the whole check")
def test_gpu_check_without_a_gpu_says_so_in_one_line() -> None:
    done = subprocess.run(
        ["bash", "benchmarks/gpu_check.sh"], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.strip().splitlines() == [
        "gpu_check: no CUDA GPU here (torch.cuda.is_available() is False); nothing was run"
    ]
