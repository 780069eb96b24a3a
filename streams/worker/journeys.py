"""The journey agent: folds input batches and publishes one record per partition and batch."""

from __future__ import annotations

import asyncio
import gc
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import structlog

from events.errors import BadReason, Rejection
from projections import schema
from projections.engine import RowBatch
from projections.intake import Intake
from projections.intake import Kind as VerdictKind
from projections.journeys import JourneyModel
from projections.native_engine import MISPLACED, REFUSED, TOO_LATE_DETAIL, TOO_LATE_REFUSED, NativeEngine
from projections.rows import Row
from projections.state_codec import encode_state
from streams.common.engines import DEFAULT_ENGINE, EngineKind, journey_engine
from streams.worker.control import erased_customer
from streams.worker.gapfill import Incoming
from streams.worker.offsets import OffsetGuard, Verdict
from streams.worker.partitioning import Placement
from streams.worker.records import Kind, Record, Recovered, encode, erased_key
from streams.worker.states import PartitionStates, SnapshotPolicy, decode_states, snapshot_records

log = structlog.get_logger("touchpath.worker.journeys")

NEVER = -(2**62)  # the engine's watermark before any event

PROGRESS_REPEAT_S = 15.0
STALL_S = 20.0  # input waiting this long without Faust delivering any of it is read back
STALL_READ = 20_000  # records read back per partition and tick

# publish(partition, value) -> a future of the broker's RecordMetadata (with the record's offset).
Publish = Callable[[int, bytes], Awaitable[Awaitable[Any]]]
Quarantine = Callable[[Incoming, Rejection], Awaitable[None]]
Recover = Callable[[int], Awaitable[Recovered]]
ReadBack = Callable[[int, int, int], Awaitable[list[Incoming]]]
# arrived(kafka_ms, arrived_ms): an input record with this Kafka timestamp reached the worker now.
Arrived = Callable[[int, int], None]


@dataclass(slots=True)
class JourneyCounters:
    """What the journey agent did, for /health and /metrics."""

    events_in: int = 0
    bad: int = 0
    duplicates: int = 0
    rerouted: int = 0  # input records on another partition than their customer's: sent home
    gaps_filled: int = 0  # input records Faust skipped and the agent read back
    redelivered: int = 0  # input records delivered again (already folded): skipped
    records_out: int = 0  # journey-events records written (batches, snapshots, progress)
    recoveries: int = 0
    erased: int = 0  # erase control records applied: customers forgotten (no events, not in events_in)
    event_time: int | None = None  # the time timeouts fire on (ms; the whole input's, see tick)
    processed: dict[int, int] = field(default_factory=dict)  # next input offset per partition, published


def _native_states(engine: NativeEngine, customers: list[str]) -> list[tuple[str, bytes]]:
    """The native core's states of these customers as (id, state_codec bytes); a customer noted
    for an event the registry refused has none."""
    out = []
    for customer_id in customers:
        raw = engine.state_bytes(customer_id)
        if raw is not None:
            out.append((customer_id, raw))
    return out


class JourneyAgent:
    """Owns the journey states of the input partitions assigned to this worker.

    Per input batch: fold every record once and in order (the offset guard; skipped offsets are
    read back), then publish per partition one record with the batch's rows, the changed
    customers' states and the input span it covers. A partition's records on journey-events are
    its durable state: a worker that gets the partition replays them from the latest snapshot
    (streams.worker.states.recover_partition), and the span chain says which input offset comes
    next. Faust's committed offsets only say where its consumer starts reading.
    """

    def __init__(
        self,
        model: JourneyModel,
        *,
        publish: Publish,
        quarantine: Quarantine,
        recover: Recover,
        read_back: ReadBack,
        future_bound_ms: int,
        clock: Callable[[], float] = time.time,
        placement: Placement | None = None,
        arrived: Arrived | None = None,
        engine: EngineKind = DEFAULT_ENGINE,
    ) -> None:
        self.model = model
        # The Python engine keeps its states here; the native one in its core, with only each
        # customer's partition noted here (states.place).
        self.states = PartitionStates()
        self.engine = journey_engine(model, "live", engine, self.states)
        # Timeouts can fire on the whole input's time before this worker folds anything: lateness
        # stays per partition from the start (else a recovered customer's history is forgotten).
        self.engine.mark_partitioned()
        self.intake = Intake(self.engine)  # stream time per input partition lives here
        self.guard = OffsetGuard()
        self.publish_record = publish
        self.quarantine = quarantine
        self.recover = recover
        self.read_back = read_back
        self.future_bound_ms = future_bound_ms
        self.clock = clock
        self.placement = placement  # None: every record is folded where it is (no re-routing)
        self.arrived = arrived
        self.counters = JourneyCounters()
        self.lock = asyncio.Lock()
        self.owned: set[int] = set()  # partitions whose states are loaded
        self.last_offset: dict[int, int] = {}  # per partition: offset of the last record written
        self.stale: set[int] = set()  # another writer appeared on the partition: recover it again
        self.snap: dict[int, int] = {}
        self.policy: dict[int, SnapshotPolicy] = {}
        self.source_ts: dict[int, list[int]] = defaultdict(list)
        self.bad_rows: dict[int, list[Row]] = defaultdict(list)
        self.progress_sent: dict[int, tuple[int, float]] = {}
        self._pending_quarantine: list[tuple[Incoming, Rejection]] = []
        self.in_flight: list[tuple[Record, Awaitable[Any]]] = []
        self.delivered_at: dict[int, float] = {}  # per partition: when Faust last handed a record over
        self.erased: dict[int, list[str]] = defaultdict(list)  # per partition: erased_key of each, to publish
        self.batch_feed = True  # native: fold runs of records in one call (False: record by record)

    @property
    def batched(self) -> bool:
        """Whether input is folded a run of records at a time (the native core's batch feed)."""
        return self.native and self.batch_feed

    @property
    def native(self) -> bool:
        """Whether the native engine folds (its states live in the core, not in self.states)."""
        return isinstance(self.engine, NativeEngine)

    def _drain(self) -> list[tuple[str, RowBatch, bytes]]:
        """Per customer changed since the last drain: its id, new rows and state_codec bytes."""
        engine = self.engine
        if isinstance(engine, NativeEngine):
            return [(u.customer_id, u.rows, u.state) for u in engine.drain_updates()]
        return [(u.customer_id, u.rows, encode_state(u.state)) for u in engine.drain_updates()]

    def _encoded(self, partition: int) -> list[tuple[str, bytes]]:
        """Every state of one partition as (customer id, state_codec bytes)."""
        engine = self.engine
        if isinstance(engine, NativeEngine):
            return _native_states(engine, self.states.customers_of(partition))
        return [(state.customer_id, encode_state(state)) for state in self.states.of_partition(partition)]

    def _rebuild_native(self, old: NativeEngine) -> None:
        """The native core cannot forget single customers: after a partition is revoked, a fresh
        core takes the remaining partitions' states (rebalances are rare), at the same time."""
        engine = NativeEngine(self.model, "live")
        engine.mark_partitioned()
        engine.counters = old.counters
        engine.restore(raw for _, raw in _native_states(old, list(self.states.partition_of)))
        if old.watermark > NEVER:
            engine.advance(old.watermark)
        self.engine = engine
        self.intake.engine = engine

    # -- partitions ------------------------------------------------------------------------------
    async def own(self, assigned: set[int]) -> None:
        """Match the loaded partitions to the assignment: drop revoked ones, recover new ones."""
        for partition in sorted(self.owned - assigned | self.stale & self.owned):
            self._drop(partition)
        for partition in sorted(assigned - self.owned):
            await self._recover(partition)

    def _drop(self, partition: int) -> None:
        self.states.drop(partition)
        if isinstance(self.engine, NativeEngine):
            self._rebuild_native(self.engine)
        self.guard.forget(partition)
        self.owned.discard(partition)
        self.stale.discard(partition)
        self.intake.stream_time.pop(partition, None)
        for store in (
            self.last_offset,
            self.snap,
            self.policy,
            self.source_ts,
            self.bad_rows,
            self.progress_sent,
            self.delivered_at,
            self.erased,
        ):
            store.pop(partition, None)

    async def _recover(self, partition: int) -> None:
        started = time.perf_counter()
        recovered = await self.recover(partition)
        engine = self.engine
        if isinstance(engine, NativeEngine):
            # restore schedules the open instances' timeouts, as schedule() does below.
            engine.restore(recovered.states.values())
            for customer_id in recovered.states:
                self.states.place(customer_id, partition)
            customers = len(recovered.states)
        else:
            states = decode_states(recovered, self.model)
            self.states.load(partition, states)
            # Timeouts fire for customers this process has not seen since it started.
            for state in states.values():
                engine.schedule(state)
            customers = len(states)
        if recovered.stream_time is not None:
            self.intake.recover(partition, recovered.stream_time)
        self.guard.recovered(partition, recovered.next)
        # What /health counts as published: the chain's next offset, not a figure left from an
        # earlier ownership (that showed a lag that never went down on an idle partition).
        if recovered.next is None:  # no chain yet: /health counts from the committed offset
            self.counters.processed.pop(partition, None)
        else:
            self.counters.processed[partition] = recovered.next
        self.snap[partition] = recovered.snap
        self.policy[partition] = SnapshotPolicy()
        self.owned.add(partition)
        self.counters.recoveries += 1
        if recovered.last_offset is not None:
            self.last_offset[partition] = recovered.last_offset
        log.info(
            "worker.partition_recovered", partition=partition, customers=customers,
            next_offset=recovered.next, seconds=round(time.perf_counter() - started, 3),
        )  # fmt: skip

    # -- input -----------------------------------------------------------------------------------
    async def process(self, batch: Sequence[Incoming], assigned: set[int]) -> None:
        """Fold a batch of input records and send its records (after waiting for the previous batch's)."""
        async with self.lock:
            t0 = time.perf_counter()
            await self._settle()
            await self.own(assigned | {record.partition for record in batch})
            guard, counters = self.guard, self.counters
            run: list[Incoming] = []  # consecutive records of one partition, for the native feed
            for record in batch:
                partition, offset = record.partition, record.offset
                self.delivered_at[partition] = time.monotonic()
                verdict = guard.check(partition, offset)
                if verdict is Verdict.SEEN:
                    counters.redelivered += 1
                    continue
                control = bool(record.headers) and erased_customer(record) is not None
                if run and (verdict is Verdict.GAP or run[-1].partition != partition or control):
                    await self._fold_run(run)
                    run = []
                if verdict is Verdict.GAP:
                    await self._fill_gap(partition, guard.next[partition], offset)
                if self.batched and not control:
                    run.append(record)
                    guard.folded(partition, offset)  # the next record's verdict needs it now
                else:
                    await self._fold_or_send_home(record)
            if run:
                await self._fold_run(run)
            if self.placement is not None:
                # The batch's record covers the re-routed offsets: Kafka has the copies first.
                await self.placement.settle()
            t1 = time.perf_counter()
            await self._publish({record.partition for record in batch} & self.owned)
            log.debug(
                "worker.batch",
                events=len(batch),
                fold_s=round(t1 - t0, 3),
                publish_s=round(time.perf_counter() - t1, 3),
            )

    async def _fold_or_send_home(self, record: Incoming) -> None:
        """Fold a record, or, if its customer belongs to another partition, produce it there
        (Placement) and count its offset as done here. An erase control record forgets its customer."""
        customer = erased_customer(record) if record.headers else None
        if customer is not None:
            await self._erase(record, customer)
            return
        home = None if self.placement is None else self.placement.home_of(record.value, record.partition)
        if home is None:
            self._fold(record)
            return
        assert self.placement is not None
        self.counters.events_in += 1
        self.counters.rerouted += 1
        await self.placement.send_home(record.value, *home, (record.topic, record.partition, record.offset))
        self.guard.folded(record.partition, record.offset)

    async def _erase(self, record: Incoming, customer_id: str) -> None:
        """An erase control record: drop the customer's state (and its rows not published yet) and
        mark the batch record, so recovery drops it from what earlier records and snapshots hold.
        Not an event: events_in, good and bad counts stay as they are."""
        partition = record.partition
        placement = self.placement
        home = None
        if placement is not None and customer_id:
            home = placement.home_of_customer(customer_id, partition)
        if home is not None:
            assert placement is not None
            self.counters.rerouted += 1
            origin = (record.topic, partition, record.offset)
            await placement.send_home(record.value, customer_id, home[1], origin, record.headers)
        elif customer_id:
            self.engine.forget(customer_id)
            self.states.forget(customer_id)
            self.erased[partition].append(erased_key(customer_id))
            self.counters.erased += 1
            log.info("worker.customer_erased", partition=partition, offset=record.offset)  # no id logged
        self.guard.folded(partition, record.offset)

    async def _fold_run(self, run: list[Incoming]) -> None:
        """Fold consecutive records of one partition in one native call: what _fold_or_send_home
        does record by record (the native core checks each record's home partition, decodes,
        checks and folds; the exceptions are handled here, in order, after the run)."""
        engine = self.engine
        assert isinstance(engine, NativeEngine)
        partition = run[0].partition
        intake, counters = self.intake, self.counters
        arrived_ms = int(self.clock() * 1000)  # the shell reads the clock
        intake.not_after_ms = arrived_ms + self.future_bound_ms
        self.states.current = partition
        duplicates = engine.counters.duplicates
        try:
            exceptions, customers, stream_time = engine.feed_partition(
                [record.value for record in run], partition,
                partitions=None if self.placement is None else self.placement.partitions,
                stream_time=intake.stream_time.get(partition), not_after_ms=intake.not_after_ms,
                max_depth=intake.max_depth,
            )  # fmt: skip
        except BaseException:
            # The guard already counts the run as folded: rewind it, so no offset is skipped if
            # the agent goes on (what was folded before the failure comes again as duplicates).
            self.guard.next[partition] = run[0].offset
            raise
        if stream_time is not None:
            intake.stream_time[partition] = stream_time
        place = self.states.place
        for customer_id in customers:
            place(customer_id, partition)
        counters.events_in += len(run)
        counters.duplicates += engine.counters.duplicates - duplicates
        sent_home: set[int] = set()
        source = f"{run[0].topic}/{partition}"
        for index, code, refusal, home in exceptions:
            record = run[index]
            placement = self.placement
            if placement is not None and code in (MISPLACED, REFUSED):
                # The full path looks at the customer before the contract: a bad record naming a
                # customer of another partition goes home too.
                where = home if code == MISPLACED else placement.home_of(record.value, partition)
                if where is not None:
                    counters.rerouted += 1
                    sent_home.add(index)
                    customer_id, home_partition = where
                    origin = (record.topic, partition, record.offset)
                    await placement.send_home(record.value, customer_id, home_partition, origin)
                    continue
            if code == REFUSED:
                reason, detail, field_name = refusal
                verdict = intake.refuse(
                    record.value, source, record.offset, Rejection(BadReason(reason), detail, field_name)
                )
            elif code == TOO_LATE_REFUSED:
                rejection = Rejection(BadReason.TOO_LATE, TOO_LATE_DETAIL, "occurred_at")
                verdict = intake.rejected(record.value, source, record.offset, rejection)
            else:  # FALLBACK: the full path's verdict (it changes no journey, so after the run)
                verdict = intake.offer(record.value, source, record.offset, partition)
                if verdict.event is not None:
                    place(verdict.event.customer_id, partition)
                if verdict.kind is VerdictKind.DUPLICATE:
                    counters.duplicates += 1
            if verdict.rejection is not None and verdict.quarantine is not None:
                counters.bad += 1
                self.bad_rows[partition].append(verdict.quarantine)
                self._pending_quarantine.append((record, verdict.rejection))
        source_ts, arrived = self.source_ts[partition], self.arrived
        for index, record in enumerate(run):
            if index in sent_home:
                continue
            source_ts.append(arrived_ms)
            if arrived is not None:
                arrived(record.timestamp_ms, arrived_ms)

    def _fold(self, record: Incoming) -> None:
        partition = record.partition
        self.counters.events_in += 1
        self.states.current = partition
        intake = self.intake
        arrived_ms = int(self.clock() * 1000)  # the shell reads the clock
        intake.not_after_ms = arrived_ms + self.future_bound_ms
        verdict = intake.offer(record.value, f"{record.topic}/{partition}", record.offset, partition)
        if verdict.event is not None and self.native:
            self.states.place(verdict.event.customer_id, partition)
        # Event-to-row latency is from arrival here; what it waited in Kafka is reported apart.
        self.source_ts[partition].append(arrived_ms)
        if self.arrived is not None:
            self.arrived(record.timestamp_ms, arrived_ms)
        if verdict.kind is VerdictKind.DUPLICATE:
            self.counters.duplicates += 1
        elif verdict.rejection is not None and verdict.quarantine is not None:
            self.counters.bad += 1
            self.bad_rows[partition].append(verdict.quarantine)
            self._pending_quarantine.append((record, verdict.rejection))
        self.guard.folded(partition, record.offset)

    async def _fill_gap(self, partition: int, start: int, end: int) -> None:
        # Faust can hand a stream a later offset than the next one after a rebalance, and then
        # commit past the ones it skipped (faust-streaming issues on rebalance races).
        log.warning("worker.offsets_skipped", partition=partition, first=start, last=end - 1)
        records = await self.read_back(partition, start, end)
        for record in records:
            await self._fold_or_send_home(record)
        self.counters.gaps_filled += len(records)

    # -- output ----------------------------------------------------------------------------------
    async def tick(
        self, assigned: set[int], highwaters: dict[int, int], elsewhere: int | None = None
    ) -> None:
        """Between batches: follow the assignment, publish timeouts, report idle partitions' time.

        elsewhere is the latest event time on the partitions other workers own: timeouts fire on
        the event time of the whole input, as in `touchpath run`, not on this worker's share of it.
        """
        async with self.lock:
            await self._settle()
            await self.own(assigned)
            stalled = await self._read_stalled(highwaters)
            if stalled and self.placement is not None:
                await self.placement.settle()  # records read back and sent home are in Kafka first
            if elsewhere is not None and self.owned:
                self.engine.advance(elsewhere)
            await self._publish(stalled)
            if self.owned and self.engine.watermark > NEVER:
                self.counters.event_time = self.engine.watermark
            await self._report_progress(highwaters)
            await self._settle()

    async def _read_stalled(self, highwaters: dict[int, int]) -> set[int]:
        """Fold, read back, input that Faust has not delivered for STALL_S although it is there.

        After some rebalances faust-streaming leaves an assigned partition unfetched (it logs
        "exception performing seek when flow not active"); the partition's chain says where to
        read from, so the worker reads on with a plain consumer. If Faust delivers the records
        later after all, they are below the chain's next offset and skipped.
        """
        now = time.monotonic()
        stalled: set[int] = set()
        for partition in sorted(self.owned):
            # A partition without a chain has folded nothing yet: its input starts at the beginning
            # (read_range starts at the log's first offset if retention removed older ones).
            start, end = self.guard.next.get(partition, 0), highwaters.get(partition, 0)
            if end <= start:
                self.delivered_at[partition] = now
                continue
            if now - self.delivered_at.setdefault(partition, now) < STALL_S:
                continue
            log.warning("worker.partition_stalled", partition=partition, first=start, last=end - 1)
            await self._fill_gap(partition, start, min(end, start + STALL_READ))
            stalled.add(partition)
        return stalled

    async def _publish(self, partitions: set[int]) -> None:
        batches: dict[int, RowBatch] = defaultdict(RowBatch)
        states: dict[int, dict[str, bytes]] = defaultdict(dict)
        partition_of = self.states.partition_of
        for customer_id, changed, state in self._drain():
            partition = partition_of[customer_id]
            batches[partition].extend(changed)
            states[partition][customer_id] = state
        for partition, rows in self.bad_rows.items():
            for row in rows:
                batches[partition].rows[schema.BAD_EVENTS.name].append(row)
        self.bad_rows.clear()
        touched = sorted((partitions | set(batches) | set(self.erased)) & self.owned)
        records: list[Record] = []
        for partition in touched:
            if partition not in self.guard.next:
                continue  # nothing folded on it yet
            first, end = self.guard.span(partition)
            records.append(
                Record(
                    Kind.BATCH,
                    partition,
                    first,
                    end,
                    self.intake.stream_time.get(partition),
                    self.snap.get(partition, -1),
                    dict(batches[partition].rows),
                    states[partition],
                    self.source_ts.pop(partition, []),
                    erased=self.erased.pop(partition, []),
                )
            )
        quarantined, self._pending_quarantine = self._pending_quarantine, []
        for incoming, rejection in quarantined:
            await self.quarantine(incoming, rejection)
        # In flight while the next batch is taken: the chain, not Faust's commit, says what was
        # folded (a record lost with its process leaves a gap the offset guard reads back).
        await self._send(records)
        self.guard.close_batch()
        gc.freeze()  # states are long-lived: keep the cyclic GC from rescanning them on every batch
        now = time.monotonic()
        for record in records:
            policy = self.policy[record.partition]
            policy.written += sum(len(state) for state in record.states.values())
            if policy.due(now):
                await self._snapshot(record.partition, now)

    async def _snapshot(self, partition: int, now: float) -> None:
        policy = self.policy[partition]
        chunks = snapshot_records(
            partition, self._encoded(partition), self.guard.next[partition],
            self.intake.stream_time.get(partition), self.snap.get(partition, -1),
        )  # fmt: skip
        await self._send(chunks)
        offsets = await self._settle()
        if chunks:
            self.snap[partition] = offsets[chunks[0].snapshot_id]
        policy.last_size = sum(len(state) for chunk in chunks for state in chunk.states.values())
        policy.written, policy.last_at = 0, now
        log.info("worker.snapshot", partition=partition, customers=len(self.states.customers_of(partition)))

    async def _send(self, records: list[Record]) -> None:
        """Hand records to the producer; _settle() waits for the broker."""
        for record in records:
            self.in_flight.append((record, await self.publish_record(record.partition, encode(record))))

    async def _settle(self) -> dict[str, int]:
        """Wait for the records in flight; returns the offset of each snapshot's first chunk."""
        in_flight, self.in_flight = self.in_flight, []
        firsts: dict[str, int] = {}
        for record, future in in_flight:
            offset = int((await future).offset)
            if record.kind is Kind.SNAPSHOT and record.chunk == 0:
                firsts[record.snapshot_id] = offset
            if record.kind is Kind.BATCH:
                self.counters.processed[record.partition] = record.next
            last = self.last_offset.get(record.partition)
            if last is not None and offset != last + 1:
                # Someone else wrote to the partition since (a former owner still finishing): its
                # chain decides which batches count; recover it before the next batch.
                log.warning(
                    "worker.foreign_records", partition=record.partition, expected=last + 1, got=offset
                )
                self.stale.add(record.partition)
            self.last_offset[record.partition] = offset
        self.counters.records_out += len(in_flight)
        return firsts

    async def _report_progress(self, highwaters: dict[int, int]) -> None:
        # A partition with nothing left to read is idle: it reports the latest time of any
        # partition, so a quiet partition does not hold back the alerts' watermark.
        latest = max(self.intake.stream_time.values(), default=None)
        if latest is None:
            return
        now = time.monotonic()
        records = []
        for partition in sorted(self.owned):
            done = self.guard.next.get(partition, 0)
            if done < highwaters.get(partition, 0):
                continue  # busy: its batches carry its time
            sent, at = self.progress_sent.get(partition, (None, 0.0))
            if latest != sent or now - at >= PROGRESS_REPEAT_S:
                records.append(
                    Record(Kind.PROGRESS, partition, stream_time=latest, snap=self.snap.get(partition, -1))
                )
                self.progress_sent[partition] = (latest, now)
        await self._send(records)
