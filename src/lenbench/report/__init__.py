"""The report: paper-ready comparison of the jobs of an experiment, from MLflow (``python -m lenbench.report``).

- ``__main__``: the command line (``make report``);
- ``build``: :func:`~lenbench.report.build.build_report`, the steps below wired together (:func:`analyse` is shared
  with the README tables);
- ``rows``: which runs a row pools (one configuration, any seeds), what rows and studies are called;
- ``stats``: pure summaries over the per-fold table (test folds as the unit, seeds averaged first, seed spread);
- ``compare``: rows against the column's best and all pairs (corrected resampled t, Wilcoxon, Holm), ranks across
  studies (Friedman, Nemenyi), built on ``significance`` (the tests themselves, pure numpy/scipy);
- ``render``: the tables as CSV, Markdown and LaTeX, labels and digits from the registry;
- ``figures``: the comparison figures (matplotlib);
- ``publish``: files under the output folder, provenance and the ``report`` run in MLflow;
- ``snapshot`` and ``readme``: committed result folders (``results/``) and the README's tables made from them
  (``make readme-tables``); ``sweep_summary``: the console lines printed when a sweep ends.

Reading the runs is tracking's job (:mod:`lenbench.tracking.mlflow_read`); which metrics appear, in which order,
with which label, is the registry's (:mod:`lenbench.scoring`).
"""
