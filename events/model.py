"""Pydantic models of a touchpoint event, the one record every product system emits."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any, Self

import orjson
from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    Strict,
    StrictInt,
    model_validator,
)

MAX_EVENT_BYTES = 32 * 1024
MAX_ATTRIBUTES_BYTES = 8 * 1024

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


def _to_utc(value: datetime) -> datetime:
    return value.astimezone(UTC)


# Strict: JSON must carry an RFC 3339 string (with offset), Python a datetime; never a bare number.
UtcDatetime = Annotated[AwareDatetime, Strict(), AfterValidator(_to_utc)]
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


def _attributes_fit(value: dict[str, Any] | None) -> dict[str, Any] | None:
    if value is None:
        return value
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
