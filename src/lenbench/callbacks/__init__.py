"""Lightning callbacks for the network explainers: regularisers and pruning schedules, listed in method configs.

``base``: what the explainers ask of a callback (protocol epochs, penalties, reports); ``l1``, ``entropy``: the
regularisers; ``pruning``: the pruning schedules and the helpers that keep pruned networks pruned.
"""

from lenbench.callbacks.base import EpochEndCallback, Regulariser, Reports, fit_report
from lenbench.callbacks.entropy import EntropyPenalty
from lenbench.callbacks.l1 import L1Regularization
from lenbench.callbacks.pruning import (
    FanInPruning,
    FeaturePruning,
    load_pruned_state_dict,
    restore_pruning,
)

__all__ = [
    "EntropyPenalty",
    "EpochEndCallback",
    "FanInPruning",
    "FeaturePruning",
    "L1Regularization",
    "Regulariser",
    "Reports",
    "fit_report",
    "load_pruned_state_dict",
    "restore_pruning",
]
