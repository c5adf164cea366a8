"""Lightning callbacks for the network explainers: regularisers and pruning schedules, listed in method configs."""

from lenbench.callbacks.l1 import L1Regularization
from lenbench.callbacks.pruning import (
    EpochEndCallback,
    FanInPruning,
    FeaturePruning,
    load_pruned_state_dict,
    restore_pruning,
)

__all__ = [
    "EpochEndCallback",
    "FanInPruning",
    "FeaturePruning",
    "L1Regularization",
    "load_pruned_state_dict",
    "restore_pruning",
]
