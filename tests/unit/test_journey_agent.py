"""The journey agent without a broker: one record per partition and batch, and a partition's state
following it to another agent through those records."""

from __future__ import annotations

import asyncio
import zlib
from collections import defaultdict
from typing import Any

import orjson
import pytest

from events.errors import Rejection
from projections import schema
from projections.journeys import JourneyModel
from projections.native_engine import NativeEngine
from streams.common.engines import EngineKind
from streams.common.topics import partition_for
from streams.sim.simulator import SimulationConfig, simulate
from streams.worker.control import CONTROL_HEADER, ERASE
from streams.worker.gapfill import Incoming
from streams.worker.journeys import JourneyAgent
from streams.worker.partitioning import Placement
from streams.worker.records import Kind, Recovered, Replayer, decode, erased_key
from tests.conftest import event_line, online_journey

PARTITIONS = 2


@pytest.fixture(params=["python", "native"])
def engine(request: pytest.FixtureRequest) -> EngineKind:
    """The agent's journey engine (TOUCHPATH_ENGINE): every behaviour holds under both."""
    kind: EngineKind = request.param
    return kind


class FakeTopic:
    """journey-events as a list per partition; the agent's publish, recover and read-back seams."""

    def __init__(self, source: dict[int, list[Incoming]], engine: EngineKind = "python") -> None:
        self.records: dict[int, list[bytes]] = defaultdict(list)
        self.source = source
        self.engine = engine

    async def publish(self, partition: int, value: bytes) -> Any:
        self.records[partition].append(value)
        done: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        done.set_result(type("Metadata", (), {"offset": len(self.records[partition]) - 1})())
        return done

    async def recover(self, partition: int) -> Recovered:
        replayer = Replayer()
        for offset, value in enumerate(self.records[partition]):
            replayer.offer(offset, value)
        replayer.result.last_offset = len(self.records[partition]) - 1 if self.records[partition] else None
        return replayer.result

    async def read_back(self, partition: int, start: int, end: int) -> list[Incoming]:
        return [record for record in self.source[partition] if start <= record.offset < end]

    def agent(self, model: JourneyModel, engine: EngineKind | None = None) -> JourneyAgent:
        async def quarantine(record: Incoming, rejection: Rejection) -> None:
            pass

        return JourneyAgent(
            model, publish=self.publish, quarantine=quarantine, recover=self.recover,
            read_back=self.read_back, future_bound_ms=10**15, engine=engine or self.engine,
        )  # fmt: skip

    def loaded(self) -> dict[str, list[list[Any]]]:
        """What a loader would store: the rows of every batch, in order."""
        out: dict[str, list[list[Any]]] = defaultdict(list)
        for values in self.records.values():
            for value in values:
                record = decode(value, states=False)
                if record.kind is Kind.BATCH:
                    for table, rows in record.rows.items():
                        out[table].extend(list(row) for row in rows)
        return out


def _input(model: JourneyModel) -> dict[int, list[Incoming]]:
    lines = simulate(model, SimulationConfig(customers=60, days=6, seed=5, bad_rate=0.0)).lines
    by_partition: dict[int, list[Incoming]] = defaultdict(list)
    for line in lines:
        partition = zlib.crc32(line.split(b'"customer_id"', 1)[1][:24]) % PARTITIONS
        offset = len(by_partition[partition])
        by_partition[partition].append(Incoming("tp", partition, offset, None, line, 0))
    return by_partition


def _run(agent: JourneyAgent, records: list[Incoming]) -> None:
    for start in range(0, len(records), 97):
        asyncio.run(agent.process(records[start : start + 97], set(range(PARTITIONS))))
    asyncio.run(agent.tick(set(range(PARTITIONS)), {}))


def test_one_record_per_partition_and_batch_and_redelivered_input_changes_nothing(
    model: JourneyModel,
    engine: EngineKind,
) -> None:
    """Each batch becomes at most one batch record per partition; the same input delivered again
    (Faust after a restart) is skipped, so no row is derived twice."""
    source = _input(model)
    ordered = sorted(
        (r for records in source.values() for r in records), key=lambda r: (r.offset, r.partition)
    )
    topic = FakeTopic(source, engine)
    agent = topic.agent(model)
    _run(agent, ordered)
    batches = -(-len(ordered) // 97)
    assert sum(len(values) for values in topic.records.values()) <= batches * PARTITIONS + PARTITIONS
    once = topic.loaded()
    _run(agent, ordered)
    assert agent.counters.redelivered == len(ordered)
    assert topic.loaded()[schema.TOUCHPOINT_EVENTS.name] == once[schema.TOUCHPOINT_EVENTS.name]


def test_a_partition_recovered_by_another_agent_goes_on_as_if_nothing_moved(
    model: JourneyModel, engine: EngineKind
) -> None:
    """Agent A folds the first half and is gone; agent B recovers the partitions from A's records,
    gets the whole input again (Faust from an old commit) and folds the rest: the rows equal one
    agent folding everything."""
    source = _input(model)
    ordered = sorted(
        (r for records in source.values() for r in records), key=lambda r: (r.offset, r.partition)
    )
    half = len(ordered) // 2
    moved = FakeTopic(source, engine)
    _run(moved.agent(model), ordered[:half])
    successor = moved.agent(model)
    _run(successor, ordered)
    single = FakeTopic(source, engine)
    _run(single.agent(model), ordered)
    assert successor.counters.recoveries == PARTITIONS
    assert successor.counters.redelivered == half
    expected, got = single.loaded(), moved.loaded()
    for table in (schema.TOUCHPOINT_EVENTS, schema.JOURNEY_INSTANCES, schema.DEVIATIONS):
        assert _final(got[table.name], table) == _final(expected[table.name], table), table.name


def _final(rows: list[list[Any]], table: schema.Table) -> list[list[Any]]:
    """Rows as a ReplacingMergeTree read with FINAL sees them: the latest version per key."""
    names = list(table.column_names)
    key = [names.index(column) for column in table.order_by]
    latest: dict[tuple[Any, ...], list[Any]] = {}
    for row in rows:
        k = tuple(str(row[i]) for i in key)
        if (
            not table.versioned
            or k not in latest
            or row[names.index("version")] >= latest[k][names.index("version")]
        ):
            latest[k] = row
    return sorted((row for row in latest.values() if not (table.versioned and row[-1])), key=str)


class InputTopic:
    """The input topic as Placement produces to it: re-routed records are kept, acknowledged at once."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    async def send(self, **message: Any) -> asyncio.Future[None]:
        self.sent.append(message)
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done


def test_records_on_another_partition_than_their_customers_are_sent_home_not_folded(
    model: JourneyModel,
    engine: EngineKind,
) -> None:
    """Events produced live by CRC32 (as kcat's default partitioner does): the agent folds only the
    records on their customer's murmur2 partition and sends the others home, its batch records still
    cover every input offset (a recovering agent does not fold them again), and with the copies
    arriving at their home partitions right after their batch (live: seconds later) the rows equal
    an agent folding input placed right in the first place."""
    lines = simulate(model, SimulationConfig(customers=60, days=6, seed=5, bad_rate=0.0)).lines
    lines.sort(key=lambda line: orjson.loads(line)["occurred_at"])  # live: partitions move in step
    logs: dict[int, list[Incoming]] = defaultdict(list)  # the input topic's partitions

    def produce(partition: int, key: bytes | None, value: bytes) -> Incoming:
        logs[partition].append(Incoming("tp", partition, len(logs[partition]), key, value, 0))
        return logs[partition][-1]

    topic, home = FakeTopic(logs, engine), InputTopic()
    agent = topic.agent(model)
    agent.placement = Placement(home, PARTITIONS)
    copied = 0
    for start in range(0, len(lines), 4):
        batch = [
            produce(zlib.crc32(_customer(line)) % PARTITIONS, None, line) for line in lines[start : start + 4]
        ]
        asyncio.run(agent.process(batch, set(range(PARTITIONS))))
        copies = [produce(m["partition"], m["key"], m["value"]) for m in home.sent[copied:]]
        copied = len(home.sent)
        asyncio.run(agent.process(copies, set(range(PARTITIONS))))
    asyncio.run(agent.tick(set(range(PARTITIONS)), {}))
    assert home.sent
    assert agent.counters.rerouted == len(home.sent) < len(lines)
    assert all(m["partition"] == partition_for(m["key"], PARTITIONS) for m in home.sent)
    assert agent.guard.next == {p: len(log) for p, log in logs.items()}  # the chain is past them all
    for partition, values in topic.records.items():  # batch records hold their partition's customers
        for value in values:
            for customer in decode(value).states:
                assert partition_for(customer.encode(), PARTITIONS) == partition

    placed: dict[int, list[Incoming]] = defaultdict(list)
    in_order = []
    for line in lines:
        partition = partition_for(_customer(line), PARTITIONS)
        in_order.append(Incoming("tp", partition, len(placed[partition]), None, line, 0))
        placed[partition].append(in_order[-1])
    right = FakeTopic(placed, engine)
    _run(right.agent(model), in_order)
    expected, got = right.loaded(), topic.loaded()
    for table in (schema.TOUCHPOINT_EVENTS, schema.JOURNEY_INSTANCES, schema.DEVIATIONS):
        # The same rows; how many versions a row went through depends on the batches.
        unversioned = [i for i, name in enumerate(table.column_names) if name != "version"]
        assert [[row[i] for i in unversioned] for row in _final(got[table.name], table)] == [
            [row[i] for i in unversioned] for row in _final(expected[table.name], table)
        ], table.name


def _customer(line: bytes) -> bytes:
    return str(orjson.loads(line)["customer_id"]).encode()


def test_input_faust_leaves_undelivered_is_read_back(
    model: JourneyModel, engine: EngineKind, monkeypatch: Any
) -> None:
    """After a rebalance Faust can leave an owned partition unfetched: input waiting past the stall
    time is read back from the chain's next offset, and the rows equal an agent that got it all."""
    monkeypatch.setattr("streams.worker.journeys.STALL_S", 0.0)
    source = _input(model)
    ordered = sorted(
        (r for records in source.values() for r in records), key=lambda r: (r.offset, r.partition)
    )
    stalled = FakeTopic(source, engine)
    agent = stalled.agent(model)
    _run(agent, ordered[: len(ordered) // 3])
    ends = {partition: len(records) for partition, records in source.items()}
    for _ in range(3):  # STALL_READ is larger than the input: one tick per partition would do
        asyncio.run(agent.tick(set(range(PARTITIONS)), ends))
    single = FakeTopic(source, engine)
    _run(single.agent(model), ordered)
    assert agent.counters.gaps_filled == len(ordered) - len(ordered) // 3
    table = schema.TOUCHPOINT_EVENTS
    assert _final(stalled.loaded()[table.name], table) == _final(single.loaded()[table.name], table)


def test_a_partition_faust_never_delivers_from_is_read_back_from_its_start(
    model: JourneyModel, engine: EngineKind, monkeypatch: Any
) -> None:
    """Faust can stall a partition from its very first assignment (nothing folded on it yet, no
    chain): its input is read back from the start all the same, not left waiting with its lag."""
    monkeypatch.setattr("streams.worker.journeys.STALL_S", 0.0)
    source = _input(model)
    stalled = FakeTopic(source, engine)
    agent = stalled.agent(model)
    _run(agent, source[0])  # Faust delivers partition 0 only
    ends = {partition: len(records) for partition, records in source.items()}
    for _ in range(2):
        asyncio.run(agent.tick(set(range(PARTITIONS)), ends))
    assert agent.counters.gaps_filled == len(source[1])
    assert agent.counters.processed == ends


@pytest.mark.parametrize(("first", "then"), [("python", "native"), ("native", "python")])
def test_a_partition_moves_between_engines_and_goes_on_as_if_nothing_moved(
    model: JourneyModel, first: EngineKind, then: EngineKind
) -> None:
    """A worker on one engine folds the first half; a worker on the other recovers the partitions
    from its records (the same state bytes) and folds the rest: the rows equal one Python agent
    folding everything, so TOUCHPATH_ENGINE can change between restarts."""
    source = _input(model)
    ordered = sorted(
        (r for records in source.values() for r in records), key=lambda r: (r.offset, r.partition)
    )
    half = len(ordered) // 2
    moved = FakeTopic(source)
    _run(moved.agent(model, first), ordered[:half])
    successor = moved.agent(model, then)
    _run(successor, ordered)
    single = FakeTopic(source)
    _run(single.agent(model), ordered)
    assert successor.counters.recoveries == PARTITIONS
    expected, got = single.loaded(), moved.loaded()
    for table in (schema.TOUCHPOINT_EVENTS, schema.JOURNEY_INSTANCES, schema.DEVIATIONS):
        assert _final(got[table.name], table) == _final(expected[table.name], table), table.name


def test_a_revoked_partition_leaves_the_others_folding_as_before(
    model: JourneyModel, engine: EngineKind
) -> None:
    """An agent loses partition 1 halfway (a rebalance) and keeps partition 0: partition 0's
    customers get the rows of an agent that owned both all along (timeouts fire on the whole
    input's time, as the workers report it)."""
    source = _input(model)
    ordered = sorted(
        (r for records in source.values() for r in records), key=lambda r: (r.offset, r.partition)
    )
    half = len(ordered) // 2
    revoked = FakeTopic(source, engine)
    agent = revoked.agent(model)
    _run(agent, ordered[:half])
    rest = [record for record in ordered[half:] if record.partition == 0]
    for start in range(0, len(rest), 97):
        asyncio.run(agent.process(rest[start : start + 97], {0}))
    single = FakeTopic(source, engine)
    both = single.agent(model)
    _run(both, ordered)
    asyncio.run(agent.tick({0}, {}, elsewhere=both.engine.watermark))
    assert agent.owned == {0}
    on_zero = {customer for value in revoked.records[0] for customer in decode(value).states}
    assert on_zero
    for table in (schema.TOUCHPOINT_EVENTS, schema.JOURNEY_INSTANCES, schema.DEVIATIONS):
        assert _of(revoked, table, on_zero) == _of(single, table, on_zero), table.name


def _of(topic: FakeTopic, table: schema.Table, customers: set[str]) -> list[list[Any]]:
    """The latest rows of these customers, without the version column (it counts batches)."""
    names = list(table.column_names)
    who = names.index("customer_id")
    mine = _final([row for row in topic.loaded()[table.name] if row[who] in customers], table)
    return [[value for name, value in zip(names, row, strict=True) if name != "version"] for row in mine]


@pytest.mark.parametrize("moment", ["restart", "revoke"])
def test_a_partition_recovered_while_others_are_far_ahead_keeps_its_late_but_allowed_events(
    model: JourneyModel, engine: EngineKind, moment: str
) -> None:
    """A worker takes partition 0 over after a restart (a fresh engine), or keeps it while
    partition 1 is revoked (the native core is rebuilt), while the partitions other workers own
    are 60 days further in event time. Its next tick fires timeouts on that time before it folds
    anything more; the events partition 0 still has for its customer, within the allowed lateness
    of partition 0's own time, are then folded, not quarantined as too late (lateness is measured
    per partition). Before the fix the worker lost them: 4,386 of 40,000 in one roles test run."""
    day = 24 * 60
    first = [*online_journey("c1", 0), event_line("c1-6", "c1", "web.product_page", 2 * day)]
    later = [
        event_line("c1-7", "c1", "web.cart", 3 * day),
        event_line("c1-8", "c1", "web.checkout", 3 * day + 5),
    ]
    source = {
        0: [Incoming("tp", 0, offset, None, line, 0) for offset, line in enumerate(first + later)],
        1: [Incoming("tp", 1, 0, None, event_line("c2-1", "c2", "web.product_page", day), 0)],
    }
    topic = FakeTopic(source, engine)
    agent = topic.agent(model)
    asyncio.run(agent.process([*source[0][: len(first)], *source[1]], {0, 1}))
    elsewhere = agent.engine.watermark + 60 * day * 60_000  # partition 1, another worker's now
    if moment == "restart":
        agent = topic.agent(model)
    asyncio.run(agent.tick({0}, {0: len(source[0])}, elsewhere=elsewhere))
    asyncio.run(agent.process(source[0][len(first) :], {0}))
    loaded = topic.loaded()
    assert loaded[schema.BAD_EVENTS.name] == []
    folded = {row[1] for row in loaded[schema.TOUCHPOINT_EVENTS.name]}
    assert folded == {"c2-1", *(f"c1-{n}" for n in range(1, 9))}


def test_the_native_batch_feed_writes_what_folding_record_by_record_writes(model: JourneyModel) -> None:
    """The native agent folds runs of a partition's records in one call: on messy input (bad and
    corrupt lines, duplicates, future timestamps, records on another partition than their
    customer's, interleaved partitions, redelivered and skipped offsets) it writes the same batch
    records (rows, states, spans, stream times), quarantines, re-routes and counts as folding the
    same input record by record."""
    lines = simulate(model, SimulationConfig(customers=80, days=6, seed=11, bad_rate=0.03)).lines
    lines += lines[5:40]  # re-sent events
    lines.insert(50, event_line("f1", "cust-1", "web.cart", 10**9))  # far in the future
    lines.insert(60, b'{"customer_id": "cust-2", "event_id": 7}')  # a bad record naming a customer
    logs: dict[int, list[Incoming]] = defaultdict(list)
    for line in lines:
        partition = zlib.crc32(line[:40]) % PARTITIONS  # not the customers' partitions
        logs[partition].append(Incoming("tp", partition, len(logs[partition]), None, line, 7))
    ordered = sorted((r for records in logs.values() for r in records), key=lambda r: (r.offset, r.partition))
    delivered = [*ordered[:300], *ordered[250:320], *ordered[330:]]  # again, and a skipped range

    def fold(batched: bool) -> tuple[FakeTopic, InputTopic, JourneyAgent, list[Rejection]]:
        topic, home = FakeTopic(logs, "native"), InputTopic()
        agent = topic.agent(model)
        agent.batch_feed = batched
        agent.placement = Placement(home, PARTITIONS)
        agent.clock = lambda: 1_700_000_000.0
        refused: list[Rejection] = []

        async def quarantine(record: Incoming, rejection: Rejection) -> None:
            refused.append(rejection)

        agent.quarantine = quarantine
        for start in range(0, len(delivered), 61):
            asyncio.run(agent.process(delivered[start : start + 61], set(range(PARTITIONS))))
        asyncio.run(agent.tick(set(range(PARTITIONS)), {}))
        return topic, home, agent, refused

    (by_run, sent_by_run, run_agent, refused_by_run) = fold(batched=True)
    (by_record, sent_by_record, record_agent, refused_by_record) = fold(batched=False)
    assert run_agent.counters.rerouted > 0
    assert run_agent.counters.bad > 0
    assert run_agent.counters.gaps_filled > 0
    assert by_run.records == by_record.records
    assert sent_by_run.sent == sent_by_record.sent
    assert refused_by_run == refused_by_record
    assert run_agent.counters == record_agent.counters
    assert run_agent.engine.counters == record_agent.engine.counters
    assert run_agent.intake.stream_time == record_agent.intake.stream_time


def test_a_native_run_that_fails_leaves_its_offsets_to_be_folded_again(
    model: JourneyModel, monkeypatch: Any
) -> None:
    """If the native feed raises in the middle of a batch (the agent crashes; Faust restarts it and
    delivers the input again), the offsets of the failed run are not counted as folded: every
    event ends up stored once, as with an agent that never failed."""
    source = _input(model)
    ordered = sorted(
        (r for records in source.values() for r in records), key=lambda r: (r.offset, r.partition)
    )
    feed = NativeEngine.feed_partition
    calls = {"n": 0}

    def failing_once(self: NativeEngine, *args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 3:
            raise ValueError("the native feed failed")
        return feed(self, *args, **kwargs)

    monkeypatch.setattr(NativeEngine, "feed_partition", failing_once)
    failed = FakeTopic(source, "native")
    agent = failed.agent(model)
    with pytest.raises(ValueError, match="native feed failed"):
        _run(agent, ordered)
    _run(agent, ordered)
    single = FakeTopic(source, "native")
    _run(single.agent(model), ordered)
    table = schema.TOUCHPOINT_EVENTS
    assert _final(failed.loaded()[table.name], table) == _final(single.loaded()[table.name], table)


def _erase(partition: int, offset: int, customer: str) -> Incoming:
    return Incoming("tp", partition, offset, customer.encode(), b"", 0, ((CONTROL_HEADER, ERASE),))


def test_an_erase_record_forgets_the_customer_in_memory_in_later_records_and_after_recovery(
    model: JourneyModel, engine: EngineKind
) -> None:
    """An erase control record on the customer's partition: it is no event (not counted, not
    quarantined), the customer's state leaves the agent, the batch record marks it erased, no
    later record or snapshot holds its id, an agent recovering the partition (past a snapshot
    taken before the erasure) has no state for it, and its next event starts a new journey."""
    source = _input(model)
    partition = 0
    records = source[partition]
    customer = orjson.loads(records[0].value)["customer_id"]
    mine = [r for r in records if orjson.loads(r.value)["customer_id"] == customer]
    half = len(records) // 2
    topic = FakeTopic(source, engine)
    agent = topic.agent(model)
    _run(agent, records[:half])
    asyncio.run(agent._snapshot(partition, 0.0))  # the snapshot recovery would start from
    erase_at = len(records)
    source[partition] = records = [*records, _erase(partition, erase_at, customer)]
    before = len(topic.records[partition])
    _run(agent, records[half:])
    assert agent.counters.erased == 1
    assert agent.counters.events_in == erase_at
    assert agent.counters.bad == 0
    assert agent.engine.counters.received == erase_at
    later = [decode(raw) for raw in topic.records[partition][before:]]
    assert [r.erased for r in later if r.erased] == [[erased_key(customer)]]
    assert customer not in asyncio.run(topic.recover(partition)).states  # from the earlier snapshot
    asyncio.run(agent._snapshot(partition, 0.0))
    for record in [*later, decode(topic.records[partition][-1])]:
        assert all(customer.encode() not in state for state in record.states.values())

    successor = topic.agent(model)
    again = Incoming("tp", partition, erase_at + 1, None, mine[0].value, 0)
    source[partition].append(again)
    _run(successor, source[partition])
    assert successor.counters.redelivered == erase_at + 1
    assert successor.counters.duplicates == 0
    [last] = [
        r for r in map(decode, topic.records[partition]) if r.kind is Kind.BATCH and r.next == erase_at + 2
    ]
    fresh = FakeTopic({partition: [again]}, engine)
    _run(fresh.agent(model), [again])
    [alone] = [r for r in map(decode, fresh.records[partition]) if r.kind is Kind.BATCH]
    names = schema.JOURNEY_INSTANCES.column_names
    instances = [dict(zip(names, row, strict=True)) for row in last.rows[schema.JOURNEY_INSTANCES.name]]
    expected = [dict(zip(names, row, strict=True)) for row in alone.rows[schema.JOURNEY_INSTANCES.name]]
    assert instances, "the event starts a journey"
    # The journey it starts is the one a customer never seen before starts: one step, no earlier ones
    # (the agent's time is further on, so it may time out at once).
    assert [(i["instance_id"], i["events"], i["path"]) for i in instances] == [
        (i["instance_id"], i["events"], i["path"]) for i in expected
    ]
    assert expected[0]["events"] == 1


def test_control_records_are_never_events_and_a_misplaced_erase_goes_home(
    model: JourneyModel, engine: EngineKind
) -> None:
    """A control record of another kind or without a key erases nobody and is no event (not
    counted, not quarantined); an erase record on another partition than its customer's is sent
    home with its control header, not applied where it is; the chain covers them all."""
    customer = "c-erase"
    home = partition_for(customer.encode(), PARTITIONS)
    away = 1 - home
    line = event_line("e-1", customer, "web.cart", 0)
    source = {
        home: [
            Incoming("tp", home, 0, customer.encode(), line, 0),
            Incoming("tp", home, 1, customer.encode(), b"", 0, ((CONTROL_HEADER, b"pause"),)),
            Incoming("tp", home, 2, None, b"", 0, ((CONTROL_HEADER, ERASE),)),
        ],
        away: [_erase(away, 0, customer)],
    }
    topic, input_topic = FakeTopic(source, engine), InputTopic()
    agent = topic.agent(model)
    agent.placement = Placement(input_topic, PARTITIONS)
    quarantined: list[Incoming] = []

    async def quarantine(record: Incoming, rejection: Rejection) -> None:
        quarantined.append(record)

    agent.quarantine = quarantine
    _run(agent, [*source[home], *source[away]])
    assert (agent.counters.events_in, agent.counters.bad, agent.counters.erased) == (1, 0, 0)
    assert agent.engine.counters.received == 1
    assert quarantined == []
    assert agent.guard.next == {home: 3, away: 1}
    [sent] = input_topic.sent
    assert (sent["partition"], sent["key"]) == (home, customer.encode())
    assert (CONTROL_HEADER, ERASE) in sent["headers"]
    assert customer in asyncio.run(topic.recover(home)).states, "not erased by the misplaced copy"
    arrived = Incoming("tp", home, 3, sent["key"], sent["value"], 0, tuple(sent["headers"]))
    _run(agent, [arrived])
    assert agent.counters.erased == 1
    assert customer not in asyncio.run(topic.recover(home)).states


def test_a_partition_given_back_reports_what_its_chain_published_not_an_old_figure(
    model: JourneyModel, engine: EngineKind
) -> None:
    """Agent A folds half of partition 0 and loses it; B folds the rest; A gets the partition back
    with nothing new to fold: what A reports as published (the /health lag's base) is the chain's
    next offset, not A's figure from before, which made an idle partition's lag never go down."""
    source = _input(model)
    records = source[0]
    half = len(records) // 2
    topic = FakeTopic(source, engine)
    first = topic.agent(model)
    asyncio.run(first.process(records[:half], {0, 1}))
    asyncio.run(first.tick({0, 1}, {}))
    assert first.counters.processed[0] == half
    asyncio.run(first.tick({1}, {}))  # partition 0 revoked
    second = topic.agent(model)
    asyncio.run(second.process(records[half:], {0}))
    asyncio.run(second.tick({0}, {}))
    assert second.counters.processed[0] == len(records)
    asyncio.run(first.tick({0, 1}, {}))  # given back: recovered from the chain, nothing to fold
    assert 0 in first.owned
    assert first.counters.processed[0] == len(records)
