"""``hydra/launcher=seed_batching`` (lenbench's default): Hydra's basic launcher (jobs one after another in this
process) that first groups the sweep's jobs by :func:`lenbench.seed_batch.seed_groups` and runs each job inside its
group's :class:`~lenbench.seed_batch.SeedBatch`, so the first job of a group trains every seed's networks together.

Hydra only loads launchers from the ``hydra_plugins`` package, hence this module's home; the logic is in
:mod:`lenbench.seed_batch`.
"""

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from hydra._internal.core_plugins.basic_launcher import BasicLauncher
from hydra.core.config_store import ConfigStore
from hydra.core.utils import JobReturn, configure_log, filter_overrides, run_job, setup_globals
from omegaconf import DictConfig, OmegaConf, open_dict

from lenbench.seed_batch import SeedBatch, batch_scope, seed_groups

log = logging.getLogger(__name__)


@dataclass
class SeedBatchingLauncherConf:
    _target_: str = "hydra_plugins.lenbench_seed_batching.launcher.SeedBatchingLauncher"


ConfigStore.instance().store(group="hydra/launcher", name="seed_batching", node=SeedBatchingLauncherConf)


class SeedBatchingLauncher(BasicLauncher):
    """Runs a sweep's jobs in order, in this process, each in its seed group's batch."""

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:

        setup_globals()
        assert self.hydra_context is not None and self.config is not None and self.task_function is not None
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        Path(str(self.config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
        configs = [
            self.hydra_context.config_loader.load_sweep_config(self.config, list(overrides))
            for overrides in job_overrides
        ]
        batches: dict[int, SeedBatch] = {}
        for group in seed_groups([_job_config(c) for c in configs]):
            batch = SeedBatch(tuple(int(configs[i].seed) for i in group)) if len(group) > 1 else None
            batches.update({i: batch for i in group if batch is not None})
        log.info(f"Launching {len(job_overrides)} jobs locally")
        runs = []
        for offset, (overrides, sweep_config) in enumerate(zip(job_overrides, configs, strict=True)):
            idx = initial_job_idx + offset
            log.info(f"\t#{idx} : {' '.join(filter_overrides(overrides))}")
            with open_dict(sweep_config):
                sweep_config.hydra.job.id = idx
                sweep_config.hydra.job.num = idx
            with batch_scope(batches.get(offset)):
                runs.append(
                    run_job(
                        hydra_context=self.hydra_context,
                        task_function=self.task_function,
                        config=sweep_config,
                        job_dir_key="hydra.sweep.dir",
                        job_subdir_key="hydra.sweep.subdir",
                    )
                )
            configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        return runs


def _job_config(config: DictConfig) -> dict:
    """A job's own configuration, unresolved (no ``hydra`` node): what :func:`seed_groups` compares."""
    return {k: v for k, v in OmegaConf.to_container(config, resolve=False).items() if k != "hydra"}
