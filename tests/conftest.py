"""Shared fixtures: where the MIMIC-II data live, and the data set loaded once per session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from lenbench.data.base import ConceptDataset
from lenbench.data.mimic import RELATIVE_PATH, load_mimic

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def mimic_root() -> Path:
    """$LENBENCH_DATA_DIR, else ../shared/data beside the repository; skips when the CSV is not there."""
    root = Path(os.environ.get("LENBENCH_DATA_DIR", REPO_ROOT / ".." / "shared" / "data")).resolve()
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
