"""Logging: JSON lines on stderr, ours (structlog) and the libraries' own, configured by each entry point."""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import MutableMapping
from typing import Any

import structlog
from structlog.tracebacks import ExceptionDictTransformer


class RepeatGate:
    """Lets the same message through `burst` times per `window_s`; then counts what it holds back.

    A flood of identical lines (e.g. "Too many open files" from an accept loop, or one warning per
    failing request during an outage) cannot fill the disk; the first line of the next window says
    how many were dropped.
    """

    def __init__(self, burst: int = 5, window_s: float = 10.0) -> None:
        self.burst = burst
        self.window_s = window_s
        self._lock = threading.Lock()
        self._seen: dict[object, list[float]] = {}  # key -> [window start, count in window]

    def allow(self, key: object) -> tuple[bool, int]:
        """Whether a message with this key may pass now, and how many were dropped before it."""
        now = time.monotonic()
        with self._lock:
            window = self._seen.get(key)
            if window is None or now - window[0] >= self.window_s:
                dropped = 0 if window is None else max(0, int(window[1]) - self.burst)
                if len(self._seen) > 10_000:  # bounded: forget the oldest keys
                    for old in list(self._seen)[:5_000]:
                        del self._seen[old]
                self._seen[key] = [now, 1.0]
                return True, dropped
            window[1] += 1
            return window[1] <= self.burst, 0


_GATE = RepeatGate()


def thin_repeats(_: Any, method: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """structlog processor: warnings and errors with the same event name pass 5 times per 10 s."""
    if method not in {"warning", "error", "critical", "exception"}:
        return event_dict
    allowed, dropped = _GATE.allow((method, event_dict.get("event")))
    if not allowed:
        raise structlog.DropEvent
    if dropped:
        event_dict["suppressed_repeats"] = dropped
    return event_dict


class RepeatFilter(logging.Filter):
    """The standard-library twin of thin_repeats: a library's warnings and errors with the same
    message template pass 5 times per 10 s (e.g. Faust's "producer buffer full size %s" per send)."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Whether the record passes; the first one of a new window says how many were dropped."""
        if record.levelno < logging.WARNING:
            return True
        allowed, dropped = _GATE.allow((record.levelname, record.name, str(record.msg)))
        if allowed and dropped:
            record.suppressed_repeats = dropped
        return allowed


def configure_logging(level: str = "info") -> None:
    """Send structured JSON logs to stderr at the given level."""
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            thin_repeats,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.dict_tracebacks,
            structlog.processors.JSONRenderer(),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(_level_number(level)),
        # Resolve sys.stderr per logger so redirected streams (tests, daemons) are honoured.
        logger_factory=lambda *_: structlog.PrintLogger(file=sys.stderr),
        cache_logger_on_first_use=False,
    )


def stdlib_logging_config(level: str = "info") -> dict[str, Any]:
    """A logging.config.dictConfig for libraries that log through the standard library (Faust, mode,
    aiokafka, kafka-python): the same JSON lines on stderr as structlog's, with the logger's name."""
    renderer: list[Any] = [
        structlog.stdlib.ProcessorFormatter.remove_processors_meta,
        # Tracebacks as data, without local variables (they can hold event payloads or secrets).
        structlog.processors.ExceptionRenderer(ExceptionDictTransformer(show_locals=False)),
        structlog.processors.JSONRenderer(),
    ]
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "json": {
                "()": structlog.stdlib.ProcessorFormatter,
                "processors": renderer,
                "foreign_pre_chain": [
                    structlog.stdlib.add_log_level,
                    structlog.stdlib.add_logger_name,
                    structlog.stdlib.ExtraAdder(("suppressed_repeats",)),
                    structlog.processors.TimeStamper(fmt="iso", utc=True),
                ],
            }
        },
        "filters": {"thin_repeats": {"()": RepeatFilter}},
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "formatter": "json",
                "filters": ["thin_repeats"],
                "stream": "ext://sys.stderr",
            }
        },
        "root": {"level": logging.getLevelName(_level_number(level)), "handlers": ["stderr"]},
    }


def _level_number(level: str) -> int:
    return logging.getLevelNamesMapping().get(level.upper(), logging.INFO)
