"""Structured log events: structlog on top of the standard ``logging`` module.

Every event goes to the stdlib logger ``"dataflow"``, which gets a
``NullHandler`` and nothing else: the application decides where log lines go
(``logging.basicConfig``, its own handlers) and at which level. The library
never configures logging or structlog.

Event names are snake_case verbs (``workflow_failed``, ``slow_query``); context
such as ``run_id``, ``node_id``, ``model`` and ``tenant_id`` travels as keys.
Values a user passed to a node, and passwords, never enter an event: callers
log identifiers, counts, durations and error *types*, never error messages
(a driver message can quote a row value), and :func:`_scrub` drops keys that
could carry values as a last line of defence.

Rendering: if the application has configured structlog, events go through its
processors (so ``structlog.testing.capture_logs`` sees them, and a
``ProcessorFormatter`` set-up renders them). Otherwise DataFlow renders each
event itself, as JSON or as a console line, chosen by ``log_format`` /
``DATAFLOW_LOG_FORMAT``.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import structlog

__all__ = ["FORMATS", "LOGGER_NAME", "EventLog", "log_format"]

LOGGER_NAME = "dataflow"
FORMATS = ("console", "json")

_std = logging.getLogger(LOGGER_NAME)
_std.addHandler(logging.NullHandler())

#: keys that could carry parameter values or secrets: never logged
_SECRET_KEYS = frozenset({
    "password", "passwd", "secret", "token", "params", "parameters", "values", "value",
    "records", "record", "row", "rows_data", "fields", "filter", "result", "results",
})


def log_format(value: str | None) -> str:
    """The log format from an argument, else ``DATAFLOW_LOG_FORMAT``, else ``console``."""
    from .errors import ConfigurationError

    raw = value if value is not None else os.environ.get("DATAFLOW_LOG_FORMAT", "console")
    fmt = str(raw).strip().lower()
    if fmt not in FORMATS:
        source = "log_format" if value is not None else "DATAFLOW_LOG_FORMAT"
        raise ConfigurationError(f"{source} must be 'console' or 'json', got {raw!r}")
    return fmt


def _own_logger(fmt: str) -> Any:
    renderer: Any = (
        structlog.processors.JSONRenderer(sort_keys=True) if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    processors = [
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        renderer,
    ]
    return structlog.wrap_logger(_std, processors=processors, wrapper_class=structlog.stdlib.BoundLogger)


def _scrub(data: dict[str, Any]) -> dict[str, Any]:
    for key in _SECRET_KEYS.intersection(data):
        data[key] = "[redacted]"
    return data


class EventLog:
    """A bound event logger: ``log.bind(run_id=…).warning("workflow_failed", …)``.

    Level filtering is the stdlib logger's (``logging.getLogger("dataflow")``):
    an event below its effective level costs one ``isEnabledFor`` call.
    """

    __slots__ = ("_app", "_ctx", "_own")

    def __init__(self, fmt: str = "console", _ctx: dict[str, Any] | None = None, _own: Any = None) -> None:
        self._ctx = _ctx or {}
        self._own = _own if _own is not None else _own_logger(fmt)
        # Processors come from structlog's configuration at call time, so a
        # later structlog.configure() or capture_logs() takes effect.
        self._app = structlog.wrap_logger(_std, wrapper_class=structlog.stdlib.BoundLogger)

    def bind(self, **context: Any) -> EventLog:
        """A logger whose events also carry ``context``."""
        return EventLog(_ctx={**self._ctx, **context}, _own=self._own)

    @staticmethod
    def enabled(level: int) -> bool:
        return _std.isEnabledFor(level)

    def debug(self, event: str, **kw: Any) -> None:
        self.emit(logging.DEBUG, event, kw)

    def info(self, event: str, **kw: Any) -> None:
        self.emit(logging.INFO, event, kw)

    def warning(self, event: str, **kw: Any) -> None:
        self.emit(logging.WARNING, event, kw)

    def error(self, event: str, **kw: Any) -> None:
        self.emit(logging.ERROR, event, kw)

    def emit(self, level: int, event: str, kw: dict[str, Any]) -> None:
        if not _std.isEnabledFor(level):
            return
        data = _scrub({**self._ctx, **{k: v for k, v in kw.items() if v is not None}})
        logger = self._app if structlog.is_configured() else self._own
        logger.log(level, event, **data)


def error_type(exc: BaseException) -> str:
    """The name logged for an error: its class, never its message."""
    cls = type(exc)
    module = cls.__module__
    return cls.__qualname__ if module in ("builtins", "dataflow") else f"{module}.{cls.__qualname__}"
