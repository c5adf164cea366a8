"""``data=breast_cancer``, ``data=digits_parity`` (installed with scikit-learn) and ``data=csv`` end to end:
``python -m train`` on each, exit 0 and sensible accuracies; the "Your own data" commands of docs/data.md as written."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers import REPO, doc_section, run_train, train_in_process

from lenbench.data.bundled import (
    DIGITS_PARITY_FORMULA,
    breast_cancer_frame,
    load_breast_cancer,
    load_digits_parity,
)
from lenbench.data.table_file import load_table
from lenbench.logic.formula import Formula

EXAMPLE_CSV = REPO / "examples" / "breast_cancer.csv"


def test_breast_cancer_is_the_wisconsin_table_binned() -> None:
    data = load_breast_cancer()
    assert data.name == "breast_cancer" and data.label == "diagnosis"
    assert data.x.shape == (569, 90) and int(data.y.sum()) == 212  # 212 malignant, class 1
    assert data.concept_names[:3] == ["mean_radius_LOW", "mean_radius_NORMAL", "mean_radius_HIGH"]
    assert data.refit is not None and len(data.checksum) == 64
    from sklearn.datasets import load_breast_cancer as sklearn_breast_cancer

    np.testing.assert_array_equal(data.y, sklearn_breast_cancer().target == 0)


def test_the_shipped_csv_is_the_bundled_table() -> None:
    """examples/breast_cancer.csv (the example of docs/data.md) reads back into exactly the concepts of data=breast_cancer."""
    pd.testing.assert_frame_equal(pd.read_csv(EXAMPLE_CSV), breast_cancer_frame(), check_dtype=False)
    bundled = load_breast_cancer()
    from_csv = load_table(EXAMPLE_CSV, label="diagnosis", positive="malignant")
    assert from_csv.concept_names == bundled.concept_names and from_csv.name == "breast_cancer"
    np.testing.assert_array_equal(from_csv.x, bundled.x)
    np.testing.assert_array_equal(from_csv.y, bundled.y)


def test_digits_parity_concepts_are_the_digits_identity() -> None:
    data = load_digits_parity()
    assert data.concept_names == [
        "zero",
        "one",
        "two",
        "three",
        "four",
        "five",
        "six",
        "seven",
        "eight",
        "nine",
    ]
    assert data.x.shape == (1797, 10) and (data.x.sum(axis=1) == 1).all()
    assert data.inputs is not None and data.inputs.shape == (1797, 8, 8)
    assert data.ground_truth == DIGITS_PARITY_FORMULA
    truth = Formula.parse(data.ground_truth).evaluate(data.x, data.concept_names)
    np.testing.assert_array_equal(truth, data.y == 1)  # the formula is the label, exactly
    assert 0.45 < data.y.mean() < 0.55


# -- python -m train end to end --------------------------------------------------------------------------------------


def _summary(tmp_path: Path, *overrides: str) -> dict:
    result = train_in_process(tmp_path, *overrides, "method=tree", "cv.n_splits=3")
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads((tmp_path / "job" / "summary.json").read_text())


@pytest.mark.e2e
def test_train_on_breast_cancer(tmp_path: Path) -> None:
    summary = _summary(tmp_path, "data=breast_cancer")
    assert summary["data"] == "breast_cancer" and summary["n_folds"] == 3
    assert summary["model_accuracy_mean"] > 0.85  # majority class: 0.63
    assert summary["explanation_accuracy_mean"] > 0.85


@pytest.mark.e2e
def test_train_on_digits_parity_finds_the_formula(tmp_path: Path) -> None:
    # The true digit identities (the encoder mode, the default, is tested in test_encoder.py).
    summary = _summary(tmp_path, "data=digits_parity", "data.concepts_from=truth")
    assert summary["model_accuracy_mean"] == pytest.approx(1.0)
    assert summary["explanation_accuracy_mean"] == pytest.approx(1.0)
    explanations = json.loads((tmp_path / "job" / "explanations.json").read_text())
    assert explanations["target_formula"] == DIGITS_PARITY_FORMULA


@pytest.mark.e2e
def test_train_on_your_own_csv(tmp_path: Path) -> None:
    """A table with numbers, text, booleans and empty cells, a yes/no label and a constant column."""
    rng = np.random.default_rng(0)
    n = 240
    age = rng.uniform(20, 90, n).round(1)
    ward = rng.choice(["north", "south wing", "east"], n)
    insured = rng.random(n) > 0.5
    frame = pd.DataFrame({"age": age, "ward": ward, "insured": insured, "site": "A"})
    frame["outcome"] = np.where((age > 60) & (ward == "east"), "died", "survived")
    frame.loc[rng.random(n) < 0.1, "age"] = np.nan
    frame.loc[rng.random(n) < 0.1, "ward"] = None
    path = tmp_path / "patients.csv"
    frame.to_csv(path, index=False)
    summary = _summary(tmp_path, "data=csv", f"data.path={path}", "data.label=outcome", "data.positive=died")
    assert summary["data"] == "patients" and summary["label"] == "outcome"
    assert summary["model_accuracy_mean"] > 0.85
    config = (tmp_path / "job" / "job.json").read_text()
    assert "data_checksum" in config and json.loads(config)["tags"]["data"] == "patients"


@pytest.mark.e2e
def test_your_own_data_commands_in_the_readme_run_as_written(tmp_path: Path) -> None:
    """Every ``python -m train data=csv ...`` line of the "Your own data" section (docs/data.md), from the repo
    root."""
    section = doc_section("data.md", "Your own data")
    commands = re.findall(r"^\.venv/bin/python -m train (data=csv .+)$", section, flags=re.MULTILINE)
    assert commands, "no data=csv command in the 'Your own data' section of docs/data.md"
    for number, line in enumerate(commands):
        overrides = [o for o in shlex.split(line) if not o.startswith(("method=", "cv.n_splits="))]
        result = run_train(tmp_path / str(number), *overrides, "method=tree", "cv.n_splits=3")
        assert result.returncode == 0, f"{line}\n{result.stderr[-3000:]}"


@pytest.mark.e2e
def test_a_data_problem_ends_the_command_with_one_line(tmp_path: Path) -> None:
    result = train_in_process(tmp_path, "data=csv", f"data.path={EXAMPLE_CSV}", "data.label=diagnosis")
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if "ERROR" in line]
    assert len(errors) == 1 and "data.positive" in errors[0] and "Traceback" not in result.stderr
