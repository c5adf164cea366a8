"""Shared fixtures: where the MIMIC-II data live, the data set loaded once per session, one torch thread, and a
Hypothesis profile that holds on a busy machine. Shared helpers (data builders, subprocess jobs, event waits) are in
``helpers.py``."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from lenbench.config import default_data_root
from lenbench.data.base import ConceptDataset
from lenbench.data.mimic import RELATIVE_PATH, load_mimic

REPO_ROOT = Path(__file__).resolve().parents[1]

# No per-example deadline and no "too slow" health check: both measure wall time, which a loaded machine stretches.
# Tests that pass their own @settings inherit these (settings are resolved when the test module is imported).
settings.register_profile("lenbench", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("lenbench")


@pytest.fixture
def one_torch_thread():
    """One torch thread, as the protocol runs (train.yaml torch_threads: 1): deterministic, and no OpenMP spinning
    when other processes share the cores (two threads on a busy 2-core machine made the network tests 30x slower).

    Modules that train in this process use it for every test: ``pytestmark = pytest.mark.usefixtures(...)``.
    """
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def mimic_root() -> Path:
    """Where the jobs read MIMIC-II (lenbench.config.default_data_root); skips when the CSV is not there."""
    root = Path(default_data_root()).resolve()
    if not (root / RELATIVE_PATH).is_file():
        pytest.skip(f"MIMIC-II data not found at {root / RELATIVE_PATH} (set LENBENCH_DATA_DIR)")
    return root


@pytest.fixture(scope="session")
def mimic_csv(mimic_root: Path) -> Path:
    return mimic_root / RELATIVE_PATH


@pytest.fixture(scope="session")
def mimic(mimic_root: Path) -> ConceptDataset:
    """MIMIC-II as the notebook preprocesses it (fit on all rows); shared, so tests must not modify it."""
    return load_mimic(mimic_root, download=False)
