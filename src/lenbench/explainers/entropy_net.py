"""Entropy-based Logic Explained Network (method ``entropy``; Barbiero et al., AAAI 2022).

The network's first layer, :class:`EntropyLinear`, holds one weight matrix per class. Its *concept attention* for
class c is a softmax (temperature T) over the inputs of the L1 norms of their weight columns, ``gamma[c, j] =
sum_h |W[c, h, j]|``; divided by its maximum it scales the inputs (so the network learns to lean on few concepts),
and its values above 0.5 are the *concept mask* of class c: the concepts an explanation of c may use. An entropy
penalty on the attention (callback :class:`EntropyPenalty`, weight in the method config) pushes it towards few
concepts. Then LeakyReLU, optional hidden layers, and a Linear(h, 1) applied to each class's units, giving one
logit per class, trained with cross-entropy.

Explanation of class t (``explain``): each row of class t that the model classifies correctly, once booleanised
(``x > 0.5``), gives a local explanation, the AND of the masked concepts with that row's values; it is simplified
by dropping literals (least attended first) while its accuracy on the correctly classified rows of both classes
does not fall. The ``topk`` most frequent local explanations are ranked by accuracy on the validation rows and
OR-ed greedily: a candidate joins when the simplified OR is more accurate on those rows than the best so far (as
the reference aggregates). Simplification is bounded (:func:`lenbench.logic.simplify.simplify`); fall-backs are
recorded.

Differences from the authors' code (``entropy-lens``), each deliberate and documented in the README:

- training is full-batch (one optimiser step per epoch); the reference used batches of half the data set, i.e.
  two steps per epoch on MIMIC-II;
- "correctly classified" is the argmax of the logits; the reference compared the raw target logit with 0.5;
- ``selection: frequency`` (default, the issue's protocol) picks the most frequent local explanations;
  ``selection: accuracy`` picks the most accurate on the ranking rows, as the reference did;
- the reference's MIMIC-II script passed its data loaders in swapped order, so it built local explanations on the
  validation rows and ranked them on the training rows; ``explain_rows``/``rank_rows`` choose (default: build on
  training rows, rank on validation rows).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from torch import nn

from lenbench.data.base import Fold
from lenbench.explainers.network import NetworkExplainer, check_choice, check_positive
from lenbench.logic.formula import Formula, Literal
from lenbench.logic.simplify import MAX_EXACT_VARIABLES, simplify

logger = logging.getLogger(__name__)

ROW_SETS = ("train", "val", "trainval")
SELECTIONS = ("frequency", "accuracy")
LEAKY_SLOPE = 0.01


class EntropyLinear(nn.Module):
    """Per-class linear map whose inputs are scaled by the class's concept attention.

    ``weight`` is [n_classes, out_features, in_features], ``bias`` [n_classes, 1, out_features]; the output of
    ``x`` [n, in] is [n, n_classes, out]. Initialised as the reference does (Kaiming-uniform with a = sqrt(5) on
    the 3-D weight, whose fan-in PyTorch computes as out * in, so the initial weights are small).
    """

    def __init__(self, in_features: int, out_features: int, n_classes: int, temperature: float) -> None:
        super().__init__()
        check_positive("EntropyLinear", "in_features", in_features, integer=True)
        check_positive("EntropyLinear", "out_features", out_features, integer=True)
        check_positive("EntropyLinear", "n_classes", n_classes, integer=True)
        check_positive("EntropyLinear", "temperature", temperature)
        self.in_features = in_features
        self.out_features = out_features
        self.n_classes = n_classes
        self.temperature = float(temperature)
        self.weight = nn.Parameter(torch.empty(n_classes, out_features, in_features))
        self.bias = nn.Parameter(torch.empty(n_classes, 1, out_features))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        fan_in, _ = nn.init._calculate_fan_in_and_fan_out(self.weight)
        bound = 1 / math.sqrt(fan_in)
        nn.init.uniform_(self.bias, -bound, bound)

    def gamma(self) -> torch.Tensor:
        """L1 norm of each input's weight column, per class: [n_classes, in]."""
        return self.weight.abs().sum(dim=1)

    def attention(self) -> torch.Tensor:
        """alpha = softmax(gamma / T) over the inputs, per class: [n_classes, in], rows sum to 1."""
        return torch.softmax(self.gamma() / self.temperature, dim=1)

    def normalized_attention(self) -> torch.Tensor:
        """alpha divided by its per-class maximum: the factor each input is scaled by, in (0, 1]."""
        alpha = self.attention()
        return alpha / alpha.max(dim=1, keepdim=True).values

    def concept_mask(self) -> torch.Tensor:
        """The concepts an explanation of each class may use: normalised attention > 0.5, [n_classes, in]."""
        return self.normalized_attention() > 0.5

    def entropy(self) -> torch.Tensor:
        """Sum over classes of the entropy of the attention, -sum alpha log alpha (the penalised quantity)."""
        log_alpha = torch.log_softmax(self.gamma() / self.temperature, dim=1)
        return -(log_alpha.exp() * log_alpha).sum()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scaled = x.unsqueeze(0) * self.normalized_attention().unsqueeze(1)  # [C, n, in]
        out = scaled.matmul(self.weight.transpose(1, 2)) + self.bias  # [C, n, out]
        return out.permute(1, 0, 2)

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, n_classes={self.n_classes}, "
            f"temperature={self.temperature}"
        )


class _SqueezeLast(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.squeeze(-1)


def entropy_layers(module: nn.Module) -> list[EntropyLinear]:
    return [m for m in module.modules() if isinstance(m, EntropyLinear)]


class EntropyPenalty(pl.Callback):
    """Adds the gradient of ``strength * entropy(attention)`` of every EntropyLinear layer after backward.

    The same update as adding the penalty to the loss (gradients add), kept out of the network code like the L1
    callback, so the regulariser is listed (and can be turned off) in the method config.
    """

    def __init__(self, strength: float) -> None:
        if isinstance(strength, bool) or not isinstance(strength, (int, float)) or not strength >= 0:
            raise ValueError(f"EntropyPenalty strength={strength!r}: must be a number >= 0 (0 turns it off)")
        self.strength = float(strength)

    def __repr__(self) -> str:
        return f"EntropyPenalty(strength={self.strength})"

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if not entropy_layers(pl_module):
            raise ValueError(f"EntropyPenalty: {type(pl_module).__name__} has no EntropyLinear layer")

    def apply_gradient(self, module: nn.Module) -> None:
        if self.strength == 0.0:
            return
        for layer in entropy_layers(module):
            with torch.enable_grad():
                (grad,) = torch.autograd.grad(self.strength * layer.entropy(), layer.weight)
            if layer.weight.grad is None:
                layer.weight.grad = grad
            else:
                layer.weight.grad.add_(grad)

    def on_after_backward(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.apply_gradient(pl_module)

    @torch.no_grad()
    def penalty(self, module: nn.Module) -> float:
        return self.strength * sum(float(layer.entropy()) for layer in entropy_layers(module))


class EntropyNetExplainer(NetworkExplainer):
    """Entropy-based LEN: ``EntropyLinear(k, hidden[0]) - LeakyReLU - [Linear - LeakyReLU]* - Linear(h, 1)`` per
    class, cross-entropy on the per-class logits, explained from its concept masks (see the module docstring).

    ``train_rows``: rows the network is trained on (``train``, as the paper; ``trainval``, as the notebook's
    networks). ``explain_rows``/``rank_rows``: rows the local explanations come from / the candidates are ranked
    and aggregated on. ``topk``: candidates aggregated; ``selection``: how they are picked; ``simplify_local``:
    drop literals from local explanations; ``max_literals``: keep at most that many most-attended concepts per
    local explanation (null: all masked ones).
    """

    name = "entropy"

    def __init__(
        self,
        *,
        seed: int,
        trainer: Mapping[str, Any] | None = None,
        hidden: Sequence[int] = (20,),
        temperature: float = 0.7,
        epochs: int = 200,
        lr: float = 1e-2,
        optimizer: str = "adamw",
        weight_decay: float = 0.01,
        callbacks: Sequence[pl.Callback] = (),
        train_rows: str = "train",
        explain_rows: str = "train",
        rank_rows: str = "val",
        topk: int = 10,
        selection: str = "frequency",
        simplify_local: bool = True,
        max_literals: int | None = None,
        max_simplify_variables: int = 10,
        max_simplify_terms: int = 64,
    ) -> None:
        owner = type(self).__name__
        check_positive(owner, "temperature", temperature)
        check_positive(owner, "topk", topk, integer=True)
        for key, value in (
            ("train_rows", train_rows),
            ("explain_rows", explain_rows),
            ("rank_rows", rank_rows),
        ):
            check_choice(owner, key, value, ROW_SETS)
        check_choice(owner, "selection", selection, SELECTIONS)
        if max_literals is not None:
            check_positive(owner, "max_literals", max_literals, integer=True)
        check_positive(owner, "max_simplify_variables", max_simplify_variables, integer=True, allow_zero=True)
        if max_simplify_variables > MAX_EXACT_VARIABLES:
            raise ValueError(
                f"{owner} max_simplify_variables={max_simplify_variables}: must be <= {MAX_EXACT_VARIABLES}"
            )
        check_positive(owner, "max_simplify_terms", max_simplify_terms, integer=True, allow_zero=True)
        if not isinstance(simplify_local, bool):
            raise ValueError(f"{owner} simplify_local={simplify_local!r}: must be true or false")
        sizes = list(hidden)
        if not sizes or any(isinstance(h, bool) or not isinstance(h, int) or h < 1 for h in sizes):
            raise ValueError(f"{owner} hidden={hidden!r}: must be a non-empty list of layer widths >= 1")
        super().__init__(
            seed=seed,
            trainer=trainer,
            epochs=epochs,
            lr=lr,
            optimizer=optimizer,
            weight_decay=weight_decay,
            callbacks=callbacks,
        )
        self.hidden = sizes
        self.temperature = float(temperature)
        self.train_rows = train_rows
        self.explain_rows = explain_rows
        self.rank_rows = rank_rows
        self.topk = topk
        self.selection = selection
        self.simplify_local = simplify_local
        self.max_literals = max_literals
        self.max_simplify_variables = max_simplify_variables
        self.max_simplify_terms = max_simplify_terms
        self._n_classes = 2
        if not any(isinstance(cb, EntropyPenalty) for cb in self.callbacks):
            logger.info(
                "EntropyNetExplainer without an EntropyPenalty callback: the attention is not regularised"
            )

    # -- network -------------------------------------------------------------------------------------------------

    def build_network(self, n_inputs: int) -> nn.Module:
        layers: list[nn.Module] = [
            EntropyLinear(n_inputs, self.hidden[0], self._n_classes, self.temperature),
            nn.LeakyReLU(LEAKY_SLOPE),
        ]
        for width_in, width_out in zip(self.hidden[:-1], self.hidden[1:], strict=True):
            layers += [nn.Linear(width_in, width_out), nn.LeakyReLU(LEAKY_SLOPE)]
        layers += [nn.Linear(self.hidden[-1], 1), _SqueezeLast()]
        return nn.Sequential(*layers)

    def criterion(self) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
        return nn.CrossEntropyLoss()

    def targets(self, y: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(y, dtype=np.int64))

    def labels_from_output(self, output: torch.Tensor) -> np.ndarray:
        return output.argmax(dim=1).numpy()

    def scores_from_output(self, output: torch.Tensor) -> np.ndarray:
        """Softmax probability of class 1 (for the model's AUROC)."""
        return torch.softmax(output, dim=1)[:, 1].numpy()

    @property
    def entropy_layer(self) -> EntropyLinear:
        return entropy_layers(self.network)[0]

    def fit(self, fold: Fold) -> EntropyNetExplainer:
        x, y = _rows(fold, self.train_rows)
        return self.train(x, y)

    def train(self, x: np.ndarray, y: np.ndarray) -> EntropyNetExplainer:
        y = np.asarray(y)
        self._n_classes = max(2, int(np.max(y)) + 1) if y.size else 2
        super().train(x, y)
        layer = self.entropy_layer
        with torch.no_grad():
            mask = layer.concept_mask().numpy()
            self._info.update(
                {
                    "final_entropy": float(layer.entropy()),
                    "final_penalty": sum(
                        cb.penalty(self.network)
                        for cb in self._fit_callbacks
                        if isinstance(cb, EntropyPenalty)
                    ),
                    "features_used": int(mask.any(axis=0).sum()),
                    "concepts_per_class": [int(m.sum()) for m in mask],
                    "train_rows": self.train_rows,
                }
            )
        return self

    def attention(self) -> np.ndarray:
        """The trained attention alpha [n_classes, k] (for plots and tests)."""
        with torch.no_grad():
            return self.entropy_layer.attention().numpy()

    # -- explanation ---------------------------------------------------------------------------------------------

    def explain(self, fold: Fold, target_class: int = 1) -> Formula:
        if not 0 <= target_class < self._n_classes:
            raise ValueError(f"target_class={target_class}: the network has classes 0..{self._n_classes - 1}")
        start = time.perf_counter()
        names = [str(n) for n in fold.concept_names]
        x_exp, y_exp = _rows(fold, self.explain_rows)
        x_rank, y_rank = _rows(fold, self.rank_rows)
        truth = np.asarray(x_exp) > 0.5
        pred = self.predict(truth.astype(np.float32))
        correct = pred == y_exp
        target = correct & (y_exp == target_class)
        opposite = correct & (y_exp != target_class)
        with torch.no_grad():
            layer = self.entropy_layer
            alpha = layer.attention()[target_class].numpy().astype(np.float64)
            mask = layer.concept_mask()[target_class].numpy()
        # Concepts of the local explanations, least attended first (the order literals are tried for dropping).
        order = np.argsort(alpha, kind="stable")
        concepts = order[mask[order]]
        if self.max_literals is not None and concepts.size > self.max_literals:
            concepts = concepts[-self.max_literals :]
        result = aggregate_local_explanations(
            truth,
            target,
            opposite,
            concepts,
            np.asarray(x_rank) > 0.5,
            np.asarray(y_rank) == target_class,
            names,
            topk=self.topk,
            selection=self.selection,
            simplify_local=self.simplify_local,
            max_variables=self.max_simplify_variables,
            max_terms=self.max_simplify_terms,
        )
        if result["formula"].is_false:
            logger.warning(
                "entropy: no explanation for class %d (%d correctly classified rows of it, %d masked concepts)",
                target_class,
                int(target.sum()),
                int(mask.sum()),
            )
        self._info.update(
            {
                "extraction_time": time.perf_counter() - start,
                "explained_rows": int(target.sum()),
                "opposite_rows": int(opposite.sum()),
                "masked_concepts": [names[j] for j in concepts[::-1]],
                **{k: v for k, v in result.items() if k != "formula"},
            }
        )
        return result["formula"]


def _rows(fold: Fold, which: str) -> tuple[np.ndarray, np.ndarray]:
    if which == "train":
        return fold.x_train, fold.y_train
    if which == "val":
        return fold.x_val, fold.y_val
    return fold.x_trainval, fold.y_trainval


def simplify_term(
    term: np.ndarray, literals: np.ndarray, truth: np.ndarray, positive: np.ndarray
) -> np.ndarray:
    """Greedily drop literals (in the given order) while the conjunction's accuracy on ``truth`` rows does not fall.

    ``term``: bool [m] which literals are kept; ``literals``: bool [m] their required values; ``truth``: bool
    [n, m] the rows' values of the m concepts; ``positive``: bool [n] whether each row is of the target class.
    Returns the kept-literal mask (the reference's local ``_simplify_formula``, without its string handling).
    """
    kept = term.copy()
    matches = truth == literals[None, :]  # [n, m]: row agrees with literal j

    def accuracy(keep: np.ndarray) -> float:
        fires = matches[:, keep].all(axis=1) if keep.any() else np.ones(truth.shape[0], dtype=bool)
        return float(np.mean(fires == positive))

    base = accuracy(kept)
    for j in range(kept.size):
        if not kept[j] or kept.sum() == 1:
            continue
        trial = kept.copy()
        trial[j] = False
        score = accuracy(trial)
        if score >= base:
            kept, base = trial, score
    return kept


def aggregate_local_explanations(
    truth: np.ndarray,
    target: np.ndarray,
    opposite: np.ndarray,
    concepts: np.ndarray,
    truth_rank: np.ndarray,
    positive_rank: np.ndarray,
    names: Sequence[str],
    *,
    topk: int,
    selection: str = "frequency",
    simplify_local: bool = True,
    max_variables: int = 10,
    max_terms: int = 64,
) -> dict[str, Any]:
    """Local explanations of the ``target`` rows over ``concepts``, their top-k, and the greedy OR (pure numpy).

    ``truth`` [n, k] booleanised rows; ``target``/``opposite`` [n] the correctly classified rows of the class and
    of the others; ``truth_rank`` [r, k], ``positive_rank`` [r] the ranking rows. Returns the formula and what is
    worth recording (counts, candidates with their frequency and ranking accuracy, simplification fall-backs).
    """
    empty: dict[str, Any] = {
        "formula": Formula.false(),
        "local_explanations": 0,
        "distinct_local_explanations": 0,
        "top_local_explanations": [],
        "simplify_exact": True,
    }
    if not target.any() or concepts.size == 0:
        return empty
    sub = truth[:, concepts]  # [n, m]
    correct = target | opposite
    positive = target[correct]
    sub_correct = sub[correct]
    patterns, first, counts = np.unique(sub[target], axis=0, return_index=True, return_counts=True)
    full = np.ones(concepts.size, dtype=bool)
    local: dict[tuple[Literal, ...], list[int]] = {}  # term -> [rows, first occurrence]
    for pattern, first_row, count in zip(patterns, first, counts, strict=True):
        kept = simplify_term(full, pattern, sub_correct, positive) if simplify_local else full
        term = tuple((str(names[concepts[j]]), not bool(pattern[j])) for j in range(concepts.size) if kept[j])
        term = term[::-1]  # most attended concept first, for reading
        entry = local.setdefault(term, [0, int(first_row)])
        entry[0] += int(count)
        entry[1] = min(entry[1], int(first_row))

    def rank_accuracy(formula: Formula) -> float:
        fires = _evaluate(formula, truth_rank, names)
        return float(np.mean(fires == positive_rank)) if positive_rank.size else 0.0

    candidates = [(Formula((term,)), n, first_row) for term, (n, first_row) in local.items()]
    scored = [(f, n, first_row, rank_accuracy(f)) for f, n, first_row in candidates]
    if selection == "frequency":
        top = sorted(scored, key=lambda c: (-c[1], c[2]))[:topk]
    else:
        top = sorted(scored, key=lambda c: (-c[3], -c[1], c[2]))[:topk]
    ranked = sorted(top, key=lambda c: (-c[3], -c[1], c[2]))

    best, best_accuracy, exact = Formula.false(), -1.0, True
    pending: list[Formula] = []
    for formula, _, _, _ in ranked:
        pending.append(formula)
        result = simplify(Formula.disjunction(pending), max_variables=max_variables, max_terms=max_terms)
        exact &= result.exact
        if result.formula.is_true or result.formula.is_false:
            continue
        accuracy = rank_accuracy(result.formula)
        if accuracy > best_accuracy:
            best, best_accuracy = result.formula, accuracy
            pending = [best]
    return {
        "formula": best,
        "local_explanations": int(target.sum()),
        "distinct_local_explanations": len(local),
        "top_local_explanations": [[str(f), n, round(acc, 6)] for f, n, _, acc in ranked],
        "rank_accuracy": best_accuracy if best_accuracy >= 0 else float("nan"),
        "simplify_exact": exact,
    }


def _evaluate(formula: Formula, truth: np.ndarray, names: Sequence[str]) -> np.ndarray:
    return formula.evaluate(truth.astype(np.float32), names)
