"""Puts this package's configs (``method=l1logreg``, ``data=majority``, ``search/l1logreg``) on Hydra's search path.

Hydra imports every module under the ``hydra_plugins`` namespace package at start-up; a ``SearchPathPlugin`` adds
a config source after lenbench's own ``conf/``, so ``python -m train method=l1logreg`` and
``python -m lenbench.tune method=l1logreg`` find the YAML files without copying them into lenbench.
"""

from hydra.core.config_search_path import ConfigSearchPath
from hydra.plugins.search_path_plugin import SearchPathPlugin


class L1LogRegSearchPath(SearchPathPlugin):
    def manipulate_search_path(self, search_path: ConfigSearchPath) -> None:
        search_path.append(provider="lenbench-l1logreg", path="pkg://lenbench_l1logreg.conf")
