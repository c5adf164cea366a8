"""Errors at the tracking edge; the CLI prints their message alone."""

from lenbench.errors import UserError


class TrackingError(UserError):
    """The MLflow store cannot be used; the message names the store and the fix."""
