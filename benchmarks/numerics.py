"""Do oneMKL's conditional numerical reproducibility (``MKL_CBWR``) or ATen's CPU capability change results, and at
what cost? (``make numerics``; issue: an Intel Xeon and an AMD EPYC give different pruning formulas.)

Torch's CPU build does its matrix products in oneMKL, which picks a code path per CPU (so an Intel and an AMD
machine may round differently), and its element-wise kernels in ATen, which dispatch on the widest vector unit
(``ATEN_CPU_CAPABILITY``). Both can be pinned by environment variables. This script trains the same folds of
MIMIC-II (the real ``python -m train`` command, one process, one torch thread, tracking off) under each setting and
records, per setting and method, the wall time, the fold metrics and the formulas, and whether they equal the
default's bit for bit. Equality across *machines* needs the same script on the other machine: compare the
``folds`` sections of the two JSON files (``--compare other.json``).

    .venv/bin/python benchmarks/numerics.py                       # psi and pruning, folds 0-1, 4 settings
    .venv/bin/python benchmarks/numerics.py --compare benchmarks/results/numerics-<other cpu>.json
    .venv/bin/python benchmarks/numerics.py --precision 64-true --methods pruning,weights,psi --folds [0,1,2]

``--precision 64-true`` trains every setting in float64 (``trainer.precision``) and writes
``numerics-<cpu>-64-true.json``; it also runs the default setting in float32, for the cost of float64 and whether
it gives float32's folds.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
from lenbench.report.readme_performance import across_machines  # noqa: E402
from lenbench.tracking.environment import cpu_model, numerics  # noqa: E402

SETTINGS: dict[str, dict[str, str]] = {
    "default": {},
    "MKL_CBWR=COMPATIBLE": {"MKL_CBWR": "COMPATIBLE"},
    "MKL_CBWR=AVX2": {"MKL_CBWR": "AVX2"},
    "MKL_CBWR=AVX2,ATEN_CPU_CAPABILITY=avx2": {"MKL_CBWR": "AVX2", "ATEN_CPU_CAPABILITY": "avx2"},
}
COMPARED = (
    "model_accuracy",
    "explanation_accuracy",
    "explanation_fidelity",
    "explanation_complexity",
    "explanation",
)


def run_job(method: str, folds: str, env_extra: dict[str, str], precision: str) -> dict[str, Any]:
    """One ``python -m train`` job under ``env_extra`` in ``precision``: wall time and its fold table."""
    with tempfile.TemporaryDirectory() as out:
        cmd = [sys.executable, "-m", "train", f"method={method}", f"cv.folds={folds}", "cv.n_jobs=1"]
        cmd += ["tracking.enabled=false", f"hydra.run.dir={out}", f"trainer.precision={precision}"]
        env = {**os.environ, **env_extra, "PYTHONHASHSEED": "0"}
        start = time.perf_counter()
        subprocess.run(cmd, cwd=REPO, env=env, check=True, capture_output=True, text=True)
        seconds = time.perf_counter() - start
        table = pd.read_csv(Path(out) / "results.csv")
    rows = table[["split", *COMPARED]].to_dict(orient="records")
    return {"seconds": round(seconds, 2), "folds": rows}


def study(methods: list[str], folds: str, precision: str) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for name, env_extra in SETTINGS.items():
        results[name] = {m: run_job(m, folds, env_extra, precision) for m in methods}
        print(name, {m: r["seconds"] for m, r in results[name].items()}, flush=True)
    default = results["default"]
    for by_method in results.values():
        for method, result in by_method.items():
            result["equals_default"] = result["folds"] == default[method]["folds"]
            result["time_vs_default"] = round(result["seconds"] / default[method]["seconds"], 3)
    return results


def against_float32(results: dict[str, Any], methods: list[str], folds: str) -> dict[str, Any]:
    """The default setting in float32: per method its time and whether the float64 default gave its folds."""
    float32 = {m: run_job(m, folds, {}, "32-true") for m in methods}
    default = results["default"]
    return {
        m: {
            "seconds": r["seconds"],
            "time_of_this_precision": round(default[m]["seconds"] / r["seconds"], 3),
            "equals_this_precision": r["folds"] == default[m]["folds"],
            "folds": r["folds"],
        }
        for m, r in float32.items()
    }


def compare(mine: dict[str, Any], other_path: Path) -> None:
    """Which settings give the same folds on this machine and on the one that wrote ``other_path``."""
    other = json.loads(other_path.read_text())
    print(f"this machine: {mine['cpu_model']} | other: {other['cpu_model']}")
    table = across_machines({"this machine": mine, other_path.name: other})
    print(
        "the two ran different folds: nothing to compare" if table is None else table.to_string(index=False)
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", default="psi,pruning")
    parser.add_argument("--folds", default="[0,1]")
    parser.add_argument("--compare", type=Path, default=None)
    parser.add_argument("--precision", default="32-true", choices=["32-true", "64-true"])
    args = parser.parse_args()
    load_before = os.getloadavg()
    methods = args.methods.split(",")
    results = study(methods, args.folds, args.precision)
    float32 = None if args.precision == "32-true" else against_float32(results, methods, args.folds)
    record = {
        "cpu_model": cpu_model(),
        "torch": version("torch"),
        "numerics": numerics(),
        "load_before": load_before,
        "load_after": os.getloadavg(),
        "folds_run": args.folds,
        "precision": args.precision,
        "settings": results,
        **({} if float32 is None else {"float32_default": float32}),
    }
    slug = re.sub(r"[^a-z0-9]+", "-", record["cpu_model"].lower()).strip("-")[:40]
    suffix = "" if args.precision == "32-true" else f"-{args.precision}"
    out = REPO / "benchmarks" / "results" / f"numerics-{slug}{suffix}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=2) + "\n")
    for name, by_method in results.items():
        for method, r in by_method.items():
            print(
                f"{name:42s} {method:8s} {r['seconds']:7.1f} s  x{r['time_vs_default']:.3f}  same as default: "
                f"{r['equals_default']}"
            )
    print(f"wrote {out}")
    if args.compare:
        compare(record, args.compare)
    return 0


if __name__ == "__main__":
    sys.exit(main())
