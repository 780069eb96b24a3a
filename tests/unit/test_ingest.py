"""HTTP ingest: signed requests, per-event verdicts, limits, rate limits, 503s, health, metrics, schema."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import orjson
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from test_sdk import Factory, event  # the fake producer and event builder of the SDK tests

from events.errors import Rejection
from events.sdk import ClientOptions, TouchpathClient
from projections.journeys import JourneyModel
from streams.cli.main import main
from streams.ingest.auth import (
    TIMESTAMP_HEADER,
    AuthConfigError,
    RateLimiter,
    RequestAuthenticator,
    parse_keys,
    sign,
    signed_headers,
)
from streams.ingest.http import Batch, KafkaSink, SinkUnavailableError, create_app

SECRET = "s3cret-of-at-least-16"
OTHER = "another-secret-0123456789"


class FakeSink:
    """Takes every valid event (or refuses all, when unavailable) and remembers them."""

    mode = "fake"

    def __init__(self) -> None:
        self.received: list[str] = []
        self.unavailable = False

    async def submit(self, batch: Batch, source: str) -> dict[int, Rejection]:
        if self.unavailable:
            raise SinkUnavailableError("Kafka at kafka:9092 did not acknowledge all 1 events within 5 s")
        self.received.extend(item.event.event_id for item in batch.items)
        return {}

    def health(self) -> tuple[bool, dict[str, object]]:
        return not self.unavailable, {"mode": self.mode}

    def open_events(self) -> int:
        return 0

    def close(self) -> None:
        return None


def _app(sink: Any, model: JourneyModel, limiter: RateLimiter | None = None) -> TestClient:
    authenticator = RequestAuthenticator({"k1": SECRET.encode(), "k2": OTHER.encode()})
    return TestClient(create_app(sink, authenticator, limiter=limiter, registry=model.registry))


def _post(
    client: TestClient,
    body: bytes,
    content_type: str = "application/json",
    key: tuple[str, str] = ("k1", SECRET),
    timestamp: int | None = None,
) -> Any:
    headers = {"Content-Type": content_type, **signed_headers(key[0], key[1], body, timestamp)}
    return client.post("/v1/events", content=body, headers=headers)


def _events(count: int, start: int = 0) -> list[dict[str, Any]]:
    return [event(n, f"c-{n % 3}") for n in range(start, start + count)]


@pytest.fixture
def sink() -> FakeSink:
    """A sink that accepts everything."""
    return FakeSink()


@pytest.fixture
def client(sink: FakeSink, model: JourneyModel) -> Iterator[TestClient]:
    """The ingest app in front of the fake sink, keys k1 and k2 active."""
    with _app(sink, model) as test_client:
        yield test_client


def test_one_event_is_accepted(client: TestClient, sink: FakeSink) -> None:
    """A single signed event gets 202 and reaches the sink."""
    response = _post(client, orjson.dumps(_events(1)[0]))
    assert response.status_code == 202
    assert response.json() == {"accepted": 1, "rejected": 0}
    assert sink.received == ["e-0"]


def test_invalid_events_are_named_while_valid_ones_are_accepted(client: TestClient, sink: FakeSink) -> None:
    """A batch with bad events answers 400 listing index, field and reason; the good ones are in."""
    events = _events(4)
    events[1]["survey"] = {"kind": "csat", "score": 9}
    events[3]["touchpoint"] = "web.nowhere"
    response = _post(client, orjson.dumps(events))
    assert response.status_code == 400
    body = response.json()
    assert (body["accepted"], body["rejected"]) == (2, 2)
    assert [(e["index"], e["reason"], e["field"]) for e in body["errors"]] == [
        (1, "schema_violation", "survey"),
        (3, "unknown_touchpoint", "touchpoint"),
    ]
    assert sink.received == ["e-0", "e-2"]


def test_ndjson_bodies_are_split_by_line(client: TestClient, sink: FakeSink) -> None:
    """NDJSON is one event per line; a broken line is reported by its index among the events."""
    lines = [orjson.dumps(event) for event in _events(3)]
    body = lines[0] + b"\n\n" + b"{broken\n" + lines[2] + b"\n"
    response = _post(client, body, "application/x-ndjson")
    assert response.status_code == 400
    assert [(e["index"], e["reason"]) for e in response.json()["errors"]] == [(1, "malformed_json")]
    assert sink.received == ["e-0", "e-2"]


def test_both_active_keys_are_accepted_for_rotation(client: TestClient) -> None:
    """During a key rotation the old and the new key both work."""
    assert _post(client, orjson.dumps(_events(1)[0]), key=("k1", SECRET)).status_code == 202
    assert _post(client, orjson.dumps(_events(1, 1)[0]), key=("k2", OTHER)).status_code == 202


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        ({}, "missing_key"),
        ({"X-Touchpath-Key": "nobody"}, "unknown_key"),
        ({"X-Touchpath-Key": "k1", TIMESTAMP_HEADER: "soon"}, "bad_timestamp"),
        ({"X-Touchpath-Key": "k1", TIMESTAMP_HEADER: "now-301"}, "stale_timestamp"),
        ({"X-Touchpath-Key": "k1", TIMESTAMP_HEADER: "now"}, "bad_signature"),
    ],
)
def test_unauthenticated_requests_get_401_with_the_reason(
    client: TestClient, sink: FakeSink, headers: dict[str, str], reason: str
) -> None:
    """Missing or unknown keys, bad or stale timestamps and absent signatures are refused."""
    # Timestamps are taken when the test runs, not when it is collected (the suite can take minutes).
    stamp = headers.get(TIMESTAMP_HEADER, "")
    if stamp.startswith("now"):
        headers = {**headers, TIMESTAMP_HEADER: str(int(time.time()) - int(stamp[4:] or 0))}
    response = client.post("/v1/events", content=orjson.dumps(_events(1)[0]), headers=headers)
    assert response.status_code == 401
    assert response.json()["reason"] == reason
    assert response.json()["detail"]
    assert sink.received == []


def test_wrong_secret_and_tampered_body_are_refused(client: TestClient) -> None:
    """A signature made with another secret, or over other bytes, does not authenticate."""
    body = orjson.dumps(_events(1)[0])
    assert _post(client, body, key=("k1", OTHER)).json()["reason"] == "bad_signature"
    headers = {"Content-Type": "application/json", **signed_headers("k1", SECRET, body)}
    tampered = client.post("/v1/events", content=body.replace(b"c-0", b"c-9"), headers=headers)
    assert tampered.status_code == 401


def test_a_replayed_signature_is_refused(client: TestClient, sink: FakeSink) -> None:
    """Sending the exact same signed request twice is refused the second time."""
    body = orjson.dumps(_events(1)[0])
    headers = {"Content-Type": "application/json", **signed_headers("k1", SECRET, body)}
    assert client.post("/v1/events", content=body, headers=headers).status_code == 202
    again = client.post("/v1/events", content=body, headers=headers)
    assert again.status_code == 401
    assert again.json()["reason"] == "replayed"
    assert sink.received == ["e-0"]


def test_signature_is_hmac_sha256_over_timestamp_dot_body() -> None:
    """The signature matches an independent HMAC-SHA256 of timestamp + '.' + body."""
    assert sign("key", "1700000000", b"{}") == (
        "sha256=" + __import__("hmac").new(b"key", b"1700000000.{}", "sha256").hexdigest()
    )


def test_key_configuration_errors_say_what_to_fix() -> None:
    """Malformed key lists and short secrets are refused at start with the setting named."""
    assert parse_keys("a:0123456789abcdef, b:fedcba9876543210") == {
        "a": b"0123456789abcdef",
        "b": b"fedcba9876543210",
    }
    with pytest.raises(AuthConfigError, match="TOUCHPATH_INGEST_KEYS: entry 1"):
        parse_keys("no-secret-here")
    with pytest.raises(AuthConfigError, match="at least 16"):
        parse_keys("a:short")


def test_oversized_bodies_and_too_many_events_get_413(client: TestClient, sink: FakeSink) -> None:
    """Requests over 512 KB or 500 events are refused whole, saying how to split them."""
    big = _post(client, b"[" + b" " * (512 * 1024) + b"]")
    assert big.status_code == 413
    assert big.json()["error"] == "too_large"
    many = _post(client, orjson.dumps(_events(501)))
    assert many.status_code == 413
    assert "at most 500" in many.json()["detail"]
    assert sink.received == []


def test_oversize_and_deeply_nested_events_are_rejected_one_by_one(
    client: TestClient, sink: FakeSink
) -> None:
    """An event over 32 KB or nested too deep is rejected by itself; the rest are accepted."""
    events = _events(3)
    events[0]["attributes"] = {"blob": "x" * (33 * 1024)}
    nested: dict[str, Any] = {}
    for _ in range(20):
        nested = {"n": nested}
    events[1]["attributes"] = nested
    response = _post(client, orjson.dumps(events))
    assert response.status_code == 400
    assert [(e["index"], e["reason"], e["field"]) for e in response.json()["errors"]] == [
        (0, "oversize", None),
        (1, "schema_violation", "attributes"),
    ]
    assert sink.received == ["e-2"]


def test_rate_limit_per_key_gives_429_with_retry_after(sink: FakeSink, model: JourneyModel) -> None:
    """A key that exceeds its events/s gets 429 and Retry-After; another key is unaffected."""
    now = [1000.0]
    limiter = RateLimiter(rate=10, burst=500, clock=lambda: now[0])
    with _app(sink, model, limiter) as client:
        assert _post(client, orjson.dumps(_events(500))).status_code == 202
        limited = _post(client, orjson.dumps(_events(20, 500)))
        assert limited.status_code == 429
        assert int(limited.headers["Retry-After"]) == 2
        assert _post(client, orjson.dumps(_events(20, 520)), key=("k2", OTHER)).status_code == 202
        now[0] += 2.0
        assert _post(client, orjson.dumps(_events(20, 540))).status_code == 202
    assert len(sink.received) == 540


def test_sink_that_cannot_make_events_durable_gives_503(client: TestClient, sink: FakeSink) -> None:
    """When events cannot be made durable the answer is 503 with Retry-After, never a 2xx."""
    sink.unavailable = True
    response = _post(client, orjson.dumps(_events(2)))
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "5"
    body = response.json()
    assert body["accepted"] == 0
    assert "send it again" in body["detail"]
    assert client.get("/health").status_code == 503


def test_kafka_sink_answers_503_in_bounded_time_when_acks_do_not_come(model: JourneyModel) -> None:
    """A producer whose acknowledgements never arrive turns into a 503 after the ack timeout, not a hang."""
    factory = Factory("hold")
    kafka = KafkaSink(TouchpathClient("kafka:9092", producer_factory=factory, options=ClientOptions()), 0.3)
    try:
        with _app(kafka, model) as client:
            response = _post(client, orjson.dumps(_events(3)))
            assert response.status_code == 503
            assert "did not acknowledge all 3 events within 0.3 s" in response.json()["detail"]
            factory.producers[0].mode = "ack"
            assert _post(client, orjson.dumps(_events(2, 3))).status_code == 202
    finally:
        factory.producers[0].release()
        kafka.close()


def test_kafka_sink_sends_off_the_event_loop_while_topic_metadata_is_unknown(model: JourneyModel) -> None:
    """Before the producer knows the topic (send may block), events still go out and are acknowledged."""
    factory = Factory("ack")
    client = TouchpathClient("kafka:9092", producer_factory=factory, options=ClientOptions(topic="elsewhere"))
    factory.producers[0]._metadata.known = set()
    assert not client.ready()
    kafka = KafkaSink(client, 1.0)
    try:
        with _app(kafka, model) as test_client:
            assert _post(test_client, orjson.dumps(_events(3))).status_code == 202
    finally:
        kafka.close()
    assert [topic for topic, _, _ in factory.producers[0].sent] == ["elsewhere"] * 3


def test_health_and_metrics_are_served(client: TestClient) -> None:
    """GET /health says ok; GET /metrics counts requests, events and rejections in Prometheus text."""
    events = _events(2)
    events[1]["outcome"] = "meh"
    _post(client, orjson.dumps(events))
    _post(client, b"{}", key=("k1", OTHER))
    assert client.get("/health").json()["status"] == "ok"
    metrics = client.get("/metrics")
    assert metrics.headers["content-type"].startswith("text/plain")
    text = metrics.text
    assert 'touchpath_ingest_requests_total{status="400"} 1' in text
    assert 'touchpath_ingest_requests_total{status="401"} 1' in text
    assert 'touchpath_ingest_events_total{key="k1",result="accepted"} 1' in text
    assert 'touchpath_ingest_rejections_total{reason="schema_violation"} 1' in text
    assert 'touchpath_ingest_auth_failures_total{reason="bad_signature"} 1' in text
    assert "touchpath_ingest_request_seconds_count 2" in text


def test_schema_export_validates_events_in_any_language(tmp_path: Path) -> None:
    """`touchpath schema --out` writes a JSON Schema that accepts a good event and refuses bad ones."""
    out = tmp_path / "event.schema.json"
    assert main(["schema", "--out", str(out)]) == 0
    schema = orjson.loads(out.read_bytes())
    good = _events(1)[0]
    jsonschema.validate(good, schema)
    for bad in ({**good, "colour": "red"}, {k: v for k, v in good.items() if k != "customer_id"}):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(bad, schema)


def test_servers_refuse_to_start_without_keys(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`touchpath serve` and `ingest` will not run unauthenticated; the message says what to set."""
    monkeypatch.delenv("TOUCHPATH_INGEST_KEYS", raising=False)
    assert main(["serve", "--data-dir", str(tmp_path)]) == 1
    assert main(["ingest"]) == 1
    errors = capsys.readouterr().err
    assert errors.count("set TOUCHPATH_INGEST_KEYS=key_id:secret") == 2


# -- property tests ------------------------------------------------------------------------------
def _fresh(model: JourneyModel) -> tuple[TestClient, FakeSink]:
    sink = FakeSink()
    return _app(sink, model), sink


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    body=st.binary(max_size=2048),
    content_type=st.sampled_from(["application/json", "application/x-ndjson", "text/plain", ""]),
)
def test_arbitrary_bytes_get_a_4xx_with_a_reason_never_a_500(
    model: JourneyModel, body: bytes, content_type: str
) -> None:
    """Whatever bytes arrive, the answer is a 4xx naming what was wrong (or 202 if they are events)."""
    client, sink = _fresh(model)
    with client:
        response = _post(client, body, content_type)
    assert response.status_code in {202, 400, 413}
    answer = response.json()
    if response.status_code != 202:
        assert answer["error"]
        assert answer.get("detail") or answer.get("errors")
    assert answer.get("accepted", 0) == len(sink.received)


_json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=8,
)
_fields = st.sampled_from(
    [
        "event_id",
        "customer_id",
        "occurred_at",
        "channel",
        "touchpoint",
        "outcome",
        "survey",
        "attributes",
        "x",
    ]
)


@st.composite
def _mutated_event(draw: st.DrawFn) -> object:
    mutated = event(draw(st.integers(0, 10**6)), "c-1", "web.cart")
    mutation = draw(st.sampled_from(["keep", "drop", "replace", "add", "not_an_object"]))
    field = draw(_fields)
    if mutation == "drop":
        mutated.pop(field, None)
    elif mutation in {"replace", "add"}:
        mutated[field] = draw(_json_values)
    elif mutation == "not_an_object":
        return draw(_json_values)
    return mutated


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(events=st.lists(_mutated_event(), min_size=1, max_size=20), as_ndjson=st.booleans())
def test_mutated_events_are_each_accepted_or_rejected_with_a_reason(
    model: JourneyModel, events: list[object], as_ndjson: bool
) -> None:
    """For any mix of valid and mutated events: accepted + rejected = sent, each rejection with a reason."""
    # The signed bytes alone decide how a body reads: a one-line NDJSON body holding an array is that
    # JSON array (its elements are the events), so "events sent" is not one line there.
    assume(not (as_ndjson and len(events) == 1 and isinstance(events[0], list)))
    if as_ndjson:
        body, content_type = b"\n".join(orjson.dumps(item) for item in events), "application/x-ndjson"
    else:
        body, content_type = orjson.dumps(events), "application/json"
    client, sink = _fresh(model)
    with client:
        response = _post(client, body, content_type)
    assert response.status_code in {202, 400}
    answer = response.json()
    assert answer["accepted"] + answer["rejected"] == len(events)
    assert answer["accepted"] == len(sink.received)
    for error in answer.get("errors", []):
        assert error["reason"]
        assert error["detail"]
        assert 0 <= error["index"] < len(events)
