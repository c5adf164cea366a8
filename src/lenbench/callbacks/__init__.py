"""Lightning callbacks for the network explainers: regularisers and pruning schedules, listed in method configs.

``base``: what the explainers ask of a callback (the networks it acts on, penalties, reports); ``l1``, ``entropy``: the
regularisers; ``pruning``: the pruning schedules (:mod:`lenbench.nn.weights` keeps pruned networks pruned).
"""

from lenbench.callbacks.base import Regulariser, Reports, fit_report, training_networks
from lenbench.callbacks.entropy import EntropyPenalty
from lenbench.callbacks.l1 import L1Regularization
from lenbench.callbacks.pruning import FanInPruning, FeaturePruning

__all__ = [
    "EntropyPenalty",
    "FanInPruning",
    "FeaturePruning",
    "L1Regularization",
    "Regulariser",
    "Reports",
    "fit_report",
    "training_networks",
]
