"""The offline HTML report of one scenario: conformance, actual vs ideal paths, friction, drivers, delight."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from projections.durations import format_duration
from projections.ideal_path import ideal_ends, ideal_transitions
from projections.journeys import Journey, JourneyModel, Step
from streams.reports.html import (
    FigureEmbedder,
    bar_rows_layout,
    empty_figure,
    esc,
    html_table,
    page_html,
    write_page,
)
from streams.reports.incidents import alerts_html
from streams.reports.surveys import survey_conformance_html
from streams.store.clickhouse import ClickHouseProjectionStore
from streams.store.summary import summarise

SANKEY_POSITIONS = 8
NO_STEP = "(not a step)"  # deviations of touchpoints outside the journey name no step
TOP_ASSOCIATES = 15
IDEAL_COLOUR = "rgba(42, 157, 143, 0.65)"
OTHER_COLOUR = "rgba(150, 150, 150, 0.35)"
ABANDON_COLOUR = "rgba(214, 69, 65, 0.55)"
CHANNEL_COLOURS = ("#4c78a8", "#f58518", "#54a24b", "#b279a2", "#e45756", "#72b7b2", "#9d755d", "#bab0ac")
KIND_COLOURS = {
    "unexpected_step": "#e45756",
    "missing_step": "#f58518",
    "out_of_order": "#b279a2",
    "repeated_step": "#eeca3b",
    "time_budget_exceeded": "#4c78a8",
    "channel_switch": "#72b7b2",
    "abandoned": "#7f7f7f",
}
RULE_COLOURS = {
    "failure_in_lookback": "#e45756",
    "deviation_in_lookback": "#f58518",
    "last_touchpoint": "#4c78a8",
    "no_upstream": "#bab0ac",
}
END_NODES = {
    "completed": ("completed", "#2a9d8f"),
    "abandoned": ("abandoned", "#d64541"),
    "in_progress": ("in progress", "#bab0ac"),
}
LABEL_HALO = "1px 1px 2px #fff, -1px -1px 2px #fff, 1px -1px 2px #fff, -1px 1px 2px #fff"

COUNTS_SQL = """SELECT
  (SELECT count() FROM touchpoint_events FINAL WHERE scenario = {scenario:String}) AS events,
  (SELECT count() FROM bad_events FINAL WHERE scenario = {scenario:String}) AS quarantined,
  (SELECT count() FROM journey_instances FINAL WHERE scenario = {scenario:String}) AS instances,
  (SELECT uniqExact(customer_id) FROM journey_instances FINAL WHERE scenario = {scenario:String})
    AS customers,
  (SELECT count() FROM support_attribution FINAL WHERE scenario = {scenario:String}) AS support_contacts,
  (SELECT min(occurred_at) FROM touchpoint_events FINAL WHERE scenario = {scenario:String}) AS first_event,
  (SELECT max(occurred_at) FROM touchpoint_events FINAL WHERE scenario = {scenario:String}) AS last_event"""

SANKEY_SQL = """SELECT i AS position, path[i] AS source,
       multiIf(i = length(path), concat('end:', status), i = {positions:UInt32}, concat('more:', status),
               path[i + 1]) AS target,
       count() AS instances
FROM journey_instances FINAL
ARRAY JOIN arrayEnumerate(arraySlice(path, 1, {positions:UInt32})) AS i
WHERE scenario = {scenario:String} AND persona = {persona:String}
GROUP BY position, source, target"""

FRICTION_SQL = """SELECT touchpoint, owner_team, toHour(occurred_at) AS hour,
       sum(weight) AS weight, count() AS signals
FROM friction_signals FINAL WHERE scenario = {scenario:String}
GROUP BY touchpoint, owner_team, hour"""

DEVIATIONS_SQL = """SELECT persona, step, kind, count() AS deviations, max(cost) AS max_cost
FROM deviations FINAL WHERE scenario = {scenario:String}
GROUP BY persona, step, kind"""

SUPPORT_SQL = """SELECT ifNull(upstream_touchpoint, '(none)') AS upstream,
       ifNull(upstream_owner_team, '') AS team, rule, count() AS contacts
FROM support_attribution FINAL WHERE scenario = {scenario:String}
GROUP BY upstream, team, rule"""

DELIGHT_TOUCHPOINTS_SQL = """SELECT touchpoint, owner_team, survey_kind, count() AS positive
FROM delight_signals FINAL WHERE scenario = {scenario:String}
GROUP BY touchpoint, owner_team, survey_kind"""

DELIGHT_ASSOCIATES_SQL = """SELECT d.employee_id AS employee, d.positive AS positive,
       d.touchpoints AS touchpoints, e.interactions AS interactions
FROM (
  SELECT employee_id, count() AS positive, arrayStringConcat(arraySort(groupUniqArray(touchpoint)), ', ')
         AS touchpoints
  FROM delight_signals FINAL WHERE scenario = {scenario:String} AND employee_id IS NOT NULL
  GROUP BY employee_id
) AS d
LEFT JOIN (
  SELECT assumeNotNull(employee_id) AS employee_id, count() AS interactions
  FROM touchpoint_events FINAL WHERE scenario = {scenario:String} AND employee_id IS NOT NULL
    AND survey_kind IS NULL
  GROUP BY employee_id
) AS e ON d.employee_id = e.employee_id
ORDER BY positive DESC, employee LIMIT {limit:UInt32}"""

QUARANTINE_SQL = """SELECT reason, count() AS lines,
       argMin(tuple(ifNull(field, ''), detail, source, position), tuple(source, position)) AS example
FROM bad_events FINAL WHERE scenario = {scenario:String}
GROUP BY reason ORDER BY lines DESC, reason"""


def _rows(
    store: ClickHouseProjectionStore, sql: str, scenario: str, **params: object
) -> list[tuple[Any, ...]]:
    _, rows = store.query(sql, {"scenario": scenario, **params})
    return rows


def _amount(value: float) -> str:
    """A weight for a label: whole above 10, one decimal below (negative-survey shares are fractions)."""
    return f"{value:,.0f}" if value >= 10 else f"{value:.1f}"


def _label(touchpoint: str, team: str) -> str:
    """A chart label 'touchpoint · team', escaped (plotly renders labels as HTML-like text)."""
    return esc(f"{touchpoint} · {team}" if team else touchpoint)


# ---- header -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Counts:
    """Headline counts of one scenario."""

    events: int
    quarantined: int
    instances: int
    customers: int
    support_contacts: int
    first_event: datetime | None
    last_event: datetime | None


def scenario_counts(store: ClickHouseProjectionStore, scenario: str) -> Counts:
    """Events kept, lines quarantined, journey instances, customers, support contacts, time span."""
    events, bad, instances, customers, support, first, last = _rows(store, COUNTS_SQL, scenario)[0]
    empty = events == 0
    return Counts(
        events, bad, instances, customers, support, None if empty else first, None if empty else last
    )


def header_html(store: ClickHouseProjectionStore, counts: Counts, scenario: str) -> str:
    """Title, headline counts and the conformance-per-persona table."""
    span = (
        f"events from {counts.first_event:%Y-%m-%d %H:%M} to {counts.last_event:%Y-%m-%d %H:%M} UTC"
        if counts.first_event is not None and counts.last_event is not None
        else "no events"
    )
    cards = [
        (counts.events, "events accepted (distinct)"),
        (counts.quarantined, "lines quarantined"),
        (counts.instances, "journey instances"),
        (counts.customers, "customers"),
        (counts.support_contacts, "support contacts"),
    ]
    card_html = "".join(
        f"<div class='card'><b>{value:,}</b><span>{esc(text)}</span></div>" for value, text in cards
    )
    conformance = next(section for section in summarise(store, scenario) if section.key == "conformance")
    generated = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return (
        f"<h1>touchpath journey report — scenario “{esc(scenario)}”</h1>"
        f"<p class='meta'>{esc(span)} · store: {esc(store.description)} · generated {esc(generated)}</p>"
        f"<div class='cards'>{card_html}</div>"
        "<h2>Conformance per persona</h2>"
        "<p class='note'>An instance is conformant when its path aligns with the ideal journey at zero cost; "
        "fitness is 1 − cost / (path length + shortest ideal length).</p>"
        + html_table(conformance.columns, conformance.rows)
    )


# ---- actual vs ideal path (Sankey) --------------------------------------------------------------


def _step_html(step: Step) -> str:
    targets = " | ".join([step.primary, *sorted(step.touchpoints - {step.primary})])
    notes = [
        text
        for flag, text in (
            (step.optional, "optional"),
            (step.repeatable, "repeatable"),
            (step.goal, "goal"),
            (step.within_ms is not None, f"within {format_duration(step.within_ms or 0)}"),
        )
        if flag
    ]
    classes = " ".join(name for name, flag in (("optional", step.optional), ("goal", step.goal)) if flag)
    suffix = f" <i>({esc(', '.join(notes))})</i>" if notes else ""
    return f"<li class='{classes}'>{step.index}. <b>{esc(step.name)}</b>: {esc(targets)}{suffix}</li>"


def ideal_sequence_html(journey: Journey) -> str:
    """The ideal step sequence of one journey as a row of chips."""
    steps = "".join(_step_html(step) for step in journey.steps)
    return (
        f"<p class='note'>Ideal journey <b>{esc(journey.key)}</b> (dashed = optional, bold = goal):</p>"
        f"<ol class='ideal'>{steps}</ol>"
    )


@dataclass(slots=True)
class _SankeyData:
    """Nodes and links of a path Sankey, built up link by link."""

    labels: list[str] = field(default_factory=list)
    colours: list[str] = field(default_factory=list)
    index: dict[str, int] = field(default_factory=dict)
    touchpoint_of: dict[int, str] = field(default_factory=dict)  # nodes that stand for one touchpoint
    inside: dict[int, dict[str, int]] = field(default_factory=dict)  # what an 'other' node holds
    links: dict[tuple[int, int], int] = field(default_factory=lambda: defaultdict(int))

    def node(self, key: str, label: str, colour: str) -> int:
        """The node's index, created on first use."""
        if key not in self.index:
            self.index[key] = len(self.labels)
            self.labels.append(label)
            self.colours.append(colour)
        return self.index[key]

    def link(self, source: int, target: int, value: int) -> None:
        """Add instances to the flow from source to target."""
        self.links[(source, target)] += value

    def into(self, index: int) -> int:
        """Instances flowing into a node."""
        return sum(value for (_, target), value in self.links.items() if target == index)


def node_label(position: int, touchpoint: str) -> str:
    """A Sankey node label on two short lines, '5. email' and 'order_confirmation': one line of
    'position. touchpoint' is wider than a column and was cut by the next column's nodes."""
    channel, dot, name = touchpoint.partition(".")
    if not dot:
        return esc(f"{position}. {touchpoint}")
    return f"{esc(f'{position}. {channel}')}<br>{esc(name)}"


class _SankeyBuilder:
    """Turns (position, touchpoint, next touchpoint or end, instances) rows into Sankey nodes and links."""

    def __init__(self, model: JourneyModel, journeys: Sequence[Journey], positions: int) -> None:
        self.model = model
        self.positions = positions
        self.known = {tp for journey in journeys for step in journey.steps for tp in step.touchpoints}
        self.colours = _channel_colours(model)
        self.data = _SankeyData()

    def touchpoint(self, position: int, touchpoint: str, instances: int) -> int:
        """The node of a journey touchpoint at a position, or the position's 'other' node."""
        data = self.data
        if touchpoint in self.known:
            colour = self.colours.get(self.model.channel_of.get(touchpoint, ""), "#888")
            index = data.node(f"{position}:{touchpoint}", node_label(position, touchpoint), colour)
            data.touchpoint_of[index] = touchpoint
            return index
        index = data.node(f"{position}:*", f"{position}. other touchpoints", "#9a9a9a")
        held = data.inside.setdefault(index, defaultdict(int))
        held[touchpoint] += instances
        return index

    def end(self, status: str) -> int:
        """The end node of a status."""
        label, colour = END_NODES.get(status, (status, "#888"))
        return self.data.node(f"end:{status}", label, colour)

    def add(self, position: int, source: str, target: str, instances: int) -> None:
        """One aggregated transition row of SANKEY_SQL."""
        data = self.data
        start = self.touchpoint(position, source, instances)
        if target.startswith("end:"):
            data.link(start, self.end(target[4:]), instances)
        elif target.startswith("more:"):
            later = data.node("more", f"{self.positions + 1}+. later touchpoints", "#9a9a9a")
            data.link(start, later, instances)
            data.link(later, self.end(target[5:]), instances)
        else:
            data.link(start, self.touchpoint(position + 1, target, 0), instances)

    def finish(self) -> _SankeyData:
        """The finished nodes and links, with instance counts in the end nodes' labels."""
        data = self.data
        for status in END_NODES:
            if (index := data.index.get(f"end:{status}")) is not None:
                data.labels[index] = f"{data.labels[index]} ({data.into(index):,})"
        return data


def _channel_colours(model: JourneyModel) -> dict[str, str]:
    channels = list(dict.fromkeys([*model.registry.channels, *sorted(set(model.channel_of.values()))]))
    return {channel: CHANNEL_COLOURS[i % len(CHANNEL_COLOURS)] for i, channel in enumerate(channels)}


def _node_hover(data: _SankeyData) -> list[str]:
    """Per node: what an 'other' node holds (top 8), else nothing more."""
    hover = []
    for index in range(len(data.labels)):
        held = sorted(data.inside.get(index, {}).items(), key=lambda item: (-item[1], item[0]))
        hover.append("<br>".join(esc(f"{tp}: {n:,}") for tp, n in held[:8] if n > 0))
    return hover


def _link_colour(
    data: _SankeyData, pair: tuple[int, int], ideal: set[tuple[str, str]], finals: set[str]
) -> str:
    source, target = pair
    tp_of = data.touchpoint_of
    if target == data.index.get("end:abandoned"):
        return ABANDON_COLOUR
    if source in tp_of and target == data.index.get("end:completed"):
        return IDEAL_COLOUR if tp_of[source] in finals else OTHER_COLOUR
    if source in tp_of and target in tp_of and (tp_of[source], tp_of[target]) in ideal:
        return IDEAL_COLOUR
    return OTHER_COLOUR


def sankey_figure(
    store: ClickHouseProjectionStore,
    model: JourneyModel,
    persona: str,
    scenario: str = "live",
    positions: int = SANKEY_POSITIONS,
) -> go.Figure:
    """Actual paths of a persona's journey instances, position by position, ideal transitions in green.

    Touchpoints outside the persona's journeys (support contacts included) share one 'other' node per
    position; its hover lists them.
    """
    rows = _rows(store, SANKEY_SQL, scenario, persona=persona, positions=positions)
    title = f"Actual paths of {esc(persona)} — first {positions} touchpoints of each journey instance"
    if not rows:
        return empty_figure(f"No journey instances for {persona}", title)
    journeys = model.by_persona.get(persona, ())
    builder = _SankeyBuilder(model, journeys, positions)
    for position, source, target, instances in sorted(rows):
        builder.add(position, source, target, instances)
    data = builder.finish()
    ideal = set().union(*(ideal_transitions(journey) for journey in journeys))
    finals = set().union(*(ideal_ends(journey) for journey in journeys))
    pairs = list(data.links)
    figure = go.Figure(
        go.Sankey(
            arrangement="snap",
            node={
                "label": data.labels,
                "color": data.colours,
                "customdata": _node_hover(data),
                "pad": 16,  # room between small nodes for their two-line labels
                "thickness": 14,
                "line": {"width": 0},
                "hovertemplate": "%{label}: %{value:,} instances<br>%{customdata}<extra></extra>",
            },
            # A white halo keeps labels readable where they cross the flows.
            textfont={"size": 11, "color": "#1a1a1a", "shadow": LABEL_HALO},
            link={
                "source": [source for source, _ in pairs],
                "target": [target for _, target in pairs],
                "value": [data.links[pair] for pair in pairs],
                "color": [_link_colour(data, pair, ideal, finals) for pair in pairs],
                "hovertemplate": "%{source.label} → %{target.label}<br>%{value:,} instances<extra></extra>",
            },
        )
    )
    figure.update_layout(
        title=title,
        height=640,
        font={"size": 11},
        margin={"l": 10, "r": 10, "t": 50, "b": 34},  # the lowest nodes' second label line
    )
    return figure


def sankey_legend_html(model: JourneyModel) -> str:
    """Colour key of the Sankey: channels (nodes) and link kinds."""
    swatches = [(colour, f"{channel} channel") for channel, colour in _channel_colours(model).items()]
    swatches += [
        (IDEAL_COLOUR, "transition of the ideal journey"),
        (OTHER_COLOUR, "off the ideal journey"),
        (ABANDON_COLOUR, "into abandonment"),
    ]
    items = "".join(
        f"<span><i class='swatch' style='background:{esc(c)}'></i>{esc(t)}</span>" for c, t in swatches
    )
    return f"<p class='legend'>{items}</p>"


# ---- friction heatmap ----------------------------------------------------------------------------


def friction_heatmap_figure(
    store: ClickHouseProjectionStore, model: JourneyModel, scenario: str = "live"
) -> go.Figure:
    """Friction weight per touchpoint (with owning team) and hour of day (UTC)."""
    title = "Friction by touchpoint and hour of day (UTC), weighted signals"
    rows = _rows(store, FRICTION_SQL, scenario)
    if not rows:
        return empty_figure("No friction signals", title)
    weight: dict[str, list[float]] = defaultdict(lambda: [0.0] * 24)
    signals: dict[str, list[int]] = defaultdict(lambda: [0] * 24)
    for touchpoint, team, hour, total, count in rows:
        label = _label(touchpoint, team or model.owner_of.get(touchpoint, ""))
        weight[label][hour] += total
        signals[label][hour] += count
    labels = sorted(weight, key=lambda label: (sum(weight[label]), label))  # heaviest at the top
    figure = go.Figure(
        go.Heatmap(
            z=[[round(value, 2) for value in weight[label]] for label in labels],
            x=[f"{hour:02d}" for hour in range(24)],
            y=[f"{label} ({_amount(sum(weight[label]))})" for label in labels],
            customdata=[signals[label] for label in labels],
            colorscale="YlOrRd",
            colorbar={"title": {"text": "weight"}},
            xgap=1,
            ygap=1,
            hovertemplate="%{y}<br>%{x}:00 UTC<br>weight %{z}<br>%{customdata} signals<extra></extra>",
        )
    )
    figure.update_layout(
        title=title,
        height=140 + 26 * len(labels),
        xaxis={"title": "hour of day (UTC)", "type": "category"},
        yaxis={"automargin": True},
        margin={"l": 10, "r": 10, "t": 50, "b": 50},
        template="plotly_white",
    )
    return figure


# ---- deviations ---------------------------------------------------------------------------------


def _step_order(model: JourneyModel, persona: str) -> list[str]:
    return list(
        dict.fromkeys(step.name for journey in model.by_persona.get(persona, ()) for step in journey.steps)
    )


def deviation_figure(
    store: ClickHouseProjectionStore, model: JourneyModel, scenario: str = "live"
) -> go.Figure:
    """Deviations per persona and journey step, stacked by kind."""
    title = "Deviations per journey step, by kind"
    rows = _rows(store, DEVIATIONS_SQL, scenario)
    if not rows:
        return empty_figure("No deviations", title)
    personas = [p for p in model.personas if any(row[0] == p for row in rows)]
    personas += sorted({row[0] for row in rows} - set(personas))
    costly = {row[2] for row in rows if row[4] > 0}
    kinds = sorted({row[2] for row in rows}, key=lambda kind: (kind not in costly, kind))
    rows = [(persona, step or NO_STEP, *rest) for persona, step, *rest in rows]
    counts = {(row[0], row[1], row[2]): row[3] for row in rows}
    figure = make_subplots(
        rows=1, cols=len(personas), subplot_titles=[esc(p) for p in personas], shared_yaxes=True
    )
    for column, persona in enumerate(personas, start=1):
        present = {row[1] for row in rows if row[0] == persona}
        steps = [step for step in _step_order(model, persona) if step in present] + sorted(
            present - set(_step_order(model, persona))
        )
        for i, kind in enumerate(kinds):
            name = esc(kind if kind in costly else f"{kind} (no cost)")
            figure.add_trace(
                go.Bar(
                    x=[esc(step) for step in steps],
                    y=[counts.get((persona, step, kind), 0) for step in steps],
                    name=name,
                    legendgroup=kind,
                    showlegend=column == 1,
                    marker_color=KIND_COLOURS.get(kind, CHANNEL_COLOURS[i % len(CHANNEL_COLOURS)]),
                    hovertemplate=f"{esc(persona)} · %{{x}}<br>{esc(kind)}: %{{y:,}}<extra></extra>",
                ),
                row=1,
                col=column,
            )
    figure.update_layout(
        title=title,
        barmode="stack",
        height=460,
        template="plotly_white",
        legend={"orientation": "h", "y": -0.22},
        margin={"l": 50, "r": 10, "t": 70, "b": 40},
    )
    figure.update_yaxes(title_text="deviations", row=1, col=1)
    return figure


# ---- support-contact drivers --------------------------------------------------------------------


def support_drivers_figure(
    store: ClickHouseProjectionStore, model: JourneyModel, scenario: str = "live"
) -> go.Figure:
    """Support contacts per upstream touchpoint that most likely caused them, coloured by rule."""
    title = "Support-contact drivers: upstream touchpoint, by attribution rule"
    rows = _rows(store, SUPPORT_SQL, scenario)
    if not rows:
        return empty_figure("No support contacts", title)
    totals: dict[str, int] = defaultdict(int)
    counts: dict[tuple[str, str], int] = {}
    for upstream, team, rule, contacts in rows:
        label = _label(upstream, team or model.owner_of.get(upstream, ""))
        totals[label] += contacts
        counts[(label, rule)] = counts.get((label, rule), 0) + contacts
    labels = sorted(totals, key=lambda label: (totals[label], label))
    rules = [rule for rule in RULE_COLOURS if any(key[1] == rule for key in counts)]
    rules += sorted({key[1] for key in counts} - set(rules))
    figure = go.Figure(
        [
            go.Bar(
                y=labels,
                x=[counts.get((label, rule), 0) for label in labels],
                name=esc(rule),
                orientation="h",
                marker_color=RULE_COLOURS.get(rule, "#888"),
                hovertemplate=f"%{{y}}<br>{esc(rule)}: %{{x:,}} contacts<extra></extra>",
            )
            for rule in rules
        ]
    )
    return bar_rows_layout(figure, title, len(labels), "support contacts")


# ---- delight ------------------------------------------------------------------------------------


def delight_figure(
    store: ClickHouseProjectionStore, model: JourneyModel, scenario: str = "live"
) -> go.Figure:
    """Positive surveys per touchpoint (by survey kind) and the top associates."""
    title = "Delight: positive surveys by touchpoint and by associate"
    touchpoints = _rows(store, DELIGHT_TOUCHPOINTS_SQL, scenario)
    if not touchpoints:
        return empty_figure("No positive surveys", title)
    associates = _rows(store, DELIGHT_ASSOCIATES_SQL, scenario, limit=TOP_ASSOCIATES)
    figure = make_subplots(
        rows=1,
        cols=2,
        column_widths=[0.55, 0.45],
        horizontal_spacing=0.2,
        subplot_titles=["touchpoint just before the survey", f"top {TOP_ASSOCIATES} associates"],
    )
    totals: dict[str, int] = defaultdict(int)
    for touchpoint, team, _, positive in touchpoints:
        totals[_label(touchpoint, team or model.owner_of.get(touchpoint, ""))] += positive
    labels = sorted(totals, key=lambda label: (totals[label], label))
    for kind in sorted({row[2] for row in touchpoints}):
        per_label = {
            _label(tp, team or model.owner_of.get(tp, "")): n for tp, team, k, n in touchpoints if k == kind
        }
        figure.add_trace(
            go.Bar(
                y=labels,
                x=[per_label.get(label, 0) for label in labels],
                name=esc(f"{kind} surveys"),
                orientation="h",
                text=[per_label.get(label) for label in labels],
                textposition="auto",
                hovertemplate=f"%{{y}}<br>{esc(kind)}: %{{x:,}} positive<extra></extra>",
            ),
            row=1,
            col=1,
        )
    if associates:
        ordered = list(reversed(associates))
        figure.add_trace(
            go.Bar(
                y=[esc(row[0]) for row in ordered],
                x=[row[1] for row in ordered],
                orientation="h",
                name="associate",
                showlegend=False,
                marker_color="#54a24b",
                text=[_per_hundred(row[1], row[3]) for row in ordered],
                textposition="inside",
                insidetextanchor="end",
                textfont={"color": "white"},
                customdata=[[esc(row[2]), row[3] or 0] for row in ordered],
                hovertemplate="%{y} (%{customdata[0]})<br>%{x:,} positive surveys"
                "<br>%{customdata[1]:,} interactions<extra></extra>",
            ),
            row=1,
            col=2,
        )
    figure.update_layout(
        title=title,
        barmode="stack",
        height=max(360, 160 + 24 * max(len(labels), len(associates))),
        template="plotly_white",
        legend={"orientation": "h", "y": -0.12},
        margin={"l": 10, "r": 30, "t": 80, "b": 40},
    )
    figure.update_yaxes(automargin=True)
    figure.update_xaxes(title_text="positive surveys")
    return figure


def _per_hundred(positive: int, interactions: int | None) -> str:
    return (
        f"{positive} · {100 * positive / interactions:.0f} per 100 interactions"
        if interactions
        else str(positive)
    )


# ---- quarantine ---------------------------------------------------------------------------------


def quarantine_html(store: ClickHouseProjectionStore, scenario: str = "live") -> str:
    """Quarantined input lines by reason, with the first example (field, detail, where it was)."""
    rows = _rows(store, QUARANTINE_SQL, scenario)
    if not rows:
        return "<p class='note'>No input line was quarantined.</p>"
    table = [
        (reason, lines, example[0], example[1], f"{example[2]}:{example[3]}")
        for reason, lines, example in rows
    ]
    return html_table(["reason", "lines", "field", "example detail", "first at (source:line)"], table)


# ---- the page -----------------------------------------------------------------------------------


def persona_section(
    store: ClickHouseProjectionStore, model: JourneyModel, persona: str, scenario: str, embed: FigureEmbedder
) -> str:
    """One persona: its description, ideal step sequence(s) and the path Sankey."""
    described = {p.id: p.description for p in model.document.personas}
    ideals = "".join(ideal_sequence_html(journey) for journey in model.by_persona.get(persona, ()))
    return (
        f"<h3>{esc(persona)}</h3><p class='note'>{esc(described.get(persona, ''))}</p>"
        + ideals
        + embed(sankey_figure(store, model, persona, scenario))
    )


def report_html(store: ClickHouseProjectionStore, model: JourneyModel, scenario: str = "live") -> str:
    """The whole report page as one self-contained HTML string."""
    embed = FigureEmbedder()
    counts = scenario_counts(store, scenario)
    parts = [
        header_html(store, counts, scenario),
        "<h2>Actual vs ideal paths per persona</h2>",
        "<p class='note'>Each column is a position in the journey instance's path (support contacts "
        "included); links show how many instances went from one touchpoint to the next. Green links are "
        "transitions the ideal journey allows, grey ones are off it, red ones end in abandonment.</p>",
        sankey_legend_html(model),
        *(persona_section(store, model, persona, scenario, embed) for persona in model.personas),
        "<h2>Friction</h2>",
        "<p class='note'>Sum of friction-signal weights (failure, repeat, stall, escalation, negative survey "
        "share, abandonment) by the touchpoint they point at and the hour they happened; y labels name the "
        "owning team.</p>",
        embed(friction_heatmap_figure(store, model, scenario)),
        "<h2>Friction incidents</h2>",
        "<p class='note'>Friction spikes the alert detector opened and resolved, and how each alert reached "
        "the owning team's webhook.</p>",
        alerts_html(store, scenario, esc),
        "<h2>Deviation kinds</h2>",
        "<p class='note'>Deviations from the ideal journey per step; kinds marked “no cost” are "
        "informational and do not lower conformance. “abandoned” is counted at the step that was next.</p>",
        embed(deviation_figure(store, model, scenario)),
        "<h2>Support-contact drivers</h2>",
        "<p class='note'>Each support call or chat is attributed to the most recent failing or deviating "
        "touchpoint before it, else to the last touchpoint.</p>",
        embed(support_drivers_figure(store, model, scenario)),
        "<h2>Delight</h2>",
        "<p class='note'>Positive surveys (CSAT ≥ 4, NPS ≥ 9, CES ≤ 2), credited to the touchpoint and "
        "associate just before the survey.</p>",
        embed(delight_figure(store, model, scenario)),
        "<h2>Surveys against conformance</h2>",
        survey_conformance_html(store, scenario),
        "<h2>Quarantined input</h2>",
        quarantine_html(store, scenario),
    ]
    return page_html(f"touchpath report — {scenario}", parts)


def write_report(
    store: ClickHouseProjectionStore, model: JourneyModel, path: Path, scenario: str = "live"
) -> None:
    """Write the scenario's report as one offline HTML file (plotly.js embedded once, no CDN)."""
    write_page(path, report_html(store, model, scenario))
