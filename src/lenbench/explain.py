"""``python -m lenbench.explain run=<run id or name> data.path=new.csv [out=explained.csv]``: predict and explain new
rows with a trained model from the MLflow store.

A fold run (``pruning-s42-fold3``) uses that fold's model; a job's parent run (``pruning-s42``) the ensemble of its
folds (:mod:`lenbench.models.ensemble`). The table holds the model's concept columns, or, for a model trained on a
table (``data=csv``, ``data=breast_cancer``), its raw columns, which go through the fold's own preprocessing; the
data set's label column may be there too (then the summary gives the accuracy). Writes the input with the answer
columns appended and prints a short summary. Other keys: ``tracking.uri`` (default ``MLFLOW_TRACKING_URI``, else the
project's ``mlruns/mlflow.db``), ``tracking.experiment`` (look a run name up in that experiment only),
``strict_range=true`` (refuse raw values outside the range seen in training; by default a warning names them).
Every input problem is one line and exit status 2.
"""

from __future__ import annotations

import logging
import os
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from lenbench.errors import UserError, exit_with
from lenbench.models.ensemble import ensemble_frame, formula_agreement
from lenbench.names import file_name
from lenbench.tracking.store import check_store, default_tracking_uri

if TYPE_CHECKING:
    from lenbench.models.frames import Rows
    from lenbench.models.pyfunc import LenbenchModel
    from lenbench.models.runs import FoundModels

log = logging.getLogger("lenbench")

KEYS = ("run", "data.path", "out", "tracking.uri", "tracking.experiment", "strict_range")


@dataclass(frozen=True)
class Request:
    run: str
    path: Path
    out: Path | None
    uri: str
    experiment: str | None = None
    strict_range: bool = False  # refuse raw values outside the training range (default: a warning)


def parse_args(argv: list[str]) -> Request:
    """``key=value`` arguments (Hydra's spelling), checked: unknown or missing keys are one line each."""
    values: dict[str, str] = {}
    for arg in argv:
        key, sep, value = arg.partition("=")
        if not sep or key not in KEYS:
            raise UserError(
                f"{arg!r}: not an argument of lenbench.explain; fix: use {', '.join(k + '=' for k in KEYS)}"
            )
        values[key] = value.strip()
    for key, example in (("run", "run=pruning-s42"), ("data.path", "data.path=new.csv")):
        if not values.get(key):
            raise UserError(
                f"{key} is not set; fix: add {example} (python -m lenbench.explain run=... data.path=...)"
            )
    uri = (
        values.get("tracking.uri")
        or os.environ.get("MLFLOW_TRACKING_URI")
        or default_tracking_uri(Path.cwd())
    )
    out = Path(values["out"]) if values.get("out") else None
    strict = values.get("strict_range", "false").lower()
    if strict not in ("true", "false"):
        raise UserError(
            f"strict_range={strict}: not true or false; fix: strict_range=true or strict_range=false"
        )
    path = Path(values["data.path"]).expanduser()
    return Request(values["run"], path, out, uri, values.get("tracking.experiment"), strict == "true")


def read_table(path: Path) -> pd.DataFrame:
    """The CSV (or Parquet) table to explain, with the data loaders' one-line errors."""
    from lenbench.data.table_file import _read_bytes, _read_frame  # deferred: the data loaders import sklearn

    return _read_frame(_read_bytes(path), path, None)


def explain(request: Request) -> tuple[pd.DataFrame, list[str]]:
    """The answer table (input columns, then the answer columns) and the summary lines."""
    from mlflow import MlflowClient  # deferred, with the model modules (mlflow, sympy): --help stays fast

    from lenbench.models.frames import concept_rows, explain_frame, warn_outside
    from lenbench.models.runs import find_run, load_models, run_models

    check_store(request.uri)
    frame = read_table(request.path)
    client = MlflowClient(request.uri)
    found = run_models(client, find_run(client, request.run, request.uri, request.experiment))
    models = load_models(found)
    answers, rows, outside = {}, None, {}
    for fold, model in models.items():
        rows = concept_rows(model.export, frame, str(request.path), request.strict_range)
        answers[fold] = explain_frame(model.predictor, rows, frame.index)
        outside = rows.outside | outside  # one line per column: the first fold's
    warn_outside(outside)
    first = next(iter(models.values())).export
    answer = answers[next(iter(answers))] if found.is_fold else ensemble_frame(answers, first.target_class)
    clash = [c for c in answer.columns if c in frame.columns]
    result = pd.concat([frame, answer.add_prefix("model_") if clash else answer], axis=1)
    return result, summary(found, models, answer, rows)


def summary(
    found: FoundModels, models: dict[int, LenbenchModel], answer: pd.DataFrame, rows: Rows | None
) -> list[str]:
    """A few lines: which model, how many rows per class, the formula(s) and how often they fire and agree."""
    export = next(iter(models.values())).export
    n = len(answer)
    kind = f"ensemble of {len(models)} fold models" if not found.is_fold else f"fold {export.fold} model"
    lines = [
        f"{found.run_name} ({found.run_id}): {export.method} {kind}, trained on {export.data.get('name')} "
        f"(label {export.label}); {n} row(s) of {'raw columns' if rows is not None and rows.kind == 'raw' else 'concepts'}",
        f"predicted class {export.target_class}: {_share(int((answer['predicted_class'] == export.target_class).sum()), n)}"
        + (f"; mean score {np.nanmean(answer['score']):.3f}" if answer["score"].notna().any() else ""),
    ]
    formulas = {f: m.export.formula for f, m in models.items() if m.export.formula is not None}
    if formulas:
        fires = answer["formula_fires"].astype(bool)
        agree = fires == (answer["predicted_class"] == export.target_class)
        distinct = formula_agreement(formulas)
        for text, folds in distinct[:3]:
            where = (
                ""
                if found.is_fold
                else f" (fold{'s' if len(folds) > 1 else ''} {', '.join(map(str, folds))})"
            )
            lines.append(f"formula{where}: {_short(text)}")
        if len(distinct) > 3:  # the summary stays short; every fold's formula is in the run's tags
            lines.append(f"... and {len(distinct) - 3} more distinct formula(s) of other folds")
        lines.append(
            f"formula fires on {_share(int(fires.sum()), n)}; agrees with the model on {_share(int(agree.sum()), n)}"
        )
    local = Counter(t for t in answer["local_explanation"] if t)
    if local:
        text, count = local.most_common(1)[0]
        lines.append(
            f"local explanations: {len(local)} distinct; the most frequent ({count} row{'s' if count != 1 else ''}): {_short(text, 160)}"
        )
    if rows is not None and rows.labels is not None:
        accuracy = float(np.mean(answer["predicted_class"].to_numpy() == rows.labels))
        lines.append(f"accuracy against column {export.label}: {accuracy:.4f}")
    return lines


def default_out(request: Request) -> Path:
    return Path("outputs") / "explain" / f"{request.path.stem}-{file_name(request.run)}.csv"


def write(result: pd.DataFrame, out: Path) -> Path:
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        result.to_csv(out, index=False)
    except OSError as exc:
        raise UserError(
            f"out={out}: cannot be written ({exc.strerror or exc}); fix: choose a writable path"
        ) from None
    return out


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="[%(levelname)s] %(message)s")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # no bar per downloaded model file
    argv = sys.argv[1:] if argv is None else argv
    if any(a in ("-h", "--help") for a in argv):
        print(__doc__)
        return 0
    try:
        request = parse_args(argv)
        os.environ["MLFLOW_TRACKING_URI"] = request.uri  # models:/ and runs:/ URIs resolve against this store
        result, lines = explain(request)
        out = write(result, request.out or default_out(request))
    except UserError as exc:
        exit_with(exc)
    print("\n".join([*lines, f"written: {out}"]))
    return 0


def _share(count: int, total: int) -> str:
    return f"{count} of {total} rows ({100.0 * count / total:.1f} %)" if total else "0 rows"


def _short(text: str, width: int = 100) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


if __name__ == "__main__":
    sys.exit(main())
