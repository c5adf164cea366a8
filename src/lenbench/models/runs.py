"""Finding the model(s) of a run in the store, by id or by name: a fold run gives its own model, a job's parent run
the models of its folds (an ensemble). Every way this can go wrong is one :class:`~lenbench.errors.UserError` line.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lenbench.errors import UserError
from lenbench.models.export import FORMAT_VERSION
from lenbench.models.pyfunc import LenbenchModel, check_version
from lenbench.models.store import HASHES_KEY, MODEL_ID_TAG, PARENT_MODEL_TAG, file_hashes

log = logging.getLogger(__name__)

_RUN_ID = re.compile(r"^[0-9a-f]{32}$")
_FOLD_TAG = re.compile(r"^" + re.escape(PARENT_MODEL_TAG).replace(r"\{fold\}", r"(\d+)") + "$")


@dataclass(frozen=True)
class FoundModels:
    """The run asked for and the URIs of its model(s), by fold (one entry for a fold run)."""

    run_id: str
    run_name: str
    is_fold: bool
    uris: dict[int, str]


def find_run(client: Any, run: str, uri: str, experiment: str | None = None) -> Any:
    """The run ``run`` (an id, or a run name: the most recent run of that name wins, with a log line), by name
    only in the MLflow experiment ``experiment`` when given."""
    if _RUN_ID.match(run):
        try:
            return client.get_run(run)
        except Exception:  # noqa: BLE001 - MLflow raises its own exception for an unknown id
            raise UserError(
                f"run={run}: no such run in the MLflow store {uri}; fix: copy a run id from the UI "
                f"or `mlflow runs list`, or give a run name such as pruning-s42-fold0"
            ) from None
    experiments = [e.experiment_id for e in client.search_experiments() if experiment in (None, e.name)]
    if experiment is not None and not experiments:
        raise UserError(
            f"tracking.experiment={experiment}: no such experiment in the MLflow store {uri}; fix: use the data "
            f"set's name (e.g. breast_cancer) or the job's tracking.experiment"
        )
    query = f"attributes.run_name = '{_quoted(run)}'"
    newest = ["attributes.start_time DESC"]
    runs = client.search_runs(experiments, query, order_by=newest, max_results=20) if experiments else []
    if not runs:
        raise UserError(
            f"run={run}: no run of that name (or id) in the MLflow store {uri}; fix: give a run id, "
            f"or a run name such as pruning-s42 (a job) or pruning-s42-fold0 (one fold)"
        )
    if len(runs) > 1:
        log.info("%d runs are named %s; using the most recent, %s", len(runs), run, runs[0].info.run_id)
    return runs[0]


def run_models(client: Any, run: Any) -> FoundModels:
    """The model URIs of a fold run (its own) or of a job's parent run (one per fold)."""
    tags, name = run.data.tags, run.data.tags.get("mlflow.runName", run.info.run_id)
    if "fold" in tags and "mlflow.parentRunId" in tags:
        model_id = tags.get(MODEL_ID_TAG) or _reused_model(client, tags.get("reused_from"))
        if not model_id:
            raise _no_model(name, "fold run")
        return FoundModels(run.info.run_id, name, True, {int(tags["fold"]): f"models:/{model_id}"})
    uris = {int(m.group(1)): value for key, value in tags.items() if (m := _FOLD_TAG.match(key))}
    uris |= {f: u for f, u in _reused_folds(client, run).items() if f not in uris}
    if not uris:
        raise _no_model(name, "run")
    return FoundModels(run.info.run_id, name, False, dict(sorted(uris.items())))


def load_models(found: FoundModels) -> dict[int, LenbenchModel]:
    """The run's model(s), each downloaded and checked before anything of it is unpickled: its lenbench version
    (from the MLmodel file) and the SHA-256 of each of its files."""
    import tempfile

    import mlflow.artifacts
    import mlflow.pyfunc
    from mlflow.models import Model

    models = {}
    with tempfile.TemporaryDirectory(prefix="lenbench-explain-") as tmp:
        for fold, uri in found.uris.items():
            where = f"run {found.run_name}: the model {uri}" + ("" if found.is_fold else f" (fold {fold})")
            try:
                local = Path(mlflow.artifacts.download_artifacts(uri, dst_path=f"{tmp}/{fold}"))
                metadata = Model.load(local / "MLmodel").metadata or {}
            except Exception as exc:  # noqa: BLE001 - missing or unreadable artifacts
                raise UserError(
                    f"{where} cannot be read ({_first_line(exc)}); fix: check that the store's artifacts are "
                    f"reachable (the folder beside the SQLite file, or the server), else train the run again"
                ) from None
            check_version(
                metadata.get("lenbench_version", "unknown"), metadata.get("lenbench_format", -1), where
            )
            _check_files(local, metadata.get(HASHES_KEY) or {}, where)
            models[fold] = mlflow.pyfunc.load_model(str(local)).unwrap_python_model()
    return models


def _check_files(folder: Path, logged: dict[str, str], where: str) -> None:
    """Each file of the model as it was logged (SHA-256), none missing or added: else nothing is unpickled."""
    found = file_hashes(folder)
    for name in sorted(set(logged) | set(found)):
        if name not in found:
            change = "is missing"
        elif name not in logged:
            change = "was not logged with it"
        elif found[name] != logged[name]:
            change = "differs from the file logged (SHA-256)"
        else:
            continue
        raise UserError(
            f"{where}: its file {name} {change}: the model was damaged or changed after it was logged, and is not "
            f"loaded; fix: train the run again (resume=false) or restore the store's artifacts, and check who can "
            f"write to the store"
        )


def _reused_folds(client: Any, run: Any) -> dict[int, str]:
    """Folds a resumed job reused from an earlier run: their models are on the runs they came from."""
    children = client.search_runs(
        [run.info.experiment_id],
        filter_string=f"tags.mlflow.parentRunId = '{run.info.run_id}' and tags.reused_from != ''",
        max_results=1000,
    )
    found = {}
    for child in children:
        model_id = _reused_model(client, child.data.tags.get("reused_from"))
        if model_id and "fold" in child.data.tags:
            found[int(child.data.tags["fold"])] = f"models:/{model_id}"
    return found


def _reused_model(client: Any, run_id: str | None) -> str | None:
    """A fold reused from an earlier run has its model there."""
    if not run_id:
        return None
    try:
        return client.get_run(run_id).data.tags.get(MODEL_ID_TAG)
    except Exception:  # noqa: BLE001 - the earlier run was deleted
        return None


def _no_model(name: str, what: str) -> UserError:
    return UserError(
        f"run {name}: this {what} has no model (trained with method.log_model=false, or before lenbench logged "
        f"models, format {FORMAT_VERSION}); fix: train it again with method.log_model=true resume=false, or pick "
        f"a run whose Models column shows one"
    )


def _quoted(text: str) -> str:
    return text.replace("'", "\\'")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
