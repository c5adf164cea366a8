"""A job's fold models end to end: logged by ``python -m train``, named by the parent run, used by
``python -m lenbench.explain`` and by MLflow's own ``mlflow models predict`` and ``mlflow models serve`` with the
same numbers; every bad input to the command line is one line and exit status 2."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers import (
    HANG_GUARD_S,
    REPO,
    doc_section,
    job_env,
    main_in_process,
    run_command,
    run_train,
    store_uri,
    train_in_process,
    wait_until,
)
from mlflow import MlflowClient

pytestmark = pytest.mark.e2e

JOB = ("data=xor", "data.n_samples=300", "data.n_concepts=6", "method=tree", "cv.n_splits=3", "cv.n_jobs=1")
ANSWER = ["predicted_class", "score", "formula_fires", "local_explanation"]


@pytest.fixture(scope="module")
def job(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One tree job on xor (3 folds) in its own store, and a table of new rows (with the label column)."""
    tmp = tmp_path_factory.mktemp("models_e2e")
    done = run_train(tmp, *JOB)
    assert done.returncode == 0, done.stderr[-3000:]
    client = MlflowClient(store_uri(tmp))
    runs = client.search_runs([client.get_experiment_by_name("xor").experiment_id])
    parent = next(r for r in runs if "mlflow.parentRunId" not in r.data.tags)
    folds = {int(r.data.tags["fold"]): r for r in runs if "fold" in r.data.tags}
    from lenbench.data import make_xor

    data = make_xor(n_samples=40, n_concepts=6, seed=7)
    new = pd.DataFrame(data.x, columns=data.concept_names).assign(y=data.y)
    new.to_csv(tmp / "new.csv", index=False)
    return {"tmp": tmp, "client": client, "parent": parent, "folds": folds, "new": new}


def explain_in_process(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    """``python -m lenbench.explain`` with ``env``, run in this process (its main): a process of its own costs
    seconds of imports; the README example and test_log_model_false_logs_none_and_does_not_change_the_job run it as
    one."""
    from lenbench.explain import main

    return main_in_process(main, list(args), env)


def explain(job: dict, *args: str) -> subprocess.CompletedProcess:
    """:func:`explain_in_process` over the job's store."""
    return explain_in_process(job_env(job["tmp"]), *args)


def test_every_fold_run_has_a_model_the_parent_names(job: dict) -> None:
    client, parent, folds = job["client"], job["parent"], job["folds"]
    models = client.search_logged_models([parent.info.experiment_id])
    runs = [parent.info.run_id, *(r.info.run_id for r in folds.values())]  # the parent's: the folds' vote
    assert sorted(m.source_run_id for m in models) == sorted(runs)
    assert parent.data.tags["lenbench.model_id"] in [m.model_id for m in models]
    assert all(str(m.status) in ("READY", "LoggedModelStatus.READY") for m in models)
    # the Models tab: each model named as its run (the vote as the job), with the job's params and its metrics
    names = {m.source_run_id: m.name for m in models}
    assert names == {r.info.run_id: r.info.run_name for r in [parent, *folds.values()]}
    assert all(m.params == parent.data.params and m.metrics for m in models)
    for fold, run in folds.items():
        model_id = run.data.tags["lenbench.model_id"]
        assert parent.data.tags[f"lenbench.model.fold{fold}"] == f"models:/{model_id}"
        # the runs table's Models column lists a run's model outputs
        assert [o.model_id for o in client.get_run(run.info.run_id).outputs.model_outputs] == [model_id]
        assert run.data.metrics["model_logging_time"] > 0  # measured per fold: benchmarks read it


def test_explain_and_mlflow_models_predict_give_the_same_numbers(job: dict) -> None:
    fold_run = job["folds"][1]
    out = job["tmp"] / "fold1.csv"
    done = explain(job, f"run={fold_run.info.run_name}", f"data.path={job['tmp'] / 'new.csv'}", f"out={out}")
    assert done.returncode == 0, done.stderr[-2000:]
    assert "fold 1 model" in done.stdout and "accuracy against column y" in done.stdout
    ours = pd.read_csv(out, keep_default_na=False)
    assert list(ours.columns) == [*job["new"].columns, *ANSWER]

    pred = job["tmp"] / "pred.json"
    cmd = [
        str(Path(sys.executable).parent / "mlflow"),
        "models",
        "predict",
        "-m",
        f"runs:/{fold_run.info.run_id}/{fold_run.info.run_name}",  # a model is named as its run
    ]
    cmd += ["-i", str(job["tmp"] / "new.csv"), "-t", "csv", "--env-manager", "local", "-o", str(pred)]
    done = run_command(cmd, job_env(job["tmp"]))
    assert done.returncode == 0, done.stderr[-2000:]
    theirs = pd.DataFrame(json.loads(pred.read_text())["predictions"])
    assert np.array_equal(theirs["predicted_class"], ours["predicted_class"])
    assert np.array_equal(theirs["score"].to_numpy(float), ours["score"].to_numpy(float))
    assert list(theirs["formula_fires"]) == list(ours["formula_fires"])
    assert list(theirs["local_explanation"]) == list(ours["local_explanation"])


def test_the_parent_run_explains_with_the_folds_majority(job: dict) -> None:
    answers = []
    for fold in sorted(job["folds"]):
        out = job["tmp"] / f"each{fold}.csv"
        run = f"run={job['folds'][fold].info.run_id}"
        assert explain(job, run, f"data.path={job['tmp'] / 'new.csv'}", f"out={out}").returncode == 0
        answers.append(pd.read_csv(out)["predicted_class"].to_numpy())
    out = job["tmp"] / "ensemble.csv"
    done = explain(
        job, f"run={job['parent'].info.run_name}", f"data.path={job['tmp'] / 'new.csv'}", f"out={out}"
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "ensemble of 3 fold models" in done.stdout
    ensemble = pd.read_csv(out, keep_default_na=False)
    votes = np.sum(answers, axis=0)
    assert np.array_equal(ensemble["votes"], votes)
    assert np.array_equal(ensemble["predicted_class"], (votes >= 2).astype(int))
    assert ensemble["formulas_agreeing"].between(0, 3).all()
    with pytest.MonkeyPatch.context() as patch:  # the parent run's own MLflow model gives the same answers
        patch.setenv("MLFLOW_TRACKING_URI", job["client"].tracking_uri)
        import mlflow.pyfunc

        model = mlflow.pyfunc.load_model(f"runs:/{job['parent'].info.run_id}/{job['parent'].info.run_name}")
        served = model.predict(job["new"].drop(columns=["y"]))
    for column in served.columns:
        assert list(served[column]) == list(ensemble[column]), column


def test_bad_input_is_one_line_and_exit_2(job: dict, tmp_path: Path) -> None:
    """Each bad input as ``python -m lenbench.explain`` would meet it, run in this process (its main, its exit
    status, its stderr); test_log_model_false_logs_none_and_does_not_change_the_job runs one as a process."""
    from lenbench.models.store import log_model

    client, parent, folds = job["client"], job["parent"], job["folds"]
    new = job["new"]
    old_run = client.create_run(
        parent.info.experiment_id,
        run_name="old-version",
        tags={"fold": "0", "mlflow.parentRunId": parent.info.run_id},
    ).info.run_id
    from lenbench.models.export import ModelExport  # a model as another lenbench version would have logged it

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", client.tracking_uri)
        import mlflow.pyfunc

        export = (
            mlflow.pyfunc.load_model(f"models:/{folds[0].data.tags['lenbench.model_id']}")
            .unwrap_python_model()
            .export
        )
    assert isinstance(export, ModelExport)
    old = dataclasses.replace(export, lenbench_version="0.0.1")
    uri = log_model(client, parent.info.experiment_id, old_run, old)
    client.set_tag(old_run, "lenbench.model_id", uri.removeprefix("models:/"))
    client.create_run(parent.info.experiment_id, run_name="no-model")
    tables = {
        "missing.csv": new.drop(columns=["c2"]),
        "extra.csv": new.assign(age=50),
        "range.csv": new.assign(c3=np.where(np.arange(len(new)) == 4, 3.0, new["c3"])),
    }
    for name, frame in tables.items():
        frame.to_csv(tmp_path / name, index=False)
    good = f"data.path={job['tmp'] / 'new.csv'}"
    cases = [
        (("run=0123456789abcdef0123456789abcdef", good), "no such run in the MLflow store"),
        (("run=nobody-s1", good), "no run of that name"),
        (("run=no-model", good), "has no model"),
        (("run=old-version", good), "was logged by lenbench 0.0.1"),
        (
            (f"run={folds[0].info.run_id}", f"data.path={tmp_path / 'missing.csv'}"),
            "concept column(s) missing (c2)",
        ),
        ((f"run={folds[0].info.run_id}", f"data.path={tmp_path / 'extra.csv'}"), "does not know (age)"),
        (
            (f"run={folds[0].info.run_id}", f"data.path={tmp_path / 'range.csv'}"),
            "concept 'c3' in row 5 is 3",
        ),
        ((f"run={folds[0].info.run_id}", f"data.path={tmp_path / 'absent.csv'}"), "no such file"),
        (("run=x", good, "epochs=3"), "not an argument of lenbench.explain"),
        ((good,), "run is not set"),
    ]
    for args, message in cases:
        done = explain(job, *args)
        assert done.returncode == 2, (args, done.stderr[-2000:])
        errors = [line for line in done.stderr.splitlines() if "ERROR" in line]
        assert len(errors) == 1 and message in errors[0], (args, done.stderr[-2000:])
        assert "Traceback" not in done.stderr


def test_log_model_false_logs_none_and_does_not_change_the_job(job: dict) -> None:
    done = train_in_process(job["tmp"], *JOB, "method.log_model=false")
    assert done.returncode == 0 and "skipped, run" in done.stderr  # not part of the job's identity
    done = train_in_process(
        job["tmp"], *JOB, "method.log_model=false", "resume=false", "tracking.experiment=nomodel"
    )
    assert done.returncode == 0, done.stderr[-2000:]
    client = job["client"]
    experiment = client.get_experiment_by_name("nomodel").experiment_id
    assert client.search_logged_models([experiment]) == []
    # By name, the most recent run of that name: the job just run, without models.
    args = ["run=tree-s42", f"data.path={job['tmp'] / 'new.csv'}", f"tracking.uri={client.tracking_uri}"]
    done = run_command([sys.executable, "-m", "lenbench.explain", *args], job_env(job["tmp"]))
    assert done.returncode == 2 and "has no model" in done.stderr and "method.log_model=true" in done.stderr


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ping(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status == 200
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return False


def test_mlflow_models_serve_answers_a_request(job: dict) -> None:
    run = job["folds"][2]
    port = _free_port()
    mlflow_cli = str(Path(sys.executable).parent / "mlflow")
    model = f"runs:/{run.info.run_id}/{run.info.run_name}"
    cmd = [mlflow_cli, "models", "serve", "-m", model, "-h", "127.0.0.1"]
    cmd += ["-p", str(port), "--env-manager", "local", "-w", "1"]
    log = (job["tmp"] / "serve.log").open("w")
    bin_dir = str(
        Path(sys.executable).parent
    )  # mlflow starts uvicorn from PATH: the venv's, as after activating it
    env = job_env(job["tmp"], PATH=f"{bin_dir}:{os.environ.get('PATH', '')}")
    server = subprocess.Popen(
        cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until(
            lambda: _ping(f"{url}/ping"),
            "the model server answering /ping",
            server,
            details=lambda: (job["tmp"] / "serve.log").read_text()[-2000:],
        )
        rows = job["new"].drop(columns=["y"]).head(5)
        body = json.dumps({"dataframe_split": {"columns": list(rows.columns), "data": rows.values.tolist()}})
        request = urllib.request.Request(
            f"{url}/invocations", body.encode(), {"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            served = pd.DataFrame(json.loads(response.read())["predictions"])
        bad = rows.assign(c3=2.0)  # a concept outside [0, 1]: a client error, answered as one
        body = json.dumps({"dataframe_split": {"columns": list(bad.columns), "data": bad.values.tolist()}})
        request = urllib.request.Request(
            f"{url}/invocations", body.encode(), {"Content-Type": "application/json"}
        )
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=60)
        assert refused.value.code == 400 and "concept 'c3' in row 1 is 2, not a number in [0, 1]" in (
            refused.value.read().decode()
        )
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=60)
        log.close()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", job["client"].tracking_uri)
        import mlflow.pyfunc

        local = mlflow.pyfunc.load_model(model).predict(rows)
    assert list(served.columns) == ANSWER
    assert np.array_equal(served["predicted_class"], local["predicted_class"])
    assert np.array_equal(served["score"].to_numpy(float), local["score"].to_numpy(float))
    assert list(served["local_explanation"]) == list(local["local_explanation"])


def test_a_resumed_jobs_reused_folds_keep_their_models(job: dict) -> None:
    """A fold reused from an interrupted run (tag reused_from) was not trained again: its model is the earlier
    run's, and the resumed job's ensemble includes it."""
    from lenbench.models.runs import run_models

    client, experiment, fold0 = job["client"], job["parent"].info.experiment_id, job["folds"][0]
    parent = client.create_run(experiment, run_name="resumed-s42")
    tags = {"fold": "0", "mlflow.parentRunId": parent.info.run_id, "reused_from": fold0.info.run_id}
    client.create_run(experiment, run_name="resumed-s42-fold0", tags=tags)
    found = run_models(client, client.get_run(parent.info.run_id))
    assert not found.is_fold and found.uris == {0: f"models:/{fold0.data.tags['lenbench.model_id']}"}


def test_the_readme_example_runs_as_written(tmp_path: Path) -> None:
    """The commands of the "Explain new rows with a trained model" section (docs/models.md), in order, in a fresh
    folder that holds the repository's virtual environment and examples: the server on a free port (its own process
    group, ended at the end), asked once it answers /ping."""
    section = doc_section("models.md", "Explain new rows with a trained model")
    blocks = re.findall(r"```bash\n(.*?)```", section, flags=re.DOTALL)
    lines = [line for block in blocks for line in block.splitlines() if line.strip()]
    assert [line.split()[0] for line in lines if line.startswith(("mlflow models serve", "curl"))] == [
        "mlflow",
        "curl",
    ]
    for name in (".venv", "examples"):
        (tmp_path / name).symlink_to(REPO / name)
    lookup = (
        '.venv/bin/python -c "from mlflow import MlflowClient; c = MlflowClient(); '
        "print(c.search_runs([e.experiment_id for e in c.search_experiments()], "
        '\\"attributes.run_name = \'entropy-s42-fold0\'\\")[0].info.run_id)"'
    )
    port = str(_free_port())
    script = ["set -e", "trap 'if [ -n \"$SERVER\" ]; then kill -TERM -- -$SERVER; fi' EXIT"]
    for line in lines:
        if "<fold run id>" in line:
            script.append(f"FOLD_RUN_ID=$({lookup})")
        line = line.replace("<fold run id>", "$FOLD_RUN_ID").replace("5002", port)
        if line.startswith("mlflow models serve"):  # as the page says: in an activated environment
            script += ["source .venv/bin/activate", f"setsid {line} > serve.log 2>&1 &", "SERVER=$!"]
            script.append(
                f"until curl -s -o /dev/null http://127.0.0.1:{port}/ping; do kill -0 $SERVER; sleep 0.5; done"
            )
        else:
            script.append(line)
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    done = subprocess.run(
        ["bash", "-c", "\n".join(script)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=HANG_GUARD_S,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "outputs" / "explain" / "fold0.csv").is_file()
    assert (tmp_path / "outputs" / "explain" / "ensemble.csv").is_file()
    assert "ensemble of 5 fold models" in done.stdout and done.stdout.count('{"predictions": [') == 2


def test_explain_checks_raw_values_and_the_model_files(tmp_path: Path) -> None:
    """A table model (raw columns): infinity refused, values outside the training range named once per column
    (refused with strict_range=true), a truncated model file refused before it is unpickled; one line each."""
    from urllib.parse import urlparse

    from lenbench.data.bundled import breast_cancer_frame

    done = run_train(tmp_path, "data=breast_cancer", "method=tree", "cv.folds=[0,1]", "cv.n_jobs=1")
    assert done.returncode == 0, done.stderr[-3000:]
    rows = breast_cancer_frame().head(6)
    tables = {
        "inf.csv": rows.assign(mean_area=np.where(np.arange(6) == 2, np.inf, rows["mean_area"])),
        "far.csv": rows.assign(mean_texture=np.where(np.arange(6) == 4, 1e300, rows["mean_texture"])),
    }
    for name, frame in tables.items():
        frame.to_csv(tmp_path / name, index=False)
    env = job_env(tmp_path)

    def explain_rows(*args: str) -> subprocess.CompletedProcess:
        return explain_in_process(env, "run=tree-s42", *args)

    done = explain_rows(f"data.path={tmp_path / 'far.csv'}", f"out={tmp_path / 'far-out.csv'}")
    assert done.returncode == 0, done.stderr[-2000:]
    warned = [line for line in done.stderr.splitlines() if "WARNING" in line]
    assert len(warned) == 1 and "column 'mean_texture' in row 5 is 1e+300, outside the range" in warned[0]
    far, inf = f"data.path={tmp_path / 'far.csv'}", f"data.path={tmp_path / 'inf.csv'}"
    refused = [
        ((far, "strict_range=true"), "column 'mean_texture' in row 5 is 1e+300, outside the range"),
        ((inf,), "column 'mean_area' must hold finite numbers, but row 3 holds 'inf'"),
        ((far, "strict_range=yes"), "strict_range=yes: not true or false"),
    ]
    for args, message in refused:
        _assert_one_error(explain_rows(*args), message)

    client = MlflowClient(store_uri(tmp_path))
    experiment = client.get_experiment_by_name("breast_cancer").experiment_id
    fold1 = client.search_runs([experiment], "attributes.run_name = 'tree-s42-fold1'")[0]
    model = client.get_logged_model(fold1.data.tags["lenbench.model_id"])
    pkl = Path(urlparse(model.artifact_location).path) / "python_model.pkl"
    pkl.write_bytes(pkl.read_bytes()[:100])  # truncated
    line = _assert_one_error(explain_rows(far), f"run tree-s42: the model models:/{model.model_id} (fold 1)")
    assert (
        "python_model.pkl differs from the file logged (SHA-256)" in line
        and "fix: train the run again" in line
    )


def _assert_one_error(done: subprocess.CompletedProcess, message: str) -> str:
    """Exit status 2, one ERROR line holding ``message`` (returned), no traceback."""
    assert done.returncode == 2, done.stderr[-2000:]
    errors = [line for line in done.stderr.splitlines() if "ERROR" in line]
    assert len(errors) == 1 and message in errors[0], done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    return errors[0]
