"""Validators of constructor arguments: the one place where "must be an integer >= 1" and its kin are written.

Every explainer, callback and data module checks its arguments when it is built, so that a wrong config value fails
before any training with a message naming the value and what is allowed. The messages come in two forms:

- with an owner (a class name): ``ReluNetExplainer topk=0: must be an integer > 0``;
- without one (functions such as the synthetic data makers): ``n_samples must be an integer >= 10, got 9``.

Each check returns the value it accepted (as ``int``/``float`` where it checks a number), so callers can assign it.
Pure Python: no torch, so the data modules use it as well as the networks.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import Any, NoReturn

from lenbench.errors import ConfigError

# The trainer precisions lenbench honours (float32 and float64 throughout; lenbench.nn.trainer maps them to dtypes).
PRECISIONS = ("32-true", "32", "64-true", "64")


def refuse(owner: str | None, key: str, value: object, requirement: str) -> NoReturn:
    """Raise :class:`ConfigError` (a ValueError) saying that ``key`` (of ``owner``) must be ``requirement`` and
    was ``value``: constructor arguments come from the config, so a bad one is the user's to fix."""
    if owner is None:
        raise ConfigError(f"{key} must be {requirement}, got {value!r}")
    raise ConfigError(f"{owner} {key}={value!r}: must be {requirement}")


def is_int(value: object) -> bool:
    """An integer (Python or numpy), not a bool."""
    return not isinstance(value, bool) and isinstance(value, numbers.Integral)


def is_number(value: object) -> bool:
    """A real number (Python or numpy), not a bool."""
    return not isinstance(value, bool) and isinstance(value, numbers.Real)


def check_int(owner: str | None, key: str, value: object, minimum: int, why: str = "") -> int:
    """An integer >= ``minimum``; ``why`` explains the bound in the message."""
    if not is_int(value) or value < minimum:  # type: ignore[operator]
        refuse(owner, key, value, f"an integer >= {minimum}{f' ({why})' if why else ''}")
    return int(value)  # type: ignore[call-overload]


def check_positive(
    owner: str | None, key: str, value: object, integer: bool = False, allow_zero: bool = False
) -> Any:
    """A number (an integer with ``integer``) > 0, or >= 0 with ``allow_zero``; returned as it is."""
    number = is_int(value) if integer else is_number(value)
    if not number or not (value >= 0 if allow_zero else value > 0):  # type: ignore[operator]
        kind = "an integer" if integer else "a number"
        refuse(owner, key, value, f"{kind} {'>= 0' if allow_zero else '> 0'}")
    return value


def check_choice(owner: str | None, key: str, value: object, choices: Sequence[Any]) -> Any:
    """One of ``choices``."""
    if value not in choices:
        refuse(owner, key, value, f"one of {', '.join(repr(c) for c in choices)}")
    return value


def check_precision(owner: str | None, key: str, value: object) -> str:
    """A precision lenbench honours, as text (``64`` from a YAML integer is ``"64"``); refused with the fix."""
    if str(value) not in PRECISIONS:
        where = f"{owner} {key}={value!r}" if owner else f"{key}={value!r}"
        raise ConfigError(
            f"{where}: lenbench trains in 32-true (float32, the default) or 64-true (float64) only, not in mixed "
            "or half precision; use trainer.precision=32-true or trainer.precision=64-true"
        )
    return str(value)


def check_seed(owner: str | None, value: object) -> int:
    """A random seed: any integer."""
    if not is_int(value):
        refuse(owner, "seed", value, "an integer")
    return int(value)  # type: ignore[call-overload]


def check_unit(owner: str | None, key: str, value: object, low_open: bool = True) -> float:
    """A number in (0, 1), or [0, 1) when not ``low_open``."""
    ok = is_number(value)
    if ok:
        ok = (0.0 < value < 1.0) if low_open else (0.0 <= value < 1.0)  # type: ignore[operator]
    if not ok:
        refuse(owner, key, value, f"a number in {'(0, 1)' if low_open else '[0, 1)'}")
    return float(value)  # type: ignore[arg-type]


def check_bool(owner: str | None, key: str, value: object) -> bool:
    """``True`` or ``False`` (not 0/1 or a string)."""
    if not isinstance(value, bool):
        refuse(owner, key, value, "true or false")
    return value


def check_widths(owner: str | None, key: str, value: Sequence[object]) -> list[int]:
    """A non-empty list of layer widths >= 1 (``hidden`` of the network explainers)."""
    sizes = list(value)
    if not sizes or not all(is_int(h) and h >= 1 for h in sizes):  # type: ignore[operator]
        refuse(owner, key, value, "a non-empty list of layer widths >= 1")
    return [int(h) for h in sizes]  # type: ignore[call-overload]
