"""Where a job's MLflow record lives, and whether it can be written there.

Two kinds of store, told apart by the URI's scheme:

- a SQLite file, ``sqlite:////abs/folder/mlflow.db``: its artifacts live beside it, in ``/abs/folder/artifacts``;
- a tracking server, ``http(s)://host:port``: its artifacts live on the server. Experiments are created without an
  artifact location, so the server's default applies (``mlflow server`` proxies uploads to its
  ``--artifacts-destination``).

So nothing is written under the current directory unless the store is there. :func:`check_store` fails fast, before
any training, with one line naming the store and the fix; for a SQLite store it also creates the schema once, under
a file lock beside the database (``mlflow.db.lock``), so jobs started together never race on MLflow's migrations.
"""

from __future__ import annotations

import fcntl
import logging
import os
import sqlite3
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlparse

from lenbench.tracking.errors import TrackingError

# MLflow's HTTP client retries a dead server for about 4 minutes per request (7 retries, backoff factor 2, 120 s
# timeout); lenbench's calls wait at most about 30 s (3 tries of at most 10 s, 0 + 2 s apart), then its job goes on
# locally. Values the user exported win.
HTTP_WAITS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "10",
}
SCHEMES = "sqlite:////abs/path/mlflow.db (a SQLite file) or http(s)://host:port (a tracking server)"
_NOISE = ("[SQL:", "[parameters:", "(Background on this error", "(raised as a result of")


def default_tracking_uri(project_dir: str | Path) -> str:
    """``sqlite:///<project>/mlruns/mlflow.db`` (absolute): MLflow 3.13+ refuses a plain file store."""
    return f"sqlite:///{Path(project_dir).resolve() / 'mlruns' / 'mlflow.db'}"


def sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI; None for any other store."""
    return Path(uri[len("sqlite:///") :]) if uri.startswith("sqlite:///") else None


def default_artifact_location(uri: str) -> str | None:
    """Where new experiments of the store ``uri`` keep their artifacts: ``<folder of the .db>/artifacts`` for a
    SQLite store, None (the server's own default) for a tracking server."""
    db = sqlite_path(uri)
    return (db.parent / "artifacts").as_uri() if db is not None else None


def short_error(exc: BaseException, limit: int = 300) -> str:
    """``Type: message`` on one line, without the SQL statement, parameters and links SQLAlchemy appends."""
    lines = [line.strip() for line in str(exc).splitlines()]
    text = " ".join(line for line in lines if line and not line.startswith(_NOISE))
    text = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def check_store(uri: str, timeout: float = 5.0) -> None:
    """Fail fast, before any training, when the store cannot be used; raises TrackingError with the fix.

    A SQLite store gets its folder and, when new, its schema (created once, under the store's lock)."""
    scheme = urlparse(uri).scheme
    if scheme == "sqlite":
        _check_sqlite(uri, timeout)
    elif scheme in ("http", "https"):
        _check_server(uri, timeout)
    elif scheme in ("", "file"):
        raise TrackingError(
            f"tracking.uri={uri!r} is a file store, which MLflow 3.13+ refuses; use sqlite:////abs/path/mlflow.db"
        )
    else:
        raise TrackingError(
            f"tracking.uri={uri!r} (or MLFLOW_TRACKING_URI): unknown store scheme {scheme!r}; use {SCHEMES}"
        )


@contextmanager
def store_lock(uri: str) -> Iterator[None]:
    """Hold the exclusive lock of a SQLite store (the file ``<db>.lock`` beside it); nothing for a server.

    Not re-entrant: a process must not take it twice at once."""
    db = sqlite_path(uri)
    if db is None:
        yield
        return
    lock = db.with_name(db.name + ".lock")
    try:
        handle = open(lock, "a")  # noqa: SIM115 - held for the block below
    except OSError as exc:
        raise TrackingError(
            f"the MLflow store folder {db.parent} is not writable ({exc.strerror}: {lock}); point "
            "MLFLOW_TRACKING_URI (or tracking.uri) at a folder you can write, sqlite:////abs/path/mlflow.db"
        ) from None
    with handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _check_sqlite(uri: str, timeout: float) -> None:
    db = sqlite_path(uri)
    if db is None or not db.is_absolute():
        raise TrackingError(
            f"tracking.uri={uri!r}: use an absolute SQLite path, sqlite:////abs/path/mlflow.db"
        )
    try:
        db.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise TrackingError(f"cannot create the MLflow store folder {db.parent}: {exc}") from None
    with store_lock(uri):  # creating the lock file also proves the folder is writable
        if db.exists():
            _check_sqlite_file(db, timeout)
        _create_schema(uri, db)


def _check_sqlite_file(db: Path, timeout: float) -> None:
    try:
        with sqlite3.connect(db, timeout=timeout) as conn:
            conn.execute("BEGIN IMMEDIATE")  # takes the write lock: a locked store fails here, now
            conn.execute("ROLLBACK")
            result = conn.execute("PRAGMA quick_check").fetchone()
        if result is None or result[0] != "ok":
            raise sqlite3.DatabaseError(str(result))
    except sqlite3.OperationalError as exc:
        raise TrackingError(
            f"the MLflow store {db} is locked or unreadable ({exc}); stop the other process using it, "
            "or point MLFLOW_TRACKING_URI at another store"
        ) from None
    except sqlite3.DatabaseError as exc:
        raise TrackingError(
            f"the MLflow store {db} is corrupt ({exc}); move it aside (results are also in each job's "
            "output folder) or point MLFLOW_TRACKING_URI at another store"
        ) from None


def _create_schema(uri: str, db: Path) -> None:
    """Open the store once: MLflow creates (migrates) the schema of a new database and its default experiment.

    Called under the store's lock, so no two processes do it at once; MLflow keeps the store for this process."""
    from mlflow import MlflowClient

    _quiet_logs("mlflow.store.db.utils")
    try:
        MlflowClient(tracking_uri=uri).search_experiments(max_results=1)
    except Exception as exc:  # noqa: BLE001 - any failure to open the store is one line naming it
        raise TrackingError(
            f"cannot open the MLflow store {db} ({short_error(exc)}); move it aside or point MLFLOW_TRACKING_URI "
            "at another store"
        ) from None


def _quiet_logs(name: str) -> None:
    """MLflow logs each database error with its SQL and traceback, urllib3 each retry of a dead server; lenbench
    reports every store failure itself in one line, so those records are dropped (their info lines stay)."""
    logger = logging.getLogger(name)
    if not any(isinstance(f, _BelowWarning) for f in logger.filters):
        logger.addFilter(_BelowWarning())


class _BelowWarning(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno < logging.WARNING


def _check_server(uri: str, timeout: float) -> None:
    for name, value in HTTP_WAITS.items():
        os.environ.setdefault(name, value)  # MLflow reads them at each request
    _quiet_logs("urllib3.connectionpool")  # a warning per retry; lenbench says once that the server failed
    url = uri.rstrip("/") + "/health"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 (user-given server)
            response.read(64)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise TrackingError(
            f"the MLflow tracking server {uri} is unreachable ({reason}); start it (make server) or unset "
            "MLFLOW_TRACKING_URI to use the local SQLite store"
        ) from None
