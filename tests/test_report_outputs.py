"""The report's outputs as people use them: LaTeX that compiles, readable CSV and Markdown, figures that say what
they show, the end-of-sweep summary, and README tables equal to what the committed results give."""

from __future__ import annotations

import functools
import io
import json
import math
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers import REPO

from lenbench.report import build, compare, figures, latex, readme, render
from lenbench.report.sweep_summary import sweep_summary
from lenbench.scoring import METRICS, intervention_points
from lenbench.tracking.plots import fold_metrics_figure

FIGURES = REPO / "outputs" / "test-artifacts" / "report-figures"  # kept for a look after the run


def _runs_and_folds(
    studies: tuple[str, ...] = ("d1",), rows: tuple[str, ...] = ("a_1", "b%2", "c&3"), n_splits: int = 5
):
    """Three rows (names with LaTeX specials) on each study, 5 test folds (of ``n_splits``) x 2 seeds; row c has no
    explanation."""
    rng = np.random.default_rng(7)
    folds, runs = [], []
    for s, study in enumerate(studies):
        for r, row in enumerate(rows):
            for seed in (0, 1):
                run_id = f"{study}-{row}-{seed}"
                runs.append(
                    {
                        "run_id": run_id,
                        "method": row,
                        "seed": seed,
                        "data": study,
                        "label": "y",
                        "git_commit": "abc1234def",
                        "data_checksum": f"sum{s}",
                        "config_hash": "",
                        "run_name": f"{row}-s{seed}",
                        "params": {"cv.n_splits": n_splits, "method.explainer.seed": seed},
                    }
                )
                for fold in range(5):
                    accuracy = 0.7 + 0.05 * r + 0.02 * rng.standard_normal()
                    folds.append(
                        {
                            "run_id": run_id,
                            "method": row,
                            "seed": seed,
                            "fold": fold,
                            "formula": "" if row.startswith("c") else ["x1 & x2", "x2 | ~x3", "x1"][fold % 3],
                            "model_accuracy": accuracy,
                            "explanation_accuracy": float("nan") if row.startswith("c") else accuracy - 0.01,
                            "explanation_fidelity": float("nan") if row.startswith("c") else 0.95,
                            "truth_agreement": float("nan"),  # no known formula: a column of nothing
                            "explanation_complexity": float("nan") if row.startswith("c") else 1.0 + fold,
                            "training_time": rng.random(),
                            "elapsed_time": float("nan") if row.startswith("c") else 0.001,
                            "majority_accuracy": 0.75,
                        }
                    )
    return pd.DataFrame(folds), pd.DataFrame(runs)


# A long row name, five rows and two studies: tables wider than a page and longer than one.
WIDE_ROWS = ("a_1", "b%2", "c&3", "rulelist (max_depth=1, min_support=0.05)", "e")


@functools.cache  # tests only read it: one analysis per set of arguments
def _analysis(studies: tuple[str, ...] = ("d1",), **kwargs) -> build.Analysis:  # noqa: ANN003
    folds, runs = _runs_and_folds(studies, **kwargs)
    return build.analyse(folds, runs)


def test_a_latex_table_with_no_rows_is_its_caption_and_header() -> None:
    """A study of one row has no pairs to test: its paired_tests table is empty, grouped or not."""
    empty = pd.DataFrame({"study": [], "method": [], "p": []})
    for group in ((), ("study",)):
        tex = latex.table(empty, "No pairs.", "tab:none", group=group)
        assert r"\caption{No pairs.}\label{tab:none}" in tex
        assert r"\toprule method & p \\" in tex if group else r"\toprule study & method & p \\" in tex


def test_latex_escapes_text_and_writes_math_as_math() -> None:
    assert latex.escape("max_depth=1 & 5% #2 {x} ~y ^z \\") == (
        r"max\_depth=1 \& 5\% \#2 \{x\} \textasciitilde{}y \textasciicircum{}z \textbackslash{}"
    )
    assert latex.escape("0.5 ± 0.1 – n=…") == r"0.5 $\pm$ 0.1 -- n=\dots{}"
    assert latex.escape("<0.001") == r"\textless{}0.001"
    assert render.p_text(0.0001) == "<0.001" and render.p_text(float("nan")) == "n/a"
    texts = build.report_texts(_analysis(("d1", "d2"), rows=WIDE_ROWS))
    for name in (
        "summary_by_experiment.tex",
        "summary_headline.tex",
        "paired_tests.tex",
        "ranks_across_studies.tex",
    ):
        tex = texts[name]
        assert tex.startswith(latex.PREAMBLE) and "\\toprule" in tex and "\\bottomrule" in tex
        assert f"\\label{{tab:{name[:-4]}}}" in tex, name
        assert tex.count("\\caption{") == tex.count("\\begin{longtable}"), name  # every part has a caption
        bare = re.sub(r"\\(label|ref)\{[^}]*\}", "", tex).replace("\\_", "")  # a label may hold _
        unescaped = [line for line in bare.splitlines() if "_" in line]
        assert not unescaped, (name, unescaped[:2])
        assert "<" not in tex and "±" not in tex, name


def _pdflatex() -> str:
    binary = shutil.which("pdflatex")
    if binary is None:
        if os.environ.get("CI"):
            pytest.fail("CI is set but pdflatex is missing (.ci/run installs texlive-latex-base)")
        pytest.skip(
            "no pdflatex (apt-get install texlive-latex-base texlive-latex-recommended); CI=1 makes it fail"
        )
    return binary


def test_every_latex_table_fits_the_pages_of_a_standard_article(tmp_path: Path) -> None:
    """Every table, in the standard article class with its default margins and no font size set, on A4 and on
    letter paper: it compiles, and nothing runs over the text block (no overfull box, no float taller than a page;
    such a float left the first page blank)."""
    pdflatex = _pdflatex()
    texts = {
        **build.report_texts(_analysis(("d1", "d2"), rows=WIDE_ROWS)),
        "small.tex": build.report_texts(_analysis())["summary_headline.tex"].replace(
            "tab:summary", "tab:small"
        ),
    }
    tables = {name: text for name, text in texts.items() if name.endswith(".tex")}
    assert {"summary_by_experiment.tex", "summary_headline.tex", "paired_tests.tex"} <= set(tables)
    assert "\\caption{(continued)}" in tables["summary_by_experiment.tex"]  # cut into parts by columns
    for name, table in tables.items():
        (tmp_path / name).write_text(table)
    inputs = "".join(f"\\input{{{name}}}\n" for name in tables)
    for paper in ("a4paper", "letterpaper"):
        document = tmp_path / f"{paper}.tex"
        document.write_text(
            f"\\documentclass[{paper}]{{article}}\n\\usepackage[T1]{{fontenc}}\n\\usepackage{{booktabs,longtable}}\n"
            f"\\begin{{document}}\n{inputs}\\end{{document}}\n"
        )
        for _ in range(2):  # the second run settles longtable's widths and the references
            proc = subprocess.run(
                [pdflatex, "-interaction=nonstopmode", "-halt-on-error", document.name],
                cwd=tmp_path,
                capture_output=True,
                text=True,
                timeout=600,  # hang guard only
            )
            assert proc.returncode == 0, (paper, proc.stdout[-2000:])
        log = document.with_suffix(".log").read_text(errors="replace")
        assert "Overfull" not in log and "Float too large" not in log, (paper, re.findall(r"Overfull.*", log))


def test_csv_and_markdown_have_readable_headers() -> None:
    texts = build.report_texts(_analysis())
    for name in ("summary_by_experiment.csv", "summary_by_experiment_seed.csv", "paired_tests.csv"):
        header = texts[name].splitlines()[0]
        assert not [key for key in METRICS.names if key in header], (name, header)
        assert "_" not in header, (name, header)  # no raw column name at all
    summary = pd.read_csv(io.StringIO(texts["summary_by_experiment.csv"]))
    assert "extraction time (s) mean" in summary  # elapsed_time is the extraction time
    markdown = texts["summary_by_experiment.md"]
    assert "n (folds × seeds)" in markdown and "5 × 2" in markdown
    assert not [key for key in METRICS.names if key in markdown.split("\n\n")[0]]


def test_every_table_has_its_legend_and_no_p_value_that_cannot_decide() -> None:
    """5 test folds: no Wilcoxon test can reach 0.05 (its smallest p is 2/2^5 = 0.0625, twice that after Holm over
    a column's 2 comparisons), so none prints a p-value; the legends say so, say how the best row was chosen and
    which folds ran; a metric no row has is no column, a pair without a common fold no row."""
    texts = build.report_texts(_analysis(n_splits=10))
    for name, text in texts.items():
        if name.endswith(".md"):
            legend = text.split("\n\n", 1)[1]
            assert legend.strip() and "|" not in legend, name
    headline = texts["summary_headline.md"]
    assert "Study: d1 / y / 10-fold: 5 of 10 folds ran." in headline and "(p_t/p_w)" in headline
    assert "not held out" in headline and "n=5: 0.0625, n=5: 0.125" in headline
    cells = [cell.strip() for cell in headline.split("\n\n")[0].split("|") if "(" in cell and "/" in cell]
    assert cells and all(cell.endswith(f"/{render.NOT_SHOWN})") for cell in cells), cells
    for name in ("summary_by_experiment.md", "summary_by_experiment.tex", "summary_headline.tex"):
        assert METRICS["truth_agreement"].label not in texts[name], name  # n/a on every row: no column
    pairs = pd.read_csv(io.StringIO(texts["paired_tests.csv"]))
    assert len(pairs) and (pairs["n (test folds)"] > 0).all()  # c has no explanation: no pair on those
    assert (pairs["smallest attainable p Wilcoxon (Holm)"] > 0.05).all()
    assert render.NOT_SHOWN in texts["paired_tests.md"] and "0.0625" in texts["paired_tests.md"]


def _save(name: str, figure) -> None:  # noqa: ANN001
    FIGURES.mkdir(parents=True, exist_ok=True)
    figure.savefig(FIGURES / name, dpi=80)


def test_figures_say_what_they_show() -> None:
    import matplotlib.pyplot as plt

    analysis = _analysis(("d1", "d2"), n_splits=10)  # 5 of the 10 folds ran
    drawn = figures.figures(analysis.folds, analysis.by_row, analysis.ranks)
    assert {"accuracy_vs_complexity.png", "fold_metrics.png", "concept_frequency.png"} <= set(drawn)
    assert "critical_difference_model_accuracy.png" in drawn  # two studies: ranks, Friedman, CD
    assert not any(name.startswith("intervention_curves") for name in drawn)  # no intervention values
    for name, figure in drawn.items():
        texts = [figure._suptitle.get_text() if figure._suptitle else ""]
        _save(name, figure)  # drawn: the legends have their place
        for ax in figure.axes:
            texts += [ax.get_title(), ax.get_xlabel(), *(t.get_text() for t in ax.get_xticklabels())]
            texts += [t.get_text() for t in [*ax.texts, *ax.get_yticklabels()]]
            legend = ax.get_legend()
            texts += [t.get_text() for t in legend.get_texts()] if legend else []
            assert not legend or not legend.get_window_extent().overlaps(ax.get_window_extent()), name
        joined = " ".join(texts)
        assert joined.strip(), name
        if name != "concept_frequency.png":
            assert "n=" in joined or "n = " in joined, name
        if name in ("accuracy_vs_complexity.png", "fold_metrics.png"):
            assert "majority-class accuracy: 0.750" in joined, name  # the baseline wherever an accuracy is
        if name == "concept_frequency.png":
            assert "left out (no explanations): c&3" in joined
            assert "~x3" in joined and "x3" not in joined.replace("~x3", "")  # x2 | ~x3: the literal's sign
        if not name.startswith("critical_difference"):
            assert "d1 / y / 10-fold: 5 of 10 folds ran" in joined, name
        plt.close(figure)


def _intervention_study() -> tuple[pd.DataFrame, pd.DataFrame]:
    """Study trig, 3 folds x 2 seeds: cbm and tree intervened on (cbm reaches 1.0 at 100 %), a black box (model
    accuracy only), and psi on the true concepts in another study (no intervention values)."""
    folds, runs = [], []
    rows = {"cbm": 0.90, "tree": 0.80, "blackbox": 0.95}
    for method, data, base in [*((m, "trig", b) for m, b in rows.items()), ("psi", "mimic", 0.8)]:
        for seed in (0, 1):
            run_id = f"{method}-{seed}"
            params = {"cv.n_splits": 3, "method.explainer.seed": seed}
            runs.append({"run_id": run_id, "method": method, "seed": seed, "data": data, "label": "y"})
            runs[-1] |= {"git_commit": "abc", "data_checksum": data, "config_hash": "", "params": params}
            for fold in range(3):
                record = {"run_id": run_id, "method": method, "seed": seed, "fold": fold}
                record |= {"model_accuracy": base, "majority_accuracy": 0.5, "training_time": 1.0}
                record["formula"] = "" if method == "blackbox" else "h1_pos & h2_pos"
                for m in METRICS.at("fold"):
                    if "formula" in m.needs and method != "blackbox":
                        record.setdefault(m.name, 0.9)
                if method in ("cbm", "tree"):
                    for order, points in intervention_points(METRICS).items():
                        for percent, name in points:
                            record[name] = base + (1.0 - base) * percent / 100 * (
                                1 if order == "uncertain" else 0.5
                            )
                    record["intervention_accuracy_100"] = 1.0 if method == "cbm" else 0.85 + 0.01 * fold
                folds.append(record)
    return pd.DataFrame(folds), pd.DataFrame(runs)


def test_a_method_without_formulas_has_no_consistency_across_seeds() -> None:
    """The black box's folds carry no formula: its consistency across seeds is n/a, not 0 (no concept reused)."""
    by_row = build.analyse(*_intervention_study()).by_row.set_index("row")
    assert math.isnan(by_row.loc["blackbox", "seed_consistency"])
    assert by_row.loc["cbm", "seed_consistency"] == 1.0  # the same formula at both seeds


def test_the_intervention_curves_of_a_study_with_interventions() -> None:
    import matplotlib.pyplot as plt

    analysis = build.analyse(*_intervention_study())
    drawn = figures.figures(analysis.folds, analysis.by_row, analysis.ranks)
    assert [n for n in drawn if n.startswith("intervention_curves")] == [
        "intervention_curves_trig_y_3-fold.png"
    ]
    figure = drawn["intervention_curves_trig_y_3-fold.png"]
    _save("intervention_curves.png", figure)  # drawn: the legend has its place
    assert "Concept interventions: trig / y / 3-fold" in figure._suptitle.get_text()
    assert "n = folds × seeds" in figure._suptitle.get_text()
    random, uncertain = figure.axes
    assert uncertain.get_title() == "uncertain first (per row)" and random.get_title().startswith(
        "random order"
    )
    for ax, order in ((random, "random"), (uncertain, "uncertain")):
        assert [t.get_text() for t in ax.get_xticklabels()] == ["0%", "10%", "25%", "50%", "100%"]
        legend = [t.get_text() for t in figure.legends[0].get_texts()]  # one, below both panels
        assert {"cbm (n=3×2)", "tree (n=3×2)"} <= set(legend)  # a line per row with interventions
        assert "ceiling: blackbox (n=3×2): 0.950" in legend  # the accuracy reference, not a curve
        assert "majority-class accuracy: 0.500" in legend
        assert not any("psi" in text for text in legend)  # another study
        assert [c.get_label() for c in ax.containers] == ["cbm (n=3×2)", "tree (n=3×2)"]
        cbm = ax.containers[0].lines[0].get_ydata()  # the errorbar's data line
        expected = [0.9 + 0.1 * p / 100 * (1 if order == "uncertain" else 0.5) for p in (0, 10, 25, 50)] + [
            1.0
        ]
        assert list(cbm) == pytest.approx(expected)
        assert list(ax.containers[0].lines[0].get_xdata()) < [0, 10, 25, 50, 100]  # nudged apart
        tree_100 = analysis.by_row.set_index("row").loc["tree", "intervention_accuracy_100_mean"]
        assert ax.containers[1].lines[0].get_ydata()[-1] == pytest.approx(tree_100) == 0.86
        assert not figure.legends[0].get_window_extent().overlaps(ax.get_window_extent())
    plt.close(figure)


def test_the_per_job_figure_names_its_seed_and_ticks_whole_folds() -> None:
    import matplotlib.pyplot as plt

    results = pd.DataFrame(
        {
            "method": "tree",
            "split": [0, 1, 2],
            **{m.name: [0.8, 0.7, 0.9] for m in METRICS.at("fold")},
        }
    )
    figure = fold_metrics_figure(
        results, METRICS, {"mlflow.runName": "tree-s3", "data": "mimic", "label": "y"}
    )
    assert figure._suptitle.get_text() == "tree-s3 (mimic / y): per-fold metrics, n = 3 folds"
    figure.canvas.draw()
    for ax in figure.axes:
        ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
        assert ticks and all(float(t).is_integer() for t in ticks), ticks
    _save("per_job_fold_metrics.png", figure)
    plt.close(figure)


def test_ranks_across_studies_match_the_significance_functions() -> None:
    analysis = _analysis(("d1", "d2", "d3"))
    result = analysis.ranks["model_accuracy"]
    assert result["n_studies"] == 3 and len(result["rows"]) == 3
    table = compare.ranks_table(analysis.ranks)
    assert set(table["metric"]) >= {"model_accuracy"}
    for _, ranks in table.groupby("metric"):  # ranks 1..k on every study: they sum to k(k+1)/2
        assert ranks["average_rank"].sum() == pytest.approx(len(ranks) * (len(ranks) + 1) / 2)


def test_end_of_sweep_summary(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    for name in ("0-tree-s0", "1-psi-s0", "2-rf-s0", "10-brl-s0"):
        (sweep / name / ".hydra").mkdir(parents=True)
    summary = {
        "n_folds": 3,
        "model_accuracy_mean": 0.81,
        "model_accuracy_sem": 0.01,
        "training_time_mean": 2.0,
        "majority_accuracy_mean": 0.75,
    }
    (sweep / "0-tree-s0" / "summary.json").write_text(json.dumps({**summary, "explanation_consistency": 0.5}))
    (sweep / "0-tree-s0" / "job.json").write_text(json.dumps({"experiment": "mimic"}))
    (sweep / "1-psi-s0" / "resumed.json").write_text(json.dumps({"run_id": "abc", "run_name": "psi-s0"}))
    (sweep / "2-rf-s0" / "job.json").write_text(json.dumps({"experiment": "mimic"}))
    lines = sweep_summary(sweep, None, "mimic").splitlines()
    assert lines[0] == f"sweep {sweep}: 4 job(s)"
    assert lines[1].startswith(
        "  0-tree-s0: model accuracy 0.810 ± 0.010; consistency 0.500; majority-class accuracy 0.750 (n=3 folds) -> "
    )
    assert lines[1].endswith(f"full formulas {sweep / '0-tree-s0' / 'explanations.json'}")
    assert "training time" not in lines[1]
    assert lines[2] == (
        "  1-psi-s0: already finished, not run again: metrics in MLflow -> MLflow run abc "
        "(full formulas: its explanations.json)"
    )
    assert lines[3].startswith("  2-rf-s0: did not finish")
    assert lines[4].startswith("  10-brl-s0: did not start")  # job order, 10 after 2
    # The interpreter that ran the sweep, pasteable (a bare `python` is often one without lenbench).
    python = (
        os.path.relpath(sys.executable) if Path(sys.executable).is_relative_to(Path.cwd()) else sys.executable
    )
    assert lines[5] == f"compare them: {python} -m lenbench.report --experiment mimic --sweep-id {sweep}"


@pytest.mark.e2e
def test_readme_tables_equal_what_the_committed_results_give() -> None:
    """Every table block of README.md and docs/*.md, each name in exactly one file (rewrite checks that)."""
    texts = {path: path.read_text() for path in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]}
    generated = readme.tables(REPO / "results")
    assert readme.rewrite(texts, generated) == texts, "tables are stale: run `make readme-tables`"
    for name in generated:
        assert sum(f"<!-- BEGIN table:{name} -->" in text for text in texts.values()) == 1, name
    assert "<!-- BEGIN table:reproduction -->" in texts[REPO / "README.md"]  # the headline table


def test_readme_tables_are_rewritten_in_every_file_and_each_once(tmp_path: Path) -> None:
    """``python -m lenbench.report.readme`` rewrites the blocks of every file it is given (README.md and docs/*.md
    by default); a table with no block, a block with no table, or a table in two files is refused."""
    block = "<!-- BEGIN table:{0} -->\nstale\n<!-- END table:{0} -->\n"
    texts = {
        tmp_path / "README.md": "# x\n" + block.format("a"),
        tmp_path / "page.md": block.format("b") + "end\n",
    }
    updated = readme.rewrite(texts, {"a": "A\n", "b": "B\n"})
    assert updated[tmp_path / "README.md"] == "# x\n<!-- BEGIN table:a -->\nA\n<!-- END table:a -->\n"
    assert updated[tmp_path / "page.md"] == "<!-- BEGIN table:b -->\nB\n<!-- END table:b -->\nend\n"
    for generated, problem in (
        ({"a": "A\n"}, "without a table ['b']"),
        ({"a": "", "b": "", "c": ""}, "missing ['c']"),
    ):
        with pytest.raises(ValueError, match=re.escape(problem)):
            readme.rewrite(texts, generated)
    with pytest.raises(ValueError, match=re.escape("twice ['a']")):
        readme.rewrite({**texts, tmp_path / "other.md": block.format("a")}, {"a": "", "b": ""})
