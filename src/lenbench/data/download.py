"""Downloading a data file atomically: a failed, interrupted or wrong download never leaves a file behind.

Used by the loaders of data sets that are fetched on first use (MIMIC-II from PhysioNet); every failure is a
:class:`DataError` whose message says what happened and how to get the file another way.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import tempfile
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from lenbench.data.errors import DataError

logger = logging.getLogger(__name__)

_CHUNK = 1 << 16


def download(dest: Path, url: str, sha256: str | None, timeout: float, what: str, hint: str) -> Path:
    """Download ``url`` to ``dest`` atomically: a failed or wrong download never leaves a file behind.

    The body is streamed into a temporary file beside ``dest`` (same file system, so the final ``os.replace`` is
    atomic), hashed on the way, and only moved into place when its SHA-256 matches ``sha256`` (``None`` skips the
    check). Network, HTTP, timeout, disk and checksum failures raise :class:`DataError`; the temporary file is
    removed on every failure, interrupts included.
    """
    created = [p for p in (dest.parent, *dest.parent.parents) if not p.exists()]  # deepest first
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(
            f"Cannot create the folder {dest.parent} to download {what} into ({exc}). Choose a writable data "
            f"folder: {hint}"
        ) from None
    logger.info("Downloading %s from %s to %s", what, url, dest)
    if sha256 is None:
        logger.warning("No SHA-256 given: the downloaded %s file will not be verified", what)
    tmp: Path | None = None
    try:
        with tempfile.NamedTemporaryFile(
            dir=dest.parent, prefix=f".{dest.name}.", suffix=".part", delete=False
        ) as out:
            tmp = Path(out.name)
            got, size = _stream(url, out, timeout)
        if sha256 is not None and got != sha256.lower():
            raise DataError(
                f"The {what} file downloaded from {url} failed its checksum: SHA-256 {got}, expected "
                f"{sha256.lower()} ({size} bytes received). The server sent a different or damaged file; nothing "
                f"was saved. Try again later, or {hint}"
            )
        os.replace(tmp, dest)
        tmp = None
        logger.info("Saved %s to %s (%d bytes, SHA-256 %s)", what, dest, size, got)
        return dest
    except DataError:
        raise
    except (OSError, http.client.HTTPException, ValueError) as exc:  # URLError, HTTPError, TimeoutError too
        reason = _download_failure(exc, timeout)
    finally:
        if tmp is not None:
            tmp.unlink(missing_ok=True)
            _remove_empty(created)  # nor the folders made for it
    raise DataError(
        f"Could not download {what} from {url} to {dest}: {reason}. Nothing was saved. Check the network "
        f"connection and try again, or {hint}"
    )


def _remove_empty(folders: list[Path]) -> None:
    """Remove the folders a failed download created, deepest first, as long as they are empty."""
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:
            return


def _stream(url: str, out: Any, timeout: float) -> tuple[str, int]:
    """Copy the body at ``url`` into ``out`` chunk by chunk; returns its SHA-256 and size."""
    hasher = hashlib.sha256()
    size = 0
    with urllib.request.urlopen(url, timeout=timeout) as response:
        while chunk := response.read(_CHUNK):
            out.write(chunk)
            hasher.update(chunk)
            size += len(chunk)
    return hasher.hexdigest(), size


def _download_failure(exc: BaseException, timeout: float) -> str:
    """Why a download failed, in words a user can act on."""
    if isinstance(exc, urllib.error.HTTPError):
        exc.close()
        return f"the server answered HTTP {exc.code} {exc.reason}"
    if isinstance(exc, urllib.error.URLError):
        return f"{exc.reason}"
    if isinstance(exc, TimeoutError):
        return f"no answer within the {timeout:g} s timeout"
    return f"{type(exc).__name__}: {exc}"
