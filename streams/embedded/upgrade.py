"""Data dirs from before `serve` kept journey states: their customers' states, rebuilt once."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import orjson
import structlog

from events.codec import check_event
from events.errors import Rejection
from events.model import EPOCH, TouchpointEvent
from projections.engine import JourneyEngine, RowBatch
from projections.journeys import JourneyModel
from streams.embedded.runner import state_row
from streams.store.clickhouse import ClickHouseProjectionStore

log = structlog.get_logger("touchpath.upgrade")

# Customers with stored events and no kept state: `serve` kept none before it ran on the embedded runner.
_UNKEPT = (
    """customer_id NOT IN (SELECT customer_id FROM journey_state FINAL WHERE scenario = {scenario:String})"""
)
_UNKEPT_EVENTS = f"""SELECT event_id, customer_id, toUnixTimestamp64Milli(occurred_at), channel, touchpoint,
       persona, outcome, employee_id, survey_kind, survey_score, survey_comment, attributes, source
FROM touchpoint_events FINAL WHERE scenario = {{scenario:String}} AND {_UNKEPT}
ORDER BY occurred_at, event_id"""
_UNKEPT_VERSIONS = f"""SELECT customer_id, max(version) FROM journey_instances
WHERE scenario = {{scenario:String}} AND {_UNKEPT} GROUP BY customer_id"""


def keep_unkept_states(model: JourneyModel, store: ClickHouseProjectionStore, scenario: str) -> int:
    """Write a journey state for every customer whose events are stored but whose state is not;
    returns how many stored events were folded (0, and one query, once every customer has one).

    Results do not depend on arrival order, so folding the stored events in event-time order
    rebuilds the state the stored rows came from; only the states are written, each revision above
    the customer's newest stored row version so that later rows replace the stored ones.
    """
    parameters: dict[str, object] = {"scenario": scenario}
    _, rows = store.query(_UNKEPT_EVENTS, parameters)
    if not rows:
        return 0
    _, versions = store.query(_UNKEPT_VERSIONS, parameters)
    newest = {customer: int(version) for customer, version in versions}
    engine = JourneyEngine(model, scenario)  # a scratch engine: its rows are stored already
    for row in rows:
        event = _stored_event(row)
        if isinstance(event, Rejection):  # stored under an older contract; it cannot shape journeys now
            log.warning("upgrade.skipped", event_id=row[0], reason=event.describe())
            continue
        engine.accept(event)
    states = RowBatch()
    for update in engine.drain_updates():
        state = update.state
        state.revision = max(state.revision, newest.get(state.customer_id, 0))
        states.add(*state_row(scenario, state))
    store.write(states)
    return len(rows)


def _stored_event(row: tuple[Any, ...]) -> TouchpointEvent | Rejection:
    """A touchpoint_events row (as _UNKEPT_EVENTS selects it) as the event it was stored from."""
    event_id, customer, ms, channel, touchpoint, persona, outcome, employee, *survey, attrs, source = row
    kind, score, comment = survey
    record: dict[str, object] = {
        "event_id": event_id,
        "customer_id": customer,
        "occurred_at": (EPOCH + timedelta(milliseconds=int(ms))).isoformat(),
        "channel": channel,
        "touchpoint": touchpoint,
        "persona": persona,
        "outcome": outcome,
        "employee_id": employee,
        "survey": {"kind": kind, "score": score, "comment": comment} if kind else None,
        "attributes": orjson.loads(attrs) if attrs and attrs != "{}" else None,
        "source": source,
    }
    return check_event(orjson.dumps({k: v for k, v in record.items() if v is not None}))
