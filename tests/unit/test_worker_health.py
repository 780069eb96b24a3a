"""/health tells the truth: starting until state is recovered, degraded on crashes or store errors."""

from __future__ import annotations

import asyncio
from typing import Any

import faust

from streams.worker.health import Status, WorkerHealth, watch

STARTED_MS = 1_700_000_000_000


def _ready(health: WorkerHealth, partitions: int = 4) -> WorkerHealth:
    health.partitions_assigned(partitions)
    health.state_recovered()
    return health


def test_a_worker_is_starting_until_its_assigned_partitions_state_is_recovered() -> None:
    """Before any assignment, and between assignment and recovery, /health says starting, not ok."""
    health = WorkerHealth(STARTED_MS)
    seen = [health.status(store_error=None, rebalancing=False)]
    health.state_recovered()  # the worker's first refresh can run before any assignment
    seen.append(health.status(store_error=None, rebalancing=False))
    health.partitions_assigned(4)
    seen.append(health.status(store_error=None, rebalancing=True))  # Faust recovering the tables
    health.state_recovered()
    seen.append(health.status(store_error=None, rebalancing=False))
    assert seen == [Status.STARTING, Status.STARTING, Status.STARTING, Status.OK]


def test_a_later_rebalance_is_reported_as_rebalancing_then_ok_again() -> None:
    """A worker that was ready reports rebalancing while its partitions move, then ok."""
    health = _ready(WorkerHealth(STARTED_MS))
    health.partitions_revoked()
    during = health.status(store_error=None, rebalancing=True)
    health.partitions_assigned(2)
    recovering = health.status(store_error=None, rebalancing=False)
    health.state_recovered()
    assert (during, recovering, health.status(store_error=None, rebalancing=False)) == (
        Status.REBALANCING,
        Status.REBALANCING,
        Status.OK,
    )
    assert health.assigned == 2


def test_an_agent_crash_makes_the_worker_degraded_and_says_which_agent() -> None:
    """Faust acks the message an agent crashed on: the worker stays degraded and names the crash."""
    health = _ready(WorkerHealth(STARTED_MS))
    health.agent_crashed("alerts-detect", TypeError("'NoneType' object is not iterable"))
    body = health.body(store_error=None, rebalancing=False)
    assert body["status"] == "degraded"
    assert body["agent_crashes"] == 1
    assert body["last_crashes"] == [
        {"agent": "alerts-detect", "error": "TypeError: 'NoneType' object is not iterable"}
    ]


def test_a_store_that_refuses_inserts_makes_the_worker_degraded_until_it_accepts_again() -> None:
    """A ClickHouse error is degraded even while starting; once it clears the worker is ok."""
    health = WorkerHealth(STARTED_MS)
    while_starting = health.status(store_error="Code: 60. Table does not exist", rebalancing=False)
    _ready(health)
    assert (while_starting, health.status(store_error=None, rebalancing=False)) == (
        Status.DEGRADED,
        Status.OK,
    )


def test_latency_is_measured_from_arrival_and_ignores_events_of_an_earlier_process() -> None:
    """Rows published again after a restart (their events arrived before it) are not latency samples:
    two such events must not report the downtime as a 143 s latency."""
    health = _ready(WorkerHealth(STARTED_MS))
    before_restart = STARTED_MS - 143_000
    health.rows_written([before_restart, before_restart + 10], visible_ms=STARTED_MS + 500)
    assert health.body(store_error=None, rebalancing=False)["latency_samples"] == 0
    health.rows_written([STARTED_MS + 1_000, STARTED_MS + 1_100, STARTED_MS + 1_900], STARTED_MS + 2_000)
    body = health.body(store_error=None, rebalancing=False)
    assert (body["latency_samples"], body["latency_ms_p50"], body["latency_ms_p99"]) == (3, 900.0, 1000.0)


def test_probes_that_read_only_the_http_code_see_starting_and_degraded_as_unavailable() -> None:
    """/health answers 503 while starting or degraded, 200 when ok or rebalancing."""
    assert {status: status.http_code for status in Status} == {
        Status.DEGRADED: 503,
        Status.STARTING: 503,
        Status.REBALANCING: 200,
        Status.OK: 200,
    }


class _Restarts:
    """Stand-ins for what Faust's running agent has: its actor's ref and its supervisor."""

    def __init__(self) -> None:
        self.crashed: list[BaseException] = []
        self.woken = 0

    async def crash(self, error: BaseException) -> None:
        self.crashed.append(error)

    def wakeup(self) -> None:
        self.woken += 1


def test_a_crash_in_a_faust_agent_reaches_health_and_faust_still_restarts_the_agent() -> None:
    """The journey agent raising inside Faust (its own crash path, which acks the message and
    restarts the agent) turns /health degraded and names the agent; Faust's restart still happens."""
    app = faust.App("watch-test", broker="kafka://127.0.0.1:1", autodiscover=False)

    @app.agent(app.topic("touchpoints"))
    async def journeys(stream: Any) -> None:
        async for _ in stream:
            pass

    health = _ready(WorkerHealth(STARTED_MS))
    watch(app, health, "touchpoints")
    (agent,) = app.agents.values()
    restarts = _Restarts()
    agent.supervisor = restarts

    async def fold() -> None:
        raise TypeError("'NoneType' object is not iterable")

    asyncio.run(agent._execute_actor(fold(), restarts))
    body = health.body(store_error=None, rebalancing=False)
    assert (body["status"], body["agent_crashes"]) == ("degraded", 1)
    assert body["last_crashes"][0]["agent"].endswith("journeys")
    assert body["last_crashes"][0]["error"] == "TypeError: 'NoneType' object is not iterable"
    assert (len(restarts.crashed), restarts.woken) == (1, 1)
