"""Errors a user can act on: each message says what is wrong and what to change."""


class ConfigError(ValueError):
    """Configuration (settings, project spec, Feast repo) is invalid or incomplete."""


class DataError(ValueError):
    """Input data breaks a rule the pipeline relies on (missing column, empty window, ...)."""
