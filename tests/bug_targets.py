"""Constructors that fail on purpose, as ``_target_``s of jobs run by tests (importable as ``tests.bug_targets``)."""

from __future__ import annotations


def value_error(**kwargs: object) -> None:
    raise ValueError("depth=-1: must be at least 1")


def bug(**kwargs: object) -> None:
    raise ZeroDivisionError("a bug in lenbench")
