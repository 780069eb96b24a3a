"""Differential: the native decoder accepts and rejects exactly like events/codec.py (the spec)."""

from __future__ import annotations

import json
import re
import sys
from datetime import datetime, timedelta, timezone
from typing import Any

import orjson
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

import projections
from events.codec import check_event
from events.errors import Rejection
from events.model import EARLIEST, EPOCH, LATEST, MAX_EVENT_BYTES, TouchpointEvent
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
    """Decode with both; they must agree exactly (the reference never raises). Returns the verdict."""
    expected = _verdict(check_event(raw))
    got = _verdict(native.check_event(raw))
    assert got == expected, raw
    return got


class _Raw(str):
    """A JSON literal written as is: NaN, Infinity, 1e400, integers past Python's 4300 digits."""

    __slots__ = ()


class _Pairs(list[tuple[str, Any]]):
    """A JSON object written from key/value pairs, duplicate keys kept."""


def _dump(value: Any) -> str:
    """JSON text of a value that may hold _Raw literals and _Pairs objects at any depth."""
    if isinstance(value, _Raw):
        return str(value)
    if isinstance(value, _Pairs):
        return "{" + ",".join(f"{json.dumps(k)}:{_dump(v)}" for k, v in value) + "}"
    if isinstance(value, dict):
        return _dump(_Pairs(value.items()))
    if isinstance(value, list):
        return "[" + ",".join(_dump(item) for item in value) + "]"
    return json.dumps(value)


def _object(pairs: list[tuple[str, Any]]) -> bytes:
    """A JSON object from key/value pairs (duplicates kept, as a sloppy producer may send)."""
    return _dump(_Pairs(pairs)).encode()


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
_OFFSETS = ["Z", "z", "+01:00", "-05:30", "+0930", "+23:59", "-23:59", "-00:00", "+00:01", "+24:00",
            "-24:00", "+01:75", "-99:99", "+01", "+1:00", ""]  # fmt: skip
_FRACTIONS = ["", ".5", ",123", ".123456", ".000999", ".1234567", ".123456789", ".1234567891", ".", ".x"]


def _offset_text(minutes: int) -> str:
    sign = "-" if minutes < 0 else "+"
    return f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


def _at_offset(instant: datetime, minutes: int) -> str:
    """An instant written in local time at an offset (minutes within ±23:59), microseconds kept."""
    local = instant.astimezone(timezone(timedelta(minutes=minutes)))
    return local.replace(tzinfo=None).isoformat(timespec="microseconds") + _offset_text(minutes)


_MS = timedelta(milliseconds=1)
# The range ends, 1 ms / 1 us either side, written at any offset (so offsets cross the bounds).
_near_bounds = st.builds(
    _at_offset,
    st.builds(
        lambda bound, delta: bound + delta,
        st.sampled_from([EARLIEST, LATEST]),
        st.one_of(
            st.sampled_from([-_MS, -ONE_US, timedelta(0), ONE_US, _MS]),
            st.integers(-(2 * 86_400 * 10**6), 2 * 86_400 * 10**6).map(lambda us: us * ONE_US),
        ),
    ),
    st.integers(-(24 * 60 - 1), 24 * 60 - 1),
)
# Local times from year 1 to 9999 at any offset: year-1 and year-9999 times shifted out of
# Python's datetime range are refused at occurred_at, never an OverflowError.
_any_year = st.builds(
    # Not strftime: it writes year 1 as "1", not "0001".
    lambda d, sep, frac, tz: f"{d.year:04d}-{d:%m-%d}{sep}{d:%H:%M:%S}{frac}{tz}",
    st.one_of(
        st.datetimes(),
        st.datetimes(max_value=datetime(1, 1, 3)),
        st.datetimes(min_value=datetime(9999, 12, 30)),
    ),
    st.sampled_from(["T", "t", " ", "_"]),
    st.sampled_from(_FRACTIONS),
    st.sampled_from(_OFFSETS),
)
# Well-shaped texts with any two-digit fields (day 31 of February, hour 24, offset -99:99, ...)
# and any digits (\d also draws non-ASCII digits, which the contract refuses).
_shaped = st.from_regex(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,10})?([Zz]|[+-][0-9]{2}:[0-9]{2})",
    fullmatch=True,
)
_datetime_text = st.one_of(
    st.datetimes(min_value=datetime(1900, 1, 2), max_value=datetime(2200, 1, 1)).map(
        lambda d: d.isoformat()  # naive
    ),
    st.builds(
        lambda d, tz, sep, frac: d.strftime(f"%Y-%m-%d{sep}%H:%M:%S") + frac + tz,
        st.datetimes(min_value=datetime(1900, 1, 2), max_value=datetime(2200, 1, 1)),
        st.sampled_from(_OFFSETS),
        st.sampled_from(["T", "t", " ", "_", "x", "/"]),
        st.sampled_from(_FRACTIONS),
    ),
    _near_bounds,
    _any_year,
    _shaped,
    st.from_regex(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,3})?([+-]\d{2}:\d{2}|Z)\n?", fullmatch=True),
    # Numeric strings: the contract refuses every one (the reference once read them as Unix times).
    st.integers(-(10**13), 10**13).map(str),
    st.integers(-(2**70), 2**70).map(str),
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
            "18446744073709551616",
            "1772438400",
            "1772438400000",
            "2026-03-02T09:00:00",
            "2026-03-02T09:00Z",
            "2026-03-02T09:00:00Z\n",
            " 2026-03-02T09:00:00Z",
            "2026-03-02T09:00:00+0100",
            "2026-03-02T09:00:00.Z",
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
# Numbers JSON or ClickHouse cannot carry, as literals: the contract refuses them at attributes
# wherever they are; past 4300 characters before the fraction a number is not JSON to the reference.
_number_literals = st.one_of(
    st.sampled_from(["NaN", "Infinity", "-Infinity", "1e400", "-1e400", "1E309", "1e-400", "-0.0", "-0"]),
    st.sampled_from([2**64 - 1, 2**64, -(2**63), -(2**63) - 1, 2**63, 10**30, -(10**30)]).map(str),
    st.builds(
        lambda sign, n, tail: sign + "9" * n + tail,
        st.sampled_from(["", "-"]),
        st.sampled_from([25, 4298, 4299, 4300, 4301, 4302]),
        st.sampled_from(["", ".5", "e2", "."]),
    ),
).map(_Raw)
_json_leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    _text,
    _number_literals,
)
_key = st.one_of(_text, st.sampled_from(["a", "b", ""]))
_attribute_tree = st.recursive(
    _json_leaf,
    lambda kids: st.one_of(
        st.lists(kids, max_size=3),
        st.dictionaries(_key, kids, max_size=3),
        st.lists(st.tuples(_key, kids), max_size=4).map(_Pairs),  # duplicate keys
    ),
    max_leaves=8,
)
_attributes = st.one_of(
    st.none(),
    st.dictionaries(_key, _attribute_tree, max_size=5),
    st.lists(st.tuples(_key, _attribute_tree), max_size=5).map(_Pairs),
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


def _with(key: str, value: Any) -> bytes:
    return _object([*((k, v) for k, v in GOOD.items() if k != key), (key, value)])


@settings(max_examples=3000, deadline=None)
@given(st.one_of(_datetime_text, _junk_values))
@example("1772438400")
@example(".5")
@example("1.5e3")
@example("2200-01-01T00:00:00Z")
@example("1969-12-31T23:59:59.999Z")
@example("2200-01-01T00:59:59.999+01:00")
@example("9999-12-31T23:59:59-00:01")
@example("0001-01-01T00:00:00+00:01")
@example("2026-02-29T24:00:00+24:00")
def test_occurred_at_gets_the_same_verdict(text: Any) -> None:
    """Any time text (numeric, near the range ends, any year and offset, ill-formed): same verdict."""
    _same(_with("occurred_at", text))


def test_the_range_ends_are_exact_to_the_microsecond() -> None:
    """1970-01-01T00:00:00Z and 2199-12-31T23:59:59.999999Z are in; a microsecond outside is not."""
    for instant, accepted in [
        (EARLIEST, True),
        (EARLIEST - ONE_US, False),
        (LATEST - ONE_US, True),
        (LATEST, False),
    ]:
        for minutes in (-(23 * 60 + 59), 0, 90):
            verdict = _same(_with("occurred_at", _at_offset(instant, minutes)))
            assert (verdict[0] == "accepted") is accepted, (instant, minutes)
            if not accepted:
                assert verdict[1:3] == ("schema_violation", "occurred_at")
                assert "outside the accepted range" in verdict[3]


def test_numeric_time_strings_are_refused_at_occurred_at() -> None:
    """A Unix time as text is no RFC 3339 date-time: refused, the detail shows the expected form."""
    for text in ["1772438400", "1772438400000", ".5", "1.5e3", "-1"]:
        verdict = _same(_with("occurred_at", text))
        assert verdict[1:3] == ("schema_violation", "occurred_at")
        assert "RFC 3339" in verdict[3]


@settings(max_examples=2000, deadline=None)
@given(_attributes)
@example(_Pairs([("a", _Raw("1")), ("b", [1, {"c": _Raw("NaN")}]), ("a", _Raw("-Infinity"))]))
@example({"a": _Raw("1e400"), "": [_Raw("18446744073709551616")]})
@example({"n": _Raw("9" * 4300)})
@example({"n": _Raw("-" + "9" * 4300)})
def test_attributes_get_the_same_verdict(attributes: Any) -> None:
    """NaN, Infinity, 1e400 and integers past 64 bits anywhere in attributes: the same rejection."""
    _same(_with("attributes", attributes))


def test_numbers_json_cannot_carry_are_refused_where_they_are() -> None:
    """The detail names the path to the value and what it is; 2**64 - 1 and -2**63 still fit."""
    verdict = _same(_with("attributes", {"cart": {"items": [1, {"price": _Raw("1e400")}]}}))
    assert verdict[1:] == (
        "schema_violation",
        "attributes",
        "Value error, cart.items[1].price: inf is not a JSON number (NaN, Infinity or beyond 1e308)",
    )
    verdict = _same(_with("attributes", {"big": -(2**63) - 1}))
    assert verdict[3] == "Value error, big: integer -9223372036854775809... does not fit 64 bits"
    assert _same(_with("attributes", {"a": 2**64 - 1, "b": -(2**63)}))[0] == "accepted"


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
@example(b"9" * 4301)
@example(b"-" + b"9" * 4299)
@example(b"\n  " + b"1" * 4301 + b".")
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
