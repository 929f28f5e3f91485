"""Configure structlog once: one processor chain, JSON lines (or console on a TTY) to stdout.

Middleware binds request_id / conversation_id / agent_id into contextvars, so every line of a
request carries them. Logs carry ids, lengths and rule ids; draft text lives in the audit store.
"""

from __future__ import annotations

import atexit
import datetime
import json
import logging
import sys
import threading
import time
from typing import Any, Callable, Literal

import structlog
from structlog.processors import _json_fallback_handler

__all__ = ["BufferedLineLogger", "configure_logging", "get_logger", "redact"]

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}
# Keys whose values must never reach a log line, whatever a caller passes.
_SECRET_KEYS = {"token", "authorization", "api_access_token", "secret", "password", "access_token"}


# What add_log_level writes for the two method names that are not level names.
_LEVEL_NAMES = {"warn": "warning", "exception": "error"}
# Keys already seen and found harmless: log lines reuse a handful of keys, so most lines skip
# the per-key lower() in redact. Bounded so odd callers cannot grow it without limit.
_SAFE_KEYS: set[str] = set()


def redact(_: Any, __: str, event: dict[str, Any]) -> dict[str, Any]:
    """Replace the value of any secret-looking key with a fixed marker."""
    safe = _SAFE_KEYS
    for key in list(event):
        if key in safe:
            continue
        if key.lower() in _SECRET_KEYS:
            event[key] = "[redacted]"
        elif len(safe) < 1000:
            safe.add(key)
    return event


def _json_encoder() -> Callable[[Any], str]:
    """json.dumps(value, ensure_ascii=False, default=structlog's fallback), with the C encoder built once.

    json.dumps with any keyword builds a new JSONEncoder (and C encoder) per call, which was a
    third of a log line's cost. The output is the same text.
    """
    slow = json.JSONEncoder(ensure_ascii=False, default=_json_fallback_handler).encode
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:
        return slow
    basestring = json.encoder.encode_basestring

    def encode(value: Any) -> str:
        if type(value) is not dict:
            return slow(value)
        return "".join(make({}, _json_fallback_handler, basestring, None, ": ", ", ", False, False, True)(value, 0))

    return encode


def _json_line() -> Callable[[Any, str, dict[str, Any]], str]:
    """add_log_level, TimeStamper(iso, utc), redact, format_exc_info and JSONRenderer as one processor.

    The same keys in the same order and the same text as that chain; one call instead of five.
    """
    encode = _json_encoder()
    exc_info = structlog.processors.format_exc_info
    now, utc = datetime.datetime.now, datetime.timezone.utc

    def render(logger: Any, method: str, event: dict[str, Any]) -> str:
        event["level"] = _LEVEL_NAMES.get(method, method)
        event["timestamp"] = now(tz=utc).isoformat().replace("+00:00", "Z")
        redact(logger, method, event)
        if "exc_info" in event:  # the only key format_exc_info acts on
            event = exc_info(logger, method, event)
        return encode(event)

    return render


class BufferedLineLogger:
    """Writes each JSON line to a binary stream without a flush per line; a daemon thread flushes
    every `interval` seconds (and the buffer flushes itself when full), and so does exit.

    A write and flush per line cost about a sixth of a checked draft's CPU. Log lines are
    diagnostics, not the record: the audit store holds every decision durably, so a kill -9 losing
    the last `interval` of log lines loses no evidence. Binary buffered streams are thread-safe.
    """

    def __init__(self, stream: Any, *, interval: float = 0.2) -> None:
        self._stream = stream
        self._write = stream.write
        self._interval = interval
        threading.Thread(target=self._flush_loop, name="log-flush", daemon=True).start()
        atexit.register(self.flush)

    def msg(self, message: str) -> None:
        self._write(message.encode("utf-8", "backslashreplace") + b"\n")

    log = debug = info = warn = warning = err = error = critical = exception = fatal = failure = msg

    def flush(self) -> None:
        try:
            self._stream.flush()
        except (OSError, ValueError):  # closed or broken pipe: nothing more can be written
            pass

    def _flush_loop(self) -> None:
        while True:  # a daemon thread: it ends with the process, after atexit's last flush
            time.sleep(self._interval)
            self.flush()


def configure_logging(*, level: str = "info", fmt: Literal["auto", "json", "console"] = "auto") -> None:
    """Set up the shared chain; JSON unless stdout is a TTY (or fmt says otherwise)."""
    use_console = fmt == "console" or (fmt == "auto" and sys.stdout.isatty())
    processors: list[Any] = [structlog.contextvars.merge_contextvars]
    if use_console:
        processors += [structlog.processors.add_log_level, structlog.processors.TimeStamper(fmt="iso", utc=True),
                       redact, structlog.processors.format_exc_info, structlog.dev.ConsoleRenderer()]
    else:
        processors.append(_json_line())
    factory: Any = structlog.PrintLoggerFactory(file=sys.stdout)
    binary = getattr(sys.stdout, "buffer", None)
    if not use_console and binary is not None:
        sys.stdout.flush()
        lines = BufferedLineLogger(binary)

        def factory(*_: Any) -> BufferedLineLogger:  # one logger for every structlog name
            return lines
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS[level]),
        logger_factory=factory,
        cache_logger_on_first_use=True,
    )


def get_logger(name: str = "assist") -> Any:
    """A structlog logger; events are lowercase noun.past_verb names."""
    return structlog.get_logger(name)
