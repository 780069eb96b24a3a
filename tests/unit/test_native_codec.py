"""Differential: the native decoder accepts and rejects exactly like events/codec.py (the spec)."""

from __future__ import annotations

import json
import re
import sys
from datetime import datetime, timedelta
from typing import Any

import orjson
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

import projections
from events.codec import check_event
from events.errors import Rejection
from events.model import EPOCH, MAX_EVENT_BYTES, TouchpointEvent
from projections import native
from projections.native import NativeEvent, NativeUnavailableError

ONE_US = timedelta(microseconds=1)
GOOD: dict[str, Any] = {
    "event_id": "e-1",
    "customer_id": "c-1",
    "occurred_at": "2026-03-01T10:00:00Z",
    "channel": "web",
    "touchpoint": "shop.checkout",
}
FIELDS = [*GOOD, "persona", "outcome", "employee_id", "survey", "attributes", "source"]


def _verdict(result: TouchpointEvent | NativeEvent | Rejection) -> tuple[Any, ...]:
    """What a user sees of a decode: the rejection (reason, field, detail) or every event value."""
    if isinstance(result, Rejection):
        return ("rejected", result.reason, result.field, result.detail)
    if isinstance(result, NativeEvent):
        return ("accepted", *result)
    survey = result.survey
    return (
        "accepted",
        result.event_id,
        result.customer_id,
        (result.occurred_at - EPOCH) // ONE_US,
        result.channel,
        result.touchpoint,
        result.persona,
        result.outcome.value if result.outcome is not None else None,
        result.employee_id,
        survey.kind.value if survey else None,
        survey.score if survey else None,
        survey.comment if survey else None,
        orjson.dumps(result.attributes) if result.attributes is not None else None,
        result.source,
    )


def _same(raw: bytes) -> tuple[Any, ...]:
    """Decode with both; they must agree exactly. Returns the verdict."""
    try:
        expected = _verdict(check_event(raw))
    except OverflowError:
        # The reference raises on an offset that moves a year-1/year-9999 time out of range
        # (issue #10 fixes it); the native decoder refuses it at occurred_at instead.
        got = native.check_event(raw)
        assert isinstance(got, Rejection)
        assert got.field == "occurred_at"
        return ("rejected",)
    got = _verdict(native.check_event(raw))
    assert got == expected, raw
    return got


def _object(pairs: list[tuple[str, Any]]) -> bytes:
    """A JSON object from key/value pairs (duplicates kept, as a sloppy producer may send)."""
    return ("{" + ",".join(f"{json.dumps(k)}:{json.dumps(v)}" for k, v in pairs) + "}").encode()


_text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=40)
_junk_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False),
    _text,
    st.lists(st.integers(), max_size=2),
    st.dictionaries(_text, st.integers(), max_size=2),
)
_identifier = st.one_of(_text, st.text(min_size=120, max_size=300), _junk_values)
_channel = st.one_of(st.from_regex(r"[a-z][a-z0-9_]{0,33}", fullmatch=True), _text, st.just("web\n"))
_touchpoint = st.one_of(
    st.from_regex(r"[a-z][a-z0-9_]{0,8}(\.[a-z0-9_]{0,8}){0,3}", fullmatch=True),
    st.from_regex(r"[a-z]{60,70}\.[a-z]{60,70}", fullmatch=True),
    _text,
)
_dt_chars = st.sampled_from(list("0123456789-:T t_+Z.,z"))
_datetime_text = st.one_of(
    st.datetimes(min_value=datetime(1900, 1, 2), max_value=datetime(2200, 1, 1)).map(
        lambda d: d.isoformat()  # naive
    ),
    st.builds(
        lambda d, tz, sep, frac: d.strftime(f"%Y-%m-%d{sep}%H:%M:%S") + frac + tz,
        st.datetimes(min_value=datetime(1900, 1, 2), max_value=datetime(2200, 1, 1)),
        st.sampled_from(
            ["Z", "z", "+01:00", "-05:30", "+0930", "+23:59", "-00:00", "+24:00", "+01", "+1:00", ""]
        ),
        st.sampled_from(["T", "t", " ", "_", "x", "/"]),
        st.sampled_from(["", ".5", ",123", ".123456", ".1234567891", ".", ".x"]),
    ),
    st.integers(-(10**13), 10**13).map(str),
    # Within 64 bits: beyond, the reference wraps some integers around (it reads
    # "18446744073709551616" as 1970-01-01), which the native decoder refuses; see the README.
    st.integers(-(2**63), 2**63 - 1).map(str),
    # Decimal-number strings within ±2e10 seconds (beyond that the reference's float arithmetic
    # rounds the last microseconds differently; no producer sends such timestamps as text).
    st.builds(
        lambda sign, x, e: f"{sign}{x}e{e}",
        st.sampled_from(["", "+", "-"]),
        st.floats(0, 2.0).map(str),
        st.integers(-5, 10),
    ),
    st.sampled_from(
        [
            "1e3",
            ".e3",
            "1.e3",
            "+.5",
            "-.5",
            "-1.5",
            "+",
            "-",
            ".",
            "-0",
            "00",
            "1.5E3",
            "1.5e400",
            "-1.5e400",
            "1.5e22",
            "-62135596800001",
            "-99999999999999",
            "9223372036854775807",
            "9223372036854775808",
            "99999999999999999999.5",
            "253402300799",
            "2024-01-01T00:00:",
            "2024-01-01T00:00:6",
        ]
    ),
    st.builds(lambda n, f: f"{n}.{f}", st.integers(0, 2 * 10**10), st.integers(0, 999)),
    st.lists(_dt_chars, max_size=26).map("".join),
    st.from_regex(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2})?([+-]\d{2}:?\d{2}|Z)?", fullmatch=True),
)
_survey = st.one_of(
    st.none(),
    st.fixed_dictionaries(
        {
            "kind": st.sampled_from(["csat", "nps", "ces", "x", None, 1]),
            "score": st.one_of(
                st.integers(-2, 12), st.just(2**70), st.just(3.0), st.booleans(), st.just("5")
            ),
        },
        optional={
            "comment": st.one_of(_text, st.text(min_size=3990, max_size=4010), st.integers()),
            "extra": st.integers(),
        },
    ),
    _junk_values,
)
_json_leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    _text,
)
_attributes = st.one_of(
    st.none(),
    st.dictionaries(
        _text,
        st.recursive(
            _json_leaf,
            lambda kids: st.lists(kids, max_size=3) | st.dictionaries(_text, kids, max_size=3),
            max_leaves=8,
        ),
        max_size=5,
    ),
    st.builds(lambda n: {"blob": "x" * n}, st.integers(8170, 8200)),
    _junk_values,
)
_values: dict[str, st.SearchStrategy[Any]] = {
    "event_id": _identifier,
    "customer_id": _identifier,
    "occurred_at": st.one_of(_datetime_text, _junk_values),
    "channel": _channel,
    "touchpoint": _touchpoint,
    "persona": _identifier,
    "outcome": st.sampled_from(["success", "failure", "abandoned", "ok", None, 1]),
    "employee_id": _identifier,
    "survey": _survey,
    "attributes": _attributes,
    "source": _identifier,
}


@st.composite
def _records(draw: st.DrawFn) -> bytes:
    """A mostly valid record with a few fields changed, dropped, duplicated or added."""
    pairs: list[tuple[str, Any]] = list(GOOD.items())
    for _ in range(draw(st.integers(0, 4))):
        action = draw(st.sampled_from(["set", "drop", "extra", "duplicate"]))
        if action == "set":
            key = draw(st.sampled_from(FIELDS))
            pairs = [p for p in pairs if p[0] != key] + [(key, draw(_values[key]))]
        elif action == "drop" and pairs:
            pairs.pop(draw(st.integers(0, len(pairs) - 1)))
        elif action == "extra":
            pairs.append((draw(st.sampled_from(["x", "Event_Id", "occurred_ms", "survey.kind", ""])), 1))
        elif pairs:
            key, _ = pairs[draw(st.integers(0, len(pairs) - 1))]
            pairs.append((key, draw(_values.get(key, _junk_values))))
    return _object(pairs)


@settings(max_examples=1500, deadline=None)
@given(_records())
@example(_object([*GOOD.items(), ("x", 1), ("x", 2)]))
@example(_object([*GOOD.items(), ("persona", "a"), ("persona", "")]))
@example(_object([*GOOD.items(), ("attributes", {"a": 2**70})]))
@example(_object([*GOOD.items(), ("survey", {"kind": "nps", "score": 11})]))
@example(b"{}")
def test_records_get_the_same_verdict(raw: bytes) -> None:
    """Valid, wrong-typed, missing, unknown and duplicated fields: same event or same rejection."""
    _same(raw)


@settings(max_examples=1500, deadline=None)
@given(
    st.one_of(
        st.binary(max_size=200),
        st.builds(lambda raw, cut: raw[:cut], _records(), st.integers(0, 400)),
        st.builds(
            lambda raw, at, byte: raw[:at] + bytes([byte]) + raw[at + 1 :],
            _records(),
            st.integers(0, 200),
            st.integers(0, 255),
        ),
        st.text(st.sampled_from(list('{}[]":,-0123456789.eEtrufalsnNIy \n\\u')), max_size=40).map(str.encode),
    )
)
@example(b"")
@example(b'{"a":1,}')
@example(b'\n\n  {"a":')
@example(b'{"a":"\\ud800\\u0041"}')
@example(b'{"a":"\xff"}')
@example(b'{"a":' + b"[" * 300 + b"]" * 300 + b"}")
@example(_object([*GOOD.items(), ("attributes", {"n": float("nan")})]).replace(b"NaN", b"NaN"))
def test_malformed_bytes_get_the_same_verdict(raw: bytes) -> None:
    """Truncated, corrupted and random bytes: the same malformed_json (kind, line, column) or verdict."""
    _same(raw)


def test_oversize_is_refused_before_parsing() -> None:
    """A record over 32 KiB is oversize in both, with the same size in the detail."""
    raw = _object([*GOOD.items(), ("attributes", {"blob": "x" * MAX_EVENT_BYTES})])
    assert _same(raw)[1:3] == ("oversize", None)


def test_a_valid_event_reads_the_same_values() -> None:
    """A full event: same values, time in UTC microseconds, attributes as orjson writes them."""
    raw = _object(
        [
            *GOOD.items(),
            ("occurred_at", "2026-03-01T10:00:00.123456+02:00"),
            ("outcome", "failure"),
            ("survey", {"kind": "ces", "score": 6, "comment": "slow"}),
            ("attributes", {"k": [1, 2.5, "é"]}),
        ]
    )
    verdict = _same(raw)
    assert verdict[0] == "accepted"
    assert verdict[3] == 1772352000123456


def test_asking_for_native_without_the_extension_says_how_to_build_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Only a caller of the native engine sees an error, and it names the build command."""
    monkeypatch.setitem(sys.modules, "projections._native", None)  # as if never built
    monkeypatch.delattr(projections, "_native", raising=False)
    assert not native.native_available()
    with pytest.raises(NativeUnavailableError, match=re.escape("pip install -e .")):
        native.check_event(b"{}")
