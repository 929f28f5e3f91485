"""Configure structlog once: one processor chain, JSON lines (or console on a TTY) to stdout.

Middleware binds request_id / conversation_id / agent_id into contextvars, so every line of a
request carries them. Logs carry ids, lengths and rule ids; draft text lives in the audit store.
"""

from __future__ import annotations

import logging
import sys
from typing import Any, Literal

import structlog

__all__ = ["configure_logging", "get_logger", "redact"]

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}
# Keys whose values must never reach a log line, whatever a caller passes.
_SECRET_KEYS = {"token", "authorization", "api_access_token", "secret", "password", "access_token"}


def redact(_: Any, __: str, event: dict[str, Any]) -> dict[str, Any]:
    """Replace the value of any secret-looking key with a fixed marker."""
    for key in list(event):
        if key.lower() in _SECRET_KEYS:
            event[key] = "[redacted]"
    return event


def configure_logging(*, level: str = "info", fmt: Literal["auto", "json", "console"] = "auto") -> None:
    """Set up the shared chain; JSON unless stdout is a TTY (or fmt says otherwise)."""
    use_console = fmt == "console" or (fmt == "auto" and sys.stdout.isatty())
    renderer: Any = structlog.dev.ConsoleRenderer() if use_console else structlog.processors.JSONRenderer(
        ensure_ascii=False
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            redact,
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS[level]),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stdout),
        cache_logger_on_first_use=True,
    )


def get_logger(name: str = "assist") -> Any:
    """A structlog logger; events are lowercase noun.past_verb names."""
    return structlog.get_logger(name)
