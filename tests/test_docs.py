"""Every command the documentation shows is accounted for, and every relative link leads somewhere.

The documentation is README.md and the site's pages under docs/ (mkdocs.yml). Each command line of a shell block
(```bash, ```sh, ```console) is, exactly one of:

- **read from its page and run by another test** (:data:`READ_BY_TESTS`): that test takes the commands from the
  page with :func:`helpers.doc_section`, so the page and the test cannot drift apart;
- **run here as written** (:data:`RUN_HERE`): cheap commands (``--help``, lint);
- **listed** in :data:`LISTED` with the reason it is not run as written (it trains for minutes, starts a server,
  installs packages, rewrites committed files ...) and, where it can be shortened, the shortened variant this test
  runs: ``compose`` (the Hydra config of a ``python -m train`` / ``lenbench.tune`` command, ``make train/sweep/
  paper/tune`` included, composed and checked as the command would before running its jobs: every config group,
  option and key), ``make -n`` (make's dry run: the target exists and what it would run), ``--help`` (the program
  starts and parses its arguments).

A command in no list fails :func:`test_every_documented_command_is_accounted_for`, so no command can come into the
documentation unchecked; a listed command the documentation no longer shows fails it too.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import DOC_PAGES, REPO, doc_section

SHELL_BLOCK = re.compile(r"^```(?:bash|sh|console)\n(.*?)^```", re.MULTILINE | re.DOTALL)
LINK = re.compile(r"\]\(([^)\s]+)\)")
STAMP = ".venv/.installed"  # make's install target: never rerun from a test (make -o treats it as up to date)

# (page, section heading, the commands of that section the test reads) -> the test that reads and runs them.
READ_BY_TESTS = {
    ("data.md", "Your own data", r"\.venv/bin/python -m train data=csv "): (
        "tests/test_bundled_data.py::test_your_own_data_commands_in_the_readme_run_as_written"
    ),
    ("models.md", "Explain new rows with a trained model", r""): (
        "tests/test_models_e2e.py::test_the_readme_example_runs_as_written"
    ),
    ("extending.md", "A complete example outside the repository", r""): "tests/test_plugin.py",
}

RUN_HERE = {
    ".venv/bin/python -m train --help",
    "make lint",
}

# Why a command is not run as written; the variant run instead, if any.
MINUTES = "trains for minutes (a real study: every fold, full epochs)"
SWEEP = "a sweep of several jobs, minutes to hours"
SERVER = "starts a server that runs until it is stopped"
COMPOSE, DRY, HELP = "compose", "make -n", "--help"
LISTED: dict[str, tuple[str, str | None]] = {
    # README
    "make train": (f"{MINUTES}; the jobs' code is what the e2e tests run on small data", DRY),
    "make test": ("the whole suite: this test is part of it", DRY),
    'make train ARGS="method=psi seed=0"': (MINUTES, COMPOSE),
    ".venv/bin/python -m train method=psi -m seed=0,1,2": (
        f"{SWEEP}; tests/test_cli.py::test_design_card_command_runs_as_written runs it on small data",
        COMPOSE,
    ),
    'make tune ARGS="method=entropy data=mimic"': ("20 trials of 10 folds, minutes", COMPOSE),
    ".venv/bin/python -m train -m experiment=suite": ("192 jobs, about half an hour", COMPOSE),
    ".venv/bin/python -m train -m experiment=concept_suite": ("96 jobs, about a quarter of an hour", COMPOSE),
    ".venv/bin/python -m lenbench.explain run=<run> data.path=new.csv": (
        "needs a trained run; the example of docs/models.md is run by tests/test_models_e2e.py",
        None,
    ),
    "make ui": (f"{SERVER}; tests/test_ui.py starts it and looks at it in headless Chromium", DRY),
    "make readme-tables ARGS=--check": (
        "about 20 s of CPU; tests/test_report_outputs.py::test_readme_tables_equal_what_the_committed_results_give "
        "checks the same tables",
        DRY,
    ),
    "make numerics": ("trains MIMIC-II folds under four settings, about 5 minutes", DRY),
    "make docs": ("CI builds the site (.ci/run, after make test)", DRY),
    "make clean": ("removes the checkout's outputs and caches", DRY),
    # docs/protocol.md
    ".venv/bin/python -m train -m experiment=mimic_extended hydra.sweep.dir=multirun/extended": (
        "every method on MIMIC-II, about 8 minutes",
        COMPOSE,
    ),
    ".venv/bin/python -m lenbench.report.snapshot multirun/extended --into results/mimic": (
        "rewrites the committed results/ from a finished sweep",
        HELP,
    ),
    "make readme-tables": ("rewrites the committed tables; the --check above is covered", DRY),
    # docs/data.md
    ".venv/bin/python -m train data=breast_cancer": (
        "10 folds of the tree; tests/test_bundled_data.py trains on it",
        COMPOSE,
    ),
    ".venv/bin/python -m train data=digits_parity": ("10 folds with a concept encoder each", COMPOSE),
    ".venv/bin/python -m train data=digits_parity data.concepts_from=truth": (MINUTES, COMPOSE),
    ".venv/bin/python -m train method=cbm data=trig": (
        "10 folds of a concept bottleneck model (a shorter run: test_concept_models.py)",
        COMPOSE,
    ),
    ".venv/bin/python -m train method=cbm data=dot method.explainer.training=sequential": (
        "10 folds of a concept bottleneck model",
        COMPOSE,
    ),
    ".venv/bin/python -m train method=blackbox data=trig": ("10 folds of an MLP", COMPOSE),
    ".venv/bin/python -m train method=cem data=trig": (
        "10 folds of a concept embedding model (in process, one fold: test_concept_models.py)",
        COMPOSE,
    ),
    ".venv/bin/python -m train method=dcr data=dot": (
        "10 folds of a deep concept reasoner (in process, one fold on trig: test_concept_models.py)",
        COMPOSE,
    ),
    ".venv/bin/python -m train data=digits_addition method=entropy": (
        "10 folds with a concept encoder each, about a minute",
        COMPOSE,
    ),
    ".venv/bin/python -m train data=trig method=entropy data.encoder.epochs=500 'data.encoder.hidden=[64,32]'": (
        MINUTES,
        COMPOSE,
    ),
    # docs/sweeps.md
    ".venv/bin/python -m train -m method=pruning,weights,psi,tree": (SWEEP, COMPOSE),
    "make paper": ("the notebook's whole study, minutes", DRY),
    'make sweep ARGS="method=psi seed=0,1,2 hydra/launcher=joblib"': (SWEEP, COMPOSE),
    # docs/tuning.md
    'make tune ARGS="method=tree data=xor tune.n_trials=6"': ("about 40 s", COMPOSE),
    ".venv/bin/python -m lenbench.tune -m method=tree,rulelist,entropy data=xor": ("three studies", COMPOSE),
    'make report ARGS="--experiment xor"': ("reads the studies of an MLflow experiment", DRY),
    # docs/scaling-out.md: a Slurm cluster's login node
    "source ~/.config/lenbench/server.env": ("the cluster's secrets, outside the repository", None),
    "make server HOST=0.0.0.0 PORT=5000 AUTH=1": (
        f"{SERVER} on every address; tests/test_server_faults.py runs make server AUTH=1 on loopback",
        DRY,
    ),
    "export MLFLOW_TRACKING_URI=http://<login-node>:5000": ("the cluster's tracking server", None),
    "export LENBENCH_DATA_DIR=/shared/lenbench/data": ("the cluster's shared file system", None),
    ".venv/bin/python -m train -m hydra/launcher=slurm hydra.launcher.partition=<partition> experiment=mimic_paper": (
        "needs a Slurm cluster; tests/test_scaleout.py runs the submitit launcher locally",
        COMPOSE,
    ),
    ".venv/bin/python -m train -m hydra/launcher=slurm hydra.launcher.partition=<partition> method=entropy "
    "seed=0,1,2,3,4": ("needs a Slurm cluster", COMPOSE),
    ".venv/bin/python -m lenbench.tune -m hydra/launcher=slurm hydra.launcher.partition=<partition> "
    "method=entropy,pruning,tree data=mimic tune.storage=postgresql://<user>@<db-host>/optuna": (
        "needs a Slurm cluster and a database server",
        COMPOSE,
    ),
    # docs/models.md: stock Lightning callbacks
    ".venv/bin/python -m train method=entropy trainer=early_stopping": (MINUTES, COMPOSE),
    ".venv/bin/python -m train method=entropy trainer.enable_progress_bar=true cv.n_jobs=1": (
        MINUTES,
        COMPOSE,
    ),
    # docs/performance.md
    "make bench": ("the benchmark, about an hour", DRY),
    'make bench ARGS="--batching fast"': ("the benchmark, about an hour", DRY),
    "make bench ARGS=--quick": ("folds 0-1 of the benchmark, minutes", DRY),
    ".venv/bin/python benchmarks/bench.py --methods psi --repeats 3 --skip-study": (
        "times psi's MIMIC-II folds three times, minutes (even its --help imports torch: 7 s)",
        None,
    ),
}


def _command_lines(block: str) -> list[str]:
    """The commands of a shell block: continuation lines joined, comments and blank lines dropped; in a console
    block only the lines after a ``$`` prompt (the others are output)."""
    lines = block.replace("\\\n", " ").splitlines()
    if any(line.startswith("$ ") for line in lines):
        lines = [line[2:] for line in lines if line.startswith("$ ")]
    commands = []
    for line in lines:
        command = re.sub(r"\s+#\s.*$", "", line).strip()
        if command and not command.startswith("#"):
            commands.append(" ".join(command.split()))
    return commands


def documented_commands() -> dict[str, list[str]]:
    """Every command of every shell block of the documentation -> the pages that show it."""
    found: dict[str, list[str]] = {}
    for page in DOC_PAGES:
        for block in SHELL_BLOCK.findall(page.read_text()):
            for command in _command_lines(block):
                found.setdefault(command, []).append(page.name)
    return found


def read_by_tests() -> dict[str, str]:
    """The commands another test reads from its page and runs -> that test."""
    read = {}
    for (page, heading, pattern), test in READ_BY_TESTS.items():
        for block in SHELL_BLOCK.findall(doc_section(page, heading)):
            read.update({c: test for c in _command_lines(block) if re.match(pattern, c)})
    return read


def test_the_tests_that_read_commands_from_the_pages_really_do() -> None:
    for (page, heading, _), test in READ_BY_TESTS.items():
        path, _, name = test.partition("::")
        source = (REPO / path).read_text()
        assert f'doc_section("{page}", "{heading}")' in source.replace("\n    ", " "), (test, page, heading)
        assert not name or f"def {name}(" in source, test
        assert any(SHELL_BLOCK.findall(doc_section(page, heading))), (page, heading)


def test_every_documented_command_is_accounted_for() -> None:
    documented, read = documented_commands(), read_by_tests()
    unaccounted = [c for c in documented if c not in read and c not in RUN_HERE and c not in LISTED]
    assert not unaccounted, (
        "commands in the documentation that no test runs: run them in tests/test_docs.py, or list them in "
        f"LISTED with the reason and a shortened variant: {unaccounted}"
    )
    twice = [c for c in documented if (c in read) + (c in RUN_HERE) + (c in LISTED) > 1]
    assert not twice, f"accounted for twice: {twice}"
    stale = sorted((RUN_HERE | set(LISTED)) - set(documented))
    assert not stale, f"no longer in the documentation, drop them from tests/test_docs.py: {stale}"
    assert all(variant in (COMPOSE, DRY, HELP, None) and reason for reason, variant in LISTED.values())


def _slug(heading: str) -> str:
    """A heading's anchor as MkDocs (and GitHub, for these headings) writes it."""
    text = re.sub(r"[^\w\s-]", "", heading.strip().lower())
    return re.sub(r"[-\s]+", "-", text).strip("-")


def _anchors(page: Path) -> set[str]:
    text = re.sub(r"^```.*?^```", "", page.read_text(), flags=re.MULTILINE | re.DOTALL)
    return {_slug(h) for h in re.findall(r"^#+ (.+)$", text, flags=re.MULTILINE)}


def test_every_relative_link_leads_to_a_file_or_a_heading() -> None:
    """README.md's links (to docs/ pages, to files of the repository) and the pages' links to each other; an
    anchor must name a heading of its page. ``make docs`` (mkdocs build --strict) checks the pages as well."""
    broken = []
    for page in DOC_PAGES:
        text = re.sub(r"^```.*?^```", "", page.read_text(), flags=re.MULTILINE | re.DOTALL)
        for target in LINK.findall(text):
            if re.match(r"[a-z]+:", target):
                continue
            path, _, anchor = target.partition("#")
            linked = (page.parent / path).resolve() if path else page
            if not linked.exists() or (anchor and linked.suffix == ".md" and anchor not in _anchors(linked)):
                broken.append(f"{page.relative_to(REPO)}: {target}")
    assert not broken, broken
    readme = (REPO / "README.md").read_text()
    assert all(
        f"(docs/{p.name})" in readme for p in DOC_PAGES if p.parent == REPO / "docs" and p.name != "index.md"
    )


COMPOSE_SCRIPT = """
import json, sys
from pathlib import Path
import lenbench.tune.__main__  # registers the train and tune schemas, as the two entry points do
from lenbench.config import check_command_line, multirun_flag_first
from lenbench.errors import UserError
failed = {}
for command, config, argv in json.loads(sys.argv[1]):
    try:
        check_command_line(multirun_flag_first(["python", *argv])[1:], Path("conf"), config)
    except UserError as exc:
        failed[command] = str(exc)
print(json.dumps(failed))
"""


def _hydra_command(command: str) -> tuple[str, list[str]] | None:
    """(config name, Hydra arguments) of a ``python -m train``/``lenbench.tune`` command or of the make target
    that runs one (``make train/sweep/paper/tune ARGS=...``); None for any other command."""
    words = shlex.split(command)
    make = {
        "train": ("train", []),
        "sweep": ("train", ["-m"]),
        "paper": ("train", ["-m", "experiment=mimic_paper"]),
    }
    make["tune"] = ("tune", [])
    if words[:3] in ([".venv/bin/python", "-m", "train"], [".venv/bin/python", "-m", "lenbench.tune"]):
        return ("train" if words[2] == "train" else "tune"), words[3:]
    if words[0] == "make" and len(words) > 1 and words[1] in make:
        config, fixed = make[words[1]]
        args = [w.removeprefix("ARGS=") for w in words[2:] if w.startswith("ARGS=")]
        return config, fixed + shlex.split(" ".join(args))
    return None


@pytest.mark.e2e
def test_documented_commands_run_or_their_shortened_variants_do(tmp_path: Path) -> None:
    """RUN_HERE as written; LISTED through their variants: every Hydra command composed in one process (its
    output folders in tmp_path), every make command dry-run, the other programs' --help."""
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"}

    def run(command: list[str] | str) -> subprocess.CompletedProcess:
        return subprocess.run(
            command,
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
            shell=isinstance(command, str),
        )

    for command in sorted(RUN_HERE):
        words = shlex.split(command)
        done = run(["make", "-o", STAMP, *words[1:]] if words[0] == "make" else command)
        assert done.returncode == 0, (command, done.stdout[-2000:], done.stderr[-2000:])
    composed, dry, helped = [], [], []
    for command, (_, variant) in LISTED.items():
        if variant == COMPOSE:
            config, argv = _hydra_command(command)
            argv = [re.sub(r"<[\w-]+>", "x", a) for a in argv]  # placeholders: <partition>, <user>, <db-host>
            folders = [f"hydra.run.dir={tmp_path / 'run'}", f"hydra.sweep.dir={tmp_path / 'sweep'}"]
            composed.append((command, config, [*argv, *folders]))
        elif variant == DRY:
            dry.append(command)
        elif variant == HELP:
            helped.append(command)
    assert len(composed) >= 15 and len(dry) >= 10
    done = run([sys.executable, "-c", COMPOSE_SCRIPT, json.dumps(composed)])
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.splitlines()[-1]) == {}
    for command in dry:
        words = shlex.split(command)
        done = run(["make", "-n", "-o", STAMP, *words[1:]])
        assert done.returncode == 0 and done.stdout.strip(), (command, done.stderr[-2000:])
    for command in helped:
        words = shlex.split(command)
        program = words[:3] if words[1] == "-m" else words[:2]
        done = run([*program, "--help"])
        assert done.returncode == 0 and "usage" in done.stdout.lower(), (command, done.stderr[-2000:])
