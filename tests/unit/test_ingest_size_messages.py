"""Size limits over HTTP as a sender reads them: which answer applies when, and a message that says why."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson
from test_ingest import SECRET, FakeSink, _app, _post
from test_sdk import event

from projections.journeys import JourneyModel
from streams.ingest.auth import signed_headers


def test_a_chunked_body_over_the_limit_gets_a_readable_413(model: JourneyModel) -> None:
    """A 3 MB body sent without Content-Length is refused whole, saying the limit and how to split."""

    def chunks() -> Iterator[bytes]:
        yield b"["
        for _ in range(48):
            yield b" " * 65_536
        yield b"]"

    sink = FakeSink()
    with _app(sink, model) as client:
        headers = {"Content-Type": "application/json", **signed_headers("k1", SECRET, b"[]")}
        response = client.post("/v1/events", content=chunks(), headers=headers)
    assert response.status_code == 413
    body: dict[str, Any] = response.json()
    assert body["error"] == "too_large"
    assert body["accepted"] == 0
    assert body["detail"] == (
        "the body is over the limit of 524,288 bytes (512 KB) per request (reading stopped there); "
        "nothing was accepted. Split the events into requests of at most 524,288 bytes (512 KB) and "
        "500 events (each event at most 32 KB)."
    )
    assert sink.received == []


def test_a_declared_size_over_the_limit_is_named_in_the_413(model: JourneyModel) -> None:
    """With Content-Length the answer names the size that was sent."""
    sink = FakeSink()
    with _app(sink, model) as client:
        response = _post(client, b"[" + b" " * (600 * 1024) + b"]")
    assert response.status_code == 413
    assert response.json()["detail"].startswith(
        "the body is 614,402 bytes (Content-Length), over the limit of 524,288 bytes (512 KB) per request;"
    )


def test_one_event_over_32_kb_in_a_small_request_is_a_400_oversize(model: JourneyModel) -> None:
    """A single 40 KB event fits the request limit, so it is one `oversize` rejection (400), not a 413."""
    sink = FakeSink()
    big = event(1)
    big["attributes"] = {"blob": "x" * (40 * 1024)}
    with _app(sink, model) as client:
        response = _post(client, orjson.dumps(big))
    assert response.status_code == 400
    assert [error["reason"] for error in response.json()["errors"]] == ["oversize"]
