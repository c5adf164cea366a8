"""How a network's output becomes labels and class-1 scores: the head, kept with the network when it is exported.

The explainer predicts through its head and its exported model (:class:`~lenbench.models.network.NetworkModel`)
through the same object, so a logged model's labels and scores are the explainer's, bit for bit.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class ArgmaxHead:
    """One output per class: the label is the largest; the score its softmax (or the output, when the network
    outputs probabilities already)."""

    probabilities: bool = False

    def labels(self, output: torch.Tensor) -> np.ndarray:
        return output.argmax(dim=1).numpy()

    def scores(self, output: torch.Tensor) -> np.ndarray:
        probabilities = output if self.probabilities else torch.softmax(output, dim=1)
        return probabilities[:, 1].numpy()


@dataclass(frozen=True)
class ThresholdHead:
    """One sigmoid output, the probability of ``target_class``: that class above 0.5, the other one elsewhere."""

    target_class: int = 1

    def labels(self, output: torch.Tensor) -> np.ndarray:
        positive = output.squeeze(1).numpy() > 0.5
        return np.where(positive, self.target_class, 1 - self.target_class)

    def scores(self, output: torch.Tensor) -> np.ndarray:
        p = output.squeeze(1).numpy()
        return p if self.target_class == 1 else 1.0 - p
