"""The friction spike detector: judges completed windows against a seasonal baseline, raises alerts."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from statistics import NormalDist

from projections.alerts.config import DetectorConfig, TouchpointRule
from projections.alerts.model import (
    ALL,
    CONTACT_VOLUME,
    CONTACTS,
    DAY,
    FRICTION_RATE,
    NEVER,
    NO_BASELINE,
    AlertAction,
    AlertEvent,
    Observation,
    ObservationKind,
    digest,
    observation_order,
)
from projections.alerts.state import (
    Baseline,
    Bucket,
    Evidence,
    Incident,
    TouchpointWindowState,
    bump,
    new_state,
)
from projections.journeys import AlertSettings

MAX_SIGMA = 37.0  # the normal quantile of the smallest double; beyond it every tail is "certain"
_NORMAL = NormalDist()


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
    rule = config.rules.get(state.touchpoint)
    settings = config.settings
    if rule is None or not rule.enabled or not settings.enabled:
        return state, []
    ts = observation.ts
    clock = state.clock
    alerts = advance(state, max(now_ms, ts), config)[1] if now_ms > clock or ts > clock else []
    window = settings.window
    start = ts // window * window
    if start < (state.clock - settings.lateness) // window * window:
        return state, alerts  # too late: the window takes no more counts (see _horizon)
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
    window = config.settings.window
    end = state.clock // window * window
    if end <= state.settled_until:
        return  # no window completed since the last call
    low = max(state.settled_until, _horizon(state, config))
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
            bump(bucket.signals, name)
            marker = f"{name}\x00{customer}"
            if marker not in evidence.affected:
                evidence.affected.add(marker)
                bump(bucket.affected, name)
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
    window = config.settings.window
    first = state.first_window if state.first_window is not None else latest
    buckets = state.buckets
    # For contact_volume the contacts are the signals: at least min_signals of them.
    volume = rule.measure == CONTACT_VOLUME
    least = rule.min_signals if volume else rule.min_volume
    # The counts of windows [start, latest + window): one more window per span.
    traffic = 0
    signals: dict[str, int] = {}
    for span in range(1, config.settings.span_windows + 1):
        start = latest - (span - 1) * window
        if start < first:
            break
        bucket = buckets.get(start)
        if bucket is not None:
            traffic += bucket.traffic
            for name, count in bucket.signals.items():
                signals[name] = signals.get(name, 0) + count
        if traffic < least:
            continue
        if not volume and max(signals.values(), default=0) < rule.min_signals:
            continue  # no trigger has enough signals (as the filter below finds, sooner)
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
    incident_id = digest(state.touchpoint, str(start))
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
        end=latest + window, alert_id=digest(incident_id, "open"),
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
                       alert_id=digest(incident.incident_id, "update", str(incident.updates)))
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
        end=incident.last_hot_end, alert_id=digest(incident.incident_id, "resolve"),
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
        kinds=ranked(evidence.kinds),
        personas=ranked(evidence.personas),
        journeys=ranked(evidence.journeys),
        upstream=ranked(evidence.upstream),
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
        ratio = rate / per_window if per_window > 0 else (NO_BASELINE if traffic else 0.0)
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
    ratio = rate / base_rate if base_rate > 0 else (NO_BASELINE if signals else 0.0)
    return _Verdict(
        trigger, affected, signals, traffic, rate, base_rate, traffic * base_rate, expected_affected,
        ratio, poisson_sigma(affected, expected_affected), base.traffic >= settings.min_baseline_volume,
    )  # fmt: skip


def _baseline(state: TouchpointWindowState, config: DetectorConfig, start: int, end: int) -> Baseline:
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
    result = Baseline(traffic, windows, signals, affected)
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
        self, observations: Iterable[Observation], watermark: int | None = None, *, ordered: bool = False
    ) -> list[AlertEvent]:
        """Fold observations (sorted here by event time, unless `ordered` says they already are, as
        observations_of returns them) and then advance every touchpoint to the watermark; returns
        the alerts in the order they were raised."""
        config = self.config
        rules = config.rules
        window = config.settings.window
        states = self.states
        alerts: list[AlertEvent] = []
        clock = self.clock
        for observation in observations if ordered else sorted(observations, key=observation_order):
            touchpoint = observation.touchpoint
            if rules.get(touchpoint) is None:
                continue
            ts = observation.ts
            if ts // window > clock // window and clock != NEVER:
                alerts.extend(self._advance_all(ts))  # quiet touchpoints judge too
            if ts > clock:
                clock = self.clock = ts
            state = states.get(touchpoint)
            if state is None:
                state = states[touchpoint] = new_state(touchpoint)
            alerts.extend(observe(state, observation, clock, config)[1])
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


def ranked(counts: Mapping[str, int]) -> tuple[tuple[str, int], ...]:
    """Counts, largest first (ties by name)."""
    return tuple(sorted(counts.items(), key=lambda item: (-item[1], item[0])))
