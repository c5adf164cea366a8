"""The problems a user can fix, as one family: the command line prints their message alone and exits 2.

Anything else that escapes a job is a bug in lenbench (or in a library) and keeps its traceback (exit 1). Each
message is complete on its own: what is wrong, where (the config key, the file, the store) and how to fix it.
"""

from __future__ import annotations

import logging
import sys
from typing import NoReturn


class UserError(Exception):
    """Base of every anticipated problem whose fix lies with the user."""


class ConfigError(UserError, ValueError):
    """A configuration value is wrong or inconsistent (it names the key and the fix).

    A ``ValueError`` too, so code that validates arguments the Python way keeps working with it.
    """


class DiskFull(UserError):
    """A file could not be written for want of space (a full disk or quota, a file-size limit)."""


def exit_with(exc: UserError) -> NoReturn:
    """End the command line on a user error: its message as one line on stderr, in the format of Hydra's job log
    (whatever logging is set up yet), exit status 2."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("[%(asctime)s][%(name)s][%(levelname)s] - %(message)s"))
    log = logging.getLogger("lenbench")
    log.handlers, log.propagate = [handler], False
    log.error("%s", exc)
    sys.exit(2)
