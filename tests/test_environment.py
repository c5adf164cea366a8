"""What a run records about where it ran: the commit is the one the process started with."""

from __future__ import annotations

import subprocess
from pathlib import Path

from lenbench.tracking.environment import git_commit


def _git(repo: Path, *args: str) -> str:
    cmd = ["git", "-c", "user.name=t", "-c", "user.email=t@t", *args]
    return subprocess.run(cmd, cwd=repo, check=True, capture_output=True, text=True).stdout.strip()


def test_a_commit_made_during_a_sweep_does_not_relabel_its_later_jobs(tmp_path: Path) -> None:
    # A sweep's process imported the code of the first commit; its later jobs ran that code, not the new HEAD.
    _git(tmp_path, "init", "-q")
    (tmp_path / "a.txt").write_text("1")
    _git(tmp_path, "add", "a.txt")
    _git(tmp_path, "commit", "-q", "-m", "first")
    first = _git(tmp_path, "rev-parse", "HEAD")
    assert git_commit(tmp_path) == (first, False)
    (tmp_path / "a.txt").write_text("2")
    _git(tmp_path, "commit", "-q", "-am", "second")
    assert _git(tmp_path, "rev-parse", "HEAD") != first
    assert git_commit(tmp_path) == (first, False)
