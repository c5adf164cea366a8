"""Concept data sets (MIMIC-II, synthetic, bundled public sets, your own table) and the cross-validation fold that feeds every explainer.

The Lightning data module is imported on first use, so loading or validating data (and the CLI's error path) does
not pay for importing PyTorch Lightning.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from lenbench.data.base import ConceptDataset, Fold, Refit, Refitted
from lenbench.data.bundled import load_breast_cancer, load_digits_addition, load_digits_parity
from lenbench.data.encoded import CONCEPT_SOURCES, EncoderSettings, concepts_from
from lenbench.data.errors import DataError
from lenbench.data.mimic import (
    FIT_SCOPES,
    FLAG_COLUMNS,
    LABELS,
    MIMIC_SHA256,
    MIMIC_URL,
    download_mimic,
    load_mimic,
    mimic_path,
)
from lenbench.data.synthetic import make_dnf, make_dot, make_trig, make_xor
from lenbench.data.table import TableOptions
from lenbench.data.table_file import load_table, table_dataset

if TYPE_CHECKING:
    from lenbench.data.split import fold_indices, split_fold

__all__ = [
    "CONCEPT_SOURCES",
    "FIT_SCOPES",
    "FLAG_COLUMNS",
    "LABELS",
    "MIMIC_SHA256",
    "MIMIC_URL",
    "ConceptDataset",
    "DataError",
    "EncoderSettings",
    "Fold",
    "Refit",
    "Refitted",
    "TableOptions",
    "concepts_from",
    "download_mimic",
    "fold_indices",
    "load_breast_cancer",
    "load_digits_addition",
    "load_digits_parity",
    "load_mimic",
    "load_table",
    "make_dnf",
    "make_dot",
    "make_trig",
    "make_xor",
    "mimic_path",
    "split_fold",
    "table_dataset",
]

_LAZY = {"fold_indices", "split_fold"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from lenbench.data import split  # deferred: it imports scikit-learn

        return getattr(split, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
