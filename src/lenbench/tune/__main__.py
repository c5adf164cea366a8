"""``python -m lenbench.tune method=entropy data=mimic`` (``make tune``): a multi-objective study of one method.

Composed by Hydra like ``python -m train`` (``conf/tune.yaml`` reuses train's defaults and adds ``tune.*`` and the
method's ``search`` space), so every train override works here too. A problem the user can fix ends with one line
and exit status 2 (before any trial where it can be known); Ctrl-C/SIGTERM closes the study's runs as KILLED (exit
130; the same command resumes the study); anything else is a bug and keeps its traceback. The study itself is
:func:`lenbench.tune.study.run_study`.
"""

from __future__ import annotations

import logging
import signal
import sys
from pathlib import Path
from typing import Any

import hydra
from hydra.core.config_store import ConfigStore
from hydra.core.hydra_config import HydraConfig
from hydra.utils import get_original_cwd
from omegaconf import DictConfig

from lenbench.config import register_schema, run_command_line
from lenbench.errors import UserError
from lenbench.tune.settings import TuneSchema

log = logging.getLogger("lenbench")
CONF = Path(__file__).resolve().parents[3] / "conf"
register_schema()
ConfigStore.instance().store(name="tune_schema", node=TuneSchema)


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


@hydra.main(version_base="1.3", config_path=str(CONF), config_name="tune")
def main(cfg: DictConfig) -> float:
    # Deferred, with job, files and study: they import torch, pandas.
    from lenbench.experiment import JobInterrupted
    from lenbench.job import JobContext
    from lenbench.tune.files import format_study
    from lenbench.tune.study import run_study

    signal.signal(signal.SIGTERM, _interrupt)
    context = JobContext(
        project_dir=Path(get_original_cwd()), out_dir=Path(HydraConfig.get().runtime.output_dir)
    )
    try:
        outcome = run_study(cfg, context)
    except UserError as exc:
        log.error("%s", exc)
        sys.exit(2)
    except (KeyboardInterrupt, JobInterrupted) as exc:
        log.error(
            "interrupted (%s): the trials completed so far are kept in the study; the same command resumes it",
            exc,
        )
        sys.exit(130)
    print(format_study(outcome.front, outcome.summary, outcome.spec, outcome.out_dir))  # the CLI's own output
    return float(outcome.summary.get("hypervolume_val", float("nan")))


if __name__ == "__main__":
    run_command_line(main, CONF, "tune")
