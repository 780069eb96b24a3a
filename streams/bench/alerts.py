"""The alert benchmark: simulated traffic with injected incidents, and control traffic without any."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from projections.alerts.codec import encode_detector
from projections.alerts.config import DetectorConfig, describe_settings, detector_config
from projections.alerts.model import AlertAction, AlertEvent
from projections.engine import JourneyEngine, RowBatch
from projections.journeys import JourneyModel
from streams.alerting.detection import EmbeddedAlerting
from streams.common.progress import Progress
from streams.embedded.runner import EmbeddedRunner
from streams.sim.simulator import DAY, HOUR, MINUTE, START, Incident, SimulationConfig, simulate
from streams.store.columns import ColumnBatch

START_MS = int(START.timestamp() * 1000)
SUPPORT_SLACK = 2 * HOUR  # contacts caused by an incident keep coming a little after it ends


@dataclass(frozen=True, slots=True)
class InjectedIncident:
    """An incident to inject: where, when (day and time of day, UTC), for how long, how bad."""

    touchpoint: str
    day: int
    at: str  # "HH:MM"
    minutes: int
    failure_rate: float

    def incident(self) -> Incident:
        """The simulator's form (times relative to the simulation start)."""
        hours, minutes = (int(part) for part in self.at.split(":"))
        start = self.day * DAY + hours * HOUR + minutes * MINUTE
        return Incident(self.touchpoint, start, self.minutes * MINUTE, self.failure_rate)


# Different touchpoints, sizes, durations and times of day (base failure rate is 1%).
INCIDENTS = (
    InjectedIncident("web.checkout", 1, "19:00", 180, 0.45),
    InjectedIncident("store.purchase", 2, "11:10", 60, 0.30),
    InjectedIncident("web.cart", 3, "14:30", 45, 0.25),
    InjectedIncident("sales.proposal", 4, "20:05", 120, 0.50),
    InjectedIncident("web.product_page", 5, "09:40", 30, 0.15),
    InjectedIncident("web.checkout", 6, "16:20", 20, 0.60),
)


@dataclass(frozen=True, slots=True)
class IncidentResult:
    """How the detector did on one injected incident."""

    injected: InjectedIncident
    detected: bool
    delay_windows: int | None
    opens: int
    resolves: int
    peak_ratio: float
    duration_windows: int | None


class _MeasuredAlerting(EmbeddedAlerting):
    """Embedded alerting that also notes the largest encoded touchpoint state after each batch."""

    largest_state = 0
    detector_seconds = 0.0

    def process(self, batch: RowBatch | ColumnBatch, watermark: int) -> list[AlertEvent]:
        started = time.perf_counter()
        alerts = super().process(batch, watermark)
        self.detector_seconds += time.perf_counter() - started
        for state in self.detector.states.values():
            self.largest_state = max(self.largest_state, len(encode_detector(state)))
        return alerts


def _run(
    model: JourneyModel, config: DetectorConfig, simulation_config: SimulationConfig, label: str
) -> tuple[list[AlertEvent], int, _MeasuredAlerting]:
    lines = simulate(model, simulation_config).lines
    engine = JourneyEngine(model, scenario=f"bench-{label}")
    alerting = _MeasuredAlerting(model, engine.scenario, config=config)
    runner = EmbeddedRunner(engine, None, alerting=alerting)
    progress = Progress(f"alerts bench: {label}", total=len(lines))
    runner.feed(enumerate(lines, start=1), label, progress.update)
    progress.done()
    return alerting.alerts, len(lines), alerting


def score_incidents(
    alerts: Sequence[AlertEvent], injected: Sequence[InjectedIncident], window: int
) -> tuple[list[IncidentResult], list[AlertEvent], list[AlertEvent]]:
    """Match alerts to injected incidents: (per-incident results, downstream support alerts,
    alerts nothing explains)."""
    results: list[IncidentResult] = []
    explained: set[str] = set()
    downstream: list[AlertEvent] = []
    by_incident: dict[str, list[AlertEvent]] = {}
    for alert in alerts:
        by_incident.setdefault(alert.incident_id, []).append(alert)
    for item in injected:
        incident = item.incident()
        start, end = START_MS + incident.start_ms, START_MS + incident.start_ms + incident.duration_ms
        opens = [
            alert
            for alert in alerts
            if alert.action is AlertAction.OPEN
            and alert.touchpoint == item.touchpoint
            and start - window <= alert.incident_start < end + window
        ]
        ids = {alert.incident_id for alert in opens}
        resolves = [
            alert for alert in alerts if alert.action is AlertAction.RESOLVE and alert.incident_id in ids
        ]
        explained |= ids
        for alert in alerts:
            if (
                alert.touchpoint.startswith("support.")
                and alert.action is AlertAction.OPEN
                and start <= alert.incident_start < end + SUPPORT_SLACK
                and alert.upstream
                and alert.upstream[0][0] == item.touchpoint
            ):
                explained.add(alert.incident_id)
                downstream.append(alert)
        first = min(opens, key=lambda alert: alert.detected_at, default=None)
        delay = None if first is None else first.detected_at // window - start // window
        duration = None
        if resolves:
            last = resolves[0]
            duration = (last.window_end - last.window_start) // window
        results.append(
            IncidentResult(
                injected=item,
                detected=first is not None and first.detected_at <= end + 2 * window,
                delay_windows=delay,
                opens=len(opens),
                resolves=len(resolves),
                peak_ratio=max((alert.ratio for alert in opens + resolves), default=0.0),
                duration_windows=duration,
            )
        )
    unexplained = [
        alert for alert in alerts if alert.action is AlertAction.OPEN and alert.incident_id not in explained
    ]
    return results, downstream, unexplained


def bench_alerts(
    model: JourneyModel,
    customers: int = 60_000,
    days: int = 7,
    seed: int = 21,
    incidents: Sequence[InjectedIncident] = INCIDENTS,
) -> dict[str, Any]:
    """Detected/injected incidents, detection delay, alerts per incident, and false alarms on
    control traffic with no incident (same traffic model, another seed)."""
    config = detector_config(model)
    window = config.window
    started = time.perf_counter()
    with_incidents = SimulationConfig(
        customers=customers, days=days, seed=seed, incidents=tuple(item.incident() for item in incidents)
    )
    alerts, lines, incident_alerting = _run(model, config, with_incidents, "incidents")
    control = SimulationConfig(customers=customers, days=days, seed=seed + 1, incidents=())
    control_alerts, control_lines, control_alerting = _run(model, config, control, "control")
    elapsed = time.perf_counter() - started
    results, downstream, unexplained = score_incidents(alerts, incidents, window)
    false_alarms = [alert for alert in control_alerts if alert.action is AlertAction.OPEN]
    delays = [
        result.delay_windows for result in results if result.detected and result.delay_windows is not None
    ]
    detector_seconds = incident_alerting.detector_seconds + control_alerting.detector_seconds
    return {
        "customers": customers,
        "days": days,
        "settings": describe_settings(config),
        "window_minutes": window // MINUTE,
        "events_with_incidents": lines,
        "events_control": control_lines,
        "incidents_injected": len(results),
        "incidents_detected": sum(result.detected for result in results),
        "detection_delay_windows_max": max(delays, default=None),
        "detection_delay_windows_mean": round(sum(delays) / len(delays), 2) if delays else None,
        "incidents_with_exactly_one_open_and_one_resolve": sum(
            result.opens == 1 and result.resolves == 1 for result in results
        ),
        "downstream_support_alerts": len(downstream),
        "unexplained_alerts_with_incidents": len(unexplained),
        "false_alarms_control": len(false_alarms),
        "control_days": days,
        "state_bytes_per_touchpoint_max": max(
            incident_alerting.largest_state, control_alerting.largest_state
        ),
        # input lines per second of detector time (rows -> observations -> windows -> alerts)
        "detector_events_per_s": round((lines + control_lines) / max(detector_seconds, 1e-9)),
        "seconds": round(elapsed, 1),
        "incidents": [
            {
                "touchpoint": result.injected.touchpoint,
                "day": result.injected.day,
                "at": result.injected.at,
                "minutes": result.injected.minutes,
                "failure_rate": result.injected.failure_rate,
                "detected": result.detected,
                "delay_windows": result.delay_windows,
                "opens": result.opens,
                "resolves": result.resolves,
                "peak_ratio": round(result.peak_ratio, 1),
                "incident_windows": result.duration_windows,
            }
            for result in results
        ],
        "downstream": [_brief(alert) for alert in downstream],
        "unexplained": [_brief(alert) for alert in unexplained],
        "false_alarms": [_brief(alert) for alert in false_alarms],
    }


def _brief(alert: AlertEvent) -> dict[str, Any]:
    data = alert.as_dict()
    keys = ("touchpoint", "window_start", "signals", "traffic", "ratio", "sigma", "upstream", "kinds")
    return {key: data[key] for key in keys}


def render(figures: dict[str, Any]) -> str:
    """The figures as text."""
    lines = [
        f"simulated {figures['customers']:,} customers × {figures['days']} days, "
        f"{figures['window_minutes']}-minute windows ({figures['seconds']} s)",
        f"settings: {figures['settings']}",
        f"incidents detected / injected        {figures['incidents_detected']} / "
        f"{figures['incidents_injected']}",
        f"detection delay, windows (max, mean) {figures['detection_delay_windows_max']}, "
        f"{figures['detection_delay_windows_mean']}   (goal <= 2)",
        "exactly 1 open + 1 resolve           "
        f"{figures['incidents_with_exactly_one_open_and_one_resolve']} / {figures['incidents_injected']}",
        f"false alarms, {figures['control_days']} control days        {figures['false_alarms_control']}"
        "   (goal 0)",
        f"downstream support-contact alerts    {figures['downstream_support_alerts']}",
        f"unexplained alerts (incident run)    {figures['unexplained_alerts_with_incidents']}",
        f"state bytes per touchpoint (max)     {figures['state_bytes_per_touchpoint_max']:,}",
        f"detector cost, events/s              {figures['detector_events_per_s']:,}",
        "",
        "touchpoint         day at     min  fail  detected delay opens resolves peak× windows",
    ]
    for item in figures["incidents"]:
        lines.append(
            f"{item['touchpoint']:18s} {item['day']:>3} {item['at']} {item['minutes']:>5} "
            f"{item['failure_rate']:>5.2f} {item['detected']!s:>8} {item['delay_windows']!s:>5} "
            f"{item['opens']:>5} {item['resolves']:>8} {item['peak_ratio']:>5} "
            f"{item['incident_windows']!s:>7}"
        )
    for title, key in (
        ("downstream support-contact alerts", "downstream"),
        ("unexplained alerts", "unexplained"),
        ("false alarms", "false_alarms"),
    ):
        for alert in figures[key]:
            lines.append(
                f"{title}: {alert['touchpoint']} at {alert['window_start']} "
                f"({alert['signals']} signals, {alert['ratio']}×, {alert['sigma']}σ, "
                f"upstream {alert['upstream']})"
            )
    return "\n".join(lines)
