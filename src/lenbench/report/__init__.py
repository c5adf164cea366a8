"""The report: paper-ready comparison of the jobs of an experiment, from MLflow (``python -m lenbench.report``).

``build`` wires the steps: ``rows`` (which runs a row pools, what rows and studies are called), ``stats`` (summaries
over test folds), ``compare`` (rows against the column's best, all pairs, ranks across studies) on ``significance``
(the tests), ``render`` and ``latex`` (the tables), ``figures``, ``publish`` (files, provenance, the ``report``
run). ``snapshot`` and ``readme``: committed results and the README's tables; ``sweep_summary``: the end-of-sweep
lines. Reading runs is :mod:`lenbench.tracking.mlflow_read`'s job; which metrics, and how, the registry's
(:mod:`lenbench.scoring`).
"""
