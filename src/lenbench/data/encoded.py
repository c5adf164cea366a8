"""Where an explainer's concepts come from: the data set's true concepts, or a concept encoder (x -> c -> y).

``data.concepts_from=truth`` keeps the data set as it is. ``data.concepts_from=encoder`` (a data set with raw
``inputs``: ``digits_parity``, ``digits_addition``, ``trig``, ``dot``) turns it into the concept-bottleneck
pipeline of the LEN paper: for each fold a concept encoder (:mod:`lenbench.nn.encoder`, an MLP with sigmoid
outputs and a BCE loss) is trained on the fold's train+validation rows only (the rows every model of the fold may
see; never its test rows), predicts the concepts of every row, and the explainer is trained, explained and scored on
those predicted, thresholded concepts. The true concepts stay in ``ConceptDataset.x`` for concept accuracy and
concept interventions (``concepts_predicted=True``); the fold carries the encoder's probabilities of its test rows
(``Fold.concept_probabilities_test``), which order the uncertainty-first interventions.

A method that predicts concepts itself (a concept bottleneck model, ``Explainer.reads_inputs``) is given the data set
without this encoder (:func:`raw_input_dataset`): its folds carry the raw inputs and the true concepts, whatever
``data.concepts_from`` says.

The encoder is a :data:`~lenbench.data.base.Refit`: the data module calls it with the fold's train+validation rows,
exactly as it refits MIMIC-II's binning with ``data.fit_scope=train``, and the fold's record (``preprocessing``)
says how the encoder was trained. Torch is imported only when an encoder trains, so loading and validating data
stays light.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np

from lenbench.data.base import ConceptDataset, Refitted
from lenbench.errors import ConfigError
from lenbench.validation import check_positive, check_precision, check_seed, check_widths

logger = logging.getLogger(__name__)

CONCEPT_SOURCES = ("truth", "encoder")


@dataclass(frozen=True)
class EncoderSettings:
    """How the concept encoder trains (``data.encoder.*``): hidden widths, full-batch Adam epochs, learning rate,
    weight decay, seed and precision (the job's ``trainer.precision`` in the data configs). Validated on
    construction, before any fold trains."""

    hidden: tuple[int, ...] = (32,)
    epochs: int = 300
    lr: float = 0.01
    weight_decay: float = 0.0
    seed: int = 0
    precision: str = "32-true"

    def __post_init__(self) -> None:
        object.__setattr__(self, "hidden", tuple(check_widths(None, "encoder.hidden", self.hidden)))
        check_positive(None, "encoder.epochs", self.epochs, integer=True)
        check_positive(None, "encoder.lr", self.lr)
        check_positive(None, "encoder.weight_decay", self.weight_decay, allow_zero=True)
        object.__setattr__(self, "seed", check_seed(None, self.seed))
        object.__setattr__(self, "precision", check_precision(None, "encoder.precision", self.precision))

    @classmethod
    def from_config(cls, config: Mapping[str, Any] | None) -> EncoderSettings:
        """From ``data.encoder`` (None: the defaults); an unknown key is a :class:`ConfigError` naming it."""
        config = dict(config or {})
        known = tuple(cls.__dataclass_fields__)
        unknown = sorted(set(config) - set(known))
        if unknown:
            raise ConfigError(
                f"data.encoder.{unknown[0]}: unknown setting; the encoder takes {', '.join(known)}"
            )
        if "hidden" in config and not isinstance(config["hidden"], Sequence | np.ndarray):
            config["hidden"] = [config["hidden"]]
        return cls(**config)


def concepts_from(
    dataset: ConceptDataset, source: str, encoder: Mapping[str, Any] | None = None
) -> ConceptDataset:
    """``dataset`` with its concepts taken from ``source``: ``truth`` (as it is) or ``encoder`` (predicted per fold
    from ``dataset.inputs``; see the module docstring). Bad settings raise :class:`ConfigError` before training."""
    if source not in CONCEPT_SOURCES:
        raise ConfigError(
            f"data.concepts_from={source!r}: use truth (the data set's true concepts) or encoder (concepts "
            "predicted from the raw inputs by an encoder trained on each fold's training rows)"
        )
    settings = EncoderSettings.from_config(encoder)
    if source == "truth":
        return dataset
    if dataset.inputs is None:
        raise ConfigError(
            f"data.concepts_from=encoder: {dataset.name} has no raw inputs to learn its concepts from; "
            "use data.concepts_from=truth"
        )
    if dataset.refit is not None:
        raise ConfigError(
            f"data.concepts_from=encoder: {dataset.name} already refits its concepts per fold; use "
            "data.concepts_from=truth"
        )
    refit = EncoderRefit(inputs=dataset.input_rows, concepts=dataset.x, settings=settings)
    return replace(dataset, refit=refit, concepts_predicted=True)


def raw_input_dataset(dataset: ConceptDataset, method: str) -> ConceptDataset:
    """The data set a method that reads raw inputs (``Explainer.reads_inputs``) is given: its true concepts beside
    its raw inputs, without the concept encoder of ``data.concepts_from=encoder`` (the method predicts concepts
    itself, from each fold's training rows). A data set without raw inputs is a :class:`ConfigError`."""
    if dataset.inputs is None:
        raise ConfigError(
            f"method={method} reads raw inputs, which {dataset.name} does not have; use a data set with raw "
            "inputs (digits_parity, digits_addition, trig, dot) or a method on concepts"
        )
    if isinstance(dataset.refit, EncoderRefit):
        return replace(dataset, refit=None, concepts_predicted=False)
    if dataset.refit is not None:
        raise ConfigError(
            f"method={method} reads raw inputs, but {dataset.name} refits its concepts per fold; use a data set "
            "with fixed concepts"
        )
    return dataset


@dataclass(frozen=True)
class EncoderRefit:
    """The data module's refit in encoder mode: train on the given rows, predict the concepts of every row."""

    inputs: np.ndarray = field(repr=False)
    concepts: np.ndarray = field(repr=False)
    settings: EncoderSettings = field(default_factory=EncoderSettings)

    def __call__(self, fit_rows: np.ndarray) -> Refitted:
        # deferred: torch and Lightning, only when an encoder is trained
        from lenbench.nn.encoder import concept_probabilities, train_encoder
        from lenbench.nn.trainer import TrainingConfig

        s = self.settings
        config = TrainingConfig(
            seed=s.seed,
            epochs=s.epochs,
            lr=s.lr,
            optimizer="adam",
            weight_decay=s.weight_decay,
            trainer={"log_every_n_epochs": s.epochs, "precision": s.precision},
            owner="concept encoder",
        )
        fit_rows = np.asarray(fit_rows)
        trained = train_encoder(self.inputs[fit_rows], self.concepts[fit_rows], s.hidden, config)
        probabilities = concept_probabilities(trained.module, self.inputs)
        predicted = (probabilities > 0.5).astype(np.float32)
        fit_accuracy = float(np.mean((predicted[fit_rows] > 0.5) == (self.concepts[fit_rows] > 0.5)))
        record = {
            **asdict(s),
            "hidden": list(s.hidden),
            "fit_rows": int(fit_rows.shape[0]),
            "final_loss": trained.final_loss,
            "training_time": trained.seconds,
            "fit_rows_concept_accuracy": fit_accuracy,
        }
        logger.debug(
            "concept encoder on %d rows: concept accuracy %.4f there", fit_rows.shape[0], fit_accuracy
        )
        return Refitted(predicted, {"concept_encoder": record}, probabilities)
