"""Faust's, mode's and aiokafka's own log records come out as the same JSON lines as touchpath's."""

from __future__ import annotations

import logging
import logging.config

import orjson
import pytest

from streams.common.logs import stdlib_logging_config


def test_a_library_log_record_is_one_json_line_with_level_logger_and_traceback(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A %-formatted warning and a crash with its traceback, as Faust logs them, are one JSON
    object per line: message, level, logger name, UTC time, and the exception as data."""
    logging.config.dictConfig(stdlib_logging_config("info"))
    faust_log = logging.getLogger("faust.agents.agent")
    try:
        faust_log.warning("Timer %s is overlapping (interval=%r)", "tick", 1.0)
        faust_log.debug("not at info level")
        try:
            raise TypeError("'NoneType' object is not iterable")
        except TypeError:
            faust_log.exception("[^---Agent*: alerts-detect]: Crashed reason=%r", "TypeError")
    finally:
        logging.root.handlers.clear()
    lines = capsys.readouterr().err.splitlines()
    records = [orjson.loads(line) for line in lines]
    assert [(r["level"], r["logger"], r["event"]) for r in records] == [
        ("warning", "faust.agents.agent", "Timer tick is overlapping (interval=1.0)"),
        ("error", "faust.agents.agent", "[^---Agent*: alerts-detect]: Crashed reason='TypeError'"),
    ]
    assert records[0]["timestamp"].endswith("Z")
    (crash,) = records[1]["exception"]
    assert (crash["exc_type"], crash["exc_value"]) == ("TypeError", "'NoneType' object is not iterable")
    assert all("locals" not in frame for frame in crash["frames"])


def test_a_library_warning_repeated_in_a_flood_is_thinned_and_the_count_reported(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The same warning template 12 times in a row: 5 lines, not 12 (the gate's window is 10 s)."""
    logging.config.dictConfig(stdlib_logging_config("info"))
    buffer_log = logging.getLogger("faust.transport.producer.flood-test")
    try:
        for size in range(12):
            buffer_log.warning("producer buffer full size %s", 455 - size)
    finally:
        logging.root.handlers.clear()
    records = [orjson.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert [r["event"] for r in records] == [f"producer buffer full size {455 - n}" for n in range(5)]
