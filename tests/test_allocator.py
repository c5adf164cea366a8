"""The allocator setting every job applies: glibc's mallopt accepts it, the run records it, results do not move."""

from __future__ import annotations

import subprocess
import sys

import pytest
from helpers import HANG_GUARD_S, REPO

from lenbench.nn.allocator import SETTINGS, allocator_settings, glibc, keep_freed_buffers
from lenbench.tracking.environment import environment

GLIBC = glibc()


@pytest.mark.skipif(not GLIBC, reason="glibc's mallopt only")
def test_glibc_accepts_every_setting_and_the_record_names_them(tmp_path) -> None:  # noqa: ANN001
    assert keep_freed_buffers() == SETTINGS  # mallopt returned 1 for each
    assert allocator_settings() == SETTINGS
    assert environment(tmp_path, 1)["allocator"] == SETTINGS


TRAIN = """
import hashlib, sys, torch
sys.path.insert(0, "tests")
from helpers import boolean_rows
from lenbench.explainers.relu_net import ReluNetExplainer
from lenbench.nn.allocator import keep_freed_buffers
torch.set_num_threads(1)
if sys.argv[1] == "tuned":
    keep_freed_buffers()
x, y = boolean_rows(3000, 90)  # activations of 1.2 MB: above glibc's default mmap threshold
state = ReluNetExplainer(seed=3, epochs=150).train(x, y).network.state_dict()
print(hashlib.sha256(b"".join(state[k].numpy().tobytes() for k in sorted(state))).hexdigest())
"""


@pytest.mark.e2e  # trains in two processes of its own
@pytest.mark.skipif(not GLIBC, reason="glibc's mallopt only")
def test_the_setting_never_changes_the_trained_weights() -> None:
    """Allocation never changes arithmetic: the same network trained in a process with glibc's defaults and in one
    with lenbench's setting has the same weights, bit for bit."""
    runs = {
        mode: subprocess.run(
            [sys.executable, "-c", TRAIN, mode],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=HANG_GUARD_S,
        )
        for mode in ("default", "tuned")
    }
    for proc in runs.values():
        assert proc.returncode == 0, proc.stderr[-2000:]
    assert runs["default"].stdout == runs["tuned"].stdout and len(runs["tuned"].stdout.strip()) == 64
