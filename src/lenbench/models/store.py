"""Logging a fold's model to MLflow, and the tags that name it.

:func:`log_model` does what ``mlflow.pyfunc.log_model(name="model")`` does inside an active run (a LoggedModel
linked to the fold's run as its output, its MLmodel and pickled :class:`~lenbench.models.pyfunc.LenbenchModel`
uploaded, the model READY), through an explicit ``MlflowClient``: lenbench never sets MLflow's global tracking
URI or active run. ``runs:/<fold run>/<model name>`` and ``models:/<model id>`` both load it. Cheap on purpose:
the requirements are the installed versions of what the model imports (no inference by importing the model in a
subprocess), no input example, so a fold's model costs a few hundred milliseconds (``benchmarks/bench_log_model.py``).
"""

from __future__ import annotations

import hashlib
import logging
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from importlib.metadata import PackageNotFoundError, packages_distributions, version
from pathlib import Path
from typing import Any

from lenbench.models.export import ModelExport

MODEL_NAME = "model"  # runs:/<run>/model when not named otherwise (a job names its models after its runs)
MODEL_ID_TAG = "lenbench.model_id"  # on a fold run: its LoggedModel's id (lenbench.tracking.mlflow sets it)
PARENT_MODEL_TAG = "lenbench.model.fold{fold}"  # on a parent run: each fold's model URI
HASHES_KEY = "lenbench_sha256"  # in the MLmodel's metadata: the SHA-256 of each other file of the model
# Not hashed: the MLmodel (it records the hashes) and the YAML file MLflow adds when it downloads a models:/ URI.
UNHASHED = ("MLmodel", "registered_model_meta")


def file_hashes(folder: Path) -> dict[str, str]:
    """The SHA-256 of every file of a saved model (:data:`UNHASHED` aside), by path in ``folder``."""
    files = (
        p
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.relative_to(folder).as_posix() not in UNHASHED
    )
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


class _DropAdvice(logging.Filter):
    """MLflow's advice on every save (pickled models, input examples): said once in the README, not per fold."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "CloudPickle" not in record.getMessage()


@contextmanager
def _quiet() -> Iterator[None]:
    pyfunc_log, advice = logging.getLogger("mlflow.pyfunc"), _DropAdvice()
    pyfunc_log.addFilter(advice)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*input example was not provided.*")
            yield
    finally:
        pyfunc_log.removeFilter(advice)


@cache
def _pinned(package: str) -> str | None:
    try:
        return f"{package}=={version(package)}"
    except PackageNotFoundError:
        return None


@cache
def _distributions(top_level_module: str) -> list[str]:
    return packages_distributions().get(top_level_module, [])


def requirements(export: ModelExport) -> list[str]:
    """What the model needs installed, at the logging versions: lenbench, the libraries every model uses, the
    distributions its method declares (``Explainer.requires``) and the one that defines its model class."""
    packages = ["lenbench", "mlflow", "numpy", "pandas", "scikit-learn", "torch", *export.requires]
    defined_in = type(export.model).__module__.split(".")[0]
    # Reading every distribution's file list costs a second of CPU: only a class from elsewhere (a plugin's) pays it.
    if defined_in not in packages:
        packages += _distributions(defined_in)
    return [p for p in (_pinned(name) for name in dict.fromkeys(packages)) if p is not None]


def log_model(client: Any, experiment_id: str, run_id: str, export: ModelExport, **named: Any) -> str:
    """Log ``export`` as a pyfunc model of the run ``run_id``; returns its ``models:/<id>`` URI. ``named``: its
    ``name`` (default ``model``; ``runs:/<run id>/<name>`` loads it) and ``params``. The tags naming it
    (:data:`MODEL_ID_TAG`, :data:`PARENT_MODEL_TAG`) and its metrics are the caller's, batched with its others:
    each SQLite write is a commit, the largest part of this call's cost."""
    from lenbench.models.pyfunc import LenbenchModel, signature  # deferred: it imports mlflow.pyfunc

    named = {"tags": {"method": export.method, "fold": str(export.fold)}, **named}
    model, model_signature = LenbenchModel(export), signature(export)
    return _log_pyfunc(
        client, experiment_id, run_id, model, model_signature, export.metadata(), export, named
    )


def log_ensemble(
    client: Any, experiment_id: str, run_id: str, exports: dict[int, ModelExport], **named: Any
) -> str:
    """Log the folds' models as one pyfunc model of the job's parent run (``named`` as for :func:`log_model`):
    their majority vote (:class:`~lenbench.models.pyfunc.LenbenchEnsemble`); returns its ``models:/<id>`` URI."""
    from lenbench.models.pyfunc import LenbenchEnsemble, signature  # deferred: it imports mlflow.pyfunc

    first = next(iter(exports.values()))
    metadata = {**first.metadata(), "fold": -1, "folds": sorted(exports), "ensemble": True}
    named = {"tags": {"method": first.method, "folds": ",".join(map(str, sorted(exports)))}, **named}
    model = LenbenchEnsemble(exports)
    return _log_pyfunc(
        client, experiment_id, run_id, model, signature(first, ensemble=True), metadata, first, named
    )


def _log_pyfunc(
    client: Any,
    experiment_id: str,
    run_id: str,
    python_model: Any,
    model_signature: Any,
    metadata: dict[str, Any],
    export: ModelExport,
    named: dict[str, Any],
) -> str:
    import mlflow.pyfunc
    from mlflow.entities import LoggedModelOutput, LoggedModelStatus
    from mlflow.models import Model

    named = {"name": MODEL_NAME, **named}  # and its tags, params
    logged = client.create_logged_model(experiment_id, source_run_id=run_id, model_type="lenbench", **named)
    try:
        client.log_outputs(run_id, [LoggedModelOutput(logged.model_id, step=0)])
        with tempfile.TemporaryDirectory(prefix="lenbench-model-") as tmp:
            path = Path(tmp) / MODEL_NAME
            description = Model(
                artifact_path=logged.artifact_location,
                model_uuid=logged.model_id,
                run_id=run_id,
                metadata=metadata,
                model_id=logged.model_id,
            )
            with _quiet():
                mlflow.pyfunc.save_model(
                    path,
                    python_model=python_model,
                    mlflow_model=description,
                    signature=model_signature,
                    pip_requirements=requirements(export),
                )
            description.metadata[HASHES_KEY] = file_hashes(path)  # checked before the model is unpickled
            description.save(path / "MLmodel")
            client.log_model_artifacts(logged.model_id, str(path))
    except BaseException:
        client.finalize_logged_model(logged.model_id, LoggedModelStatus.FAILED)
        raise
    client.finalize_logged_model(logged.model_id, LoggedModelStatus.READY)
    return f"models:/{logged.model_id}"
