"""Pydantic models of a touchpoint event, the one record every product system emits."""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any, Self

import orjson
from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    Strict,
    StrictInt,
    model_validator,
)

MAX_EVENT_BYTES = 32 * 1024
MAX_ATTRIBUTES_BYTES = 8 * 1024
MAX_EVENT_DEPTH = 16  # JSON nesting of one event, the event object itself being level 1

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
ONE_MS = timedelta(milliseconds=1)

SURVEY_SCALES: dict[str, tuple[int, int]] = {"csat": (1, 5), "nps": (0, 10), "ces": (1, 7)}


class Outcome(StrEnum):
    """How the interaction ended for the customer."""

    SUCCESS = "success"
    FAILURE = "failure"
    ABANDONED = "abandoned"


class SurveyKind(StrEnum):
    """Survey instruments: satisfaction (1-5), promoter score (0-10), customer effort (1-7)."""

    CSAT = "csat"
    NPS = "nps"
    CES = "ces"


# The accepted event-time range, [EARLIEST, LATEST). Touchpoints are records of digital interactions,
# counted in milliseconds since the Unix epoch by the engine: nothing real predates 1970. 2200 keeps
# every instant, plus any abandon_after or lateness added to it, well inside what ClickHouse's
# DateTime64(3) stores faithfully (1900-01-01 .. 2299-12-31) and what Python's datetime can shift
# by any offset (years 1 .. 9999) - beyond those values overflowed or were stored clamped.
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(2200, 1, 1, tzinfo=UTC)
RANGE_TEXT = "1970-01-01T00:00:00Z up to (not including) 2200-01-01T00:00:00Z"
# RFC 3339 date-time with a mandatory offset; pydantic alone would also take "1772438400".
_RFC3339 = re.compile(
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?([Zz]|[+-][0-9]{2}:[0-9]{2})$"
)


def _rfc3339_text(value: object) -> object:
    """Parse an RFC 3339 string here (strictly), so no other text form can become a datetime."""
    if not isinstance(value, str):
        return value
    match = _RFC3339.fullmatch(value)
    if match is None:
        msg = "must be an RFC 3339 date-time with an offset, e.g. 2026-03-02T09:00:00Z or ...T10:00:00+01:00"
        raise ValueError(msg)
    fraction = match.group(1) or ""
    text = value[:10] + "T" + value[11:19] + fraction[:7] + match.group(2).upper()
    try:
        return datetime.fromisoformat(text)
    except ValueError as error:  # e.g. 2026-02-30 or 25:00
        msg = f"{value[:40]} is not a valid date-time: {error}"
        raise ValueError(msg) from error


def _to_utc(value: datetime) -> datetime:
    try:
        utc = value.astimezone(UTC)
    except OverflowError:  # e.g. 9999-12-31T23:59:59-01:00 is in year 10000 in UTC
        utc = None
    if utc is None or not EARLIEST <= utc < LATEST:
        msg = f"{value.isoformat()} is outside the accepted range {RANGE_TEXT}"
        raise ValueError(msg)
    return utc


def parse_time(text: str) -> datetime:
    """An RFC 3339 time with offset inside the accepted range, in UTC (ValueError otherwise)."""
    value = _rfc3339_text(text)
    assert isinstance(value, datetime)
    return _to_utc(value)


# Strict: JSON must carry an RFC 3339 string (with offset), Python a datetime; never a bare number.
UtcDatetime = Annotated[AwareDatetime, BeforeValidator(_rfc3339_text), Strict(), AfterValidator(_to_utc)]
Identifier = Annotated[str, Field(min_length=1, max_length=128)]


class Survey(BaseModel):
    """A survey answer carried by an event; the score must lie on the kind's scale."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: SurveyKind
    score: StrictInt
    comment: Annotated[str, Field(max_length=4000)] | None = None

    @model_validator(mode="after")
    def _score_on_scale(self) -> Self:
        low, high = SURVEY_SCALES[self.kind.value]
        if not low <= self.score <= high:
            msg = f"score {self.score} is outside the {self.kind.value} scale {low}..{high}"
            raise ValueError(msg)
        return self


def unrepresentable(value: object, path: str = "") -> str | None:
    """Where a decoded JSON value holds a number JSON and ClickHouse cannot carry, and what it is.

    NaN and Infinity are not JSON (RFC 8259); 1e400 parses as infinity; integers must fit 64 bits.
    The one rule for every input path (files, NDJSON, JSON bodies, SDK, Kafka).
    """
    stack: list[tuple[object, str]] = [(value, path)]
    while stack:
        current, where = stack.pop()
        if isinstance(current, float) and not math.isfinite(current):
            return f"{where or 'value'}: {current} is not a JSON number (NaN, Infinity or beyond 1e308)"
        if isinstance(current, int) and not isinstance(current, bool) and not -(2**63) <= current < 2**64:
            return f"{where or 'value'}: integer {str(current)[:24]}... does not fit 64 bits"
        if isinstance(current, dict):
            stack.extend((child, f"{where}.{key}" if where else str(key)) for key, child in current.items())
        elif isinstance(current, list):
            stack.extend((child, f"{where}[{index}]") for index, child in enumerate(current))
    return None


def _attributes_fit(value: dict[str, Any] | None) -> dict[str, Any] | None:
    if value is None:
        return value
    problem = unrepresentable(value)
    if problem is not None:
        raise ValueError(problem)
    try:
        size = len(orjson.dumps(value))
    except orjson.JSONEncodeError as error:  # e.g. integers beyond 64 bits
        msg = f"attributes cannot be stored as JSON: {error}"
        raise ValueError(msg) from error
    if size > MAX_ATTRIBUTES_BYTES:
        msg = f"attributes are larger than {MAX_ATTRIBUTES_BYTES} bytes once serialised"
        raise ValueError(msg)
    return value


class TouchpointEvent(BaseModel):
    """One occurrence of a touchpoint for one customer at one time (the wire contract)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    event_id: Identifier
    customer_id: Annotated[str, Field(min_length=1, max_length=256)]
    occurred_at: UtcDatetime
    channel: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,31}$")]
    touchpoint: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*(\.[a-z0-9_]+)+$", max_length=128)]
    persona: Identifier | None = None
    outcome: Outcome | None = None
    employee_id: Identifier | None = None
    survey: Survey | None = None
    attributes: Annotated[dict[str, Any] | None, AfterValidator(_attributes_fit)] = None
    source: Identifier | None = None

    @property
    def occurred_ms(self) -> int:
        """Event time as integer milliseconds since the epoch (the engine's clock unit)."""
        return (self.occurred_at - EPOCH) // ONE_MS
