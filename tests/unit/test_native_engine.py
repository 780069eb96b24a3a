"""Differential: NativeEngine writes exactly JourneyEngine's rows, verdicts and counters, drain by drain."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import groupby
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from events.codec import check_contract
from events.errors import Rejection
from events.registry import Registry
from projections.engine import JourneyEngine, Row
from projections.intake import Intake
from projections.journeys import (
    DefinitionsDoc,
    EngineSettings,
    FrictionSettings,
    JourneyDef,
    JourneyModel,
    PersonaDef,
    StepDef,
    build_model,
)
from projections.native import native_available
from projections.native_engine import NativeEngine
from projections.occurrence import occurrence_of
from projections.state_codec import decode_state, encode_state
from streams.embedded.runner import EmbeddedRunner, restore_state
from streams.sim.simulator import SimulationConfig, simulate
from streams.store.fake import InMemoryProjectionStore

pytestmark = pytest.mark.skipif(not native_available(), reason="the native extension is not built")

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
MINUTE = 60_000
HOUR = 60 * MINUTE
DAY = 24 * HOUR
TOUCHPOINTS = {
    "web.home": "web",
    "web.cart": "web",
    "web.pay": "web",
    "store.visit": "store",
    "store.fit": "store",
    "email.offer": "email",
    "support.call": "support",
    "support.chat": "support",
}
STEP_TOUCHPOINTS = sorted(TOUCHPOINTS)
PERSONAS = ("p1", "p2")


def _registry() -> Registry:
    return Registry.model_validate(
        {
            "teams": [{"id": "growth"}, {"id": "care"}],
            "touchpoints": [
                {"id": tp, "channel": ch, "owner": "care" if ch == "support" else "growth"}
                for tp, ch in TOUCHPOINTS.items()
            ],
        }
    )


@st.composite
def journey_defs(draw: st.DrawFn, number: int, persona: str) -> JourneyDef:
    """A journey with optional, alternative, repeatable and timed steps, a goal or not."""
    steps = []
    for index in range(draw(st.integers(1, 5))):
        targets = draw(st.lists(st.sampled_from(STEP_TOUCHPOINTS), min_size=1, max_size=3, unique=True))
        steps.append(
            StepDef(
                name=f"s{index}",
                touchpoint=targets[0] if len(targets) == 1 else None,
                any_of=tuple(targets) if len(targets) > 1 else None,
                optional=draw(st.booleans()),
                repeatable=draw(st.booleans()),
                within=draw(st.none() | st.sampled_from([MINUTE, 30 * MINUTE, 5 * HOUR])) if index else None,
            )
        )
    if all(step.optional for step in steps):
        steps[-1] = steps[-1].model_copy(update={"optional": False})
    required = [i for i, step in enumerate(steps) if not step.optional]
    goal = draw(st.none() | st.sampled_from(required))
    if goal is not None:
        steps[goal] = steps[goal].model_copy(update={"goal": True})
    abandon_after = draw(st.sampled_from([HOUR, 6 * HOUR, 2 * DAY]))
    return JourneyDef(
        id=f"j{number}", persona=persona, version=number + 1, abandon_after=abandon_after, steps=tuple(steps)
    )


@st.composite
def models(draw: st.DrawFn) -> JourneyModel:
    """One or two personas with one or two journeys each; short windows so every rule fires."""
    personas = PERSONAS[: draw(st.integers(1, 2))]
    journeys = []
    for persona in personas:
        for _ in range(draw(st.integers(1, 2))):
            journeys.append(draw(journey_defs(len(journeys), persona)))
    friction = FrictionSettings(
        repeat_window=draw(st.sampled_from([MINUTE, 30 * MINUTE])),
        escalation_lookback=draw(st.sampled_from([HOUR, 3 * DAY])),
        survey_lookback=draw(st.sampled_from([HOUR, 3 * DAY])),
    )
    doc = DefinitionsDoc(
        personas=tuple(PersonaDef(id=p) for p in personas),
        default_persona=personas[0],
        settings=EngineSettings(
            allowed_lateness=draw(st.sampled_from([2 * HOUR, 2 * DAY, 60 * DAY])), friction=friction
        ),
        journeys=tuple(journeys),
    )
    return build_model(doc, _registry())


SURVEYS = (
    st.tuples(st.just("csat"), st.integers(1, 5))
    | st.tuples(st.just("nps"), st.integers(0, 10))
    | st.tuples(st.just("ces"), st.integers(1, 7))
)
BAD_LINES = [b"{not json", b"\xff\xfe\x00", b'{"event_id": "x"}', b"[]"]


@dataclass(frozen=True)
class Stream:
    """Raw lines in arrival order, the drain cadence, and whether they come from partitions."""

    lines: list[bytes]
    drain_every: int
    partitions: int  # 0: one stream (no partition), else records spread over this many


@st.composite
def streams(draw: st.DrawFn) -> Stream:
    """Events of a few customers: gaps around the windows, duplicates, shuffles, late and bad lines."""
    lines: list[bytes] = []
    ms = 0
    for n in range(draw(st.integers(1, 40))):
        ms += draw(st.sampled_from([0, 1, MINUTE, 20 * MINUTE, HOUR + 1, 7 * HOUR, 3 * DAY]))
        touchpoint = draw(st.sampled_from([*STEP_TOUCHPOINTS, "web.unknown"]))
        channel = TOUCHPOINTS.get(touchpoint, "web")
        body: dict[str, Any] = {
            "event_id": f"e{draw(st.integers(0, 3))}-{n}",
            "customer_id": draw(st.sampled_from(["c1", "c2", "c3"])),
            "occurred_at": (T0 + timedelta(milliseconds=ms)).isoformat(),
            "channel": channel if draw(st.integers(0, 5)) else "store",
            "touchpoint": touchpoint,
        }
        for key, value in (
            ("persona", draw(st.sampled_from([None, None, None, None, *PERSONAS, "ghost"]))),
            ("outcome", draw(st.sampled_from([None, None, "success", "failure", "abandoned"]))),
            ("employee_id", draw(st.sampled_from([None, "emp1"]))),
            ("attributes", draw(st.sampled_from([None, {}, {"plan": "pro", "n": 2}, {"a": {"b": [1]}}]))),
            ("source", draw(st.sampled_from([None, "app"]))),
        ):
            if value is not None:
                body[key] = value
        survey = draw(SURVEYS) if draw(st.integers(0, 3)) == 0 else None
        if survey is not None:
            body["survey"] = {"kind": survey[0], "score": survey[1], "comment": "ok"}
        lines.append(orjson.dumps(body))
    # Duplicates (the same line again) and bad bytes, then any arrival order.
    lines += draw(st.lists(st.sampled_from(lines), max_size=4))
    lines += draw(st.lists(st.sampled_from(BAD_LINES), max_size=2))
    lines = draw(st.permutations(lines)) if draw(st.booleans()) else lines
    return Stream(lines, draw(st.sampled_from([1, 3, 1000])), draw(st.sampled_from([0, 0, 2])))


def _run(engine: Any, stream: Stream) -> list[object]:
    """Everything a user could observe: verdicts, each drain's rows by table, counters."""
    intake = Intake(engine)
    seen: list[object] = []
    for position, raw in enumerate(stream.lines):
        partition = position % stream.partitions if stream.partitions else None
        verdict = intake.offer(raw, "test", position, partition)
        rejection = verdict.rejection
        seen.append((verdict.kind, rejection and (rejection.reason, rejection.detail, rejection.field)))
        seen.append(verdict.quarantine)
        if position % stream.drain_every == 0:
            seen.append(dict(engine.drain().rows))
    seen.append(dict(engine.drain().rows))
    engine.advance(engine.watermark + 3 * DAY)  # every open instance times out
    seen.append(dict(engine.drain().rows))
    seen.append((engine.counters, engine.open_instances()))
    return seen


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(model=models(), stream=streams())
def test_native_rows_equal_the_reference_for_every_table(model: JourneyModel, stream: Stream) -> None:
    """Generated journeys and messy streams: every drain's rows, verdicts and counters are identical."""
    reference = _run(JourneyEngine(model, "prop"), stream)
    assert _run(NativeEngine(model, "prop"), stream) == reference


def _replay(engine: Any, model: JourneyModel, stream: Stream) -> dict[str, list[Row]]:
    events = [e for e in (check_contract(raw) for raw in stream.lines) if not isinstance(e, Rejection)]
    events = [e for e in events if model.check(e) is None]
    engine.advance(max((e.occurred_ms for e in events), default=0))
    events.sort(key=lambda e: (e.customer_id, e.occurred_ms, e.event_id))
    rows: dict[str, list[Row]] = {}
    for customer, group in groupby(events, key=lambda e: e.customer_id):
        batch = engine.replay_customer(customer, [occurrence_of(e) for e in group])
        for name, table in batch.rows.items():
            rows.setdefault(name, []).extend(table)
    return rows


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(model=models(), stream=streams())
def test_native_replay_equals_the_reference(model: JourneyModel, stream: Stream) -> None:
    """replay_customer (history customer by customer) renders the same rows natively."""
    reference = _replay(JourneyEngine(model, "prop"), model, stream)
    assert _replay(NativeEngine(model, "prop"), model, stream) == reference


@pytest.mark.parametrize("shuffle", [False, True])
def test_native_equals_the_reference_on_simulated_traffic(model: JourneyModel, shuffle: bool) -> None:
    """The simulator's traffic (bad lines, duplicates, late events), in order and shuffled."""
    lines = simulate(model, SimulationConfig(customers=300, days=20, seed=5)).lines
    if shuffle:
        random.Random(3).shuffle(lines)
    stream = Stream(lines, drain_every=97, partitions=0)
    assert _run(NativeEngine(model, "prop"), stream) == _run(JourneyEngine(model, "prop"), stream)


def _run_batched(engine: Any, stream: Stream, batched: bool) -> list[object]:
    """Quarantined verdicts, rows and counters when each drain's records are offered as one batch."""
    # Events beyond five days are in the future; attributes two levels deep are too deep.
    not_after = int((T0 + timedelta(days=5)).timestamp() * 1000)
    intake = Intake(engine, not_after_ms=not_after, max_depth=3)
    seen: list[object] = []
    records = list(enumerate(stream.lines))
    for start in range(0, len(records), stream.drain_every):
        chunk = records[start : start + stream.drain_every]
        if batched:
            verdicts = intake.offer_batch(chunk, "test")
        else:
            verdicts = [v for v in (intake.offer(raw, "test", p) for p, raw in chunk) if v.quarantine]
        seen.extend((v.kind, v.rejection, v.quarantine) for v in verdicts)
        seen.append(dict(engine.drain().rows))
    engine.advance(engine.watermark + 3 * DAY)
    seen.append(dict(engine.drain().rows))
    seen.append(engine.counters)
    return seen


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(model=models(), stream=streams())
def test_native_batches_of_raw_records_equal_the_reference(model: JourneyModel, stream: Stream) -> None:
    """offer_batch (decode, check and fold in Rust) gives the record-by-record verdicts and rows."""
    reference = _run_batched(JourneyEngine(model, "prop"), stream, batched=False)
    assert _run_batched(NativeEngine(model, "prop"), stream, batched=True) == reference


def test_embedded_runner_writes_the_same_tables_with_either_engine(model: JourneyModel) -> None:
    """`run`'s runner (batches per drain, bad lines, late settling against the store) stores the
    same rows in every projection table with TOUCHPATH_ENGINE=native as with the reference."""
    lines = simulate(model, SimulationConfig(customers=200, days=20, seed=13)).lines
    random.Random(2).shuffle(lines)
    stored = []
    for engine in (JourneyEngine(model, "run"), NativeEngine(model, "run")):
        store = InMemoryProjectionStore()
        store.create_schema()
        stats = EmbeddedRunner(engine, store, drain_every=500).feed(enumerate([*lines, b"  "]), "f")
        stored.append((stats, store.tables))
    assert stored[1] == stored[0]
    assert stored[0][1]["bad_events"], "the simulated traffic has bad lines"


PAIRS = (("python", "python"), ("native", "native"), ("python", "native"), ("native", "python"))


def test_runners_that_keep_states_store_the_same_tables_with_either_engine(model: JourneyModel) -> None:
    """`run` split in two runs (states kept, then restored): every table, journey_state included,
    holds the same rows with either engine, whichever engine ran the first part."""
    lines = simulate(model, SimulationConfig(customers=200, days=20, seed=13)).lines
    random.Random(2).shuffle(lines)
    half = len(lines) // 2
    stored = {}
    for first, second in PAIRS:
        store = InMemoryProjectionStore()
        store.create_schema()
        EmbeddedRunner(_engine(first, model), store, drain_every=500, keep_state=True).feed(
            enumerate(lines[:half]), "f"
        )
        engine = _engine(second, model)
        assert restore_state(engine, store) > 0
        EmbeddedRunner(engine, store, drain_every=500, keep_state=True).feed(
            enumerate(lines[half:], half), "f"
        )
        stored[first, second] = store.tables
    reference = stored["python", "python"]
    assert reference["journey_state"], "the states are kept"
    for kinds, tables in stored.items():
        assert tables == reference, kinds


def test_native_states_are_the_reference_codec_bytes(model: JourneyModel) -> None:
    """Simulated traffic, shuffled, drained every 97 records: every changed customer's native state
    is byte for byte projections.state_codec's, and reads back (either codec) to the same bytes."""
    lines = simulate(model, SimulationConfig(customers=300, days=20, seed=5)).lines
    random.Random(3).shuffle(lines)
    reference, native = JourneyEngine(model, "prop"), NativeEngine(model, "prop")
    intakes = Intake(reference), Intake(native)
    kept: dict[str, bytes] = {}
    for start in range(0, len(lines), 97):
        for position, raw in enumerate(lines[start : start + 97], start):
            for intake in intakes:
                intake.offer(raw, "test", position)
        expected = [
            (u.customer_id, encode_state(u.state), u.state.revision) for u in reference.drain_updates()
        ]
        assert [(u.customer_id, u.state, u.revision) for u in native.drain_updates()] == expected
        kept.update((customer, raw) for customer, raw, _ in expected)
    restored = NativeEngine(model, "prop")
    assert restored.restore(kept.values()) == len(kept) == 300
    assert {customer: restored.state_bytes(customer) for customer in kept} == kept
    assert all(encode_state(decode_state(raw, model)) == raw for raw in kept.values())
    assert restored.open_instances() == native.open_instances() == reference.open_instances() > 0


def test_native_restore_refuses_what_is_not_a_state(model: JourneyModel) -> None:
    """Bytes from elsewhere, or a state of a journey the definitions lack, restore nothing."""
    engine = NativeEngine(model)
    with pytest.raises(ValueError, match="malformed journey state"):
        engine.restore([b"{not json"])
    event = [5, "e1", "web.home", "web", None, None, None, None, None]
    foreign = orjson.dumps([1, "c1", 0, None, 1, 1, 0, [["gone@1", "p", None, [0, 0, 0], True, [event]]]])
    with pytest.raises(ValueError, match="unknown journey gone@1"):
        engine.restore([foreign])
    with pytest.raises(ValueError, match="unknown journey state format 7"):
        engine.restore([b"[7]"])
    assert engine.customer_count() == 0


def _restore(engine: Any, states: dict[str, bytes]) -> None:
    """What `run` does with the journey_state rows of earlier runs (restore_state), per engine kind."""
    if isinstance(engine, NativeEngine):
        engine.restore(states.values())
        return
    for raw in states.values():
        state = decode_state(raw, engine.model)
        engine.customers[state.customer_id] = state
        engine.schedule(state)


def _engine(kind: str, model: JourneyModel) -> Any:
    return NativeEngine(model, "prop") if kind == "native" else JourneyEngine(model, "prop")


def _second_part(engine: Any, lines: list[bytes], start: int) -> list[object]:
    """Verdicts and rows (as multisets: customers may time out in another order) of the second part."""
    intake = Intake(engine)
    seen: list[object] = []
    for position, raw in enumerate(lines, start):
        verdict = intake.offer(raw, "test", position)
        seen.append((verdict.kind, verdict.rejection, verdict.quarantine))
    for advance in (0, 3 * DAY):
        engine.advance(engine.watermark + advance)
        seen.append({name: sorted(map(repr, rows)) for name, rows in engine.drain().rows.items()})
    return seen


def _states_after_first_part(engine: Any, lines: list[bytes]) -> dict[str, bytes]:
    intake = Intake(engine)
    for position, raw in enumerate(lines):
        intake.offer(raw, "test", position)
    return {
        u.customer_id: u.state if isinstance(u.state, bytes) else encode_state(u.state)
        for u in engine.drain_updates()
    }


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(model=models(), stream=streams(), data=st.data())
def test_a_save_and_restore_between_two_parts_changes_no_rows(
    model: JourneyModel, stream: Stream, data: st.DataObject
) -> None:
    """Events fed in two parts, the states kept after the first and restored into a fresh engine
    (of either kind: the format is shared), give the rows and verdicts of one engine fed both."""
    split = data.draw(st.integers(0, len(stream.lines)), label="split")
    first, second = stream.lines[:split], stream.lines[split:]
    through = _engine("python", model)
    _states_after_first_part(through, first)
    reference = _second_part(through, second, split)
    for saver, loader in PAIRS[1:]:
        before = _engine(saver, model)
        states = _states_after_first_part(before, first)
        resumed = _engine(loader, model)
        _restore(resumed, states)
        resumed.advance(before.watermark)  # the shell's clock (run: the next events) moves on too
        assert _second_part(resumed, second, split) == reference, (saver, loader)


def _states_of(engine: Any) -> dict[str, bytes]:
    if isinstance(engine, NativeEngine):
        return {c: raw for c in ("c1", "c2", "c3") if (raw := engine.state_bytes(c)) is not None}
    return {c: encode_state(state) for c, state in engine.customers.items()}


def _run_forgetting(engine: Any, stream: Stream, forgets: dict[int, str]) -> list[object]:
    """_run with a customer forgotten (erased) before some records: what forget returns, the rows
    of each drain and every customer's state bytes after each forget."""
    intake = Intake(engine)
    seen: list[object] = []
    for position, raw in enumerate(stream.lines):
        if position in forgets:
            customer = forgets[position]
            seen.append(engine.forget(customer))
            states = _states_of(engine)
            assert customer not in states
            seen.append(states)
        partition = position % stream.partitions if stream.partitions else None
        verdict = intake.offer(raw, "test", position, partition)
        seen.append((verdict.kind, verdict.quarantine))
        if position % stream.drain_every == 0:
            seen.append(dict(engine.drain().rows))
    seen.append(dict(engine.drain().rows))
    seen.append(_states_of(engine))
    engine.advance(engine.watermark + 3 * DAY)
    seen.append(dict(engine.drain().rows))
    seen.append((engine.counters, engine.open_instances(), _states_of(engine)))
    return seen


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(model=models(), stream=streams(), data=st.data())
def test_forgetting_customers_leaves_both_engines_equal(
    model: JourneyModel, stream: Stream, data: st.DataObject
) -> None:
    """Customers erased (forget) at any point, pending changes and open journeys included: both
    engines return the same, drain the same rows and hold the same states afterwards."""
    forgets = data.draw(
        st.dictionaries(st.integers(0, len(stream.lines)), st.sampled_from(["c1", "c2", "c3", "c9"])),
        label="forgets",
    )
    reference = _run_forgetting(JourneyEngine(model, "prop"), stream, forgets)
    assert _run_forgetting(NativeEngine(model, "prop"), stream, forgets) == reference


@pytest.mark.parametrize("kind", ["python", "native"])
def test_a_forgotten_customer_starts_over(model: JourneyModel, kind: str) -> None:
    """After forget, a customer's undrained rows are gone and its events fold as in an engine that
    never saw it: the same first event again is no duplicate and renders a fresh journey."""
    lines = simulate(model, SimulationConfig(customers=1, days=3, seed=2)).lines
    customer = orjson.loads(lines[0])["customer_id"]
    engine = _engine(kind, model)
    intake = Intake(engine)
    for position, raw in enumerate(lines[:3]):
        intake.offer(raw, "test", position)
    engine.drain()
    intake.offer(lines[3], "test", 3)
    assert engine.forget(customer) is True
    assert engine.forget(customer) is False
    assert engine.drain().rows == {}, "the erased customer's pending rows are dropped"
    assert engine.open_instances() == 0
    intake.offer(lines[0], "test", 4)
    fresh = _engine(kind, model)
    Intake(fresh).offer(lines[0], "test", 4)
    assert dict(engine.drain().rows) == dict(fresh.drain().rows)
    assert engine.counters.duplicates == 0
