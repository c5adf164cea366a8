"""Concept embedding model (Espinosa Zarlenga et al., NeurIPS 2022): raw inputs -> one embedding per concept -> task.

The network is :class:`EmbeddingModel`: an input encoder (inputs standardised with the training rows' statistics,
Linear+LeakyReLU per width of ``hidden``), torch_explain's ``ConceptEmbedding`` (per concept, a positive and a
negative embedding of size ``embedding_size`` and the concept's probability; the concept's embedding is their mix
by that probability) and a reader of the embeddings: here a task head (ReLU layers ``head_hidden``, then Linear) on
the concatenated concept embeddings. One loss, as the paper: task cross-entropy + ``concept_loss_weight`` x concept
BCE. Training uses ConceptEmbedding's random interventions (the paper's RandInt, probability
``training_intervention_prob``, 0.25 in the paper): at each forward pass in training it draws, per concept, whether
that concept's probability is replaced by its true value in the embedding mix; torch_explain draws one such mask
per batch, so with lenbench's full-batch training one mask per epoch for all rows. Its network therefore trains on
the rows [inputs | true concepts] of the train+validation rows (:class:`WithTruth`); it predicts from inputs only.

Concept probabilities are ConceptEmbedding's scores; an intervention goes through ConceptEmbedding's own mechanism
(``intervention_idxs`` with the true values ``c``), once per group of rows with the same mask.

CEM has no global explanation of its own: its head reads embeddings, so its decision is not a function of the
concepts. What lenbench gives it is cbm's truth-table read-out (:func:`lenbench.explainers.cbm.truth_table_reading`)
over the validation rows' predicted concepts, each distinct assignment decided by the *majority of CEM's
predictions* on the rows showing it (:func:`lenbench.logic.extract.truth_table.majority_decisions`), minimised; its
fidelity on the test rows says how far CEM is from a function of its concepts. :mod:`lenbench.explainers.dcr` reads
the same embeddings with a deep concept reasoner instead.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from torch_explain.nn import ConceptEmbedding

from lenbench.data.base import Fold
from lenbench.explainers.cbm import JointLoss, truth_table_reading
from lenbench.explainers.raw_inputs import ConceptModelExplainer, n_classes
from lenbench.logic.extract.truth_table import majority_decisions
from lenbench.logic.formula import Formula
from lenbench.nn.encoder import mlp, perceptron
from lenbench.validation import check_int, check_positive, check_unit, check_widths

Loss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class FlatHead(nn.Module):
    """CEM's task head: an MLP on the concept embeddings [n, k, e] concatenated ([n, k * e])."""

    def __init__(self, mlp_layers: nn.Module) -> None:
        super().__init__()
        self.mlp = mlp_layers

    def forward(self, embeddings: torch.Tensor, probabilities: torch.Tensor) -> torch.Tensor:
        return self.mlp(embeddings.flatten(1))


class EmbeddingModel(nn.Module):
    """inputs -> encoder -> ConceptEmbedding -> ``reader(embeddings, probabilities)`` -> task output."""

    def __init__(self, encoder: nn.Module, embedding: ConceptEmbedding, reader: nn.Module) -> None:
        super().__init__()
        self.encoder, self.embedding, self.reader = encoder, embedding, reader

    def concepts(
        self, x: torch.Tensor, truth: torch.Tensor | None = None, mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(embeddings [n, k, e], probabilities [n, k]) of rows ``x``; where ``mask`` is True the concept takes the
        value of ``truth`` (ConceptEmbedding's intervention, which names concepts for a whole batch: called once
        per distinct mask row). The probabilities returned are the intervened ones."""
        latent = self.encoder(x)
        if mask is None:
            return self.embedding(latent)
        embeddings = latent.new_empty((len(x), mask.shape[1], self.embedding.emb_size))
        probabilities = torch.empty_like(truth)
        patterns, group = torch.unique(mask, dim=0, return_inverse=True)
        for g, pattern in enumerate(patterns):
            rows = torch.nonzero(group == g).ravel()
            chosen = torch.nonzero(pattern).ravel().tolist()
            embeddings[rows], predicted = self.embedding(
                latent[rows], intervention_idxs=chosen, c=truth[rows]
            )
            probabilities[rows] = torch.where(pattern, truth[rows], predicted)
        return embeddings, probabilities

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.reader(*self.concepts(x))

    def intervened(self, x: torch.Tensor, truth: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The task output when the concepts where ``mask`` is True take the values of ``truth``."""
        return self.reader(*self.concepts(x, truth, mask))


class WithTruth(nn.Module):
    """The training view of an :class:`EmbeddingModel`: rows [inputs | true concepts] -> [concept probabilities |
    task output]. The true concepts reach only ConceptEmbedding's random training interventions (in training mode;
    never in eval mode)."""

    def __init__(self, model: EmbeddingModel, n_concepts: int) -> None:
        super().__init__()
        self.model, self.n_concepts = model, n_concepts

    def forward(self, rows: torch.Tensor) -> torch.Tensor:
        x, truth = rows[:, : -self.n_concepts], rows[:, -self.n_concepts :]
        model = self.model
        embeddings, probabilities = model.embedding(model.encoder(x), c=truth, train=self.training)
        return torch.cat([probabilities, model.reader(embeddings, probabilities)], dim=1)


class EmbeddingExplainer(ConceptModelExplainer):
    """What the concept models on ConceptEmbedding share (cem, dcr): the network, its training, the concepts and
    interventions; subclasses give the reader of the embeddings (:meth:`reader`), its task loss and ``explain``."""

    name = "concept_embeddings"
    task_loss: ClassVar[Loss] = staticmethod(F.cross_entropy)

    def __init__(
        self,
        *,
        hidden: Sequence[int] = (32,),
        embedding_size: int = 16,
        concept_loss_weight: float = 1.0,
        training_intervention_prob: float = 0.25,
        **settings: Any,
    ) -> None:
        owner = type(self).__name__
        self.hidden = check_widths(owner, "hidden", hidden)
        self.embedding_size = check_int(owner, "embedding_size", embedding_size, 1)
        self.concept_loss_weight = check_positive(
            owner, "concept_loss_weight", concept_loss_weight, allow_zero=True
        )
        self.training_intervention_prob = check_unit(
            owner, "training_intervention_prob", training_intervention_prob, low_open=False
        )
        super().__init__(**settings)

    @abstractmethod
    def reader(self, n_concepts: int, classes: int) -> nn.Module:
        """The module reading ``(embeddings, probabilities)`` into the task output (built after the seed is set)."""

    def trained_network(self, fold: Fold) -> nn.Module:
        inputs, concepts, y = fold.inputs_trainval, fold.x_trainval, fold.y_trainval
        k = concepts.shape[1]
        self.seeded()
        encoder = nn.Sequential(*mlp(inputs, self.hidden[-1], self.hidden[:-1], self.dtype), nn.LeakyReLU())
        embedding = ConceptEmbedding(
            self.hidden[-1],
            k,
            self.embedding_size,
            training_intervention_prob=self.training_intervention_prob,
        )
        model = EmbeddingModel(encoder, embedding, self.reader(k, n_classes(y))).to(self.dtype)
        loss = JointLoss(k, self.concept_loss_weight, F.binary_cross_entropy, self.task_loss)
        rows = np.column_stack([inputs, concepts > 0.5])
        targets = self.tensor(np.column_stack([concepts > 0.5, y]))
        return self.train_stage("joint", WithTruth(model, k), loss, rows, targets).model

    def task_logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.network(x)

    @torch.no_grad()
    def concept_probabilities(self, x: np.ndarray) -> np.ndarray:
        return self.network.concepts(self.tensor(x))[1].numpy().astype(np.float64)


class ConceptEmbeddingExplainer(EmbeddingExplainer):
    """A concept embedding model on raw inputs, explained by the truth table of its predictions over its predicted
    concepts (module docstring: CEM has no global explanation of its own)."""

    name = "cem"

    def __init__(self, *, head_hidden: Sequence[int] = (16,), **settings: Any) -> None:
        self.head_hidden = check_widths(type(self).__name__, "head_hidden", head_hidden)
        super().__init__(**settings)

    def reader(self, n_concepts: int, classes: int) -> nn.Module:
        layers = perceptron(n_concepts * self.embedding_size, classes, self.head_hidden)
        return FlatHead(nn.Sequential(*layers))

    @torch.no_grad()
    def explain(self, fold: Fold, target_class: int = 1) -> Formula:
        """The majority of CEM's predictions per predicted concept assignment of the validation rows, minimised."""
        x = fold.inputs_val
        decided = self.predict(x) == target_class
        assignments, decisions = majority_decisions(self.predict_concepts(x), decided)
        formula, record = truth_table_reading(assignments, decisions, fold.concept_names, self.budget)
        self._info |= record
        return formula
