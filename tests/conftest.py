"""Shared fixtures: where the MIMIC-II data live, the data set loaded once per session, one torch thread, and a
Hypothesis profile that holds on a busy machine. Shared helpers (data builders, subprocess jobs, event waits) are in
``helpers.py``."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from lenbench.config import default_data_root
from lenbench.data.base import ConceptDataset
from lenbench.data.mimic import RELATIVE_PATH, load_mimic

REPO_ROOT = Path(__file__).resolve().parents[1]

# No per-example deadline and no "too slow" health check: both measure wall time, which a loaded machine stretches.
# Tests that pass their own @settings inherit these (settings are resolved when the test module is imported).
settings.register_profile("lenbench", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("lenbench")
# Every MLflow server a test starts runs as `make server`/`make ui` start it: without MLflow's job execution (seven
# Huey worker processes that lenbench never uses). A test process and its children inherit it.
os.environ.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")


def pytest_configure(config: pytest.Config) -> None:
    """Temporary folders (tmp_path: the jobs' MLflow stores, outputs) in memory, /dev/shm, where the system has it.

    SQLite syncs every MLflow write to disk: a small tracked job waited about 5 s on a disk's syncs beside its 9 s of
    CPU (2-core VM), with a core idle meanwhile. Nothing a test asserts depends on where its folder lies.
    --basetemp or PYTEST_DEBUG_TEMPROOT (pytest's own setting for the root) choose otherwise.
    """
    shm = Path("/dev/shm")
    if (
        config.option.basetemp is None
        and "PYTEST_DEBUG_TEMPROOT" not in os.environ
        and shm.is_dir()
        and os.access(shm, os.W_OK)
        and shutil.disk_usage(shm).free
        > 4 * 2**30  # a container's default 64 MB would fill up: the disk then
    ):
        os.environ["PYTEST_DEBUG_TEMPROOT"] = str(shm)


@pytest.fixture
def one_torch_thread():
    """One torch thread, as the protocol runs (train.yaml torch_threads: 1): deterministic, and no OpenMP spinning
    when other processes share the cores (two threads on a busy 2-core machine made the network tests 30x slower).

    Modules that train in this process use it for every test: ``pytestmark = pytest.mark.usefixtures(...)``.
    """
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def mimic_root() -> Path:
    """Where the jobs read MIMIC-II (lenbench.config.default_data_root); skips when the CSV is not there."""
    root = Path(default_data_root()).resolve()
    if not (root / RELATIVE_PATH).is_file():
        pytest.skip(f"MIMIC-II data not found at {root / RELATIVE_PATH} (set LENBENCH_DATA_DIR)")
    return root


@pytest.fixture(scope="session")
def mimic_csv(mimic_root: Path) -> Path:
    return mimic_root / RELATIVE_PATH


@pytest.fixture(scope="session")
def mimic(mimic_root: Path) -> ConceptDataset:
    """MIMIC-II as the notebook preprocesses it (fit on all rows); shared, so tests must not modify it."""
    return load_mimic(mimic_root, download=False)


# -- scheduling: the longest tests first, one share per worker ------------------------------------------------------

# The longest tests, with their seconds in a full `make test` (pytest --durations; only their order counts): each
# worker starts with its share of them, so that none of them begins near the end while the other workers have run
# dry. pytest-xdist's worksteal first hands each worker one contiguous
# slice of the collection and later steals from the ends of the queues: a test at the front of a slice runs first,
# on that worker. Tests on a module-scoped fixture stay with their module (moved apart, they would set it up twice).
LONGEST: dict[str, float] = {  # wall seconds in an idle `make test` at fdd3feb
    "test_train.py::test_network_reproduces_notebook_band[weights]": 155.0,
    "test_train.py::test_network_reproduces_notebook_band[pruning]": 155.0,
    "test_train.py::test_network_reproduces_notebook_band[psi]": 65.0,
    "test_models_e2e.py::test_the_readme_example_runs_as_written": 53.0,
    "test_server_faults.py::test_make_server_with_auth_refuses_requests_without_a_login": 46.0,
    "test_lifecycle.py::test_sigterm_with_parallel_folds_keeps_finished_folds_and_the_rerun_reuses_them": 33.0,
    "test_report_rows.py::test_a_hyperparameter_run_is_its_own_row_and_a_sweep_includes_what_it_resumed": 30.0,
    "test_seed_batch.py::test_a_seed_sweep_trains_together_and_equals_the_jobs_alone": 29.0,
    "test_seed_batch.py::test_a_finished_seed_is_not_trained_again_and_a_tree_sweep_is_not_batched": 27.0,
    "test_sweeps.py::test_interrupted_sweep_completes_on_rerun": 25.0,
    "test_speed_equivalence.py::test_joblib_jobs_use_one_thread_and_give_the_sequential_results": 23.0,
    "test_lifecycle.py::test_ctrl_c_on_a_sequential_job_is_one_line_and_exit_130": 23.0,
    "test_sweeps.py::test_seed_sweep_resume_and_report": 23.0,
    "test_tune_cli.py::test_parallel_trial_processes_share_the_study": 22.0,
    "test_lifecycle.py::test_runs_of_a_killed_process_are_closed_by_cleanup_and_on_the_next_start": 21.0,
    "test_lifecycle.py::test_a_job_start_closes_runs_its_dead_predecessor_left_running": 21.0,
    "test_train.py::test_same_seed_same_results_across_processes": 21.0,
    "test_server_faults.py::test_a_server_killed_mid_job_costs_seconds_and_the_job_says_once_how_to_import": 20.0,
    "test_sweeps.py::test_parallel_jobs_lose_nothing": 18.0,
    "test_tune_cli.py::test_a_study_writes_its_front_and_records_every_trial": 18.0,
    "test_scaleout.py::test_four_processes_writing_to_one_server_at_once": 18.0,
    "test_cli.py::test_design_card_command_runs_as_written": 17.0,
    "test_train.py::test_a_float64_job_with_an_encoder_runs_in_two_processes_and_explains": 17.0,
    "test_tune_cli.py::test_a_store_lost_during_the_study_is_one_line_and_the_trials_are_kept": 16.0,
    "test_tracking_record.py::test_jobs_started_together_on_a_new_store_all_finish": 16.0,
    "test_report_outputs.py::test_readme_tables_equal_what_the_committed_results_give": 15.0,
    "test_ui.py::test_make_ui_shows_parent_runs_with_summary_metrics": 14.0,
    "test_allocator.py::test_the_setting_never_changes_the_trained_weights": 14.0,
}


def _expected_seconds(item: pytest.Item) -> float | None:
    for name in (item.name, getattr(item, "originalname", item.name)):  # with its parameters, else any
        if f"{item.path.name}::{name}" in LONGEST:
            return LONGEST[f"{item.path.name}::{name}"]
    return 1.0 if item.get_closest_marker("slow") else None


@pytest.hookimpl(trylast=True)  # after -m and -k have deselected: the slices are those of the tests that run
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Deal the longest tests (LONGEST, then any other ``slow`` one) across the xdist workers, longest first and each
    to the slice with the least expected time so far, at the front of the slices worksteal will hand out."""
    timed = [
        (seconds, i, item) for i, item in enumerate(items) if (seconds := _expected_seconds(item)) is not None
    ]
    if not timed:
        return
    timed.sort(key=lambda t: (-t[0], t[1]))
    long_ids = {id(item) for _, _, item in timed}
    rest = [item for item in items if id(item) not in long_ids]
    workers = max(1, int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")))
    # The slice sizes worksteal hands out first: each idle worker gets len(pending) // (workers left).
    sizes, left = [], len(items)
    for i in range(workers):
        sizes.append(left // (workers - i))
        left -= sizes[-1]
    heads: list[list[pytest.Item]] = [[] for _ in range(workers)]
    loads = [0.0] * workers
    for seconds, _, item in timed:
        open_slices = [w for w in range(workers) if len(heads[w]) < sizes[w]] or [0]
        target = min(open_slices, key=lambda w: loads[w])
        heads[target].append(item)
        loads[target] += seconds
    ordered: list[pytest.Item] = []
    for w in range(workers):
        take = max(0, sizes[w] - len(heads[w]))
        ordered += heads[w] + rest[:take]
        rest = rest[take:]
    items[:] = ordered + rest
