"""Logging with structlog: stdout, JSON when not on a terminal (journald), one line per event.

A processor masks identity numbers and mobile phones in every string value, so personal data
never reaches the journal even when a message or exception text contains it.
"""

from __future__ import annotations

import logging
import sys
from typing import Any, Literal, TextIO

import structlog

from mailbot.masking import mask_text


def _mask_value(value: Any) -> Any:
    if isinstance(value, str):
        return mask_text(value)
    if isinstance(value, dict):
        return {k: _mask_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_mask_value(v) for v in value)
    return value


def mask_personal_data(_logger: Any, _name: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    """structlog processor: mask identity numbers and phones in every value."""
    return {k: _mask_value(v) for k, v in event_dict.items()}


def configure_logging(fmt: Literal["auto", "json", "console"] = "auto", *, stream: TextIO | None = None,
                      level: int = logging.INFO) -> None:
    """Set up structlog once for the process."""
    stream = stream or sys.stdout
    as_json = fmt == "json" or (fmt == "auto" and not stream.isatty())
    renderer: Any = (structlog.processors.JSONRenderer(ensure_ascii=False) if as_json
                     else structlog.dev.ConsoleRenderer(colors=stream.isatty()))
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            mask_personal_data,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(file=stream),
        cache_logger_on_first_use=False,
    )


def configure_staff_logging(fmt: Literal["auto", "json", "console"] = "auto") -> None:
    """A staff command's log: errors only, on stderr; what staff read is the command's own
    Chinese output (the log is English, for operators)."""
    configure_logging(fmt, stream=sys.stderr, level=logging.ERROR)


def get_logger(name: str = "mailbot") -> Any:
    return structlog.get_logger(name)
