"""Event-time hold-back for the streaming detector: observations wait until every source has passed them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from projections.alerts.codec import decode_detector, decode_observation, encode_detector, encode_observation
from projections.alerts.config import DetectorConfig
from projections.alerts.detector import FrictionDetector
from projections.alerts.model import NEVER, AlertAction, AlertEvent, Observation
from projections.alerts.state import TouchpointWindowState


@dataclass(slots=True)
class TouchpointRecord:
    """What one touchpoint keeps between batches (one table value in the streaming worker)."""

    state: TouchpointWindowState
    pending: list[Observation] = field(default_factory=list)  # held: later than the watermark
    applied: int = -1  # highest input offset folded into state or pending (re-deliveries skip)
    outbox: list[AlertEvent] = field(default_factory=list)  # raised, not yet known to be published


class HeldDetector:
    """The detector for the touchpoints of one re-keyed partition, fed by several source partitions.

    Sources (the journey partitions) progress at different speeds. Folding observations as they
    arrive would let a fast source move a touchpoint's clock past windows a slow source still has to
    fill, and judge them half-counted. So observations are held until the watermark - the lowest
    progress over all sources - has passed them, and then folded in event-time order, exactly as
    the embedded detector folds one drained batch (FrictionDetector.observe_all).
    """

    def __init__(self, config: DetectorConfig, sources: int) -> None:
        self.config = config
        self.sources = sources
        self.detector = FrictionDetector(config)
        self.progress: dict[int, int] = {}
        self.pending: dict[str, list[Observation]] = {}
        self.applied: dict[str, int] = {}
        self.released_to = NEVER

    def restore(self, record: TouchpointRecord) -> None:
        """Go on from a kept record (after a start or a rebalance)."""
        touchpoint = record.state.touchpoint
        self.detector.states[touchpoint] = record.state
        self.detector.clock = max(self.detector.clock, record.state.clock)
        if record.pending:
            self.pending[touchpoint] = list(record.pending)
        self.applied[touchpoint] = record.applied

    def offer(self, observations: list[Observation], offset: int) -> bool:
        """Hold the observations of one touchpoint read in one message at `offset`; False when
        that message was folded before (a re-delivery)."""
        if not observations:
            return False
        touchpoint = observations[0].touchpoint
        if offset <= self.applied.get(touchpoint, -1):
            return False
        self.applied[touchpoint] = offset
        self.pending.setdefault(touchpoint, []).extend(observations)
        return True

    def advance_source(self, source: int, time: int) -> None:
        """A source partition has progressed to event time `time`."""
        self.progress[source] = max(self.progress.get(source, NEVER), time)

    def watermark(self) -> int | None:
        """The lowest progress over all sources; None until every source has reported."""
        if len(self.progress) < self.sources:
            return None
        return min(self.progress.values())

    def release(self) -> tuple[list[AlertEvent], set[str]]:
        """Fold what the watermark has passed; returns the alerts and the touchpoints that changed."""
        watermark = self.watermark()
        if watermark is None or watermark <= self.released_to:
            return [], set()
        self.released_to = watermark
        released: list[Observation] = []
        changed: set[str] = set()
        for touchpoint in list(self.pending):
            held = self.pending[touchpoint]
            ready = [observation for observation in held if observation.ts <= watermark]
            if not ready:
                continue
            changed.add(touchpoint)
            released.extend(ready)
            later = [observation for observation in held if observation.ts > watermark]
            if later:
                self.pending[touchpoint] = later
            else:
                del self.pending[touchpoint]
        clocks = {touchpoint: state.clock for touchpoint, state in self.detector.states.items()}
        alerts = self.detector.observe_all(released, watermark)
        for touchpoint, state in self.detector.states.items():
            if clocks.get(touchpoint) != state.clock:
                changed.add(touchpoint)
        return alerts, changed

    def record(self, touchpoint: str, outbox: list[AlertEvent]) -> TouchpointRecord:
        """The record to keep for a touchpoint now."""
        state = self.detector.states.get(touchpoint)
        if state is None:
            state = TouchpointWindowState(touchpoint)
        return TouchpointRecord(
            state, list(self.pending.get(touchpoint, ())), self.applied.get(touchpoint, -1), outbox
        )


def encode_record(record: TouchpointRecord) -> bytes:
    """Bytes of a record: [applied, state, pending observations, outbox alerts]."""
    return orjson.dumps(
        [
            record.applied,
            orjson.Fragment(encode_detector(record.state)),
            [orjson.Fragment(encode_observation(observation)) for observation in record.pending],
            [encode_alert(alert) for alert in record.outbox],
        ]
    )


def encode_observations(observations: list[Observation]) -> bytes:
    """One re-keyed message: a touchpoint's observations from one batch of journey updates."""
    return orjson.dumps([orjson.Fragment(encode_observation(observation)) for observation in observations])


def decode_observations(raw: bytes) -> list[Observation]:
    """The observations of encode_observations' bytes."""
    return [decode_observation(orjson.dumps(item)) for item in orjson.loads(raw)]


def decode_record(raw: bytes) -> TouchpointRecord:
    """A record from encode_record's bytes."""
    applied, state, pending, outbox = orjson.loads(raw)
    return TouchpointRecord(
        decode_detector(orjson.dumps(state)),
        [decode_observation(orjson.dumps(item)) for item in pending],
        applied,
        [decode_alert(item) for item in outbox],
    )


_ALERT_FIELDS = tuple(AlertEvent.__dataclass_fields__)
_PAIRS = {"kinds", "personas", "journeys", "upstream"}


def encode_alert(alert: AlertEvent) -> list[object]:
    """An alert as a JSON-ready list of its fields (for an outbox)."""
    return [getattr(alert, name) for name in _ALERT_FIELDS]


def decode_alert(values: list[object]) -> AlertEvent:
    """An alert from encode_alert's list."""
    fields: dict[str, Any] = dict(zip(_ALERT_FIELDS, values, strict=True))
    fields["action"] = AlertAction(fields["action"])
    for name in _PAIRS:
        fields[name] = tuple((str(key), int(count)) for key, count in fields[name])
    for name in ("customer_ids", "event_ids"):
        fields[name] = tuple(fields[name])
    return AlertEvent(**fields)
