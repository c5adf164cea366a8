"""Public data sets that install with scikit-learn (nothing is downloaded): ``data=breast_cancer``,
``data=digits_parity`` and ``data=digits_addition``.

- Breast cancer: scikit-learn's copy of the UCI Wisconsin Diagnostic Breast Cancer data (569 tumours, 30 cell
  nucleus measurements; original: UCI, CC BY 4.0; the bundled copy: scikit-learn, BSD-3-Clause). The measurements
  go through the same table machinery as ``data=csv`` (quantile bins, 3 per column: ``mean_radius_LOW`` ...); the
  label ``malignant`` is class 1 (scikit-learn's target is 0 = malignant).
- Digits parity: scikit-learn's copy of the test part of the UCI Optical Recognition of Handwritten Digits data
  (1797 8x8 images; original: UCI, CC BY 4.0). Concepts are the digit's identity one-hot (``zero`` .. ``nine``),
  the label is ``even``, so the true formula is ``zero | two | four | six | eight`` (``ground_truth``). The
  pixels are kept as ``inputs`` [1797, 8, 8] for pipelines that learn the concepts from them.
- Digits addition: the same digits, two side by side (MNIST-addition's setting, in 8x8): a seeded permutation of
  the 1797 images cut into pairs, so every image is in at most one row and no image can be in both the training
  and the test rows of any fold. Concepts are each digit's identity one-hot (``a_zero`` .. ``a_nine``, ``b_zero``
  .. ``b_nine``), the label is the carry, a + b >= 10 (``ground_truth``: 9 terms, ``a_i`` and any ``b_j`` with
  j >= 10 - i; 45 terms of two literals in DNF).

The checksum of each is the SHA-256 of the file scikit-learn ships.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lenbench.data.base import ConceptDataset
from lenbench.data.encoded import concepts_from as with_concepts_from
from lenbench.data.table import TableOptions
from lenbench.data.table_file import table_dataset
from lenbench.validation import is_int, refuse

logger = logging.getLogger(__name__)

DIGIT_NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
DIGITS_PARITY_FORMULA = "zero | two | four | six | eight"
DIGITS_ADDITION_PAIRS = 898  # 1797 images, each in at most one pair
CARRY = 10  # label of digits_addition: a + b >= CARRY
BREAST_CANCER_LABEL = "diagnosis"
BREAST_CANCER_POSITIVE = "malignant"


def load_breast_cancer(
    fit_scope: str = "train", binarize: str = "quantile", bins: int = 3, name: str = "breast_cancer"
) -> ConceptDataset:
    """569 tumours, 90 concepts (30 measurements x 3 quantile bins), label ``malignant`` (212 positives)."""
    return table_dataset(
        breast_cancer_frame(),
        "scikit-learn's bundled breast cancer data",
        label=BREAST_CANCER_LABEL,
        positive=BREAST_CANCER_POSITIVE,
        options=TableOptions(binarize=binarize, bins=bins, fit_scope=fit_scope),
        name=name,
        checksum=_bundled_sha256("breast_cancer.csv"),
    )


def breast_cancer_frame() -> pd.DataFrame:
    """The table as a data frame: 30 measurement columns (``mean_radius`` ...) and ``diagnosis``
    (``malignant``/``benign``), the layout of ``examples/breast_cancer.csv`` (see :func:`export_breast_cancer`)."""
    from sklearn.datasets import load_breast_cancer as sklearn_breast_cancer

    bunch = sklearn_breast_cancer()
    columns = [re.sub(r"\W+", "_", str(n).strip()) for n in bunch.feature_names]
    frame = pd.DataFrame(bunch.data, columns=columns)
    frame[BREAST_CANCER_LABEL] = np.where(bunch.target == 0, "malignant", "benign")
    return frame


def export_breast_cancer(path: str | Path) -> Path:
    """Write :func:`breast_cancer_frame` as a CSV (how ``examples/breast_cancer.csv`` was made)."""
    path = Path(path)
    breast_cancer_frame().to_csv(path, index=False)
    return path


def load_digits_parity(
    name: str = "digits_parity", concepts_from: str = "truth", encoder: Mapping[str, Any] | None = None
) -> ConceptDataset:
    """1797 digits, concepts ``zero`` .. ``nine`` (one-hot identity), label ``even`` (class 1 = even digit).

    ``concepts_from="encoder"`` (the config's default) predicts the concepts from the 64 pixels per fold with a
    concept encoder set by ``encoder`` (:mod:`lenbench.data.encoded`); ``"truth"`` uses the true identities."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    digits = np.asarray(bunch.target, dtype=np.intp)
    x = np.eye(len(DIGIT_NAMES), dtype=np.float32)[digits]
    y = (digits % 2 == 0).astype(np.int64)
    logger.info("Loaded %s: %d digits, label even with %d positives", name, y.size, int(y.sum()))
    dataset = ConceptDataset(
        name=name,
        x=x,
        y=y,
        concept_names=list(DIGIT_NAMES),
        label="even",
        ground_truth=DIGITS_PARITY_FORMULA,
        checksum=_bundled_sha256("digits.csv.gz"),
        inputs=np.asarray(bunch.images, dtype=np.float32),
    )
    return with_concepts_from(dataset, concepts_from, encoder)


def carry_formula(threshold: int = CARRY) -> str:
    """a + b >= ``threshold`` over the one-hot concepts: ``(a_i & (b_j | ...))`` for each i, the b_j with
    j >= threshold - i (a term per first digit that can reach it; 9 terms for 10, 45 pairs once expanded)."""
    terms = []
    for i, first in enumerate(DIGIT_NAMES):
        seconds = [f"b_{name}" for j, name in enumerate(DIGIT_NAMES) if i + j >= threshold]
        if len(seconds) == 1:
            terms.append(f"(a_{first} & {seconds[0]})")
        elif seconds:
            terms.append(f"(a_{first} & ({' | '.join(seconds)}))")
    return " | ".join(terms)


def load_digits_addition(
    name: str = "digits_addition",
    n_samples: int = DIGITS_ADDITION_PAIRS,
    seed: int = 0,
    concepts_from: str = "truth",
    encoder: Mapping[str, Any] | None = None,
) -> ConceptDataset:
    """``n_samples`` pairs of digits side by side (inputs [n, 8, 16]), concepts ``a_zero`` .. ``b_nine`` (each
    digit's identity, one-hot), label ``sum_ge_10`` (the carry of a + b).

    Pair i is images 2i and 2i + 1 of a permutation seeded by ``seed`` (fewer pairs: a prefix): no image is used
    twice, so a fold's test rows never show an image its encoder trained on (reused images would let the
    encoder recognise memorised pixels). ``concepts_from``, ``encoder``: as :func:`load_digits_parity`."""
    if not is_int(n_samples) or not 10 <= n_samples <= DIGITS_ADDITION_PAIRS:
        refuse(
            None,
            "n_samples",
            n_samples,
            f"an integer in [10, {DIGITS_ADDITION_PAIRS}] (each image in one pair)",
        )
    from sklearn.datasets import load_digits

    bunch = load_digits()
    order = np.random.default_rng(seed).permutation(len(bunch.target))
    first, second = order[0 : 2 * n_samples : 2], order[1 : 2 * n_samples : 2]
    digits = np.asarray(bunch.target, dtype=np.intp)
    one_hot = np.eye(len(DIGIT_NAMES), dtype=np.float32)
    x = np.hstack([one_hot[digits[first]], one_hot[digits[second]]])
    y = (digits[first] + digits[second] >= CARRY).astype(np.int64)
    images = np.asarray(bunch.images, dtype=np.float32)
    logger.info("Loaded %s: %d pairs, label sum_ge_10 with %d positives", name, y.size, int(y.sum()))
    dataset = ConceptDataset(
        name=name,
        x=x,
        y=y,
        concept_names=[f"{side}_{n}" for side in "ab" for n in DIGIT_NAMES],
        label="sum_ge_10",
        ground_truth=carry_formula(),
        checksum=_bundled_sha256("digits.csv.gz"),
        inputs=np.concatenate([images[first], images[second]], axis=2),
    )
    return with_concepts_from(dataset, concepts_from, encoder)


def _bundled_sha256(filename: str) -> str:
    return hashlib.sha256(
        resources.files("sklearn.datasets.data").joinpath(filename).read_bytes()
    ).hexdigest()
