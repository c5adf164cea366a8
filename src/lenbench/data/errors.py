"""The one exception type for data problems, so the CLI can show a single actionable message instead of a trace."""

from __future__ import annotations

from lenbench.errors import UserError


class DataError(UserError):
    """A data file is missing, damaged or not what the loader expects.

    The message is complete on its own (what is wrong, which file, how to fix it): the command line prints only
    ``str(error)``, so nothing useful may live in the traceback or in a chained exception.
    """
