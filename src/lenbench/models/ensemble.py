"""The ensemble of a job's fold models (the parent run's model): majority vote, mean score, and which folds'
global formulas agree with the vote. Pure pandas on the folds' answers (:func:`lenbench.models.frames.explain_frame`).

Per row: ``predicted_class`` is the class most folds predict (a tie goes to class 1 when the folds' mean score is
above 0.5, else to class 0), ``score`` the folds' mean class-1 score, ``votes`` how many folds predict class 1,
``formula_fires`` whether most folds' formulas fire, ``formulas_agreeing`` how many folds' formulas agree with the
ensemble (fire exactly when it predicts the target class), and ``local_explanation`` the most frequent local
explanation among the folds that voted with the majority.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping

import numpy as np
import pandas as pd


def ensemble_frame(answers: Mapping[int, pd.DataFrame], target_class: int = 1) -> pd.DataFrame:
    """Combine the folds' answers (same rows, same order) into the ensemble's."""
    if not answers:
        raise ValueError("an ensemble needs at least one fold's answers")
    folds = list(answers.values())
    n_folds = len(folds)
    predicted = np.column_stack([a["predicted_class"].to_numpy() for a in folds])
    scores = np.column_stack([a["score"].to_numpy(dtype=np.float64) for a in folds])
    votes = (predicted == 1).sum(axis=1)
    mean_score = scores.mean(axis=1)
    tie_to_one = np.nan_to_num(mean_score, nan=0.0) > 0.5
    label = np.where(2 * votes > n_folds, 1, np.where(2 * votes < n_folds, 0, np.where(tie_to_one, 1, 0)))
    out = pd.DataFrame({"predicted_class": label.astype(np.int64), "score": mean_score, "votes": votes})
    explained = [a for a in folds if a["formula_fires"].notna().all()]
    if explained:
        fires = np.column_stack([a["formula_fires"].to_numpy(dtype=bool) for a in explained])
        out["formula_fires"] = 2 * fires.sum(axis=1) > len(explained)
        out["formulas_agreeing"] = (fires == (label == target_class)[:, None]).sum(axis=1)
    else:
        out["formula_fires"] = [None] * len(out)
        out["formulas_agreeing"] = 0
    local = np.column_stack([a["local_explanation"].to_numpy(dtype=object) for a in folds])
    out["local_explanation"] = [
        _most_common([text for text, p in zip(local[i], predicted[i], strict=True) if p == label[i] and text])
        for i in range(len(out))
    ]
    return out.set_axis(folds[0].index, axis=0)


def formula_agreement(formulas: Mapping[int, str]) -> list[tuple[str, list[int]]]:
    """The distinct global formulas of the folds, with the folds that share each, most shared first."""
    groups: dict[str, list[int]] = {}
    for fold, text in formulas.items():
        groups.setdefault(text, []).append(fold)
    return sorted(groups.items(), key=lambda item: (-len(item[1]), item[1][0]))


def _most_common(texts: list[str]) -> str:
    return Counter(texts).most_common(1)[0][0] if texts else ""
