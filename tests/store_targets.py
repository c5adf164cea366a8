"""Targets for ``python -m train ... method.explainer._target_=tests.store_targets.<name>`` in the tracking tests."""

from __future__ import annotations

import os
from pathlib import Path

from lenbench.explainers.tree import TreeExplainer


class DeletesStoreOnFold1(TreeExplainer):
    """The decision tree, which deletes the job's SQLite store (``$MLFLOW_TRACKING_URI``) as fold 1 starts
    training: the store goes away in the middle of the job, after fold 0 was logged."""

    def fit(self, fold):  # noqa: ANN001, ANN201
        if fold.index == 1:
            Path(os.environ["MLFLOW_TRACKING_URI"].removeprefix("sqlite:///")).unlink()
        return super().fit(fold)
