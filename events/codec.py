"""The only bytes<->model code: decode and validate touchpoint events, encode them back."""

from __future__ import annotations

from typing import TYPE_CHECKING

import orjson
from pydantic import ValidationError

from events.errors import BadEventError, BadReason, Rejection
from events.model import EPOCH, MAX_EVENT_BYTES, MAX_EVENT_DEPTH, ONE_MS, TouchpointEvent, unrepresentable

if TYPE_CHECKING:
    from events.registry import Registry


def _field_of(error: ValidationError) -> tuple[str | None, str]:
    first = error.errors(include_url=False)[0]
    loc = ".".join(str(part) for part in first["loc"] if not isinstance(part, int)) or None
    return loc, first["msg"]


def check_event(raw: bytes) -> TouchpointEvent | Rejection:
    """Decode one JSON record; return the event or a typed rejection naming the field."""
    if len(raw) > MAX_EVENT_BYTES:
        return Rejection(BadReason.OVERSIZE, f"{len(raw)} bytes; the limit is {MAX_EVENT_BYTES}")
    try:
        return TouchpointEvent.model_validate_json(raw)
    except ValidationError as error:
        if error.errors()[0]["type"] in {"json_invalid", "json_type"}:
            return Rejection(BadReason.MALFORMED_JSON, _field_of(error)[1])
        field, message = _field_of(error)
        extra = error.error_count() - 1
        if extra:
            message += f" (and {extra} more problem{'s' if extra > 1 else ''})"
        return Rejection(BadReason.SCHEMA_VIOLATION, message, field)


def check_not_future(event: TouchpointEvent, not_after_ms: int | None) -> Rejection | None:
    """Refuse an event later than `not_after_ms` (a shell's wall clock plus its bound); pure."""
    if not_after_ms is None or event.occurred_ms <= not_after_ms:
        return None
    ahead_s = (event.occurred_ms - not_after_ms) / 1000
    detail = (
        f"{event.occurred_at.isoformat()} is {ahead_s:,.0f} s beyond the latest accepted time "
        f"{(EPOCH + not_after_ms * ONE_MS).isoformat()} (the receiver's clock plus its bound); fix the "
        "sender's clock or the timestamp"
    )
    return Rejection(BadReason.FUTURE_TIMESTAMP, detail, "occurred_at")


def json_depth(value: object) -> int:
    """JSON nesting depth of a decoded value (a scalar is 0, {} is 1)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        current, level = stack.pop()
        if isinstance(current, dict):
            deepest = max(deepest, level)
            stack.extend((child, level + 1) for child in current.values())
        elif isinstance(current, list):
            deepest = max(deepest, level)
            stack.extend((child, level + 1) for child in current)
    return deepest


def check_depth(event: TouchpointEvent, max_depth: int = MAX_EVENT_DEPTH) -> Rejection | None:
    """Refuse an event nested deeper than max_depth levels, the event object itself being level 1."""
    # Only attributes can nest freely; the rest of the model is flat or fixed (survey).
    if event.attributes is not None and 1 + json_depth(event.attributes) > max_depth:
        detail = f"nested deeper than {max_depth} levels (counting the event object itself)"
        return Rejection(BadReason.SCHEMA_VIOLATION, detail, "attributes")
    return None


def check_contract(
    raw: bytes,
    *,
    not_after_ms: int | None = None,
    max_depth: int = MAX_EVENT_DEPTH,
    registry: Registry | None = None,
) -> TouchpointEvent | Rejection:
    """Every check of the event contract that needs no journey model, in one order for every path
    (files, Kafka, HTTP, the SDK): decode and schema (size included), the future bound (None: none),
    the nesting depth, then the touchpoint registry (None: left to the engine, which has it)."""
    result = check_event(raw)
    if isinstance(result, Rejection):
        return result
    return (
        check_not_future(result, not_after_ms)
        or check_depth(result, max_depth)
        or (registry.check(result) if registry is not None else None)
        or result
    )


def encode_json(value: object) -> bytes | Rejection:
    """A JSON value already in memory (a decoded array element, a sender's dict) as the one-line
    JSON that is checked and sent, or why it cannot be an event's JSON."""
    # The number rule of check_event applies before encoding (orjson would write NaN as null).
    problem = unrepresentable(value)
    if problem is not None:
        field = problem.split(":", 1)[0].split(".", 1)[0].split("[", 1)[0]
        return Rejection(BadReason.SCHEMA_VIOLATION, problem, field if field != "value" else None)
    try:
        return orjson.dumps(value)
    except orjson.JSONEncodeError as error:
        # Not JSON (a set, an object), or nested beyond 254 levels: as bytes, no decoder reads that.
        return Rejection(BadReason.MALFORMED_JSON, f"not JSON-serialisable: {error}")


def decode_event(raw: bytes) -> TouchpointEvent:
    """Decode one JSON record or raise BadEventError with the typed reason."""
    result = check_event(raw)
    if isinstance(result, Rejection):
        raise BadEventError(result)
    return result


def encode_event(event: TouchpointEvent) -> bytes:
    """Serialise an event to its canonical JSON bytes (UTC time, absent optionals left out)."""
    return orjson.dumps(event.model_dump(mode="json", exclude_none=True))
