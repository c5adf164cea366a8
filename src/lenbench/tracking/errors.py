"""Errors at the tracking edge; the CLI prints their message alone."""


class TrackingError(Exception):
    """The MLflow store cannot be used; the message names the store and the fix."""
