"""User-given names (method, data set, run, study, experiment) as file names: :func:`file_name` is the one place a
name becomes part of a path, and :func:`check_name` refuses, at config time, a name that would not stay one file
name (``../``, ``/``, NUL, an over-long name) instead of writing it somewhere else."""

from __future__ import annotations

import hashlib
import re

from lenbench.errors import ConfigError

MAX_LENGTH = 100  # room for the suffixes lenbench adds (-s42-fold9.csv) within a file system's 255 bytes
_UNSAFE = re.compile(r"[\x00-\x1f\x7f/\\]")


def file_name(name: str) -> str:
    """``name`` itself when it is a safe file name; else a safe one, with a digest of ``name`` so that different
    names stay different files: separators and control characters replaced, leading dots dropped, shortened."""
    safe = _UNSAFE.sub("_", name).lstrip(".")
    if safe == name and 0 < len(name) <= MAX_LENGTH:
        return name
    return f"{safe[: MAX_LENGTH - 9]}-{hashlib.sha256(name.encode()).hexdigest()[:8]}".lstrip("-")


def check_name(name: str, key: str) -> None:
    """Raise :class:`ConfigError` naming ``key`` when ``name`` is not its own safe file name."""
    if file_name(name) != name:
        shown = name if len(name) <= 40 else name[:37] + "..."
        raise ConfigError(
            f"{key}={shown!r}: not usable as a file name (no '/', '\\', NUL or control characters, no leading "
            f"'.', 1 to {MAX_LENGTH} characters); fix: choose a plain name, e.g. {key}={_plain(name)}"
        )


def _plain(name: str) -> str:
    """A suggestion: the name's letters, digits, '-' and '_' runs joined by '_' (``../../escape``: ``escape``)."""
    return "_".join(re.findall(r"[A-Za-z0-9_-]+", name))[:40] or "my_name"
