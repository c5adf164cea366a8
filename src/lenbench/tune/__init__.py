"""Multi-objective tuning (``python -m lenbench.tune``): accuracy/complexity Pareto fronts found on validation rows.

An Optuna study searches a method's declared space (``conf/search/<method>.yaml``) for configurations that maximise
explanation accuracy and minimise complexity, each measured on the inner validation rows of every outer training
fold (:mod:`.inner`), never on test rows. The Pareto members are then run as ordinary jobs
(:func:`lenbench.job.run_job`), scored once on the outer test folds. Parts: the schema (:mod:`.settings`), the search
space (:mod:`.space`), pure front arithmetic (:mod:`.front`), the study (:mod:`.study`) and its files (:mod:`.files`);
MLflow writing lives in :mod:`lenbench.tracking.tune_runs`, the figures in :mod:`lenbench.tracking.pareto_plots`.
"""
