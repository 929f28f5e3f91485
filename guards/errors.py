"""The engine's one exception: a library or option that cannot be built into rules."""

__all__ = ["RuleConfigError"]


class RuleConfigError(ValueError):
    """A rule's configuration is invalid; raised when the engine is built, never by check()."""
