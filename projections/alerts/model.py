"""What the alert detector reads and raises: observations, alert actions and alert events."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

DAY = 86_400_000
NEVER = -(2**62)
FRICTION_RATE = "friction_rate"
CONTACT_VOLUME = "contact_volume"
ALL = "*"  # any friction kind
CONTACTS = "contacts"  # the trigger of contact_volume touchpoints
NO_BASELINE = 1e9  # ratio when the baseline never saw this kind: any spike is "infinitely" more


class ObservationKind(StrEnum):
    """What one observation tells a touchpoint's detector."""

    TRAFFIC = "traffic"  # an accepted event at the touchpoint
    FRICTION = "friction"  # a friction signal at the touchpoint
    CONTACT = "contact"  # a support contact here, with the upstream touchpoint it was attributed to


KIND_ORDER = {ObservationKind.TRAFFIC: 0, ObservationKind.FRICTION: 1, ObservationKind.CONTACT: 2}


@dataclass(frozen=True, slots=True)
class Observation:
    """One input of the detector, keyed by touchpoint; `key` is what de-duplicates it."""

    kind: ObservationKind
    touchpoint: str
    ts: int
    key: str  # event_id (traffic), signal_id (friction), support_event_id (contact)
    customer_id: str
    persona: str | None = None
    journey: str | None = None
    friction_kind: str | None = None
    upstream: str | None = None
    event_ids: tuple[str, ...] = ()


class AlertAction(StrEnum):
    """Where an alert stands in its incident's life."""

    OPEN = "open"
    UPDATE = "update"
    RESOLVE = "resolve"
    TEST = "test"


@dataclass(frozen=True, slots=True)
class AlertEvent:
    """One alert: what spiked where, against which baseline, with the evidence and its lineage."""

    alert_id: str
    incident_id: str
    action: AlertAction
    touchpoint: str
    owner_team: str
    measure: str
    trigger: str  # what spiked: a friction kind, "*" (all kinds together) or "contacts"
    window_start: int
    window_end: int
    incident_start: int
    detected_at: int  # event time at which the detector decided
    traffic: int  # events at the touchpoint in the window (contacts, for contact_volume)
    signals: int  # friction signals in the window (contacts, for contact_volume)
    rate: float  # signals / traffic (contacts per window, for contact_volume)
    baseline_rate: float
    expected: float  # signals the baseline predicts for this window
    ratio: float  # rate / baseline_rate
    sigma: float  # how unusual: one-sided Poisson tail as a number of standard deviations
    kinds: tuple[tuple[str, int], ...]
    personas: tuple[tuple[str, int], ...]
    journeys: tuple[tuple[str, int], ...]
    upstream: tuple[tuple[str, int], ...]  # support contacts: the touchpoints they were attributed to
    customer_ids: tuple[str, ...]
    event_ids: tuple[str, ...]

    def summary(self) -> str:
        """One paragraph a person can act on."""
        if self.action is AlertAction.TEST:
            return (
                f"Test alert from touchpath for team {self.owner_team}: friction spike alerts for the "
                f"touchpoints this team owns (e.g. {self.touchpoint}) will arrive here."
            )
        when = f"{_clock(self.window_start)}–{_clock(self.window_end)} UTC"
        head = {
            AlertAction.OPEN: "Friction spike",
            AlertAction.UPDATE: "Friction spike ongoing",
            AlertAction.RESOLVE: "Resolved: friction spike",
            AlertAction.TEST: "Test alert",
        }[self.action]
        where = f"{head} at {self.touchpoint} (team {self.owner_team}), {when}"
        if self.measure == CONTACT_VOLUME:
            what = (
                f"{self.signals} contacts, {self.rate:.1f} per window vs the usual {self.baseline_rate:.1f}"
                f" ({_times(self.ratio)}, {self.sigma:.1f}σ)"
            )
        else:
            label = "friction signals" if self.trigger == ALL else f"'{self.trigger}' signals"
            what = (
                f"{self.signals} {label} on {self.traffic} events: {100 * self.rate:.1f}% vs the "
                f"usual {100 * self.baseline_rate:.1f}% ({_times(self.ratio)}, {self.sigma:.1f}σ)"
            )
        parts = [f"{where}: {what}."]
        if self.kinds:
            parts.append("Kinds: " + _counts_text(self.kinds) + ".")
        if self.upstream:
            parts.append("Attributed upstream: " + _counts_text(self.upstream) + ".")
        if self.personas:
            parts.append("Personas: " + _counts_text(self.personas) + ".")
        if self.journeys:
            parts.append("Journeys: " + _counts_text(self.journeys) + ".")
        if self.customer_ids:
            parts.append("Example customers: " + ", ".join(self.customer_ids) + ".")
        return " ".join(parts)

    def as_dict(self) -> dict[str, Any]:
        """The alert as JSON-ready data (times as RFC 3339 UTC)."""
        return {
            "alert_id": self.alert_id,
            "incident_id": self.incident_id,
            "action": self.action.value,
            "touchpoint": self.touchpoint,
            "owner_team": self.owner_team,
            "measure": self.measure,
            "trigger": self.trigger,
            "window_start": _iso(self.window_start),
            "window_end": _iso(self.window_end),
            "incident_start": _iso(self.incident_start),
            "detected_at": _iso(self.detected_at),
            "traffic": self.traffic,
            "signals": self.signals,
            "rate": round(self.rate, 6),
            "baseline_rate": round(self.baseline_rate, 6),
            "expected": round(self.expected, 3),
            "ratio": round(self.ratio, 3),
            "sigma": round(self.sigma, 2),
            "kinds": dict(self.kinds),
            "personas": dict(self.personas),
            "journeys": dict(self.journeys),
            "upstream": dict(self.upstream),
            "example_customer_ids": list(self.customer_ids),
            "example_event_ids": list(self.event_ids),
        }


def observation_order(observation: Observation) -> tuple[int, int, str, str]:
    """Event time first; at one instant traffic before friction before contacts (then by key)."""
    return (observation.ts, KIND_ORDER[observation.kind], observation.touchpoint, observation.key)


def test_alert(touchpoint: str, owner_team: str, now_ms: int) -> AlertEvent:
    """A clearly-labelled test alert for checking a team's destinations."""
    alert_id = digest("test", owner_team, str(now_ms))
    return AlertEvent(
        alert_id=alert_id, incident_id=alert_id, action=AlertAction.TEST, touchpoint=touchpoint,
        owner_team=owner_team, measure=FRICTION_RATE, trigger=ALL, window_start=now_ms, window_end=now_ms,
        incident_start=now_ms, detected_at=now_ms, traffic=0, signals=0, rate=0.0, baseline_rate=0.0,
        expected=0.0, ratio=0.0, sigma=0.0, kinds=(), personas=(), journeys=(), upstream=(),
        customer_ids=(), event_ids=(),
    )  # fmt: skip


def digest(*parts: str) -> str:
    """A short stable id (incident and alert ids) from its parts."""
    return hashlib.blake2b("\x00".join(parts).encode(), digest_size=8).hexdigest()


def _counts_text(counts: Sequence[tuple[str, int]], limit: int = 5) -> str:
    return ", ".join(f"{name} {count}" for name, count in counts[:limit])


def _times(ratio: float) -> str:
    return f"{ratio:.1f}×" if ratio < NO_BASELINE else "never seen before"


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _clock(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%a %H:%M")
