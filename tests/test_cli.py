"""The command line as the documentation (README.md, docs/) and the design card write it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import job_env, run_command

from lenbench.config import multirun_flag_first


def test_multirun_flag_moves_to_the_front_and_nothing_else_changes() -> None:
    assert multirun_flag_first(["train", "method=psi", "-m", "seed=0,1,2"]) == [
        "train",
        "-m",
        "method=psi",
        "seed=0,1,2",
    ]
    assert multirun_flag_first(["train", "a=1", "--multirun", "b=2"]) == ["train", "--multirun", "a=1", "b=2"]
    assert multirun_flag_first(["train", "-m", "a=1"]) == ["train", "-m", "a=1"]
    assert multirun_flag_first(["train", "a=1"]) == ["train", "a=1"]


@pytest.mark.e2e
def test_design_card_command_runs_as_written(tmp_path: Path) -> None:
    """``python -m train method=psi -m seed=0,1,2``: overrides on both sides of ``-m``. Leading overrides only make
    it small (synthetic data, 2 folds, 50 epochs); the card's tokens follow exactly as written."""
    import sys

    small = [
        "data=xor",
        "cv.n_splits=2",
        "method.explainer.epochs=50",
        f"hydra.sweep.dir={tmp_path / 'sweep'}",
    ]
    cmd = [sys.executable, "-m", "train", *small, "method=psi", "-m", "seed=0,1,2"]
    proc = run_command(cmd, job_env(tmp_path))
    assert proc.returncode == 0, proc.stderr[-3000:]
    jobs = sorted(p.name for p in (tmp_path / "sweep").iterdir() if p.is_dir())
    assert jobs == ["0-psi-s0", "1-psi-s1", "2-psi-s2"]
    for job in jobs:
        summary = json.loads((tmp_path / "sweep" / job / "summary.json").read_text())
        assert summary["method"] == "psi" and summary["n_folds"] == 2
    assert [json.loads((tmp_path / "sweep" / j / "summary.json").read_text())["seed"] for j in jobs] == [
        0,
        1,
        2,
    ]


@pytest.mark.e2e
def test_help_is_lenbench_own_and_its_examples_compose(tmp_path: Path) -> None:
    """``python -m train --help``: purpose, examples, every config group with its choices (read here from conf/),
    the most used keys; no Hydra boilerplate or unresolved interpolation. Each ``python -m train`` example composes."""
    import sys

    from helpers import REPO

    done = run_command([sys.executable, "-m", "train", "--help"], job_env(tmp_path))
    assert done.returncode == 0, done.stderr
    text = done.stdout
    assert "powered by Hydra" not in text and "${" not in text and "Examples" in text
    for group in sorted(p for p in (REPO / "conf").iterdir() if p.is_dir() and p.name != "hydra"):
        choices = ", ".join(sorted(f.stem for f in group.glob("*.yaml")))
        assert f"{group.name}: {choices}" in text, group.name
    examples = [
        line.split("  ")[1].split()[3:] for line in text.splitlines() if line.startswith("  python -m train")
    ]
    assert len(examples) >= 4
    for overrides in examples:  # a sweep's first job stands for it (--cfg does not take -m)
        first = [o.split(",")[0] for o in overrides if o != "-m"]
        composed = run_command([sys.executable, "-m", "train", *first, "--cfg", "job"], job_env(tmp_path))
        assert composed.returncode == 0, (overrides, composed.stderr[-1000:])
