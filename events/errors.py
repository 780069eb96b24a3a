"""The one error root of touchpath and the typed rejection reasons for bad input."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class TouchpathError(Exception):
    """Root of every error touchpath raises on purpose; the message says what, where and what to do."""


class BadReason(StrEnum):
    """Why an input record was quarantined instead of processed."""

    MALFORMED_JSON = "malformed_json"
    SCHEMA_VIOLATION = "schema_violation"
    OVERSIZE = "oversize"
    UNKNOWN_TOUCHPOINT = "unknown_touchpoint"
    CHANNEL_MISMATCH = "channel_mismatch"
    UNKNOWN_PERSONA = "unknown_persona"  # not in the journey file: re-send once the persona is added
    TOO_LATE = "too_late"
    FUTURE_TIMESTAMP = "future_timestamp"


@dataclass(frozen=True, slots=True)
class Rejection:
    """A typed verdict on one bad record: the reason, the offending field (if any) and a human detail."""

    reason: BadReason
    detail: str
    field: str | None = None

    def describe(self) -> str:
        where = f" at field '{self.field}'" if self.field else ""
        return f"{self.reason.value}{where}: {self.detail}"


class BadEventError(TouchpathError):
    """Raised when one event cannot be accepted; carries the typed rejection."""

    def __init__(self, rejection: Rejection) -> None:
        super().__init__(rejection.describe())
        self.rejection = rejection


class DefinitionError(TouchpathError):
    """A journey or registry definition is invalid; lists every problem with its line and field."""

    def __init__(self, source: str, problems: list[tuple[int | None, str, str]]) -> None:
        self.source = source
        self.problems = problems
        lines = [
            f"{source}:{line if line is not None else '?'}: {field}: {message}"
            for line, field, message in problems
        ]
        super().__init__("invalid definition\n" + "\n".join(lines))
