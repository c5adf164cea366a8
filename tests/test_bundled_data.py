"""``data=breast_cancer``, ``data=digits_parity``, ``data=digits_addition`` (installed with scikit-learn) and
``data=csv``: the loaders in process, ``python -m train`` on each, exit 0 and sensible accuracies; the "Your own data"
commands of docs/data.md as written."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers import REPO, doc_section, run_train, train_in_process
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from lenbench.data.bundled import (
    DIGIT_NAMES,
    DIGITS_PARITY_FORMULA,
    breast_cancer_frame,
    load_breast_cancer,
    load_digits_addition,
    load_digits_parity,
)
from lenbench.data.table_file import load_table
from lenbench.errors import ConfigError
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


def _digit_pairs(data: object) -> tuple[np.ndarray, np.ndarray]:
    """(a, b): the digit of each row's left and right half, read from the one-hot concepts."""
    return data.x[:, :10].argmax(axis=1), data.x[:, 10:].argmax(axis=1)


def test_digits_addition_pairs_two_digits_and_labels_their_carry() -> None:
    from sklearn.datasets import load_digits

    data = load_digits_addition()
    assert data.name == "digits_addition" and data.label == "sum_ge_10"
    assert data.concept_names == [f"a_{n}" for n in DIGIT_NAMES] + [f"b_{n}" for n in DIGIT_NAMES]
    assert data.x.shape == (898, 20) and (data.x[:, :10].sum(axis=1) == 1).all()
    assert (data.x[:, 10:].sum(axis=1) == 1).all()
    a, b = _digit_pairs(data)
    np.testing.assert_array_equal(data.y, (a + b >= 10).astype(np.int64))
    assert int(data.y.sum()) == 405  # 0.451 positives (0.45 for uniform digits)
    # Each row is two bundled images side by side, showing the digits its concepts name.
    bunch = load_digits()
    assert data.inputs is not None and data.inputs.shape == (898, 8, 16)
    images = {}
    for index, image in enumerate(bunch.images):
        images.setdefault(image.astype(np.float32).tobytes(), []).append(index)
    halves = [(data.inputs[i, :, :8], a[i]) for i in range(898)] + [
        (data.inputs[i, :, 8:], b[i]) for i in range(898)
    ]
    used: dict[bytes, int] = {}
    for half, digit in halves:
        key = np.ascontiguousarray(half).tobytes()
        assert key in images and bunch.target[images[key][0]] == digit
        used[key] = used.get(key, 0) + 1
    # No image in two rows (a pixel-identical copy only as often as the data holds it): no fold can test on an
    # image its encoder trained on.
    assert all(count <= len(images[key]) for key, count in used.items())


def test_digits_addition_truth_is_the_carry_and_stays_small() -> None:
    data = load_digits_addition()
    truth = Formula.parse(data.ground_truth)
    np.testing.assert_array_equal(truth.evaluate(data.x, data.concept_names), data.y == 1)
    assert len(truth.terms) == 45 and truth.complexity == 90  # the DNF: every pair (i, j) with i + j >= 10
    assert "a_zero" not in truth.concepts and "b_zero" not in truth.concepts and len(truth.concepts) == 18
    assert len((~truth).terms) == 10  # class 0's truth, the negation: 10 terms after absorption
    # On every assignment of the cube, not only one-hot rows: the truth is a threshold on the two digits.
    for i, j in [(1, 9), (9, 1), (5, 5), (4, 5), (0, 9), (9, 0)]:
        row = np.zeros((1, 20), np.float32)
        row[0, i], row[0, 10 + j] = 1.0, 1.0
        assert truth.evaluate(row, data.concept_names)[0] == (i + j >= 10)


def test_digits_addition_is_deterministic_per_seed_and_checks_its_size() -> None:
    first, again, other = load_digits_addition(), load_digits_addition(), load_digits_addition(seed=1)
    np.testing.assert_array_equal(first.inputs, again.inputs)
    np.testing.assert_array_equal(first.x, again.x)
    assert not np.array_equal(first.x, other.x)
    small = load_digits_addition(n_samples=100)
    np.testing.assert_array_equal(small.x, first.x[:100])  # the first pairs of the same permutation
    for bad in (9, 899, 2.5):
        with pytest.raises(ConfigError, match=r"n_samples must be an integer in \[10, 898\]"):
            load_digits_addition(n_samples=bad)
    # The shipped config: concepts from the 128 pixels by its encoder, the true ones kept for concept accuracy.
    import train  # noqa: F401  (registers the train_schema config)

    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=["task=digits_addition", "seed=3"])
    encoded = instantiate(cfg.data)
    assert encoded.concepts_predicted and encoded.refit.inputs.shape == (898, 128) and cfg.cv.n_splits == 5
    assert encoded.refit.settings.hidden == (64,) and encoded.refit.settings.weight_decay == 1e-3
    assert encoded.refit.settings.seed == 3  # the job's seed
    np.testing.assert_array_equal(encoded.x, first.x)


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
