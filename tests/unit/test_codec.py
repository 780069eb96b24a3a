"""The event contract: decoding, typed rejections that name the field, and round trips."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import orjson
from hypothesis import given
from hypothesis import strategies as st

from events.codec import check_event, decode_event, encode_event
from events.errors import BadReason, Rejection
from events.model import MAX_EVENT_BYTES, TouchpointEvent

GOOD = {
    "event_id": "e-1",
    "customer_id": "c-1",
    "occurred_at": "2026-03-02T10:00:00+02:00",
    "channel": "web",
    "touchpoint": "web.checkout",
}


def _rejection(body: object) -> Rejection:
    result = check_event(orjson.dumps(body))
    assert isinstance(result, Rejection), result
    return result


def test_time_is_normalised_to_utc() -> None:
    """An offset timestamp is stored as the same instant in UTC."""
    event = decode_event(orjson.dumps(GOOD))
    assert event.occurred_at == datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
    assert event.occurred_ms == 1772438400000


def test_malformed_json_is_typed() -> None:
    """Broken JSON is quarantined as malformed_json."""
    result = check_event(b'{"event_id": "e-1", ')
    assert isinstance(result, Rejection)
    assert result.reason is BadReason.MALFORMED_JSON


def test_schema_violations_name_the_field() -> None:
    """Each schema problem says which field is wrong."""
    assert _rejection({**GOOD, "occurred_at": "2026-03-02T10:00:00"}).field == "occurred_at"
    assert _rejection({**GOOD, "occurred_at": 1772438400}).field == "occurred_at"
    assert _rejection({**GOOD, "colour": "red"}).field == "colour"
    missing = dict(GOOD)
    del missing["customer_id"]
    assert _rejection(missing).field == "customer_id"
    bad_survey = _rejection({**GOOD, "survey": {"kind": "csat", "score": 9}})
    assert bad_survey.field == "survey"
    assert "1..5" in bad_survey.detail
    assert _rejection({**GOOD, "event_id": "x" * 129}).field == "event_id"
    assert _rejection({**GOOD, "outcome": "meh"}).field == "outcome"


def test_oversize_records_are_rejected_before_parsing() -> None:
    """A record over the size limit is quarantined as oversize."""
    result = check_event(orjson.dumps({**GOOD, "attributes": {"blob": "x" * MAX_EVENT_BYTES}}))
    assert isinstance(result, Rejection)
    assert result.reason is BadReason.OVERSIZE


def test_attributes_over_8kb_are_a_schema_violation() -> None:
    """attributes are limited to 8 KB once serialised."""
    assert _rejection({**GOOD, "attributes": {"blob": "x" * 9000}}).field == "attributes"


_text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=40)


@given(
    event_id=_text,
    customer_id=_text,
    when=st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)),
    outcome=st.sampled_from([None, "success", "failure", "abandoned"]),
    survey=st.one_of(
        st.none(),
        st.builds(lambda s: {"kind": "nps", "score": s}, st.integers(0, 10)),
        st.builds(lambda s, c: {"kind": "csat", "score": s, "comment": c}, st.integers(1, 5), _text),
    ),
    attributes=st.one_of(
        st.none(), st.dictionaries(_text, st.integers(-(2**63), 2**63 - 1) | _text, max_size=4)
    ),
)
def test_encode_decode_round_trip(
    event_id: str,
    customer_id: str,
    when: datetime,
    outcome: str | None,
    survey: dict[str, object] | None,
    attributes: dict[str, object] | None,
) -> None:
    """Any valid event survives encode -> decode unchanged (millisecond time precision)."""
    when = when.replace(microsecond=when.microsecond // 1000 * 1000)
    event = TouchpointEvent.model_validate(
        {
            "event_id": event_id,
            "customer_id": customer_id,
            "occurred_at": when,
            "channel": "support",
            "touchpoint": "support.call",
            "outcome": outcome,
            "survey": survey,
            "attributes": attributes,
        }
    )
    assert decode_event(encode_event(event)) == event


@given(st.binary(max_size=300))
def test_arbitrary_bytes_never_crash(raw: bytes) -> None:
    """Any bytes give an event or a typed rejection, never an exception."""
    result = check_event(raw)
    assert isinstance(result, TouchpointEvent | Rejection)


def test_attribute_integers_beyond_64_bits_are_rejected_not_crashing() -> None:
    """A huge integer in attributes is a schema violation naming attributes (found by hypothesis)."""
    result = check_event(json.dumps({**GOOD, "attributes": {"n": 2**70}}).encode())
    assert isinstance(result, Rejection)
    assert result.field == "attributes"
