"""What the worker's /health says (starting, ok, rebalancing, degraded), judged from what its hooks report."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import structlog

log = structlog.get_logger("touchpath.worker.health")

MAX_CRASHES_SHOWN = 5


class Status(StrEnum):
    """/health's status, worst first."""

    DEGRADED = "degraded"  # an agent crashed, or ClickHouse refuses inserts: look at the worker
    STARTING = "starting"  # no partitions assigned and state recovered yet since the process started
    REBALANCING = "rebalancing"  # was ready; partitions are moving (state is being recovered)
    OK = "ok"

    @property
    def http_code(self) -> int:
        """/health's HTTP status: 503 while starting or degraded, for probes that read only that."""
        return 200 if self in {Status.OK, Status.REBALANCING} else 503


@dataclass(frozen=True, slots=True)
class AgentCrash:
    """One agent crash: Faust acks the message an agent crashed on, so an operator has to know."""

    agent: str
    error: str


class WorkerHealth:
    """The worker's health from facts its hooks report: assignments, recovery, crashes, rows written.

    `starting` until a partition assignment was received and the state of the assigned partitions was
    recovered from journey-events (the first tick after it); `rebalancing` while partitions move later
    on; `degraded` once an agent or the loader crashed (it stays: the message an agent crashed on was
    acked) or while the store refuses inserts. Latency is from each event's arrival at a journey
    worker to its rows being stored by this process's loader; rows of events that arrived before this
    process started (batches loaded after a restart) are not samples, or a restart would report the
    downtime as latency.
    """

    def __init__(self, started_ms: int | None = None, samples: int = 5_000) -> None:
        self.started_ms = int(time.time() * 1000) if started_ms is None else started_ms
        self.assigned: int | None = None  # input partitions of the last assignment; None: none yet
        self.ready = False  # an assignment's state was recovered since the last rebalance began
        self.was_ready = False
        self.crashes: list[AgentCrash] = []
        self.crash_count = 0
        self.latencies: deque[float] = deque(maxlen=samples)  # arrival at the worker -> rows written
        self.waits: deque[float] = deque(maxlen=samples)  # Kafka timestamp -> arrival at the worker

    def partitions_revoked(self) -> None:
        """A rebalance began: partitions (and their state) are about to move."""
        self.ready = False

    def partitions_assigned(self, input_partitions: int) -> None:
        """A rebalance ended with this many input partitions for this worker (state not yet recovered)."""
        self.assigned = input_partitions
        self.ready = False

    def state_recovered(self) -> None:
        """The worker loaded the state of every partition it was assigned (from journey-events)."""
        if self.assigned is not None:  # a refresh before the first assignment recovers nothing
            self.ready = self.was_ready = True

    def agent_crashed(self, agent: str, error: BaseException) -> None:
        """An agent raised: Faust acked the message it was on and restarts it."""
        self.crash_count += 1
        self.crashes.append(AgentCrash(agent, f"{type(error).__name__}: {error}"))
        del self.crashes[:-MAX_CRASHES_SHOWN]

    def event_arrived(self, kafka_ms: float, arrived_ms: float) -> None:
        """An input event reached the worker at arrived_ms; its Kafka timestamp is kafka_ms (what it
        waited in Kafka: a backlog after a restart shows here, and as lag, not as latency)."""
        self.waits.append(arrived_ms - kafka_ms)

    def rows_written(self, arrivals_ms: Iterable[float], visible_ms: float) -> None:
        """Rows of events that arrived at these times are in the store since visible_ms."""
        since = self.started_ms
        self.latencies.extend(visible_ms - arrived for arrived in arrivals_ms if arrived >= since)

    def rows_measured(self, latencies_ms: Iterable[float]) -> None:
        """Latencies another process's rows_written measured (the loader process of `--role all`)."""
        self.latencies.extend(latencies_ms)

    def status(self, *, store_error: str | None, rebalancing: bool) -> Status:
        """The status now; `rebalancing` is Faust's own flag (a rebalance or recovery under way)."""
        if self.crash_count or store_error is not None:
            return Status.DEGRADED
        if self.ready and not rebalancing:
            return Status.OK
        return Status.REBALANCING if self.was_ready else Status.STARTING

    def latency_ms(self, share: float) -> float | None:
        """A quantile of the event-arrival-to-row latency (ms) over the latest samples."""
        return _quantile(self.latencies, share)

    def body(self, *, store_error: str | None, rebalancing: bool) -> dict[str, Any]:
        """The health fields of /health's answer."""
        return {
            "status": self.status(store_error=store_error, rebalancing=rebalancing).value,
            "store_error": store_error,
            "agent_crashes": self.crash_count,
            "last_crashes": [{"agent": c.agent, "error": c.error} for c in self.crashes],
            "latency_ms_p50": self.latency_ms(0.5),
            "latency_ms_p99": self.latency_ms(0.99),
            "latency_samples": len(self.latencies),
            "waited_in_kafka_ms_p50": _quantile(self.waits, 0.5),
            "waited_in_kafka_ms_p99": _quantile(self.waits, 0.99),
        }


def _quantile(values: Iterable[float], share: float) -> float | None:
    ordered = sorted(values)
    if not ordered:
        return None
    return round(ordered[min(len(ordered) - 1, int(len(ordered) * share))], 1)


def watch(app: Any, health: WorkerHealth, input_topic: str) -> None:
    """Connect health to the Faust app: its rebalance signals, and every agent's crashes.

    Call it after the agents are defined. Faust logs a crash and restarts the agent, but acks the
    message it crashed on; an `on_error` handler on each agent is how the worker learns of it.
    """

    async def crashed(agent: Any, error: BaseException) -> None:
        name = str(getattr(agent, "name", agent))
        health.agent_crashed(name, error)
        log.error("worker.agent_crashed", agent=name, error=f"{type(error).__name__}: {error}")

    for agent in app.agents.values():
        # Faust keeps the handler given to app.agent(on_error=...) here; chain to one set already.
        previous = agent._on_error  # Faust's only crash hook per agent

        async def on_error(agent: Any, error: BaseException, previous: Any = previous) -> None:
            await crashed(agent, error)
            if previous is not None:
                await previous(agent, error)

        agent._on_error = on_error

    # Faust sends both signals with the set of topic partitions as the one positional argument.
    def revoked(sender: Any, /, *args: Any, **kwargs: Any) -> None:
        health.partitions_revoked()

    def assigned(sender: Any, assigned: Any, /, **kwargs: Any) -> None:
        health.partitions_assigned(sum(1 for tp in assigned if tp.topic == input_topic))

    app.on_partitions_revoked.connect(revoked)
    app.on_partitions_assigned.connect(assigned)
