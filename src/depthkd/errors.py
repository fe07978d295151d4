"""Errors a user can act on.

Every exception raised for bad input derives from :class:`DepthkdError`; its message names the file,
key or value at fault and what was expected. The CLI prints these messages without a traceback.
"""

from __future__ import annotations


class DepthkdError(Exception):
    """Base class for errors caused by input the user can fix."""


class DataError(DepthkdError, ValueError):
    """A data file or value is missing, unreadable or inconsistent (names the file and the problem)."""


class ConfigError(DepthkdError, ValueError):
    """A recipe, option or command-line value is unknown or out of range."""


class ModelError(DepthkdError, ValueError):
    """A model, checkpoint or teacher cannot be built, loaded or used as asked."""
