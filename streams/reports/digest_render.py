"""Team digests as Markdown, as one offline HTML page and as a compact Slack-compatible message."""

from __future__ import annotations

import html
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from streams.reports.digest import Count, TeamDigest, TouchpointFriction, Voice

KIND_WORDS = {
    "failure": "failures",
    "repeat": "repeats",
    "stall": "stalls",
    "escalation": "escalations to support",
    "negative_survey": "negative surveys",
    "abandonment": "abandonments",
}


def _kind(kind: str) -> str:
    return KIND_WORDS.get(kind, kind) or "—"


def _rate(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f}"


def _change(value: float | None) -> str:
    return "new" if value is None else f"{value:+.1f}"


def _delta(count: Count) -> str:
    return f"{count.now - count.before:+d}"


def _count_row(count: Count) -> tuple[object, ...]:
    labels = tuple(label or NOT_A_STEP for label in count.labels)
    return (*labels, count.now, count.before, _delta(count))


def _score(voice: Voice) -> str:
    scale = {"csat": "/5", "nps": "/10", "ces": "/7"}.get(voice.survey_kind, "")
    return f"{voice.survey_kind.upper()} {voice.score}{scale}"


def _when(moment: datetime) -> str:
    return f"{moment:%Y-%m-%d %H:%M}"


def _friction_rows(digest: TeamDigest) -> list[tuple[object, ...]]:
    return [
        (rank, item.touchpoint, item.events, item.signals, _rate(item.rate), _rate(item.prev_rate),
         _change(item.change), _kind(item.dominant_kind))
        for rank, item in enumerate(digest.touchpoints, start=1)
    ]  # fmt: skip


FRICTION_COLUMNS = (
    "#", "touchpoint", "events", "friction signals", "per 1,000 events", "before", "change", "mostly",
)  # fmt: skip
SUPPORT_COLUMNS = ("caused by", "attribution rule", "contact", "contacts", "before", "change")
DEVIATION_COLUMNS = ("journey", "step", "deviation", "touchpoint", "count", "before", "change")
NOT_A_STEP = "(not in the journey)"  # unexpected touchpoints match no step


def _no_data(digest: TeamDigest) -> str:
    if not digest.owned:
        return f"Team {digest.team} owns no touchpoint in the registry, so there is nothing to report."
    return (
        f"No data: nothing happened at {digest.team}'s touchpoints ({', '.join(digest.owned)}) in "
        f"{digest.period.describe()} (scenario {digest.scenario})."
    )


def _headline(digest: TeamDigest) -> str:
    worst = next((item for item in digest.touchpoints if item.signals), None)
    parts = [f"{digest.events:,} events at {len(digest.owned)} touchpoints"]
    if worst is not None:
        parts.append(
            f"most friction at {worst.touchpoint} ({_rate(worst.rate)} per 1,000 events, "
            f"{_change(worst.change)} vs before, mostly {_kind(worst.dominant_kind)})"
        )
    contacts = sum(count.now for count in digest.support)
    if contacts:
        parts.append(f"{contacts} support contacts caused")
    opened = sum(1 for alert in digest.alerts if alert.action == "open")
    if digest.alerts:
        resolved = sum(1 for alert in digest.alerts if alert.action == "resolve")
        parts.append(f"{opened} alerts opened, {resolved} resolved")
    if digest.positive:
        parts.append(f"{digest.positive} positive surveys")
    return "; ".join(parts) + "."


# ---- Markdown -----------------------------------------------------------------------------------


def _md_table(columns: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    def cell(value: object) -> str:
        return str(value).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(value) for value in row) + " |" for row in rows]
    return "\n".join(lines)


def _voice_md(voice: Voice) -> str:
    quote = f"“{voice.comment}”" if voice.comment else "(no comment)"
    path = " → ".join(voice.path) if voice.path else "(path not found)"
    followed = "; ".join(voice.followed) if voice.followed else "no deviation or friction before it"
    by = f" · served by {voice.employee_id}" if voice.employee_id else ""
    return (
        f"- **{_score(voice)}** {quote} — customer `{voice.customer_id}`, {_when(voice.occurred_at)}, "
        f"attributed to {', '.join(voice.touchpoints)}{by}\n"
        f"  - path ({voice.journey or 'journey ?'}): {path}\n  - followed: {followed}"
    )


def markdown(digest: TeamDigest) -> str:
    """The full digest as Markdown."""
    out = [
        f"# touchpath digest — team {digest.team}",
        f"{digest.description}\n" if digest.description else "",
        f"Period {digest.period.describe()}, compared with the "
        f"{digest.period.previous_start:%Y-%m-%d %H:%M} – {digest.period.start:%Y-%m-%d %H:%M} UTC "
        f"before it · scenario `{digest.scenario}`.\n",
    ]
    if not digest.has_data:
        out.append(_no_data(digest))
        return "\n".join(out) + "\n"
    out += [
        _headline(digest) + "\n",
        "## Touchpoints ranked by friction\n",
        _md_table(FRICTION_COLUMNS, _friction_rows(digest)),
        "\n## Support contacts caused by your touchpoints\n",
        _md_table(SUPPORT_COLUMNS, [_count_row(c) for c in digest.support])
        if digest.support
        else "None in this period.",
        "\n## Deviations at your steps\n",
        _md_table(DEVIATION_COLUMNS, [_count_row(c) for c in digest.deviations])
        if digest.deviations
        else "None in this period.",
        "\n## Voice of the customer (worst first)\n",
        "\n".join(_voice_md(voice) for voice in digest.voices)
        if digest.voices
        else "No survey comment was attributed to your touchpoints in this period.",
        "\n## Celebrations\n",
        _celebrations_md(digest),
        "\n## Alerts\n",
        _md_table(
            ("detected", "action", "touchpoint", "trigger", "window", "× usual", "σ", "incident"),
            [
                (
                    _when(a.detected_at),
                    a.action,
                    a.touchpoint,
                    a.trigger,
                    f"{_when(a.window_start)} – {a.window_end:%H:%M}",
                    f"{a.ratio:.1f}",
                    f"{a.sigma:.1f}",
                    a.incident_id,
                )
                for a in digest.alerts
            ],
        )
        if digest.alerts
        else "No alert was opened or resolved for your touchpoints in this period.",
    ]
    return "\n".join(out) + "\n"


def _celebrations_md(digest: TeamDigest) -> str:
    if not digest.positive:
        return "No positive survey was attributed to your touchpoints in this period."
    by_touchpoint = ", ".join(f"{tp} {n}" for tp, n in digest.positive_by_touchpoint.items())
    lines = [f"{digest.positive} positive surveys ({by_touchpoint})."]
    if digest.associates:
        lines.append("\nAssociates customers thanked:\n")
        lines.append(
            _md_table(
                ("associate", "positive surveys", "with a comment", "customers", "at"),
                [
                    (a.employee_id, a.positive, a.comments, a.customers, ", ".join(a.touchpoints))
                    for a in digest.associates
                ],
            )
        )
    if digest.praise:
        lines.append("\nIn their words:\n")
        lines += [_voice_md(voice) for voice in digest.praise]
    return "\n".join(lines)


# ---- HTML ---------------------------------------------------------------------------------------

CSS = """
body { font-family: system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif; margin: 0; color: #222;
       background: #f6f7f9; }
main { max-width: 1100px; margin: 0 auto; padding: 16px 28px 48px; }
h1 { margin: 8px 0 4px; font-size: 24px; }
h2 { margin: 28px 0 6px; font-size: 19px; border-bottom: 2px solid #d9dde3; padding-bottom: 4px; }
p.meta, p.note { color: #555; font-size: 14px; }
p.headline { font-size: 16px; background: #fff; border: 1px solid #dde1e6; border-radius: 8px;
             padding: 10px 14px; }
table { border-collapse: collapse; background: #fff; font-size: 14px; margin: 6px 0 10px; }
th, td { border: 1px solid #dde1e6; padding: 5px 10px; text-align: left; vertical-align: top; }
th { background: #eef0f3; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
td.up { color: #b3261e; font-weight: 600; }
td.down { color: #1b7a3d; }
.bar { display: inline-block; height: 10px; background: #e45756; border-radius: 2px; vertical-align: middle; }
.voice { background: #fff; border: 1px solid #dde1e6; border-left: 4px solid #e45756; border-radius: 6px;
         padding: 8px 12px; margin: 8px 0; }
.voice.positive { border-left-color: #2a9d8f; }
.voice q { font-size: 16px; }
.voice .meta { color: #555; font-size: 13px; margin-top: 4px; }
.path span { background: #eef0f3; border-radius: 10px; padding: 1px 8px; margin-right: 2px; font-size: 12px; }
.nodata { background: #fff8e1; border: 1px solid #f0d98c; border-radius: 8px; padding: 12px 16px; }
"""


def _esc(value: object) -> str:
    return "" if value is None else html.escape(str(value), quote=True)


def _html_table(columns: Sequence[str], rows: Sequence[Sequence[object]], classes: Sequence[str] = ()) -> str:
    head = "".join(f"<th>{_esc(column)}</th>" for column in columns)
    body = []
    for row in rows:
        cells = []
        for index, value in enumerate(row):
            extra = classes[index] if index < len(classes) else ""
            numeric = isinstance(value, int | float)
            css = " ".join(filter(None, ["num" if numeric else "", extra]))
            cells.append(
                f"<td class='{css}'>{value}</td>"
                if extra == "raw"
                else f"<td class='{css}'>{_esc(value)}</td>"
            )
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _friction_html(digest: TeamDigest) -> str:
    top = max((item.rate or 0.0 for item in digest.touchpoints), default=0.0) or 1.0
    rows = []
    for rank, item in enumerate(digest.touchpoints, start=1):
        width = int(120 * (item.rate or 0.0) / top)
        change = item.change
        trend = "" if change is None or abs(change) < 0.05 else ("up" if change > 0 else "down")
        rows.append(
            "<tr>"
            f"<td class='num'>{rank}</td><td>{_esc(item.touchpoint)}</td>"
            f"<td class='num'>{item.events:,}</td><td class='num'>{item.signals:,}</td>"
            f"<td class='num'>{_rate(item.rate)} <span class='bar' style='width:{width}px'></span></td>"
            f"<td class='num'>{_rate(item.prev_rate)}</td><td class='num {trend}'>{_change(change)}</td>"
            f"<td>{_esc(_kind(item.dominant_kind))}</td></tr>"
        )
    head = "".join(f"<th>{_esc(column)}</th>" for column in FRICTION_COLUMNS)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _voice_html(voice: Voice) -> str:
    quote = f"<q>{_esc(voice.comment)}</q>" if voice.comment else "<i>(no comment)</i>"
    path = "".join(f"<span>{_esc(tp)}</span>" for tp in voice.path) or "(path not found)"
    followed = "; ".join(voice.followed) if voice.followed else "no deviation or friction before it"
    by = f" · served by <b>{_esc(voice.employee_id)}</b>" if voice.employee_id else ""
    return (
        f"<div class='voice {_esc(voice.sentiment)}'><b>{_esc(_score(voice))}</b> {quote}"
        f"<div class='meta'>customer <code>{_esc(voice.customer_id)}</code> · "
        f"{_esc(_when(voice.occurred_at))} UTC · "
        f"attributed to {_esc(', '.join(voice.touchpoints))}{by}</div>"
        f"<div class='meta path'>path ({_esc(voice.journey or 'journey ?')}): {path}</div>"
        f"<div class='meta'>followed: {_esc(followed)}</div></div>"
    )


def _counts_html(columns: Sequence[str], counts: Sequence[Count], empty: str) -> str:
    if not counts:
        return f"<p class='note'>{_esc(empty)}</p>"
    return _html_table(columns, [_count_row(c) for c in counts])


def page(digest: TeamDigest) -> str:
    """The digest as one self-contained HTML page (no scripts, no external resources)."""
    generated = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    parts = [
        f"<h1>Digest for team {_esc(digest.team)}</h1>",
        f"<p class='meta'>{_esc(digest.description)}{' · ' if digest.description else ''}"
        f"{_esc(digest.period.describe())}, against the same length before · scenario "
        f"“{_esc(digest.scenario)}” · generated {_esc(generated)}</p>",
    ]
    if not digest.has_data:
        parts.append(f"<div class='nodata'>{_esc(_no_data(digest))}</div>")
    else:
        parts += [
            f"<p class='headline'>{_esc(_headline(digest))}</p>",
            "<h2>Your touchpoints, ranked by friction</h2>",
            "<p class='note'>Friction signals (failures, repeats, stalls, escalations to support, "
            "negative surveys, abandonments) per 1,000 events at the touchpoint, in this period and the "
            "one before.</p>",
            _friction_html(digest),
            "<h2>Support contacts your touchpoints caused</h2>",
            "<p class='note'>Each support contact is attributed to the upstream touchpoint that most likely "
            "caused it; the rule says why (a failure, a deviation, or simply the last touchpoint).</p>",
            _counts_html(
                SUPPORT_COLUMNS, digest.support, "No support contact was attributed to your touchpoints."
            ),
            "<h2>Deviations at your steps</h2>",
            _counts_html(DEVIATION_COLUMNS, digest.deviations, "No deviation at your touchpoints."),
            "<h2>Voice of the customer</h2>",
            "<p class='note'>Survey comments attributed to your touchpoints, worst first, with the "
            "customer's path up to the survey and what went wrong before it (ids only).</p>",
            "".join(_voice_html(voice) for voice in digest.voices)
            or "<p class='note'>No survey comment was attributed to your touchpoints in this period.</p>",
            "<h2>Celebrations</h2>",
            _celebrations_html(digest),
            "<h2>Alerts</h2>",
            _html_table(
                ("detected (UTC)", "action", "touchpoint", "trigger", "window", "× usual", "σ", "incident"),
                [
                    (
                        _when(a.detected_at),
                        a.action,
                        a.touchpoint,
                        a.trigger,
                        f"{_when(a.window_start)} – {a.window_end:%H:%M}",
                        round(a.ratio, 1),
                        round(a.sigma, 1),
                        a.incident_id,
                    )
                    for a in digest.alerts
                ],
            )
            if digest.alerts
            else "<p class='note'>No alert was opened or resolved for your touchpoints in this period.</p>",
        ]
    body = "\n".join(parts)
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        f"<title>touchpath digest — {_esc(digest.team)}</title><style>{CSS}</style></head>"
        f"<body><main>\n{body}\n</main></body></html>\n"
    )


def _celebrations_html(digest: TeamDigest) -> str:
    if not digest.positive:
        return "<p class='note'>No positive survey was attributed to your touchpoints in this period.</p>"
    by_touchpoint = ", ".join(f"{tp} {n}" for tp, n in digest.positive_by_touchpoint.items())
    parts = [f"<p>{digest.positive} positive surveys ({_esc(by_touchpoint)}).</p>"]
    if digest.associates:
        parts.append("<h3>Associates customers thanked</h3>")
        parts.append(
            _html_table(
                ("associate", "positive surveys", "with a comment", "customers", "at"),
                [
                    (a.employee_id, a.positive, a.comments, a.customers, ", ".join(a.touchpoints))
                    for a in digest.associates
                ],
            )
        )
    if digest.praise:
        parts.append("<h3>In their words</h3>")
        parts += [_voice_html(voice) for voice in digest.praise]
    return "".join(parts)


# ---- Slack --------------------------------------------------------------------------------------


def _top_touchpoints(digest: TeamDigest, limit: int = 3) -> list[TouchpointFriction]:
    return [item for item in digest.touchpoints if item.signals][:limit]


def slack_payload(digest: TeamDigest) -> dict[str, Any]:
    """A compact Slack incoming-webhook message: headline, top touchpoints, worst comment, praise."""
    title = f"touchpath digest for {digest.team} · {digest.period.describe()}"
    if not digest.has_data:
        text = f"{title}\n{_no_data(digest)}"
        return {"text": text, "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": text}}]}
    lines = [f"*{title}*", _headline(digest)]
    for rank, item in enumerate(_top_touchpoints(digest), start=1):
        lines.append(
            f"{rank}. `{item.touchpoint}` {_rate(item.rate)} per 1,000 events "
            f"({_change(item.change)}), mostly {_kind(item.dominant_kind)}"
        )
    if digest.voices:
        worst = digest.voices[0]
        lines.append(f"Worst comment ({_score(worst)}): “{worst.comment}” — customer {worst.customer_id}")
    if digest.associates:
        names = ", ".join(f"{a.employee_id} ({a.positive})" for a in digest.associates[:3])
        lines.append(f"Thanked by customers: {names}")
    text = "\n".join(lines)
    return {
        "text": text,
        "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": text}}],
        "metadata": {
            "event_type": "touchpath_digest",
            "event_payload": {
                "digest_id": digest.digest_id,
                "team": digest.team,
                "scenario": digest.scenario,
                "start": digest.period.start.isoformat(),
                "end": digest.period.end.isoformat(),
                "events": digest.events,
                "top_touchpoints": [item.touchpoint for item in _top_touchpoints(digest)],
                "alerts": len(digest.alerts),
                "positive_surveys": digest.positive,
            },
        },
    }
