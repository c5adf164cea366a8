"""The job API's boundary: a problem the user can fix is one ConfigError line (exit 2) before any training; a
bug in lenbench is not a configuration error and keeps its traceback (exit 1)."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import TEST_TARGETS, job_env, run_train, train_in_process
from hydra.errors import InstantiationException
from omegaconf import OmegaConf

from lenbench.config import instantiate
from lenbench.errors import ConfigError, UserError
from lenbench.job import format_summary
from lenbench.scoring import METRICS

BUG = "bug_targets.bug"  # a module of tests/, by its bare name (helpers.TEST_TARGETS says why)


def test_bad_value_in_a_constructor_is_a_config_error_naming_the_key() -> None:
    node = OmegaConf.create({"_target_": "bug_targets.value_error"})
    with pytest.raises(ConfigError, match=r"^method.explainer: depth=-1: must be at least 1$"):
        instantiate(node, "method.explainer")


def test_unknown_argument_is_a_config_error() -> None:
    node = OmegaConf.create({"_target_": "lenbench.data.synthetic.make_xor", "n_sample": 10})
    with pytest.raises(ConfigError, match="data: .*n_sample"):
        instantiate(node, "data")


def test_a_bug_is_not_a_config_error() -> None:
    node = OmegaConf.create({"_target_": BUG})
    with pytest.raises(InstantiationException) as raised:
        instantiate(node, "data")
    assert not isinstance(raised.value, UserError)
    assert isinstance(raised.value.__cause__, ZeroDivisionError)


def test_a_target_whose_package_is_not_installed_is_one_line_with_the_fix() -> None:
    """A method whose package (or one it imports) is missing, as after an update that added a dependency: one line
    naming the module and the fix. A lenbench module that does not import is a bug and keeps its traceback."""
    node = OmegaConf.create({"_target_": "absent_package.Method"})
    expected = (
        r"^method.explainer: No module named 'absent_package' in this environment \(.+\): run make install"
    )
    with pytest.raises(UserError, match=expected):
        instantiate(node, "method.explainer")
    with pytest.raises(InstantiationException) as raised:
        instantiate(OmegaConf.create({"_target_": "lenbench.explainers.absent.Method"}), "method.explainer")
    assert not isinstance(raised.value, UserError)


@pytest.mark.e2e
@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("seed=-1", "seed=-1: must be a non-negative integer"),
        ("target_class=5", "target_class=5: not a class of xor (its classes are [0, 1])"),
        ("cv.folds=[0,0]", "cv.folds=[0, 0]: give each fold once"),
        ("cv.folds=[]", "cv.folds=[]: give each fold once"),
        ("cv.n_jobs=0", "cv.n_jobs=0: must be a positive integer or auto"),
        ("data.n_samples=3", "data: n_samples"),
        ("method.name=../../../../escape", "method.name='../../../../escape': not usable as a file name"),
        ("data.name=a/b", "data.name='a/b': not usable as a file name"),
        ("tracking.experiment=/tmp/x", "tracking.experiment='/tmp/x': not usable as a file name"),
        (
            "method.explainer._target_=absent_package.Method",
            "No module named 'absent_package' in this environment",
        ),
        (f"method.name={'m' * 300}", f"method.name='{'m' * 37}...': not usable as a file name"),
    ],
)
def test_config_errors_are_one_line_exit_2_before_anything_is_written(
    tmp_path: Path, override: str, message: str
) -> None:
    store = tmp_path / "store" / "mlflow.db"
    proc = train_in_process(tmp_path, "data=xor", "method=tree", override, uri=f"sqlite:///{store}")
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if "[ERROR]" in line]
    assert len(errors) == 1, proc.stderr
    assert not (tmp_path / "job" / "job.json").exists()
    assert not store.exists()  # no run was opened


@pytest.mark.e2e
@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            ("method=pruning", "trainer.precision=16-mixed"),
            "trainer.precision='16-mixed': lenbench trains in",
        ),
        (("method=psi", "trainer.precision=bf16-true"), "trainer.precision='bf16-true': lenbench trains in"),
        (("data=trig", "method=tree", "trainer.precision=bf16-mixed"), "encoder.precision='bf16-mixed'"),
    ],
)
def test_a_precision_lenbench_cannot_honour_is_one_line_exit_2_before_training(
    tmp_path: Path, overrides: tuple[str, ...], message: str
) -> None:
    """Only 32-true and 64-true train (issue 28): any other precision is refused before a fold trains, for the
    networks and for the concept encoder (which trains in the job's trainer.precision)."""
    proc = train_in_process(tmp_path, "data=xor", *overrides)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert (
        message in proc.stderr and "use trainer.precision=32-true or trainer.precision=64-true" in proc.stderr
    )
    assert "Traceback" not in proc.stderr
    assert len([line for line in proc.stderr.splitlines() if "[ERROR]" in line]) == 1, proc.stderr
    assert not (tmp_path / "job" / "job.json").exists()


@pytest.mark.e2e
def test_a_bug_during_the_job_keeps_its_traceback(tmp_path: Path) -> None:
    """A method whose constructor raises an unexpected error: exit 1 with the error's traceback, not exit 2."""
    proc = run_train(
        tmp_path,
        "data=xor",
        "method=tree",
        f"method.explainer._target_={BUG}",
        env=job_env(tmp_path, HYDRA_FULL_ERROR="1", **TEST_TARGETS),
    )
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "Traceback" in proc.stderr
    assert "ZeroDivisionError: a bug in lenbench" in proc.stderr


@pytest.mark.e2e
def test_a_bug_in_a_methods_own_code_keeps_its_traceback(tmp_path: Path) -> None:
    """A fold failing on a bug in the method's code (not a diverged training): exit 1, the fold named in one line,
    and the bug's traceback, which a method's author needs (a diverged training stays one line: test_divergence)."""
    target = "bug_targets.tree_with_a_bug_in_explain"  # in tests/, which this process imports from
    proc = train_in_process(
        tmp_path, "data=xor", "method=tree", f"method.explainer._target_={target}", "cv.n_jobs=1"
    )
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "fold 0 failed: ZeroDivisionError: division by zero (method tree)" in proc.stderr
    assert "Traceback" in proc.stderr and "in explain" in proc.stderr


def test_console_summary_lists_every_headline_metric_by_its_label(tmp_path: Path) -> None:
    summary = {f"{m.name}_{s}": 0.5 for m in METRICS.at("fold") for s in ("mean", "sem")}
    summary.update({m.name: 0.25 for m in METRICS.at("job")})
    summary["n_folds"] = 3.0
    per_data_set = [m for m in METRICS if m.needs & {"truth", "concepts"}]  # a known formula, an encoder
    assert per_data_set
    for m in per_data_set:  # a data set without them: NaN, and not shown
        summary[f"{m.name}_mean"] = summary[f"{m.name}_sem"] = float("nan")
    text = format_summary("tree", summary, tmp_path)
    assert text.splitlines()[0] == "tree: mean +- sem over 3 fold(s)"
    for metric in METRICS:
        assert (metric.label in text) == metric.headline, metric.name
    assert text.splitlines()[-1].endswith(f"; whole formulas: {tmp_path / 'explanations.json'}")
    for m in per_data_set:  # a data set with them: shown beside the headline metrics
        summary[f"{m.name}_mean"] = summary[f"{m.name}_sem"] = 0.5
    text = format_summary("tree", summary, tmp_path)
    assert all(m.label in text for m in per_data_set)
    summary["training_time_mean"] = summary["training_time_sem"] = float("nan")  # seed batching: a later seed
    shown = [line.split() for line in format_summary("tree", summary, tmp_path).splitlines()]
    assert ["training", "time", "(s)", "n/a"] in shown  # not "nan +- nan"


@pytest.mark.e2e
def test_the_record_names_the_data_and_an_edited_table_is_a_new_job(tmp_path: Path) -> None:
    """``data.json`` holds the data set's name, size, checksum and concepts; the job identity covers the data, so
    resume never skips a job whose table changed."""
    import json

    table = tmp_path / "t.csv"
    table.write_text("a,b,y\n" + "".join(f"{i % 2},{(i // 2) % 2},{i % 2}\n" for i in range(40)))
    args = ("data=csv", f"data.path={table}", "data.label=y", "method=tree", "cv.n_splits=2")
    first = train_in_process(tmp_path, *args)
    assert first.returncode == 0, first.stderr[-2000:]
    record = json.loads((tmp_path / "job" / "job.json").read_text())
    data = json.loads(record["texts"]["data.json"])
    assert data["name"] == "t" and data["rows"] == 40 and data["class_counts"] == {"0": 20, "1": 20}
    assert data["concepts"] and data["checksum"]
    again = train_in_process(tmp_path, *args)
    assert "already FINISHED" in again.stderr
    table.write_text(table.read_text() + "1,1,1\n0,0,0\n")
    edited = train_in_process(tmp_path, *args)
    assert edited.returncode == 0 and "already FINISHED" not in edited.stderr, edited.stderr[-2000:]


@pytest.mark.e2e
def test_psi_whose_fan_in_pruning_never_happens_is_refused_before_training(tmp_path: Path) -> None:
    """With more concepts than the read-out takes (max_fan_in 16), psi needs its pruning (epoch 2001) to happen."""
    proc = train_in_process(
        tmp_path,
        "data=dnf",
        "data.n_concepts=20",
        "method=psi",
        "method.explainer.epochs=300",
        "cv.folds=[0]",
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    errors = [line for line in proc.stderr.splitlines() if "[ERROR]" in line]
    assert len(errors) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert "method.explainer.epochs=300: psi's fan-in pruning never happens in 300 epochs" in errors[0]
    assert (
        "fix: method.explainer.epochs=2003 or more, or an earlier pruning, e.g. method.explainer.callbacks.1.epoch=150"
        in errors[0]
    )
    assert not (tmp_path / "job" / "job.json").exists()


def test_psi_checks_its_pruning_against_the_concepts_only_where_the_read_out_needs_it() -> None:
    from lenbench.callbacks.pruning import FanInPruning
    from lenbench.explainers.psi_net import PsiNetExplainer

    def psi(epochs: int) -> PsiNetExplainer:
        return PsiNetExplainer(seed=0, epochs=epochs, callbacks=[FanInPruning(fan_in=2, epoch=2001)])

    psi(300).check_inputs(16)  # few concepts: the read-out takes the unpruned network
    psi(2003).check_inputs(90)  # pruned after epoch 2002, the last one
    with pytest.raises(ConfigError, match="never happens in 2002 epochs"):
        psi(2002).check_inputs(90)
