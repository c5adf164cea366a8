"""What logging a fold's model (``method.log_model``) costs, per method of the notebook's study.

Each of the study's four methods is fitted on MIMIC-II fold 0 (networks for a few epochs: a model's size does not
depend on how long it trained), exported as the fold's :class:`~lenbench.models.export.ModelExport`, and logged to a
fresh SQLite store ``--repeats`` times, each time on a new fold run, exactly as a job logs it
(:func:`lenbench.models.store.log_model`). Prints the first call (it pays MLflow's imports, once per job process) and
the median of the others, and the job's ensemble (the parent run's model: 10 folds' models in one); the study's
40 folds and 4 jobs cost about ``first + 10 x (the medians) + the ensembles`` in the job processes.

    .venv/bin/python benchmarks/bench_log_model.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench import method_config  # noqa: E402

METHODS = ("pruning", "weights", "psi", "tree")


def exported(method: str, dataset, fold) -> object:  # noqa: ANN001
    """The fold's fitted model of ``method`` as a job exports it (networks trained 20 epochs)."""
    from hydra.utils import instantiate

    from lenbench.models.export import ModelExport
    from lenbench.models.preprocess import raw_encoding

    overrides = [] if method == "tree" else ["method.explainer.epochs=20"]
    explainer = instantiate(method_config(method, overrides).method.explainer)
    explainer.fit(fold)
    return ModelExport(
        method=method,
        concept_names=tuple(fold.concept_names),
        target_class=1,
        formula="",
        model=explainer.exported(),
        requires=explainer.requires,
        preprocessing=raw_encoding(fold.preprocessing),
        label=dataset.label,
        fold=0,
    )


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    from mlflow import MlflowClient

    from lenbench.config import default_data_root
    from lenbench.data import load_mimic
    from lenbench.folds import CVConfig
    from lenbench.models.store import log_ensemble, log_model
    from lenbench.tracking.store import check_store

    dataset = load_mimic(default_data_root(), download=False)
    fold = CVConfig().fold(dataset, 0)
    report = {"load_average": os.getloadavg()[0], "methods": {}}
    with tempfile.TemporaryDirectory(prefix="lenbench-logmodel-") as tmp:
        uri = f"sqlite:///{Path(tmp) / 'mlflow.db'}"
        check_store(uri)
        client = MlflowClient(uri)
        experiment = client.create_experiment("bench", artifact_location=str(Path(tmp) / "artifacts"))
        for method in METHODS:
            export = exported(method, dataset, fold)
            times = []
            for _ in range(args.repeats):
                run = client.create_run(experiment).info.run_id
                start = time.perf_counter()
                log_model(client, experiment, run, export)
                times.append(time.perf_counter() - start)
            size = sum(f.stat().st_size for f in (Path(tmp) / "artifacts").rglob("*") if f.is_file())
            start = time.perf_counter()  # the job's parent run: the 10 folds' models in one (their vote)
            folds = {f: copy.deepcopy(export) for f in range(10)}  # ten distinct models, as a job has
            log_ensemble(client, experiment, client.create_run(experiment).info.run_id, folds)
            ensemble = time.perf_counter() - start
            report["methods"][method] = {
                "first_s": times[0],
                "median_s": statistics.median(times[1:] or times),
                "ensemble_s": ensemble,
                "model_kb": size / args.repeats / 1e3,
            }
            print(
                f"{method:8s} first {times[0]:.3f} s  median {report['methods'][method]['median_s']:.3f} s  "
                f"{size / args.repeats / 1e3:.0f} kB each; the job's ensemble of 10 {ensemble:.3f} s",
                flush=True,
            )
            shutil.rmtree(Path(tmp) / "artifacts")
    medians = [m["median_s"] for m in report["methods"].values()]
    ensembles = sum(m["ensemble_s"] for m in report["methods"].values())
    first = max(m["first_s"] for m in report["methods"].values())
    report["study_estimate_s"] = first + 10 * sum(medians) + ensembles
    print(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
