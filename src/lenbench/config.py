"""The typed schema of ``conf/train.yaml``, the identity of a job, its MLflow params, how many fold processes it
gets, and the check of a command line before Hydra runs it (:func:`check_command_line`).

The schema makes a wrong type (``seed=abc``, ``cv.n_splits=1.5``) or an unknown key (``cv.nfolds=3``) fail at
composition with Hydra's message naming the key, before anything runs. Groups whose keys depend on the choice
(data, method, trainer) are validated by the constructors they instantiate (:func:`instantiate`: a user's error
there is one line naming the key). Registered under the name
``train_schema`` by :func:`register_schema` (the entry point calls it before composing).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, List, Optional  # noqa: UP035 - OmegaConf schemas need typing forms

from omegaconf import MISSING, DictConfig

from lenbench.errors import ConfigError, UserError, exit_with


@dataclass
class CVSchema:
    n_splits: int = 10
    split_seed: int = 42
    folds: Optional[List[int]] = None  # noqa: UP006, UP045 - OmegaConf needs typing's forms
    val_size: float = 0.3
    inner_split_seed: int = 42
    n_jobs: Any = "auto"


@dataclass
class TrackingSchema:
    uri: Optional[str] = None  # noqa: UP045
    experiment: Optional[str] = None  # noqa: UP045
    enabled: bool = True


@dataclass
class TrainSchema:
    data: Any = MISSING
    method: Any = MISSING
    trainer: Any = MISSING
    tracking: TrackingSchema = field(default_factory=TrackingSchema)
    experiment: Any = None
    seed: int = 42
    torch_threads: int = 1
    target_class: int = 1
    resume: bool = True
    cv: CVSchema = field(default_factory=CVSchema)


DATA_DIR_ENV = "LENBENCH_DATA_DIR"
# The development setup: a read-only copy of the data sets in ``shared/data`` beside the checkout.
_SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"


def default_data_root() -> str:
    """Where data sets live unless ``data.root`` says otherwise: ``$LENBENCH_DATA_DIR``; else ``../shared/data``
    beside the checkout when it holds MIMIC-II (the development setup); else ``data`` (where downloads go). The
    config (``conf/data/mimic.yaml``: ``${lenbench_data_root:}``), the tests and the benchmarks all read this."""
    if os.environ.get(DATA_DIR_ENV):
        return os.environ[DATA_DIR_ENV]
    if (_SHARED_DATA / "mimic-ii" / "full_cohort_data.csv").is_file():
        return str(_SHARED_DATA)
    return "data"


def register_schema() -> None:
    """Store :class:`TrainSchema` as ``train_schema``, the first default of ``conf/train.yaml``, and the resolver
    ``lenbench_data_root`` (:func:`default_data_root`)."""
    from hydra.core.config_store import ConfigStore
    from omegaconf import OmegaConf

    ConfigStore.instance().store(name="train_schema", node=TrainSchema)
    OmegaConf.register_new_resolver("lenbench_data_root", default_data_root, replace=True)


def flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``: the dotted keys MLflow params and config hashes use."""
    if not isinstance(node, dict):
        return {prefix: node}
    out: dict[str, Any] = {}
    for key, value in node.items():
        out.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    return out


INSTANTIATION_KEYS = ("_target_", "_convert_", "_recursive_", "_partial_", "_args_")
_NODE_INTERPOLATION = re.compile(r"^\$\{[^${}:]+\}$")  # ${seed}, ${trainer}: another key, no resolver


def job_params(cfg: Any) -> dict[str, Any]:
    """A job's MLflow params: its resolved config once, flattened to dotted keys (``hydra`` left out).

    Hydra's instantiation keys are left out, and so is every key whose value is only an interpolation of another key
    (``method.explainer.seed: ${seed}``, ``method.explainer.trainer: ${trainer}``): that key is a param already. A
    list of objects is numbered, each item's class under its number (``method.explainer.callbacks.0``)."""
    from omegaconf import OmegaConf

    raw = {k: v for k, v in OmegaConf.to_container(cfg, resolve=False).items() if k != "hydra"}
    resolved = {k: v for k, v in OmegaConf.to_container(cfg, resolve=True).items() if k != "hydra"}
    copies = tuple(k for k, v in flatten(raw).items() if isinstance(v, str) and _NODE_INTERPOLATION.match(v))
    return {
        key: value
        for key, value in _param_items(resolved, "")
        if not any(key == c or key.startswith(c + ".") for c in copies)
    }


def _param_items(node: Any, prefix: str) -> list[tuple[str, Any]]:
    if isinstance(node, list) and node and all(isinstance(item, dict) for item in node):
        node = {str(i): item for i, item in enumerate(node)}
    if not isinstance(node, dict):
        return [(prefix, node)]
    items: list[tuple[str, Any]] = []
    if prefix and "_target_" in node and prefix.rsplit(".", 1)[-1].isdigit():
        items.append((prefix, str(node["_target_"]).rsplit(".", 1)[-1]))  # a list item: its class's name
    for key, value in node.items():
        if key not in INSTANTIATION_KEYS:
            items += _param_items(value, f"{prefix}.{key}" if prefix else str(key))
    return items


# Keys that do not change what a job computes: two runs differing only there are the same experiment.
# method.log_model: whether the fitted models are also logged to MLflow.
NOT_HASHED = (
    "tracking",
    "hydra",
    "resume",
    "trainer.log_every_n_epochs",
    "trainer.enable_progress_bar",
    "cv.n_jobs",
    "method.log_model",
)


def config_hash(resolved: dict[str, Any]) -> str:
    """Hash of the resolved config minus tracking/launcher keys: the identity of a job for resuming sweeps."""
    flat = flatten(resolved)
    kept = {k: v for k, v in flat.items() if not any(k == n or k.startswith(n + ".") for n in NOT_HASHED)}
    return hashlib.sha256(json.dumps(kept, sort_keys=True, default=str).encode()).hexdigest()[:16]


def resolve_n_jobs(value: Any, processes_per_fold: int = 1, parallel_launcher: bool = False) -> int:
    """``auto``: every core this process may use divided by the processes one fold occupies (``trainer=ddp``), but
    1 inside a sweep whose launcher already runs jobs in parallel, or when the fold trains on a GPU."""
    if value == "auto":
        if parallel_launcher or processes_per_fold < 1:
            return 1
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        return max(1, cores // processes_per_fold)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"cv.n_jobs={value!r}: must be a positive integer or auto")
    return value


def fold_slots(trainer: Any) -> int:
    """Processes one fold trains with: ``devices`` under a DDP strategy on CPU, 1 otherwise; 0 for an accelerator
    (fold workers are forked, and CUDA does not survive a fork once initialised)."""
    if str(trainer.get("accelerator", "cpu")) not in ("cpu", "auto"):
        return 0
    devices = trainer.get("devices", 1)
    if str(trainer.get("strategy", "auto")).startswith("ddp") and isinstance(devices, int):
        return max(1, devices)
    return 1


# -- before Hydra runs: the command line composed once, the output folder checked --------------------------------

_HANDLED_BY_HYDRA = ("help", "hydra_help", "cfg", "info", "shell_completion", "resolve", "experimental_rerun")
_OTHER_CONFIG = ("config_path", "config_name", "config_dir")


def check_command_line(argv: Sequence[str], config_dir: Path, config_name: str) -> None:
    """Compose the config of ``python -m train <argv>`` as Hydra will, and check the job's output folder, before
    Hydra runs. A composition error (unknown key or option, wrong type) or an output folder that cannot be created
    raises :class:`ConfigError` with one line: Hydra itself would print a report and exit 1, or a traceback.

    Command lines Hydra answers without running a job (``--help``, ``--cfg``, ``--info`` ...) or with another
    config are left to it, and so is any other error (Hydra reports it as it always did)."""
    from hydra._internal.utils import get_args_parser

    args = get_args_parser().parse_args(list(argv))  # a malformed command line exits 2 with argparse's usage
    if any(getattr(args, name) for name in (*_HANDLED_BY_HYDRA, *_OTHER_CONFIG)):
        return
    try:
        cfg, multirun = _compose(config_dir, config_name, list(args.overrides), bool(args.multirun))
    except Exception as exc:  # noqa: BLE001 - only composition errors are reported here; Hydra reports the rest
        message = _composition_error(exc)
        if message is None:
            return
        raise ConfigError(message) from None
    _check_output_folder(cfg, "hydra.sweep.dir" if multirun else "hydra.run.dir")


def multirun_flag_first(argv: list[str]) -> list[str]:
    """``python -m train method=psi -m seed=0,1,2`` as written: Hydra's parser takes its overrides as one
    positional list, so overrides on both sides of ``-m``/``--multirun`` fail; move the flag to the front."""
    flags = [a for a in argv[1:] if a in ("-m", "--multirun")]
    return argv[:1] + flags[:1] + [a for a in argv[1:] if a not in ("-m", "--multirun")] if flags else argv


def run_command_line(main: Callable[[], Any], config_dir: Path, config_name: str) -> None:
    """What ``python -m train`` and ``python -m lenbench.tune`` run: ``-m`` moved first, :func:`check_command_line`
    (a problem is one line and exit status 2; Hydra would print its own report, or a traceback, and exit 1), then
    the Hydra ``main``."""
    sys.argv = multirun_flag_first(sys.argv)
    try:
        check_command_line(sys.argv[1:], config_dir, config_name)
    except UserError as exc:
        exit_with(exc)
    main()


def _compose(config_dir: Path, config_name: str, overrides: list[str], multirun: bool) -> tuple[Any, bool]:
    """The config Hydra's ``run``/``multirun`` will compose (same search path, same mode rules); HydraConfig is
    set to it, so ``${hydra:...}`` resolves. Returns the config and whether the command is a multirun."""
    from hydra._internal.hydra import Hydra
    from hydra._internal.utils import create_config_search_path
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    hydra = Hydra.create_main_hydra2("train", create_config_search_path(config_dir.resolve().as_uri()))
    try:
        mode = hydra.get_mode(config_name=config_name, overrides=overrides)
        if mode is None or (multirun and mode == RunMode.RUN):
            mode = RunMode.MULTIRUN if multirun else RunMode.RUN
            overrides = [*overrides, f"hydra.mode={mode.name}"]
        cfg = hydra.compose_config(config_name, overrides, run_mode=mode, with_log_configuration=False)
    finally:
        GlobalHydra.instance().clear()
    HydraConfig.instance().set_config(cfg)
    return cfg, mode == RunMode.MULTIRUN


def _composition_error(exc: BaseException) -> str | None:
    """Hydra's own message for a composition error, on one line (the cause's too: OmegaConf names the key); None
    for any other error."""
    from hydra.errors import HydraException, InstantiationException
    from omegaconf.errors import OmegaConfBaseException

    composing = (HydraException, OmegaConfBaseException)
    if isinstance(exc, InstantiationException) or not isinstance(exc, composing):
        return None
    text = str(exc)
    if isinstance(exc.__cause__, OmegaConfBaseException) and str(exc.__cause__) not in text:
        text += "\n" + str(exc.__cause__)
    return one_line(text)


def one_line(text: str) -> str:
    """A multi-line message as one line: sections joined by ``; ``, an indented list after a ``header:`` joined
    by commas; OmegaConf's type details and Hydra's config search path are dropped."""
    parts: list[str] = []
    listing = False
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("Config search path"):
            break
        if not line or line.startswith(("reference_type=", "object_type=")):
            continue
        if listing and raw[:1] in ("\t", " "):
            parts[-1] += (" " if parts[-1].endswith(":") else ", ") + line
            continue
        listing = line.endswith(":")
        parts.append(line)
    return "; ".join(part.rstrip(".") for part in parts)


def _check_output_folder(cfg: Any, key: str) -> None:
    """The folder Hydra will create for the job (``hydra.run.dir``) or the sweep (``hydra.sweep.dir``) must be
    creatable, with room for the job's files: a folder with a file of :data:`_ROOM_NEEDED` bytes is created (and
    removed) in its nearest existing parent. Permissions alone do not tell (root may write anywhere but in
    ``/proc``, and not on a read-only or full file system)."""
    from omegaconf import OmegaConf

    try:
        folder = Path(str(OmegaConf.select(cfg, key, throw_on_resolution_failure=True))).absolute()
    except Exception:  # noqa: BLE001 - Hydra resolves it itself and reports what fails
        return
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        problem = f"{existing} is not a folder"
    else:
        probe = None
        try:
            probe = tempfile.mkdtemp(prefix=".lenbench-write-check-", dir=existing)
            Path(probe, "probe").write_bytes(bytes(_ROOM_NEEDED))  # a full disk fails here, not inside Hydra
            return
        except OSError as exc:
            problem = f"cannot create a folder in {existing} and write {_ROOM_NEEDED >> 10} KiB there ({exc.strerror})"
        finally:
            if probe is not None:
                shutil.rmtree(probe, ignore_errors=True)
    example = "multirun/sweep" if key == "hydra.sweep.dir" else "outputs/job"
    raise ConfigError(
        f"{key}={folder}: {problem}; choose a folder you can write, with free space, e.g. {key}={example}"
    )


_ROOM_NEEDED = 1 << 20  # a job's folder holds its config, log and results: about a megabyte at most


def instantiate(node: DictConfig, key: str) -> Any:
    """``hydra.utils.instantiate`` whose user errors (a bad value, an unknown or missing argument) come out as
    one :class:`ConfigError` or :class:`UserError` naming ``key``; any other error keeps its traceback."""
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate as hydra_instantiate

    try:
        return hydra_instantiate(node)
    except InstantiationException as exc:
        cause = _root_cause(exc)
        if isinstance(cause, UserError) and not isinstance(cause, ConfigError):
            raise cause from None  # data and store messages name their file or store themselves
        if isinstance(cause, ValueError) or _is_signature_error(cause):
            raise ConfigError(f"{key}: {cause}") from None
        missing = _missing_module(cause)
        if missing is not None and not str(missing.name).startswith("lenbench"):
            raise UserError(
                f"{key}: {missing} in this environment ({sys.prefix}): run make install (after an update it "
                "installs lenbench's new dependencies), or pip install the package your method needs"
            ) from None
        raise


def _root_cause(exc: BaseException) -> BaseException:
    from hydra.errors import InstantiationException

    while isinstance(exc, InstantiationException) and exc.__cause__ is not None:
        exc = exc.__cause__
    return exc


def _missing_module(exc: BaseException | None) -> ModuleNotFoundError | None:
    """The module that could not be imported, when importing the target failed for want of one."""
    while exc is not None and not isinstance(exc, ModuleNotFoundError):
        exc = exc.__cause__
    return exc


def _is_signature_error(exc: BaseException) -> bool:
    """A TypeError raised by the call itself (unknown or missing keyword), not from deep inside the constructor."""
    text = str(exc)
    return isinstance(exc, TypeError) and ("keyword argument" in text or "required positional" in text)
