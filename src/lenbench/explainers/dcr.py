"""Deep concept reasoner (Barbiero et al., ICML 2023): per-row fuzzy rules over concepts, built from concept
embeddings, executed on the concepts' truth values.

The network is :class:`~lenbench.explainers.cem.EmbeddingModel` with the reader replaced: raw inputs -> the input
encoder -> torch_explain's ``ConceptEmbedding`` (CEM's embeddings, as the paper does) -> torch_explain's
``ConceptReasoningLayer``, which, per row and class, reads from each concept's embedding a *relevance* (filter) and a
*sign* (polarity) and evaluates the rule "AND of the relevant concepts with their signs" on the concepts' truth
values under the Goedel t-norm (``temperature`` sharpens the relevance). Its output per class is that rule's truth
degree; loss: BCE of those degrees against the one-hot label + ``concept_loss_weight`` x concept BCE, the weight 2 of
torch_explain's DCR example (concept loss + 0.5 x task loss). Why not 1: the task loss then bends the concepts
towards rules that fit the label (trig, 10 folds: concept accuracy 0.896, every positive row explained by
``h1_pos & h2_pos & h3_pos``, the true formula never recovered; with 2: 0.98 to 0.99 and recovered). DCR's code calls
ConceptEmbedding without its training interventions, hence ``training_intervention_prob`` 0 by default. Labels are
the class of largest degree (scores: class 1's share of the two degrees). An intervention replaces the concepts'
truth values the rules read and their embeddings (ConceptEmbedding's mechanism, :meth:`EmbeddingModel.concepts`).

Explanations. Each validation row's rule for each class it predicts (degree > 0.5) is read with the layer's own
``explain`` (a conjunction of the relevant concepts, negated where the sign is negative); because the Goedel AND is
the minimum, such a rule is true on the row's thresholded concepts. The global formula of a class is what the paper
and torch_explain's ``explain(mode="global")`` aggregate: the class's distinct per-row rules counted over the
validation rows, of which the ``max_rules`` most frequent (ties: first seen) are OR-ed and minimised. Its fidelity to
DCR's predictions on the test rows is scored like every formula (``explanation_fidelity``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from torch_explain.nn.concepts import ConceptReasoningLayer

from lenbench.data.base import Fold
from lenbench.explainers.cem import EmbeddingExplainer, Loss
from lenbench.logic.formula import Formula
from lenbench.logic.simplify import simplify
from lenbench.validation import check_int, check_positive


def one_hot_bce(degrees: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """BCE of each class's rule degree [n, classes] against the one-hot labels: every class's rule is trained to be
    true on its rows and false elsewhere."""
    return F.binary_cross_entropy(degrees, F.one_hot(labels, degrees.shape[1]).to(degrees.dtype))


class Reasoner(nn.Module):
    """torch_explain's ConceptReasoningLayer as a reader of ``(embeddings, truth values)``, in their dtype (the
    layer returns float32)."""

    def __init__(self, layer: ConceptReasoningLayer) -> None:
        super().__init__()
        self.layer = layer

    def forward(self, embeddings: torch.Tensor, probabilities: torch.Tensor) -> torch.Tensor:
        return self.layer(embeddings, probabilities).to(embeddings.dtype)


def parse_rule(rule: str, names: Sequence[str]) -> Formula:
    """The conjunction of a rule of ``ConceptReasoningLayer.explain`` over concept indices (``0 & ~3``; empty:
    true) with the concepts' names."""
    literals = [part.strip() for part in rule.split("&") if part.strip()]
    return Formula.conjunction([(names[int(lit.lstrip("~"))], lit.startswith("~")) for lit in literals])


class DeepConceptReasonerExplainer(EmbeddingExplainer):
    """A deep concept reasoner on concept embeddings, explained by its most frequent per-row rules (module
    docstring)."""

    name = "dcr"
    task_loss: ClassVar[Loss] = staticmethod(one_hot_bce)

    def __init__(
        self,
        *,
        temperature: float = 100.0,
        max_rules: int = 10,
        concept_loss_weight: float = 2.0,
        training_intervention_prob: float = 0.0,
        **settings: Any,
    ) -> None:
        owner = type(self).__name__
        self.temperature = check_positive(owner, "temperature", temperature)
        self.max_rules = check_int(owner, "max_rules", max_rules, 1)
        super().__init__(
            concept_loss_weight=concept_loss_weight,
            training_intervention_prob=training_intervention_prob,
            **settings,
        )

    def reader(self, n_concepts: int, classes: int) -> nn.Module:
        return Reasoner(ConceptReasoningLayer(self.embedding_size, classes, temperature=self.temperature))

    def task_logits(self, x: torch.Tensor) -> torch.Tensor:
        """The log of each class's rule degree: its argmax is the label, its softmax each class's share."""
        degrees = self.network(x)
        return torch.log(degrees.clamp_min(torch.finfo(degrees.dtype).tiny))

    @torch.no_grad()
    def row_rules(self, x: np.ndarray, names: Sequence[str]) -> list[tuple[int, int, Formula]]:
        """(row, class, rule) for each row of raw inputs ``x`` and each class whose rule it satisfies (degree >
        0.5), read by ConceptReasoningLayer.explain (mode ``local``)."""
        embeddings, probabilities = self.network.concepts(self.tensor(x))
        layer = self.network.reader.layer
        concepts, classes = [str(i) for i in range(len(names))], [str(c) for c in range(layer.n_classes)]
        return [
            (int(entry["sample-id"]), int(entry["class"]), parse_rule(entry["explanation"], names))
            for entry in layer.explain(embeddings, probabilities, "local", concepts, classes)
            if entry["class"] != -1
        ]

    def explain(self, fold: Fold, target_class: int = 1) -> Formula:
        """The ``max_rules`` most frequent per-row rules of the class on the validation rows, OR-ed, minimised."""
        rules = [
            rule for _, c, rule in self.row_rules(fold.inputs_val, fold.concept_names) if c == target_class
        ]
        counts = Counter(rules)
        kept = [rule for rule, _ in counts.most_common(self.max_rules)]  # ties: first seen first
        result = simplify(Formula.disjunction(kept) if kept else Formula.false(), *self.budget)
        self._info |= {
            "rules_distinct": len(counts),
            "rules_kept": len(kept),
            "rows_covered_by_kept": sum(counts[rule] for rule in kept),
            "rows_with_rule": len(rules),
            "simplify_exact": result.exact,
            "simplify_method": result.method,
        }
        return result.formula
