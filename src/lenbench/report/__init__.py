"""The report: paper-ready comparison of the jobs of an experiment, from MLflow (``python -m lenbench.report``).

- ``__main__``: the command line (``make report``);
- ``build``: :func:`~lenbench.report.build.build_report`, the steps below wired together;
- ``stats``: pure statistics over the per-fold table (summaries, seed spread, paired tests, best method);
- ``render``: the tables as CSV, Markdown and LaTeX, labels and digits from the registry;
- ``figures``: the comparison figures (matplotlib);
- ``publish``: files under the output folder and the ``report`` run in MLflow.

Reading the runs is tracking's job (:mod:`lenbench.tracking.mlflow_read`); which metrics appear, in which order,
with which label, is the registry's (:mod:`lenbench.scoring`).
"""
