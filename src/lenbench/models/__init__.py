"""Trained explainers as MLflow models that predict and explain new rows (issue 16).

:mod:`~lenbench.models.export` (what a fold leaves behind, built in its worker), :mod:`~lenbench.models.predict`
(rebuilding and applying it), :mod:`~lenbench.models.preprocess` (raw table rows to concepts),
:mod:`~lenbench.models.frames` (input checks, the answer table), :mod:`~lenbench.models.pyfunc` (the
``mlflow.pyfunc`` model), :mod:`~lenbench.models.store` (logging it), :mod:`~lenbench.models.runs` (finding a run's
models) and :mod:`~lenbench.models.ensemble` (a job's folds voting). The command line is :mod:`lenbench.explain`.
"""
