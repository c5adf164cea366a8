"""Rows are experiments, not method names: which runs a report may pool, and what each row is called.

A row is one configuration (method, data, label and every hyper-parameter of the logged resolved config) with any
number of model seeds: runs that differ in anything but the seed are never pooled. Rows are compared inside a *study*,
the rows sharing test folds (data set, label, number of folds, data checksum); repeated CV pools into a row. Runs of
one configuration from different code versions are split into rows (``code <commit>``), different data checksums
make different studies, both with a warning. Pure: the runs table in, with ``row``, ``study``, ``settings``,
``split_seed`` and ``n_splits`` added.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import pandas as pd

from lenbench.config import NOT_HASHED

log = logging.getLogger(__name__)

#: Config keys that never make two runs different experiments: tracking and launcher settings (as for the resume
#: hash), which folds ran (``cv.folds``: the report pairs folds), how many processes ran them, where the data lies.
NOT_A_SETTING = (*NOT_HASHED, "seed", "cv.folds", "cv.n_jobs", "cv.split_seed", "data.root", "data.download")
IGNORED_SUFFIXES = (".log_every_n_epochs",)
#: Keys that define the study (the test folds), shown as columns rather than in row names.
STUDY_KEYS = ("data.name", "data.label", "cv.n_splits")


def is_setting(key: str) -> bool:
    """Does this flattened config key distinguish experiments? Not for :data:`NOT_A_SETTING` keys (or below
    them), nor keys ending like :data:`IGNORED_SUFFIXES`, nor :data:`STUDY_KEYS` (the study's columns)."""
    if any(key == k or key.startswith(k + ".") for k in NOT_A_SETTING):
        return False
    return not key.endswith(IGNORED_SUFFIXES) and key not in STUDY_KEYS


def seed_copies(params: list[Mapping[str, Any]], seeds: list[Any]) -> set[str]:
    """Keys named ``...seed`` that hold each run's own seed in every run that has them (a method's ``seed:
    ${seed}``): copies of the seed, not settings. A fixed seed (``data.seed: 0`` of a synthetic data set) differs
    from some run's seed and stays a setting."""
    candidates = {k for p in params for k in p if k.rsplit(".", 1)[-1] == "seed" and k != "seed"}
    return {
        key
        for key in candidates
        if all(str(p[key]) == str(seed) for p, seed in zip(params, seeds, strict=True) if key in p)
    }


def settings_of(
    params: Mapping[str, Any], ignored: set[str] | frozenset[str] = frozenset()
) -> dict[str, str]:
    """The run's settings: every param that distinguishes experiments (see :func:`is_setting`) and is not in
    ``ignored`` (the seed's copies), values as strings, as MLflow keeps them."""
    return {k: str(v) for k, v in params.items() if is_setting(k) and k not in ignored}


def _int_param(params: Mapping[str, Any], key: str, default: int) -> int:
    try:
        return int(params.get(key, default))
    except (TypeError, ValueError):
        return default


def short_names(keys: list[str]) -> dict[str, str]:
    """The shortest dotted suffix of each key that no other key of the list ends with: ``method.explainer.
    max_depth`` -> ``max_depth`` unless another key also ends in ``max_depth``."""
    names = {}
    for key in keys:
        parts = key.split(".")
        for size in range(1, len(parts) + 1):
            suffix = ".".join(parts[-size:])
            if not any(other != key and (other == suffix or other.endswith("." + suffix)) for other in keys):
                break
        names[key] = suffix
    return names


def _nest(settings: Mapping[str, str], parents: list[str]) -> dict[str, str]:
    """``settings`` with the flattened entries of a mapping (``data.thresholds.age``) folded back under their
    parent key (``data.thresholds={age=70}``), so a row that set the mapping and one that left it null
    (``data.thresholds=None``) differ in one key, not in a null parent and each child ``(unset)``."""
    out = dict(settings)
    for parent in parents:
        children = {k: out.pop(k) for k in list(out) if k.startswith(parent + ".")}
        if children:
            inner = ", ".join(f"{k[len(parent) + 1 :]}={v}" for k, v in sorted(children.items()))
            out[parent] = "{" + inner + "}"
    return out


def _describe(configs: pd.DataFrame) -> list[str]:
    """Per configuration of one method in one study: the settings that differ from its siblings, ``k=v, ...``."""
    flat = configs["_settings"].tolist()
    every = {k for s in flat for k in s}
    # A key that is null in one run and a mapping (flattened into children) in another is one setting.
    nulls = {k for s in flat for k, v in s.items() if v == "None"}
    parents = sorted(k for k in nulls if any(o.startswith(k + ".") for o in every))
    parents = [p for p in parents if not any(p.startswith(q + ".") for q in parents)]  # outermost only
    settings = [_nest(s, parents) for s in flat]
    keys = sorted({k for s in settings for k in s})
    differing = [k for k in keys if len({s.get(k, "(unset)") for s in settings}) > 1]
    short = short_names(differing)
    return [", ".join(f"{short[k]}={s.get(k, '(unset)')}" for k in differing) for s in settings]


def _study_names(runs: pd.DataFrame) -> pd.Series:
    checksums = runs.groupby(["data", "label", "n_splits"])["data_checksum"].transform("nunique")
    base = runs["data"] + " / " + runs["label"] + " / " + runs["n_splits"].astype(str) + "-fold"
    tagged = base + " / data " + runs["data_checksum"].str[:8]
    return tagged.where(checksums > 1, base)


def assign_rows(runs: pd.DataFrame) -> pd.DataFrame:
    """The runs table with ``study``, ``row`` (unique within its study), ``settings`` (the hyper-parameters that
    tell the row from other rows of its method), ``config`` (every setting), ``split_seed`` and ``n_splits``."""
    if runs.empty:
        return runs.assign(study=[], row=[], settings=[], config=[], split_seed=[], n_splits=[])
    runs = runs.copy()
    params = runs["params"] if "params" in runs else pd.Series([{}] * len(runs), index=runs.index)
    copies = seed_copies(list(params), list(runs["seed"]))
    runs["_settings"] = [settings_of(p, copies) for p in params]
    runs["config"] = runs["_settings"].map(lambda s: "; ".join(f"{k}={v}" for k, v in sorted(s.items())))
    runs["split_seed"] = [_int_param(p, "cv.split_seed", 42) for p in params]
    runs["n_splits"] = [_int_param(p, "cv.n_splits", 0) for p in params]
    if "label" not in runs:
        runs["label"] = [str(p.get("data.label", "")) for p in params]
    runs["study"] = _study_names(runs)
    keys = ["study", "method", "config", "git_commit"]
    configs = runs.drop_duplicates(keys)[[*keys, "_settings"]].reset_index(drop=True)
    configs["settings"], configs["_commit"] = "", ""
    for _, group in configs.groupby(["study", "method"], sort=False):
        distinct = group.drop_duplicates("config")
        described = dict(zip(distinct["config"], _describe(distinct), strict=True))
        configs.loc[group.index, "settings"] = group["config"].map(described)
        split = group.groupby("config")["git_commit"].transform("nunique") > 1
        if split.any():
            _warn_split(group[split])
        configs.loc[group.index, "_commit"] = group["git_commit"].str[:7].where(split, "")
    configs["row"] = list(map(_row_name, configs["method"], configs["settings"], configs["_commit"]))
    runs = runs.merge(configs[[*keys, "settings", "row"]], on=keys, how="left")
    _warn_checksums(runs)
    return runs.drop(columns="_settings")


def _row_name(method: str, settings: str, commit: str) -> str:
    extra = ", ".join(part for part in (settings, f"code {commit}" if commit else "") if part)
    return f"{method} ({extra})" if extra else method


def _warn_split(group: pd.DataFrame) -> None:
    for config, runs in group.groupby("config"):
        commits = sorted(runs["git_commit"].unique())
        what = f"{runs['method'].iloc[0]}{f' [{config}]' if config else ''}"
        message = "%s: runs from %d code versions (%s) are kept apart as separate rows, not pooled"
        log.warning(message, what, len(commits), ", ".join(c[:7] for c in commits))


def _warn_checksums(runs: pd.DataFrame) -> None:
    for (data, label), group in runs.groupby(["data", "label"]):
        sums = sorted(group["data_checksum"].unique())
        if len(sums) > 1:
            message = "%s / %s: runs used %d different data files (checksums %s); each is its own study, never pooled"
            log.warning(message, data, label, len(sums), ", ".join(c[:8] for c in sums))
