"""The report's friction-incident section: each incident opened, when it resolved, its deliveries."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from streams.store.clickhouse import ClickHouseProjectionStore

# One row per incident: its opening alert, its resolving alert (if any), and the webhook attempts of
# both (an alert is delivered once per destination; failed attempts are retried and recorded).
INCIDENTS_SQL = """WITH deliveries AS (
    SELECT alert_id, countIf(outcome = 'delivered') AS delivered, countIf(outcome != 'delivered') AS failed,
           anyIf(error, outcome != 'delivered') AS error
    FROM alert_deliveries WHERE scenario = {scenario:String} GROUP BY alert_id
)
SELECT a.incident_id AS incident_id, any(a.touchpoint) AS touchpoint, any(a.owner_team) AS team,
       any(a.trigger) AS trigger, min(a.incident_start) AS started,
       minIf(a.detected_at, a.action = 'open') AS opened,
       maxIf(a.window_end, a.action = 'resolve') AS ended,
       maxIf(a.detected_at, a.action = 'resolve') AS resolved_at,
       countIf(a.action = 'resolve') AS resolved,
       max(a.ratio) AS peak_ratio, argMaxIf(a.summary, a.detected_at, a.action = 'open') AS summary,
       sum(ifNull(d.delivered, 0)) AS delivered, sum(ifNull(d.failed, 0)) AS failed,
       any(ifNull(d.error, '')) AS error
FROM alerts AS a FINAL
LEFT JOIN deliveries AS d ON d.alert_id = a.alert_id
WHERE a.scenario = {scenario:String}
GROUP BY a.incident_id ORDER BY started, touchpoint"""


def incident_rows(store: ClickHouseProjectionStore, scenario: str = "live") -> list[dict[str, Any]]:
    """Every incident of the scenario with its times, peak ratio and delivery counts."""
    columns, rows = store.query(INCIDENTS_SQL, {"scenario": scenario})
    return [dict(zip(columns, row, strict=True)) for row in rows]


def _at(value: datetime) -> str:
    return f"{value:%a %Y-%m-%d %H:%M} UTC"


def alerts_html(store: ClickHouseProjectionStore, scenario: str, esc: Any) -> str:
    """A table of the scenario's friction incidents (or a line saying there were none)."""
    incidents = incident_rows(store, scenario)
    if not incidents:
        return "<p class='note'>No friction incident was detected in this scenario.</p>"
    # Times are event time: the spike's windows, and when the detector (fed in event-time order)
    # opened and resolved the incident.
    head = (
        "<tr><th>Touchpoint</th><th>Team</th><th>Spike (windows)</th><th>Opened</th><th>Resolved</th>"
        "<th class='num'>Peak × usual</th><th>Webhook</th><th>What the team was told</th></tr>"
    )
    body = []
    for item in incidents:
        resolved = _at(item["resolved_at"]) if item["resolved"] else "still open"
        spike = f"{_at(item['started'])} – " + (f"{item['ended']:%H:%M} UTC" if item["resolved"] else "…")
        sent = f"{item['delivered']} delivered" + (
            f", {item['failed']} failed attempts ({item['error']})" if item["failed"] else ""
        )
        if not item["delivered"] and not item["failed"]:
            sent = "no destination"
        body.append(
            f"<tr><td>{esc(item['touchpoint'])}</td><td>{esc(item['team'])}</td>"
            f"<td>{esc(spike)}</td><td>{esc(_at(item['opened']))}</td><td>{esc(resolved)}</td>"
            f"<td class='num'>{item['peak_ratio']:.1f}×</td><td>{esc(sent)}</td>"
            f"<td class='summary'>{esc(item['summary'])}</td></tr>"
        )
    return f"<table class='incidents'>{head}{''.join(body)}</table>"
