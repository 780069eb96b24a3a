"""Compact bytes of a touchpoint's detector state and of observations (for changelogs and tables)."""

from __future__ import annotations

import itertools
import math
from typing import Any

import orjson

from projections.alerts.model import Observation, ObservationKind
from projections.alerts.state import Bucket, Evidence, Incident, TouchpointWindowState

FORMAT = 1


def encode_detector(state: TouchpointWindowState) -> bytes:
    """Compact bytes of a touchpoint's state (for a changelog-backed table keyed by touchpoint).

    Windows are delta-coded in units of the window length; friction kinds are indexes into a table
    written once; a kind's affected count is left out when it equals its signal count.
    """
    starts = sorted(state.buckets)
    unit = 0
    for earlier, later in itertools.pairwise(starts):
        unit = math.gcd(unit, later - earlier)
    unit = unit or 1
    kinds: dict[str, int] = {}
    buckets: list[list[int]] = []
    evidence: list[list[Any]] = []
    previous = starts[0] if starts else 0
    for begin in starts:
        bucket = state.buckets[begin]
        row = [(begin - previous) // unit, bucket.traffic, int(bucket.flagged) | 2 * int(bucket.warm)]
        for name, signals in bucket.signals.items():
            affected = bucket.affected.get(name, 0)
            row.append(kinds.setdefault(name, len(kinds)))
            row.extend((signals,) if affected == signals else (-signals, affected))
        buckets.append(row)
        if bucket.evidence is not None:
            evidence.append([begin, _encode_evidence(bucket.evidence)])
        previous = begin
    incident = state.incident
    encoded_incident = None
    if incident is not None:
        encoded_incident = [
            incident.incident_id, incident.trigger, incident.start, incident.detected_at,
            incident.baseline_rate, incident.judged_until, incident.last_hot_end, incident.calm_windows,
            incident.calm_traffic, incident.calm_count, incident.calm_expected, incident.updates,
            incident.last_alert_at, incident.peak_sigma, _encode_evidence(incident.evidence),
            [[start, _encode_evidence(tail)] for start, tail in sorted(incident.tail.items())],
        ]  # fmt: skip
    return orjson.dumps(
        [
            FORMAT, state.touchpoint, state.clock, state.first_window, state.quiet_until,
            state.suppressed, state.last_suppressed, state.latest_window, state.swept_at,
            state.settled_until, starts[0] if starts else 0, unit, list(kinds), buckets, evidence,
            encoded_incident,
        ]
    )  # fmt: skip


def decode_detector(raw: bytes) -> TouchpointWindowState:
    """Rebuild a state from encode_detector's bytes."""
    (version, touchpoint, clock, first_window, quiet_until, suppressed, last_suppressed, latest_window,
     swept_at, settled_until, begin, unit, kinds, buckets, evidence,
     encoded_incident) = orjson.loads(raw)  # fmt: skip
    if version != FORMAT:
        msg = f"unknown alert state format {version}"
        raise ValueError(msg)
    state = TouchpointWindowState(
        touchpoint, clock, first_window, {}, None, quiet_until, suppressed, last_suppressed,
        latest_window, swept_at, settled_until,
    )  # fmt: skip
    for delta, traffic, flagged, *counts in buckets:
        begin += delta * unit
        bucket = state.buckets[begin] = Bucket(traffic, flagged=bool(flagged & 1), warm=bool(flagged & 2))
        position = 0
        while position < len(counts):
            name, signals = kinds[counts[position]], counts[position + 1]
            if signals < 0:
                bucket.signals[name], bucket.affected[name] = -signals, counts[position + 2]
                position += 3
            else:
                bucket.signals[name] = bucket.affected[name] = signals
                position += 2
    for start, encoded in evidence:
        state.buckets[start].evidence = _decode_evidence(encoded)
        state.fresh.add(start)
    if encoded_incident is not None:
        (incident_id, trigger, start, detected_at, baseline_rate, judged_until, last_hot_end,
         calm_windows, calm_traffic, calm_count, calm_expected, updates, last_alert_at, peak_sigma,
         incident_evidence, tail) = encoded_incident  # fmt: skip
        state.incident = Incident(
            incident_id, trigger, start, detected_at, baseline_rate, judged_until, last_hot_end,
            calm_windows, calm_traffic, calm_count, calm_expected, updates, last_alert_at, peak_sigma,
            _decode_evidence(incident_evidence),
            {window: _decode_evidence(encoded) for window, encoded in tail},
        )  # fmt: skip
    return state


def encode_observation(observation: Observation) -> bytes:
    """Bytes of one observation (the value of a message re-keyed by touchpoint)."""
    return orjson.dumps(
        [
            observation.kind.value, observation.touchpoint, observation.ts, observation.key,
            observation.customer_id, observation.persona, observation.journey,
            observation.friction_kind, observation.upstream, list(observation.event_ids),
        ]
    )  # fmt: skip


def decode_observation(raw: bytes) -> Observation:
    """An observation from encode_observation's bytes."""
    (kind, touchpoint, ts, key, customer, persona, journey, friction_kind, upstream,
     event_ids) = orjson.loads(raw)  # fmt: skip
    return Observation(
        ObservationKind(kind), touchpoint, ts, key, customer, persona, journey, friction_kind, upstream,
        tuple(event_ids),
    )  # fmt: skip


def _encode_evidence(evidence: Evidence) -> list[Any]:
    return [
        sorted(evidence.seen), sorted(evidence.affected), evidence.kinds, evidence.personas,
        evidence.journeys, evidence.upstream, evidence.customers, evidence.event_ids,
    ]  # fmt: skip


def _decode_evidence(raw: list[Any]) -> Evidence:
    seen, affected, kinds, personas, journeys, upstream, customers, event_ids = raw
    return Evidence(set(seen), set(affected), kinds, personas, journeys, upstream, customers, event_ids)
