"""Friction spike detection per touchpoint: windowed counts, a seasonal baseline, incidents and alerts."""

from __future__ import annotations

import hashlib
import itertools
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from statistics import NormalDist
from typing import Any

import orjson

from projections import schema
from projections.durations import format_duration
from projections.journeys import AlertRule, AlertSettings, JourneyModel
from projections.signals import SUPPORT_CHANNEL

DAY = 86_400_000
NEVER = -(2**62)
FORMAT = 1
CUSTOMER_EXAMPLES = 5
EVENT_EXAMPLES = 10
FRICTION_RATE = "friction_rate"
CONTACT_VOLUME = "contact_volume"
MAX_SIGMA = 37.0  # the normal quantile of the smallest double; beyond it every tail is "certain"
_NO_BASELINE = 1e9  # ratio when the baseline never saw this kind: any spike is "infinitely" more
_NORMAL = NormalDist()


class ObservationKind(StrEnum):
    """What one observation tells a touchpoint's detector."""

    TRAFFIC = "traffic"  # an accepted event at the touchpoint
    FRICTION = "friction"  # a friction signal at the touchpoint
    CONTACT = "contact"  # a support contact here, with the upstream touchpoint it was attributed to


_KIND_ORDER = {ObservationKind.TRAFFIC: 0, ObservationKind.FRICTION: 1, ObservationKind.CONTACT: 2}


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


# -- configuration ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TouchpointRule:
    """The resolved thresholds of one touchpoint (global settings with its overrides applied)."""

    touchpoint: str
    owner_team: str
    channel: str
    enabled: bool
    measure: str
    min_volume: int
    min_signals: int
    min_ratio: float
    sensitivity: float
    cooldown: int


@dataclass(frozen=True, slots=True)
class DetectorConfig:
    """Settings plus one rule per registered touchpoint."""

    settings: AlertSettings
    rules: Mapping[str, TouchpointRule]

    @property
    def window(self) -> int:
        """Window length in ms."""
        return self.settings.window

    @property
    def kinds(self) -> frozenset[str]:
        """Friction kinds that count towards a touchpoint's friction rate."""
        return frozenset(self.settings.kinds)

    def rule(self, touchpoint: str) -> TouchpointRule | None:
        """The rule of a registered touchpoint."""
        return self.rules.get(touchpoint)

    @property
    def retention(self) -> int:
        """How far back a state keeps window counts: the oldest window any baseline reads."""
        settings = self.settings
        reach = (settings.baseline_windows + settings.span_windows + 1) * settings.window
        return max(settings.seasonal_days * DAY + settings.seasonal_span + settings.window, reach)


def detector_config(model: JourneyModel, settings: AlertSettings | None = None) -> DetectorConfig:
    """Resolve the alert settings of a journey model into one rule per registered touchpoint.

    Support touchpoints default to `contact_volume` (a spike in contacts), the others to
    `friction_rate` (friction signals per event).
    """
    settings = settings if settings is not None else model.settings.alerts
    rules: dict[str, TouchpointRule] = {}
    for touchpoint in model.registry.touchpoints:
        override = settings.per_touchpoint.get(touchpoint.id)

        def pick(name: str, override: AlertRule | None = override) -> Any:
            value = getattr(override, name) if override is not None else None
            return value if value is not None else getattr(settings, name)

        default_measure = CONTACT_VOLUME if touchpoint.channel == SUPPORT_CHANNEL else FRICTION_RATE
        measure = override.measure if override is not None and override.measure else default_measure
        rules[touchpoint.id] = TouchpointRule(
            touchpoint=touchpoint.id,
            owner_team=touchpoint.owner,
            channel=touchpoint.channel,
            enabled=bool(pick("enabled")),
            measure=measure,
            min_volume=int(pick("min_volume")),
            min_signals=int(pick("min_signals")),
            min_ratio=float(pick("min_ratio")),
            sensitivity=float(pick("sensitivity")),
            cooldown=int(pick("cooldown")),
        )
    return DetectorConfig(settings, rules)


# -- state ----------------------------------------------------------------------------------------

ALL = "*"  # any friction kind
CONTACTS = "contacts"  # the trigger of contact_volume touchpoints


@dataclass(slots=True)
class Evidence:
    """What a window (or an incident) saw besides counts: de-dup keys, breakdowns, examples."""

    seen: set[str] = field(default_factory=set)  # keys of friction signals and contacts counted
    affected: set[str] = field(default_factory=set)  # "kind\x00customer" (kind "*" for any kind)
    kinds: dict[str, int] = field(default_factory=dict)
    personas: dict[str, int] = field(default_factory=dict)
    journeys: dict[str, int] = field(default_factory=dict)
    upstream: dict[str, int] = field(default_factory=dict)
    customers: list[str] = field(default_factory=list)
    event_ids: list[str] = field(default_factory=list)

    def note(self, observation: Observation) -> None:
        """Add an observation's breakdowns and examples (not its de-dup key)."""
        if observation.friction_kind is not None:
            _bump(self.kinds, observation.friction_kind)
        if observation.persona is not None and observation.kind is not ObservationKind.TRAFFIC:
            _bump(self.personas, observation.persona)
        if observation.journey is not None:
            _bump(self.journeys, observation.journey)
        if observation.kind is ObservationKind.CONTACT:
            _bump(self.upstream, observation.upstream or "(none)")
        if observation.customer_id not in self.customers and len(self.customers) < CUSTOMER_EXAMPLES:
            self.customers.append(observation.customer_id)
        for event_id in observation.event_ids:
            if len(self.event_ids) >= EVENT_EXAMPLES:
                break
            if event_id not in self.event_ids:
                self.event_ids.append(event_id)

    def merge(self, other: Evidence) -> None:
        """Fold another window's breakdowns and examples into this one."""
        for mine, theirs in (
            (self.kinds, other.kinds),
            (self.personas, other.personas),
            (self.journeys, other.journeys),
            (self.upstream, other.upstream),
        ):
            for name, count in theirs.items():
                mine[name] = mine.get(name, 0) + count
        for customer in other.customers:
            if customer not in self.customers and len(self.customers) < CUSTOMER_EXAMPLES:
                self.customers.append(customer)
        for event_id in other.event_ids:
            if event_id not in self.event_ids and len(self.event_ids) < EVENT_EXAMPLES:
                self.event_ids.append(event_id)


@dataclass(slots=True)
class Bucket:
    """Counts of one window at one touchpoint."""

    traffic: int = 0
    signals: dict[str, int] = field(default_factory=dict)  # per friction kind, and "*" for all
    # Distinct customers with friction, per kind and "*": what significance is tested on, since
    # one failure often brings a retry and a support contact (signals come in clumps).
    affected: dict[str, int] = field(default_factory=dict)
    flagged: bool = False  # part of an incident: left out of every baseline
    # Unusually high on its own (but no incident): also left out, so a spike that builds up slowly
    # does not become its own baseline before it is detected.
    warm: bool = False
    evidence: Evidence | None = None  # kept only while the window can still take counts


@dataclass(slots=True)
class Incident:
    """An open spike at one touchpoint, from its first window until enough calm windows."""

    incident_id: str
    trigger: str  # the friction kind (or "*", or "contacts") whose spike opened it
    start: int  # first window of the span that opened it
    detected_at: int
    baseline_rate: float
    judged_until: int  # windows before this one have been judged hot or calm
    last_hot_end: int
    calm_windows: int = 0
    calm_traffic: int = 0
    calm_count: int = 0
    calm_expected: float = 0.0
    updates: int = 0
    last_alert_at: int = NEVER
    peak_sigma: float = 0.0
    evidence: Evidence = field(default_factory=Evidence)  # of windows [start, last_hot_end)
    tail: dict[int, Evidence] = field(default_factory=dict)  # later windows, until judged hot


@dataclass(slots=True)
class TouchpointWindowState:
    """Everything the detector keeps for one touchpoint: serialisable with encode_state."""

    touchpoint: str
    clock: int = NEVER  # event time this state has been advanced to
    first_window: int | None = None  # earlier windows are unknown, not empty
    buckets: dict[int, Bucket] = field(default_factory=dict)
    incident: Incident | None = None
    quiet_until: int = NEVER  # cooldown after the last resolution
    suppressed: int = 0  # spikes inside a cooldown (not alerted)
    last_suppressed: int = NEVER
    latest_window: int = NEVER
    swept_at: int = NEVER
    settled_until: int = NEVER  # windows before this were checked for being warm
    # Derived, not encoded: windows still holding evidence, and baselines already summed.
    fresh: set[int] = field(default_factory=set, repr=False)
    cache: dict[tuple[int, int], _Baseline] = field(default_factory=dict, repr=False)


def new_state(touchpoint: str) -> TouchpointWindowState:
    """An empty state for a touchpoint."""
    return TouchpointWindowState(touchpoint)


# -- the detector ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Baseline:
    traffic: int
    windows: int
    signals: dict[str, int]
    affected: dict[str, int]


@dataclass(frozen=True, slots=True)
class _Verdict:
    trigger: str
    count: int  # what the test counted: affected customers (rate) or contacts (volume)
    signals: int
    traffic: int
    rate: float
    baseline_rate: float
    expected: float  # of `signals`, for people
    expected_count: float  # of `count`, what the test used
    ratio: float
    sigma: float
    ready: bool  # enough baseline to judge at all


def observe(
    state: TouchpointWindowState, observation: Observation, now_ms: int, config: DetectorConfig
) -> tuple[TouchpointWindowState, list[AlertEvent]]:
    """Fold one observation into its touchpoint's state; returns the state (updated in place) and
    the alerts this caused. `now_ms` is the caller's event-time watermark (never the wall clock)."""
    rule = config.rule(state.touchpoint)
    if rule is None or not rule.enabled or not config.settings.enabled:
        return state, []
    _, alerts = advance(state, max(now_ms, observation.ts), config)
    window = config.window
    start = observation.ts // window * window
    if start < _horizon(state, config):
        return state, alerts  # too late: the window takes no more counts
    bucket = state.buckets.get(start)
    if bucket is None:
        bucket = state.buckets[start] = Bucket()
    if bucket.evidence is None:
        bucket.evidence = Evidence()
        state.fresh.add(start)
    if state.first_window is None or start < state.first_window:
        state.first_window = start
    if start != state.latest_window:
        state.cache.clear()  # a new window, or a late count that changes later baselines
        state.latest_window = max(state.latest_window, start)
    counted, noted = _count(rule, bucket, bucket.evidence, observation)
    if not counted:
        return state, alerts
    incident = state.incident
    if incident is not None:
        if noted and start >= incident.last_hot_end:
            incident.tail.setdefault(start, Evidence()).note(observation)
        elif noted and start >= incident.start:
            incident.evidence.note(observation)
        return state, alerts
    if observation.kind is ObservationKind.CONTACT:
        return state, alerts  # evidence only: contacts are counted as traffic
    alerts.extend(_judge_spike(state, rule, config, start))
    return state, alerts


def advance(
    state: TouchpointWindowState, now_ms: int, config: DetectorConfig
) -> tuple[TouchpointWindowState, list[AlertEvent]]:
    """Move a state's clock to `now_ms` (event time): judge the windows that completed, resolve or
    update its incident, and forget what no baseline needs any more."""
    if now_ms <= state.clock:
        return state, []
    state.clock = now_ms
    alerts: list[AlertEvent] = []
    rule = config.rule(state.touchpoint)
    if rule is not None and state.incident is not None:
        alerts.extend(_judge_incident(state, rule, config))
    elif rule is not None:
        _settle(state, rule, config)
    if now_ms - state.swept_at >= 12 * config.window:
        state.swept_at = now_ms
        _sweep(state, config)
    return state, alerts


def _settle(state: TouchpointWindowState, rule: TouchpointRule, config: DetectorConfig) -> None:
    """Mark each window completed since the last call `warm` if it was unusually high on its own."""
    window = config.window
    low = max(state.settled_until, _horizon(state, config))
    end = state.clock // window * window
    threshold = config.settings.resolve_sensitivity
    for begin in range(low, end, window):
        bucket = state.buckets.get(begin)
        if bucket is None or bucket.flagged or bucket.traffic == 0:
            continue
        for trigger in _triggers(rule, config):
            if trigger != CONTACTS and bucket.affected.get(trigger, 0) == 0:
                continue
            if _verdict(state, rule, config, (begin, begin + window), trigger).sigma >= threshold:
                bucket.warm = True
                state.cache.clear()
                break
    state.settled_until = max(state.settled_until, end)


def _horizon(state: TouchpointWindowState, config: DetectorConfig) -> int:
    """The oldest window that still takes counts."""
    window = config.window
    return (state.clock - config.settings.lateness) // window * window


def _count(
    rule: TouchpointRule, bucket: Bucket, evidence: Evidence, observation: Observation
) -> tuple[bool, bool]:
    """Count an observation into its window: (whether it counted, whether it is evidence)."""
    kind = observation.kind
    if kind is ObservationKind.TRAFFIC:
        bucket.traffic += 1
        if rule.measure == CONTACT_VOLUME:
            evidence.note(observation)
            return True, True
        return True, False
    if observation.key in evidence.seen:
        return False, False  # a re-emitted row of a signal already counted
    evidence.seen.add(observation.key)
    if kind is ObservationKind.FRICTION and observation.friction_kind is not None:
        customer = observation.customer_id
        for name in (ALL, observation.friction_kind):
            _bump(bucket.signals, name)
            marker = f"{name}\x00{customer}"
            if marker not in evidence.affected:
                evidence.affected.add(marker)
                _bump(bucket.affected, name)
    evidence.note(observation)
    return True, True


def _triggers(rule: TouchpointRule, config: DetectorConfig) -> tuple[str, ...]:
    """What a touchpoint's spikes are tested on: every counted kind and all kinds together."""
    if rule.measure == CONTACT_VOLUME:
        return (CONTACTS,)
    return (ALL, *config.settings.kinds)


def _judge_spike(
    state: TouchpointWindowState, rule: TouchpointRule, config: DetectorConfig, latest: int
) -> list[AlertEvent]:
    """Test the spans of 1..span_windows windows ending at `latest`; open an incident on a spike."""
    window = config.window
    first = state.first_window if state.first_window is not None else latest
    for span in range(1, config.settings.span_windows + 1):
        start = latest - (span - 1) * window
        if start < first:
            break
        traffic, signals = _span_counts(state, start, latest + window, window)
        # For contact_volume the contacts are the signals: at least min_signals of them.
        if traffic < (rule.min_signals if rule.measure == CONTACT_VOLUME else rule.min_volume):
            continue
        spikes = [
            verdict
            for trigger in _triggers(rule, config)
            if trigger == CONTACTS or signals.get(trigger, 0) >= rule.min_signals
            for verdict in (_verdict(state, rule, config, (start, latest + window), trigger),)
            if _is_spike(verdict, rule)
        ]
        if not spikes:
            continue
        best = max(spikes, key=lambda verdict: (verdict.sigma, verdict.trigger == ALL))
        if state.clock < state.quiet_until:
            if state.last_suppressed != latest:
                state.suppressed += 1
                state.last_suppressed = latest
            _flag(state, start, latest + window, window)
            return []
        return [_open(state, rule, config, start=start, latest=latest, verdict=best)]
    return []


def _span_counts(
    state: TouchpointWindowState, start: int, end: int, window: int
) -> tuple[int, dict[str, int]]:
    traffic = 0
    signals: dict[str, int] = {}
    for begin in range(start, end, window):
        bucket = state.buckets.get(begin)
        if bucket is not None:
            traffic += bucket.traffic
            for name, count in bucket.signals.items():
                signals[name] = signals.get(name, 0) + count
    return traffic, signals


def _is_spike(verdict: _Verdict, rule: TouchpointRule) -> bool:
    if not verdict.ready:
        return False
    return verdict.ratio >= rule.min_ratio and verdict.sigma >= rule.sensitivity


def _open(
    state: TouchpointWindowState,
    rule: TouchpointRule,
    config: DetectorConfig,
    *,
    start: int,
    latest: int,
    verdict: _Verdict,
) -> AlertEvent:
    window = config.window
    incident_id = _digest(state.touchpoint, str(start))
    incident = Incident(
        incident_id=incident_id,
        trigger=verdict.trigger,
        start=start,
        detected_at=state.clock,
        baseline_rate=verdict.baseline_rate,
        judged_until=start,
        last_hot_end=latest + window,
        peak_sigma=verdict.sigma,
        last_alert_at=state.clock,
    )
    for begin in range(start, latest + window, window):
        bucket = state.buckets.get(begin)
        if bucket is not None and bucket.evidence is not None:
            incident.evidence.merge(bucket.evidence)
    state.incident = incident
    _flag(state, start, latest + window, window)
    return _alert(
        state, rule, action=AlertAction.OPEN, incident=incident, verdict=verdict, start=start,
        end=latest + window, alert_id=_digest(incident_id, "open"),
    )  # fmt: skip


def _judge_incident(
    state: TouchpointWindowState, rule: TouchpointRule, config: DetectorConfig
) -> list[AlertEvent]:
    """Judge each completed window of the open incident on the measure that opened it: hot windows
    extend it; enough calm ones in a row (with enough traffic to tell) end it."""
    incident = state.incident
    assert incident is not None
    window = config.window
    settings = config.settings
    alerts: list[AlertEvent] = []
    oldest = state.clock - config.retention
    if incident.judged_until < oldest:
        incident.judged_until = oldest // window * window  # a jump in time: older windows are gone
    while incident.judged_until + window <= state.clock:
        begin = incident.judged_until
        incident.judged_until = begin + window
        verdict = _verdict(state, rule, config, (begin, begin + window), incident.trigger)
        hot = verdict.count > 0 and verdict.sigma >= settings.resolve_sensitivity
        if hot:
            incident.last_hot_end = begin + window
            incident.peak_sigma = max(incident.peak_sigma, verdict.sigma)
            for later in sorted(start for start in incident.tail if start < incident.last_hot_end):
                incident.evidence.merge(incident.tail.pop(later))
            incident.calm_windows = incident.calm_traffic = incident.calm_count = 0
            incident.calm_expected = 0.0
            _flag(state, begin, begin + window, window)
        else:
            incident.calm_windows += 1
            incident.calm_traffic += verdict.traffic
            incident.calm_count += verdict.count
            incident.calm_expected += verdict.expected_count
        if _calm_enough(incident, rule, settings):
            alerts.append(_resolve(state, rule, config, begin + window))
            return alerts
        every = settings.update_every
        if every is not None and begin + window - incident.last_alert_at >= every:
            incident.updates += 1
            incident.last_alert_at = begin + window
            span = (incident.start, incident.last_hot_end)
            total = _verdict(state, rule, config, span, incident.trigger, frozen=incident)
            alerts.append(
                _alert(state, rule, action=AlertAction.UPDATE, incident=incident, verdict=total,
                       start=incident.start, end=incident.last_hot_end,
                       alert_id=_digest(incident.incident_id, "update", str(incident.updates)))
            )  # fmt: skip
    return alerts


def _calm_enough(incident: Incident, rule: TouchpointRule, settings: AlertSettings) -> bool:
    if incident.calm_windows < settings.resolve_after:
        return False
    if rule.measure == FRICTION_RATE and incident.calm_traffic < rule.min_volume:
        return False  # too little traffic to tell: an outage with no events stays open
    return poisson_sigma(incident.calm_count, incident.calm_expected) < settings.resolve_sensitivity


def _resolve(
    state: TouchpointWindowState, rule: TouchpointRule, config: DetectorConfig, end: int
) -> AlertEvent:
    incident = state.incident
    assert incident is not None
    span = (incident.start, incident.last_hot_end)
    total = _verdict(state, rule, config, span, incident.trigger, frozen=incident)
    total = _Verdict(
        total.trigger, total.count, total.signals, total.traffic, total.rate, total.baseline_rate,
        total.expected, total.expected_count, total.ratio, incident.peak_sigma, total.ready,
    )  # fmt: skip
    alert = _alert(
        state, rule, action=AlertAction.RESOLVE, incident=incident, verdict=total, start=incident.start,
        end=incident.last_hot_end, alert_id=_digest(incident.incident_id, "resolve"),
    )  # fmt: skip
    state.incident = None
    state.quiet_until = end + rule.cooldown
    return alert


def _alert(
    state: TouchpointWindowState,
    rule: TouchpointRule,
    *,
    action: AlertAction,
    incident: Incident,
    verdict: _Verdict,
    start: int,
    end: int,
    alert_id: str,
) -> AlertEvent:
    evidence = incident.evidence
    return AlertEvent(
        alert_id=alert_id,
        incident_id=incident.incident_id,
        action=action,
        touchpoint=state.touchpoint,
        owner_team=rule.owner_team,
        measure=rule.measure,
        trigger=verdict.trigger,
        window_start=start,
        window_end=end,
        incident_start=incident.start,
        detected_at=state.clock,
        traffic=verdict.traffic,
        signals=verdict.signals,
        rate=verdict.rate,
        baseline_rate=verdict.baseline_rate,
        expected=verdict.expected,
        ratio=verdict.ratio,
        sigma=verdict.sigma,
        kinds=_ranked(evidence.kinds),
        personas=_ranked(evidence.personas),
        journeys=_ranked(evidence.journeys),
        upstream=_ranked(evidence.upstream),
        customer_ids=tuple(evidence.customers),
        event_ids=tuple(evidence.event_ids),
    )


def _verdict(
    state: TouchpointWindowState,
    rule: TouchpointRule,
    config: DetectorConfig,
    span: tuple[int, int],
    trigger: str,
    *,
    frozen: Incident | None = None,
) -> _Verdict:
    """Counts of windows [start, end) against the baseline of the windows around them (or, for a
    `frozen` incident's totals, against the baseline rate it opened with)."""
    start, end = span
    window = config.window
    traffic = signals = affected = 0
    for begin in range(start, end, window):
        bucket = state.buckets.get(begin)
        if bucket is not None:
            traffic += bucket.traffic
            signals += bucket.signals.get(trigger, 0)
            affected += bucket.affected.get(trigger, 0)
    windows = max(1, (end - start) // window)
    base = _baseline(state, config, start, end)
    settings = config.settings
    if rule.measure == CONTACT_VOLUME:
        first = state.first_window if state.first_window is not None else start
        seasonal_ready = settings.seasonal_days == 0 or first <= start - DAY + settings.seasonal_span
        per_window = base.traffic / base.windows if base.windows else 0.0
        # The baseline is taken on its cautious side (one standard deviation up).
        expected = (base.traffic + 1 + math.sqrt(base.traffic + 1)) / max(1, base.windows) * windows
        if frozen is not None:
            per_window = frozen.baseline_rate
            expected = per_window * windows
        rate = traffic / windows
        ratio = rate / per_window if per_window > 0 else (_NO_BASELINE if traffic else 0.0)
        return _Verdict(
            CONTACTS, traffic, traffic, traffic, rate, per_window, expected, expected, ratio,
            poisson_sigma(traffic, expected), base.windows > 0 and seasonal_ready,
        )  # fmt: skip
    base_signals = base.signals.get(trigger, 0)
    base_affected = base.affected.get(trigger, 0)
    base_rate = base_signals / base.traffic if base.traffic else 0.0
    if frozen is not None:
        base_rate = frozen.baseline_rate
    cautious_share = (base_affected + 1 + math.sqrt(base_affected + 1)) / max(1, base.traffic)
    expected_affected = traffic * min(1.0, cautious_share)
    rate = signals / traffic if traffic else 0.0
    ratio = rate / base_rate if base_rate > 0 else (_NO_BASELINE if signals else 0.0)
    return _Verdict(
        trigger, affected, signals, traffic, rate, base_rate, traffic * base_rate, expected_affected,
        ratio, poisson_sigma(affected, expected_affected), base.traffic >= settings.min_baseline_volume,
    )  # fmt: skip


def _baseline(state: TouchpointWindowState, config: DetectorConfig, start: int, end: int) -> _Baseline:
    """The baseline of windows [start, end): the trailing windows before them, plus the same time
    of day on previous days; windows of incidents are left out."""
    cached = state.cache.get((start, end))
    if cached is not None:
        return cached
    settings = config.settings
    window = config.window
    first = state.first_window if state.first_window is not None else start
    traffic = windows = 0
    signals: dict[str, int] = {}
    affected: dict[str, int] = {}
    ranges = [(start - settings.baseline_windows * window, start)]
    for day in range(1, settings.seasonal_days + 1):
        low = start - day * DAY - settings.seasonal_span
        ranges.append((low - low % window, end - day * DAY + settings.seasonal_span))
    buckets = state.buckets
    for low, high in ranges:
        for begin in range(max(low, first), high, window):
            bucket = buckets.get(begin)
            if bucket is None:
                windows += 1
            elif not (bucket.flagged or bucket.warm):
                windows += 1
                traffic += bucket.traffic
                for name, count in bucket.signals.items():
                    signals[name] = signals.get(name, 0) + count
                for name, count in bucket.affected.items():
                    affected[name] = affected.get(name, 0) + count
    result = _Baseline(traffic, windows, signals, affected)
    state.cache[(start, end)] = result
    return result


def _flag(state: TouchpointWindowState, start: int, end: int, window: int) -> None:
    """Mark windows as part of an incident so no baseline learns the spike as normal."""
    for begin in range(start, end, window):
        bucket = state.buckets.get(begin)
        if bucket is None:
            bucket = state.buckets[begin] = Bucket()
        bucket.flagged = True
    state.cache.clear()


def _sweep(state: TouchpointWindowState, config: DetectorConfig) -> None:
    """Drop windows no baseline reads any more, and the evidence of windows past their lateness."""
    oldest = state.clock - config.retention
    horizon = _horizon(state, config)
    stale = []
    for begin in state.buckets:  # about time-ordered: stop at the first window still needed
        if begin >= oldest:
            break
        stale.append(begin)
    for begin in stale:
        del state.buckets[begin]
    for begin in [begin for begin in state.fresh if begin < horizon - config.window]:
        state.fresh.discard(begin)
        bucket = state.buckets.get(begin)
        if bucket is not None:
            bucket.evidence = None
    if state.first_window is not None and state.first_window < oldest:
        state.first_window = oldest - oldest % config.window
        state.cache.clear()


# -- whole-process convenience (embedded runner, bench) -------------------------------------------


class FrictionDetector:
    """Every touchpoint's state in one process, fed in event-time order (embedded runner, bench)."""

    def __init__(self, config: DetectorConfig) -> None:
        self.config = config
        self.states: dict[str, TouchpointWindowState] = {}
        self.clock = NEVER

    def observe_all(
        self, observations: Iterable[Observation], watermark: int | None = None
    ) -> list[AlertEvent]:
        """Fold observations (sorted here by event time) and then advance every touchpoint to the
        watermark; returns the alerts in the order they were raised."""
        config = self.config
        window = config.window
        alerts: list[AlertEvent] = []
        for observation in sorted(observations, key=_order):
            if config.rule(observation.touchpoint) is None:
                continue
            if observation.ts // window > self.clock // window and self.clock != NEVER:
                alerts.extend(self._advance_all(observation.ts))  # quiet touchpoints judge too
            self.clock = max(self.clock, observation.ts)
            state = self.states.get(observation.touchpoint)
            if state is None:
                state = self.states[observation.touchpoint] = new_state(observation.touchpoint)
            _, raised = observe(state, observation, self.clock, config)
            alerts.extend(raised)
        if watermark is not None and watermark > self.clock:
            self.clock = watermark
            alerts.extend(self._advance_all(watermark))
        return alerts

    def _advance_all(self, now: int) -> list[AlertEvent]:
        alerts: list[AlertEvent] = []
        for touchpoint in sorted(self.states):
            _, raised = advance(self.states[touchpoint], now, self.config)
            alerts.extend(raised)
        return alerts


def _order(observation: Observation) -> tuple[int, int, str, str]:
    return (observation.ts, _KIND_ORDER[observation.kind], observation.touchpoint, observation.key)


# -- rows in, rows out ----------------------------------------------------------------------------

_EVENT_COLUMNS = {name: i for i, name in enumerate(schema.TOUCHPOINT_EVENTS.column_names)}
_FRICTION_COLUMNS = {name: i for i, name in enumerate(schema.FRICTION_SIGNALS.column_names)}
_SUPPORT_COLUMNS = {name: i for i, name in enumerate(schema.SUPPORT_ATTRIBUTION.column_names)}


def observations_of(rows: Mapping[str, Sequence[Sequence[Any]]], config: DetectorConfig) -> list[Observation]:
    """The detector's inputs in a batch of projection rows (a RowBatch's `rows`, or the `rows` of a
    journey_update message): accepted events, live friction signals of the counted kinds, and
    support contacts. Tombstones are skipped: a retracted signal is not subtracted."""
    out: list[Observation] = []
    ev = _EVENT_COLUMNS
    for row in rows.get(schema.TOUCHPOINT_EVENTS.name, ()):
        out.append(
            Observation(
                ObservationKind.TRAFFIC, str(row[ev["touchpoint"]]), int(row[ev["occurred_at"]]),
                str(row[ev["event_id"]]), str(row[ev["customer_id"]]),
                _opt(row[ev["persona"]]), event_ids=(str(row[ev["event_id"]]),),
            )
        )  # fmt: skip
    kinds = config.kinds
    fr = _FRICTION_COLUMNS
    for row in rows.get(schema.FRICTION_SIGNALS.name, ()):
        if row[fr["is_deleted"]] or row[fr["kind"]] not in kinds:
            continue
        out.append(
            Observation(
                ObservationKind.FRICTION, str(row[fr["touchpoint"]]), int(row[fr["occurred_at"]]),
                str(row[fr["signal_id"]]), str(row[fr["customer_id"]]), _opt(row[fr["persona"]]),
                f"{row[fr['journey_id']]}@{row[fr['journey_version']]}", str(row[fr["kind"]]),
                event_ids=tuple(str(event_id) for event_id in row[fr["event_ids"]]),
            )
        )  # fmt: skip
    su = _SUPPORT_COLUMNS
    for row in rows.get(schema.SUPPORT_ATTRIBUTION.name, ()):
        if row[su["is_deleted"]]:
            continue
        upstream = _opt(row[su["upstream_touchpoint"]])
        ids = [str(row[su["support_event_id"]])]
        if row[su["upstream_event_id"]] is not None:
            ids.append(str(row[su["upstream_event_id"]]))
        out.append(
            Observation(
                ObservationKind.CONTACT, str(row[su["support_touchpoint"]]), int(row[su["occurred_at"]]),
                str(row[su["support_event_id"]]), str(row[su["customer_id"]]), _opt(row[su["persona"]]),
                upstream=upstream, event_ids=tuple(ids),
            )
        )  # fmt: skip
    out.sort(key=_order)
    return out


def alert_row(alert: AlertEvent, scenario: str) -> tuple[object, ...]:
    """The alert as a row of the `alerts` table."""
    return (
        scenario, alert.alert_id, alert.incident_id, alert.action.value, alert.touchpoint,
        alert.owner_team, alert.measure, alert.trigger, alert.window_start, alert.window_end,
        alert.incident_start,
        alert.detected_at, alert.traffic, alert.signals, _finite(alert.rate), _finite(alert.baseline_rate),
        _finite(alert.expected), _finite(alert.ratio), _finite(alert.sigma), dict(alert.kinds),
        dict(alert.personas), dict(alert.journeys), dict(alert.upstream), list(alert.customer_ids),
        list(alert.event_ids), alert.summary(),
    )  # fmt: skip


def slack_payload(alert: AlertEvent, scenario: str = "live") -> dict[str, Any]:
    """A Slack-compatible incoming-webhook message: `text` (fallback), `blocks`, and the full alert
    as Slack message `metadata` (event_type touchpath_alert) for machines."""
    icon = {
        AlertAction.OPEN: ":rotating_light:",
        AlertAction.UPDATE: ":warning:",
        AlertAction.RESOLVE: ":white_check_mark:",
        AlertAction.TEST: ":test_tube:",
    }[alert.action]
    text = f"{icon} {alert.summary()}"
    lineage = ", ".join(alert.event_ids[:5]) or "-"
    footer = f"alert {alert.alert_id} · incident {alert.incident_id} · scenario {scenario} · events {lineage}"
    return {
        "text": text,
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": text}},
            {"type": "context", "elements": [{"type": "mrkdwn", "text": footer}]},
        ],
        "metadata": {
            "event_type": "touchpath_alert",
            "event_payload": {"scenario": scenario, **alert.as_dict()},
        },
    }


def test_alert(touchpoint: str, owner_team: str, now_ms: int) -> AlertEvent:
    """A clearly-labelled test alert for checking a team's destinations."""
    alert_id = _digest("test", owner_team, str(now_ms))
    return AlertEvent(
        alert_id=alert_id, incident_id=alert_id, action=AlertAction.TEST, touchpoint=touchpoint,
        owner_team=owner_team, measure=FRICTION_RATE, trigger=ALL, window_start=now_ms, window_end=now_ms,
        incident_start=now_ms, detected_at=now_ms, traffic=0, signals=0, rate=0.0, baseline_rate=0.0,
        expected=0.0, ratio=0.0, sigma=0.0, kinds=(), personas=(), journeys=(), upstream=(),
        customer_ids=(), event_ids=(),
    )  # fmt: skip


# -- serialisation --------------------------------------------------------------------------------


def encode_state(state: TouchpointWindowState) -> bytes:
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


def decode_state(raw: bytes) -> TouchpointWindowState:
    """Rebuild a state from encode_state's bytes."""
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


# -- small helpers --------------------------------------------------------------------------------


def poisson_sigma(observed: int, expected: float) -> float:
    """How unusual it is to see at least `observed` events when `expected` were due (Poisson),
    as a one-sided number of standard deviations; 0 when observed is not above expected."""
    if observed <= expected:
        return 0.0
    if expected <= 0:
        return MAX_SIGMA
    # P(X >= k) is the regularised lower incomplete gamma P(k, expected); series for x < k + 1.
    term = total = 1.0
    n = 1
    while term > total * 1e-15 and n < 100_000:
        term *= expected / (observed + n)
        total += term
        n += 1
    log_p = observed * math.log(expected) - expected - math.lgamma(observed + 1) + math.log(total)
    if log_p < -690:  # below the smallest double
        return MAX_SIGMA
    p = min(math.exp(log_p), 0.5)
    return min(MAX_SIGMA, -_NORMAL.inv_cdf(p))


def _digest(*parts: str) -> str:
    return hashlib.blake2b("\x00".join(parts).encode(), digest_size=8).hexdigest()


def _bump(counts: dict[str, int], name: str) -> None:
    counts[name] = counts.get(name, 0) + 1


def _ranked(counts: Mapping[str, int]) -> tuple[tuple[str, int], ...]:
    return tuple(sorted(counts.items(), key=lambda item: (-item[1], item[0])))


def _counts_text(counts: Sequence[tuple[str, int]], limit: int = 5) -> str:
    return ", ".join(f"{name} {count}" for name, count in counts[:limit])


def _opt(value: Any) -> str | None:
    return None if value is None else str(value)


def _times(ratio: float) -> str:
    return f"{ratio:.1f}×" if ratio < _NO_BASELINE else "never seen before"


def _finite(value: float) -> float:
    return value if math.isfinite(value) else 0.0


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _clock(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%a %H:%M")


def describe_settings(config: DetectorConfig) -> str:
    """The effective settings in one line (for logs and the bench)."""
    settings = config.settings
    return (
        f"window {format_duration(settings.window)}, baseline {settings.baseline_windows} windows + "
        f"{settings.seasonal_days} days ±{format_duration(settings.seasonal_span)}, "
        f"min_volume {settings.min_volume}, sensitivity {settings.sensitivity}σ, min_ratio "
        f"{settings.min_ratio}, cooldown {format_duration(settings.cooldown)}, "
        f"kinds {','.join(settings.kinds)}"
    )
