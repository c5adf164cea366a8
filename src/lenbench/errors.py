"""The problems a user can fix, as one family: the command line prints their message alone and exits 2.

Anything else that escapes a job is a bug in lenbench (or in a library) and keeps its traceback (exit 1). Each
message is complete on its own: what is wrong, where (the config key, the file, the store) and how to fix it.
"""

from __future__ import annotations


class UserError(Exception):
    """Base of every anticipated problem whose fix lies with the user."""


class ConfigError(UserError, ValueError):
    """A configuration value is wrong or inconsistent (it names the key and the fix).

    A ``ValueError`` too, so code that validates arguments the Python way keeps working with it.
    """
