"""The Slack incoming-webhook message of an alert."""

from __future__ import annotations

from typing import Any

from projections.alerts.model import AlertAction, AlertEvent


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
