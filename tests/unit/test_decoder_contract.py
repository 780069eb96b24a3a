"""One decoder contract: any bytes give an event or a typed rejection, alike in runs, NDJSON and JSON."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import orjson
import pydantic_core
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from events.codec import check_contract, check_event
from events.errors import BadEventError, BadReason, Rejection
from events.model import TouchpointEvent
from events.sdk import TouchpathClient
from projections.engine import JourneyEngine
from projections.journeys import JourneyModel
from streams.embedded.runner import EmbeddedRunner
from streams.ingest.http import Batch, IngestLimits, split_events
from tests.unit.test_sdk import Factory

GOOD = {
    "event_id": "e-1",
    "customer_id": "c-1",
    "occurred_at": "2026-03-02T10:00:00+02:00",
    "channel": "web",
    "touchpoint": "web.product_page",
}
ODD_NUMBERS = [
    "NaN",
    "Infinity",
    "-Infinity",
    "1e400",
    "-1e400",
    "123456789012345678901234567890",
    "1e308",
    "-0.0",
]
ODD_TIMES = [
    "9999-12-31T23:59:59-01:00",
    "0001-01-01T00:00:00+01:00",
    "9999-12-31T23:59:59Z",
    "1772438400",
    "1772438400.5",
    "2026-03-02",
    "2026-03-02T10:00:00",
    "2026-03-02T10:00:00+24:00",
    "2026-02-30T10:00:00Z",
    "2199-12-31T23:59:59.999Z",
    "2200-01-01T00:00:00Z",
    "1969-12-31T23:59:59.999Z",
    "1970-01-01T00:00:00Z",
    "2026-03-02 10:00:00Z",
    "2026-03-02t10:00:00z",
]
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8,
)
value_text = st.one_of(
    st.sampled_from(ODD_NUMBERS),
    st.sampled_from(ODD_TIMES).map(json.dumps),
    st.datetimes(
        min_value=datetime(1, 1, 2),
        max_value=datetime(9999, 12, 30),
        timezones=st.timezones(),
    ).map(lambda moment: json.dumps(moment.isoformat())),
    json_values.map(json.dumps),
)
FIELDS = [*GOOD, "attributes", "survey", "outcome", "persona", "extra"]


@st.composite
def event_text(draw: st.DrawFn) -> bytes:
    """A mostly-valid event with some fields replaced by odd JSON texts (NaN, huge, odd times, ...)."""
    fields = {name: json.dumps(value) for name, value in GOOD.items()}
    for name in draw(st.lists(st.sampled_from(FIELDS), max_size=3)):
        text = draw(value_text)
        fields[name] = text if name != "attributes" else "{" + json.dumps("k") + ":" + text + "}"
    if draw(st.booleans()):
        fields.pop(draw(st.sampled_from(sorted(fields))))
    return ("{" + ",".join(f"{json.dumps(k)}:{v}" for k, v in fields.items()) + "}").encode()


records = st.one_of(event_text(), event_text(), event_text(), st.binary(max_size=200))


def verdict(result: TouchpointEvent | Rejection) -> bool:
    """True when accepted; asserts a rejection is typed."""
    if isinstance(result, Rejection):
        assert isinstance(result.reason, BadReason)
        assert result.detail
        return False
    assert isinstance(result, TouchpointEvent)
    return True


@given(raw=records)
@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
def test_any_bytes_give_an_event_or_a_typed_rejection(raw: bytes) -> None:
    """No input raises: every record is accepted or rejected with a reason."""
    verdict(check_event(raw))


def _lines(raws: list[bytes]) -> list[bytes]:
    return [raw.strip() for raw in raws if raw.strip() and b"\n" not in raw and b"\r" not in raw]


@given(raws=st.lists(records, min_size=1, max_size=12))
@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
def test_run_ndjson_and_json_bodies_take_and_refuse_the_same_events(
    model: JourneyModel, raws: list[bytes]
) -> None:
    """accepted + rejected = received on each path, and the same events are accepted on all three."""
    lines = _lines(raws)
    if not lines:
        return
    limits = IngestLimits()
    ndjson = split_events(b"\n".join(lines), "application/x-ndjson", limits, model.registry)
    assert isinstance(ndjson, Batch)
    assert ndjson.sent == len(lines) == len(ndjson.items) + len(ndjson.refused)
    taken = sorted(item.index for item in ndjson.items)
    for refused in ndjson.refused:
        assert isinstance(refused.rejection.reason, BadReason)

    stats = EmbeddedRunner(JourneyEngine(model), None).feed(enumerate(lines, start=1), "file")
    assert stats.lines == len(lines) == stats.accepted + stats.bad
    assert stats.accepted <= len(taken)  # the engine may still refuse (too_late); never take more

    body = b"[" + b",".join(lines) + b"]"
    as_json = split_events(body, "application/json", limits, model.registry)
    json_lines = [line for line in lines if _is_json(line)]
    if len(json_lines) < len(lines):
        # A line that is not JSON at all breaks the array: the one-line body is one malformed record ...
        assert isinstance(as_json, Batch)
        assert (as_json.sent, len(as_json.items)) == (1, 0)
        assert as_json.refused[0].rejection.reason is BadReason.MALFORMED_JSON
        if not json_lines:
            return
        # ... so compare the JSON lines alone: NDJSON of them and an array of them agree.
        ndjson = split_events(b"\n".join(json_lines), "application/x-ndjson", limits, model.registry)
        assert isinstance(ndjson, Batch)
        taken = sorted(item.index for item in ndjson.items)
        as_json = split_events(
            b"[" + b",".join(json_lines) + b"]", "application/json", limits, model.registry
        )
    assert isinstance(as_json, Batch)
    assert as_json.sent == len(json_lines) == len(as_json.items) + len(as_json.refused)
    assert sorted(item.index for item in as_json.items) == taken


def _is_json(line: bytes) -> bool:
    try:
        pydantic_core.from_json(line, allow_inf_nan=True)
    except ValueError:
        return False
    return True


@pytest.mark.parametrize(
    "number", ["NaN", "Infinity", "-Infinity", "1e400", "123456789012345678901234567890"]
)
def test_unrepresentable_numbers_are_rejected_alike_everywhere(model: JourneyModel, number: str) -> None:
    """NaN, Infinity, 1e400 and 65-bit integers: schema_violation in a file line, NDJSON and a JSON body."""
    line = orjson.dumps(GOOD)[:-1] + b',"attributes":{"amount":' + number.encode() + b"}}"
    result = check_event(line)
    assert isinstance(result, Rejection)
    assert result.reason is BadReason.SCHEMA_VIOLATION
    assert result.field == "attributes"
    for kind, body in [("application/x-ndjson", line), ("application/json", b"[" + line + b"]")]:
        batch = split_events(body, kind, IngestLimits(), model.registry)
        assert isinstance(batch, Batch), kind
        assert not batch.items
        assert batch.refused[0].rejection.reason is BadReason.SCHEMA_VIOLATION
    stats = EmbeddedRunner(JourneyEngine(model), None).feed([(1, line)], "file")
    assert (stats.accepted, stats.bad) == (0, 1)


@pytest.mark.parametrize(
    "stamp",
    [
        "9999-12-31T23:59:59-01:00",
        "0001-01-01T00:00:00+01:00",
        "9999-12-31T23:59:59Z",
        "2200-01-01T00:00:00Z",
        "1969-12-31T23:59:59Z",
        "1772438400",
        "2026-02-30T10:00:00Z",
    ],
)
def test_unrepresentable_or_non_rfc3339_times_are_schema_violations_naming_occurred_at(stamp: str) -> None:
    """Out-of-range years and numeric strings never raise: they are typed rejections at occurred_at."""
    result = check_event(orjson.dumps({**GOOD, "occurred_at": stamp}))
    assert isinstance(result, Rejection)
    assert result.reason is BadReason.SCHEMA_VIOLATION
    assert result.field == "occurred_at"


def test_the_accepted_range_edges_and_rfc3339_variants() -> None:
    """1970-01-01T00:00:00Z and 2199-12-31T23:59:59.999Z are taken; 't', 'z' and a space separator too."""
    for stamp, expected in [
        ("1970-01-01T00:00:00Z", datetime(1970, 1, 1, tzinfo=UTC)),
        ("2199-12-31T23:59:59.999Z", datetime(2199, 12, 31, 23, 59, 59, 999000, tzinfo=UTC)),
        ("2026-03-02t10:00:00z", datetime(2026, 3, 2, 10, tzinfo=UTC)),
        ("2026-03-02 11:00:00+01:00", datetime(2026, 3, 2, 10, tzinfo=UTC)),
    ]:
        result = check_event(orjson.dumps({**GOOD, "occurred_at": stamp}))
        assert isinstance(result, TouchpointEvent), (stamp, result)
        assert result.occurred_at == expected


def test_a_run_keeps_the_good_lines_around_an_overflowing_timestamp(model: JourneyModel) -> None:
    """The line that used to raise OverflowError is quarantined; the lines before and after are processed."""
    good = [orjson.dumps({**GOOD, "event_id": f"e{n}"}) for n in range(2)]
    bad = orjson.dumps({**GOOD, "event_id": "x", "occurred_at": "9999-12-31T23:59:59-01:00"})
    stats = EmbeddedRunner(JourneyEngine(model), None).feed(enumerate([good[0], bad, good[1]], 1), "file")
    assert (stats.lines, stats.accepted, stats.bad) == (3, 2, 1)


@given(raw=event_text())
@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
def test_the_sdk_takes_and_refuses_what_the_decoder_does(raw: bytes) -> None:
    """TouchpathClient.validate() on bytes accepts exactly what the contract (check_contract) accepts."""
    decoded = check_contract(raw)
    with TouchpathClient("kafka:9092", producer_factory=Factory()) as client:
        if isinstance(decoded, Rejection):
            with pytest.raises(BadEventError) as refused:
                client.validate(raw)
            assert refused.value.rejection.reason is decoded.reason
        else:
            assert client.validate(raw)[0] == decoded


@pytest.mark.parametrize("number", [float("nan"), float("inf"), -float("inf"), 10**30])
def test_the_sdk_refuses_unrepresentable_numbers_in_dicts(number: float) -> None:
    """A dict with NaN is refused like the same JSON line, not sent with the value turned into null."""
    factory = Factory()
    with TouchpathClient("kafka:9092", producer_factory=factory) as client:
        with pytest.raises(BadEventError) as refused:
            client.emit({**GOOD, "attributes": {"amount": number}})
        assert refused.value.rejection.reason is BadReason.SCHEMA_VIOLATION
        assert refused.value.rejection.field == "attributes"
    assert not factory.producers[0].sent


def _nested(levels: int) -> dict[str, object]:
    value: dict[str, object] = {}
    for _ in range(levels - 1):
        value = {"n": value}
    return value


REFUSED_BY_HTTP = {
    "attributes 17 levels deep with the event": {**GOOD, "attributes": _nested(16)},
    "attributes beyond any parser's depth": {**GOOD, "attributes": _nested(300)},
    "over 32 KB": {**GOOD, "attributes": {"blob": "x" * (33 * 1024)}},
    "NaN": {**GOOD, "attributes": {"amount": float("nan")}},
    "unknown touchpoint": {**GOOD, "touchpoint": "web.teleport"},
    "touchpoint on another channel": {**GOOD, "channel": "store"},
    "no customer": {name: value for name, value in GOOD.items() if name != "customer_id"},
    "time without offset": {**GOOD, "occurred_at": "2026-03-02T10:00:00"},
}


@pytest.mark.parametrize("case", sorted(REFUSED_BY_HTTP))
def test_the_sdk_refuses_what_http_refuses_with_the_same_reason_and_field(
    model: JourneyModel, case: str
) -> None:
    """An event POST /v1/events refuses is refused by the SDK before sending, as a dict or as bytes,
    with the same typed reason and field (one contract check: nesting depth, size, registry)."""
    event = REFUSED_BY_HTTP[case]
    body = json.dumps(event).encode()
    batch = split_events(body, "application/json", IngestLimits(), model.registry)
    assert isinstance(batch, Batch)
    (refused,) = batch.refused
    expected = (refused.rejection.reason, refused.rejection.field)
    factory = Factory()
    with TouchpathClient("kafka:9092", registry=model.registry, producer_factory=factory) as client:
        for form in (event, body):
            with pytest.raises(BadEventError) as error:
                client.emit(form)
            assert (error.value.rejection.reason, error.value.rejection.field) == expected, form
    assert not factory.producers[0].sent


def test_the_sdk_checks_a_model_it_is_given_as_http_checks_its_bytes(model: JourneyModel) -> None:
    """A TouchpointEvent built in code is held to the same contract: nested too deep, refused."""
    deep = TouchpointEvent.model_validate({**GOOD, "attributes": _nested(16)})
    factory = Factory()
    with TouchpathClient("kafka:9092", registry=model.registry, producer_factory=factory) as client:
        with pytest.raises(BadEventError) as error:
            client.emit(deep)
        assert (error.value.rejection.reason, error.value.rejection.field) == (
            BadReason.SCHEMA_VIOLATION,
            "attributes",
        )
        assert client.emit(TouchpointEvent.model_validate(GOOD)).result(timeout=1).offset == 0
    assert len(factory.producers[0].sent) == 1
