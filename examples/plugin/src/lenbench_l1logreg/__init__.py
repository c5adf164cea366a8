"""An example lenbench plugin: a method (``method.py``), a data set (``data.py``) and a metric (``metric.py``)."""
