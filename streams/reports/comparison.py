"""The offline HTML report of a scenario comparison: paired charts, both designs' flows, changed customers."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from projections.diff.journeys import ChangeKind, JourneyDiff
from projections.diff.scenarios import (
    Comparison,
    Conformance,
    ConformanceChange,
    CustomerChange,
    FrictionChange,
    InstanceView,
)
from projections.ideal_path import ideal_transitions
from projections.journeys import JourneyModel
from streams.reports.html import (
    FigureEmbedder,
    bar_rows_layout,
    empty_figure,
    esc,
    html_table,
    page_html,
    write_page,
)
from streams.reports.scenario import (
    KIND_COLOURS,
    NO_STEP,
    ideal_sequence_html,
    sankey_figure,
    sankey_legend_html,
)
from streams.store.clickhouse import ClickHouseProjectionStore

BASE_COLOUR = "#9aa5b1"
OTHER_COLOUR = "#2a6fdb"
BETTER = "#2a9d8f"
WORSE = "#d64541"
TOP_CHANGES = 20
STATUSES = ("completed", "in_progress", "abandoned")

EXTRA_CSS = """
.verdict { font-size: 17px; padding: 10px 16px; border-radius: 8px; margin: 12px 0; }
.verdict.same { background: #e3f2f0; border: 1px solid #9fd3cc; }
.verdict.differs { background: #fff4e0; border: 1px solid #f0c36d; }
.card small { display: block; color: #555; font-size: 12px; }
.card .up { color: #2a9d8f; } .card .down { color: #d64541; }
.pair { display: grid; grid-template-columns: 1fr 1fr; gap: 10px; }
.pair > div { min-width: 0; }
ul.changes { margin: 4px 0 10px; padding-left: 20px; font-size: 14px; }
ul.changes li.warn { color: #b03a2e; font-weight: 600; }
table.sample td.path { font-family: ui-monospace, monospace; font-size: 12px; }
td.side { color: #555; white-space: nowrap; }
tr.changed td:not(:first-child) { background: #fff4e0; }
p.note.unchanged { color: #666; font-style: italic; }
details.flows > summary { cursor: pointer; font-size: 15px; margin: 10px 0; color: #2a6fdb; }
"""


# ---- figures --------------------------------------------------------------------------------------


def _side(change: ConformanceChange, which: int) -> Conformance:
    return change.base if which == 0 else change.other


def conformance_figure(comparison: Comparison) -> go.Figure:
    """Conformance rate and mean fitness per persona's journey, base and scenario side by side."""
    title = "Conformance per persona and journey"
    rows = comparison.conformance
    if not rows:
        return empty_figure("No journey instances in either scenario", title, height=220)
    labels = [esc(f"{c.persona} · {c.journey}") for c in rows]
    figure = make_subplots(
        rows=1,
        cols=2,
        subplot_titles=["conformant instances (%, axis from 0)", "mean fitness (axis from 0)"],
        horizontal_spacing=0.08,
    )
    for which, (name, colour) in enumerate(
        ((comparison.base, BASE_COLOUR), (comparison.other, OTHER_COLOUR))
    ):
        rates = [round(100 * _side(c, which).rate, 1) for c in rows]
        fitness = [round(_side(c, which).mean_fitness, 3) for c in rows]
        fitness_text = [f"{value:.3f}" for value in fitness]
        versions = [",".join(map(str, _side(c, which).versions)) or "-" for c in rows]
        figure.add_trace(
            go.Bar(x=labels, y=rates, name=esc(name), marker_color=colour, text=[f"{r}%" for r in rates],
                   textposition="outside", customdata=versions, legendgroup=name,
                   hovertemplate="%{x}<br>version %{customdata}<br>%{y}% conformant<extra>" + esc(name)
                   + "</extra>"),
            row=1, col=1,
        )  # fmt: skip
        figure.add_trace(
            go.Bar(x=labels, y=fitness, name=esc(name), marker_color=colour, text=fitness_text,
                   textposition="outside", showlegend=False, legendgroup=name,
                   hovertemplate="%{x}<br>mean fitness %{y}<extra>" + esc(name) + "</extra>"),
            row=1, col=2,
        )  # fmt: skip
    # Both axes start at 0: a change of 0.001 in fitness must not look like a landslide; the labels
    # carry the exact values (and are drawn above the plot area when they need to).
    figure.update_traces(cliponaxis=False)
    figure.update_yaxes(range=[0, 112], tickvals=[0, 20, 40, 60, 80, 100], row=1, col=1)
    figure.update_yaxes(range=[0, 1.12], tickvals=[0, 0.2, 0.4, 0.6, 0.8, 1.0], row=1, col=2)
    figure.update_layout(
        title=title,
        barmode="group",
        height=420,
        template="plotly_white",
        legend={"orientation": "h", "y": 1.12, "x": 1, "xanchor": "right"},
        margin={"l": 40, "r": 10, "t": 90, "b": 60},
    )
    return figure


def _step_order(models: tuple[JourneyModel, JourneyModel], persona: str) -> list[str]:
    names: list[str] = []
    for model in (models[1], models[0]):  # the scenario's order first, then steps it removed
        for journey in model.by_persona.get(persona, ()):
            names.extend(step.name for step in journey.steps if step.name not in names)
    return names


def deviation_steps_figure(comparison: Comparison, models: tuple[JourneyModel, JourneyModel]) -> go.Figure:
    """Per persona and step: a pair of bars (base, scenario), each stacked by deviation kind."""
    title = "Deviations per step: left bar base, right bar scenario, stacked by kind"
    deviations = [d for d in comparison.deviations if d.base or d.other]
    if not deviations:
        return empty_figure("No deviations in either scenario", title, height=220)
    # Lead with what changed: personas whose deviation counts are the same in both are left out
    # (the page names them).
    changed = {d.persona for d in deviations if d.delta}
    if not changed:
        return empty_figure("No step's deviation counts change", title, height=220)
    deviations = [d for d in deviations if d.persona in changed]
    personas = [p for p in models[1].personas if p in changed]
    personas += sorted(changed - set(personas))
    kinds = [k for k in KIND_COLOURS if any(d.kind == k for d in deviations)]
    kinds += sorted({d.kind for d in deviations} - set(kinds))
    counts: dict[tuple[str, str, str, str], int] = defaultdict(int)  # (persona, step, side, kind)
    for d in deviations:
        step = d.step or NO_STEP
        counts[(d.persona, step, "base", d.kind)] += d.base
        counts[(d.persona, step, "other", d.kind)] += d.other
    figure = make_subplots(
        rows=len(personas), cols=1, subplot_titles=[esc(p) for p in personas], vertical_spacing=0.12
    )
    sides = (("base", comparison.base), ("other", comparison.other))
    for row, persona in enumerate(personas, start=1):
        present = {key[1] for key, value in counts.items() if key[0] == persona and value}
        steps = [s for s in _step_order(models, persona) if s in present] + sorted(
            present - set(_step_order(models, persona))
        )
        x = [[esc(step) for step in steps for _ in sides], [esc(name) for _ in steps for _, name in sides]]
        for kind in kinds:
            figure.add_trace(
                go.Bar(
                    x=x,
                    y=[counts.get((persona, step, side, kind), 0) for step in steps for side, _ in sides],
                    name=esc(kind),
                    legendgroup=kind,
                    showlegend=row == 1,
                    marker_color=KIND_COLOURS.get(kind, "#888"),
                    hovertemplate="%{x}<br>" + esc(kind) + ": %{y:,}<extra></extra>",
                ),
                row=row,
                col=1,
            )
    figure.update_layout(
        title=title,
        barmode="stack",
        height=250 + 300 * len(personas),
        template="plotly_white",
        # Right of the plots: below them it covered the step names of the last persona's axis, above
        # them the first persona's title.
        legend={"orientation": "v", "y": 1.0, "yanchor": "top", "x": 1.01, "xanchor": "left"},
        margin={"l": 50, "r": 10, "t": 80, "b": 60},
    )
    figure.update_yaxes(title_text="deviations")
    return figure


def deviation_delta_figure(comparison: Comparison) -> go.Figure:
    """The largest changes in deviations (scenario minus base) by kind, step and touchpoint."""
    title = f"Deviations that change most ({esc(comparison.other)} minus {esc(comparison.base)})"
    moved = [d for d in comparison.deviations if d.delta][:TOP_CHANGES]
    if not moved:
        return empty_figure("No deviation count changes", title, height=220)
    moved.reverse()  # largest at the top
    labels = [esc(f"{d.persona} · {d.kind} · {d.step or NO_STEP} · {d.touchpoint}") for d in moved]
    figure = go.Figure(
        go.Bar(
            y=labels,
            x=[d.delta for d in moved],
            orientation="h",
            marker_color=[WORSE if d.delta > 0 else BETTER for d in moved],
            text=[f"{d.delta:+,} ({d.status})" for d in moved],
            textposition="outside",
            cliponaxis=False,
            customdata=[[d.base, d.other] for d in moved],
            hovertemplate="%{y}<br>%{customdata[0]:,} → %{customdata[1]:,}<extra></extra>",
        )
    )
    figure.update_layout(
        title=title,
        height=140 + 28 * len(moved),
        template="plotly_white",
        xaxis={
            "title": "change in deviations (red: more, green: fewer)",
            "zeroline": True,
            "range": _padded_range([d.delta for d in moved]),
        },
        yaxis={"automargin": True},
        margin={"l": 10, "r": 40, "t": 50, "b": 50},
    )
    return figure


def _same_personas(comparison: Comparison, models: tuple[JourneyModel, JourneyModel]) -> list[str]:
    """Personas whose deviation counts are the same in both scenarios (left out of the step chart)."""
    changed = {d.persona for d in comparison.deviations if d.delta}
    seen = {d.persona for d in comparison.deviations if d.base or d.other}
    return [p for p in dict.fromkeys([*models[1].personas, *sorted(seen)]) if p in seen and p not in changed]


def _padded_range(values: list[int]) -> list[float]:
    """An x range from the smallest to the largest value (and 0), with room beyond both ends for the
    labels drawn outside the bars (a label like '+1 (more)' was cut at the edge)."""
    low, high = min(0, *values), max(0, *values)
    pad = max(1.0, 0.45 * (high - low))
    return [low - (pad if low < 0 else 0.1 * pad), high + (pad if high > 0 else 0.1 * pad)]


def _friction_changed(change: FrictionChange) -> bool:
    return (round(change.base_weight, 1), change.base_signals) != (
        round(change.other_weight, 1),
        change.other_signals,
    )


def friction_figure(comparison: Comparison) -> go.Figure:
    """Friction weight per touchpoint whose friction changed (with owning team), base and scenario side by
    side; unchanged touchpoints are left out (friction_html names how many)."""
    title = "Friction by touchpoint whose friction changes (weighted signals)"
    rows = [f for f in comparison.friction if _friction_changed(f)]
    if not rows:
        return empty_figure("Friction is the same at every touchpoint", title, height=160)
    rows = list(reversed(rows))  # heaviest at the top
    labels = [esc(f"{f.touchpoint} · {f.owner_team}") for f in rows]
    # Horizontal groups stack their first trace lowest: add the scenario first so base sits on top.
    figure = go.Figure(
        [
            go.Bar(y=labels, x=[round(f.other_weight, 1) for f in rows], name=esc(comparison.other),
                   orientation="h", marker_color=OTHER_COLOUR, legendrank=2,
                   customdata=[f.other_signals for f in rows],
                   hovertemplate="%{y}<br>weight %{x}<br>%{customdata:,} signals<extra></extra>"),
            go.Bar(y=labels, x=[round(f.base_weight, 1) for f in rows], name=esc(comparison.base),
                   orientation="h", marker_color=BASE_COLOUR, legendrank=1,
                   customdata=[f.base_signals for f in rows],
                   hovertemplate="%{y}<br>weight %{x}<br>%{customdata:,} signals<extra></extra>"),
        ]
    )  # fmt: skip
    return bar_rows_layout(
        figure, title, len(rows), "friction weight", barmode="group", row_height=34, top=70
    )


def instance_changes_figure(comparison: Comparison) -> go.Figure:
    """Where instances went (status in base → status in scenario) and how their cost moved."""
    title = "Journey instances in both scenarios: status transitions and cost changes"
    changes = comparison.instances
    if not changes.transitions:
        return empty_figure("No journey instance appears in both scenarios", title, height=220)
    figure = make_subplots(
        rows=1,
        cols=2,
        column_widths=[0.45, 0.55],
        horizontal_spacing=0.14,
        subplot_titles=[
            f"status in {esc(comparison.base)} → status in {esc(comparison.other)}",
            "cost change per instance (instances whose cost changed)",
        ],
    )
    statuses = [s for s in STATUSES if any(s in key for key in changes.transitions)]
    statuses += sorted({s for key in changes.transitions for s in key} - set(statuses))
    counts = [[changes.transitions.get((b, s), 0) for s in statuses] for b in statuses]
    # The diagonal (status kept) is most instances: shown as a number, not as colour, so the cells of
    # instances that change status stand out.
    z = [
        [0 if b == s else n for s, n in zip(statuses, row, strict=True)]
        for b, row in zip(statuses, counts, strict=True)
    ]
    figure.add_trace(
        go.Heatmap(
            z=z,
            zmin=0,
            zmax=max(1, *(n for row in z for n in row)),  # all kept: every cell pale, not mid-blue
            x=[esc(s) for s in statuses],
            y=[esc(s) for s in statuses],
            text=[
                [f"{n:,} kept" if b == s else f"{n:,}" for s, n in zip(statuses, row, strict=True)]
                for b, row in zip(statuses, counts, strict=True)
            ],
            texttemplate="%{text}",
            colorscale="Blues",
            showscale=False,
            hovertemplate="%{y} → %{x}: %{text} instances<extra></extra>",
        ),
        row=1,
        col=1,
    )
    figure.update_yaxes(title_text=esc(comparison.base), autorange="reversed", row=1, col=1)
    figure.update_xaxes(title_text=esc(comparison.other), row=1, col=1)
    deltas = sorted(changes.cost_deltas.items())
    if deltas:
        figure.add_trace(
            go.Bar(
                x=[str(delta) if delta < 0 else f"+{delta}" for delta, _ in deltas],
                y=[n for _, n in deltas],
                marker_color=[BETTER if delta < 0 else WORSE for delta, _ in deltas],
                text=[f"{n:,}" for _, n in deltas],
                textposition="outside",
                showlegend=False,
                hovertemplate="cost %{x}: %{y:,} instances<extra></extra>",
            ),
            row=1,
            col=2,
        )
        figure.update_xaxes(title_text="scenario cost − base cost", type="category", row=1, col=2)
        figure.update_yaxes(title_text="instances", row=1, col=2)
    figure.update_layout(title=title, height=400, template="plotly_white", margin={"t": 90, "b": 60})
    return figure


def alerts_figure(comparison: Comparison) -> go.Figure:
    """Alerts that would have fired per touchpoint in each scenario."""
    title = "Alerts per touchpoint"
    rows = [a for a in comparison.alerts or [] if a.base != a.other]
    if not rows:
        return empty_figure("The same alerts per touchpoint in both scenarios", title, height=160)
    rows.reverse()
    labels = [esc(a.touchpoint or "(all)") for a in rows]
    figure = go.Figure(
        [
            go.Bar(y=labels, x=[a.other for a in rows], orientation="h", name=esc(comparison.other),
                   marker_color=OTHER_COLOUR, legendrank=2),
            go.Bar(y=labels, x=[a.base for a in rows], orientation="h", name=esc(comparison.base),
                   marker_color=BASE_COLOUR, legendrank=1),
        ]
    )  # fmt: skip
    return bar_rows_layout(figure, title, len(rows), "alerts", barmode="group", row_height=34, top=70)


# ---- HTML pieces ----------------------------------------------------------------------------------


def _delta(before: float, after: float, fmt: str, higher_is_better: bool | None) -> str:
    change = after - before
    if abs(change) < 1e-12:
        return "<small>no change</small>"
    better = None if higher_is_better is None else (change > 0) == higher_is_better
    css = "" if better is None else (" class='up'" if better else " class='down'")
    return f"<small{css}>{format(change, '+' + fmt)}</small>"


def cards_html(comparison: Comparison) -> str:
    """Headline figures: base → scenario, with the change coloured good or bad."""
    rows = comparison.conformance
    totals = []
    for which in (0, 1):
        sides = [_side(c, which) for c in rows]
        instances = sum(side.instances for side in sides)
        conformant = sum(side.conformant for side in sides)
        fitness = sum(side.mean_fitness * side.instances for side in sides)
        totals.append((instances, conformant / max(1, instances), fitness / max(1, instances)))
    deviations = (sum(d.base for d in comparison.deviations), sum(d.other for d in comparison.deviations))
    friction = (
        sum(f.base_weight for f in comparison.friction),
        sum(f.other_weight for f in comparison.friction),
    )
    (b_inst, b_rate, b_fit), (o_inst, o_rate, o_fit) = totals
    i = comparison.instances
    # (value, label, delta, changed): the changed figures lead, the unchanged ones go in one line aside.
    cards = [
        (f"{i.customers_changed:,}", f"of {i.customers:,} customers change", "", i.customers_changed > 0),
        (f"{i.cost_down:,} / {i.cost_up:,}", "instances cheaper / costlier", "",
         bool(i.cost_down or i.cost_up)),
        (f"{i.status_changed:,}", "instances change status", "", i.status_changed > 0),
        (f"{deviations[0]:,} → {deviations[1]:,}", "deviations", _delta(*deviations, ",.0f", False),
         deviations[0] != deviations[1]),
        (f"{100 * b_rate:.1f}% → {100 * o_rate:.1f}%", "conformant",
         _delta(100 * b_rate, 100 * o_rate, ".1f", True), round(b_rate, 3) != round(o_rate, 3)),
        (f"{b_fit:.3f} → {o_fit:.3f}", "mean fitness", _delta(b_fit, o_fit, ".3f", True),
         round(b_fit, 3) != round(o_fit, 3)),
        (f"{b_inst:,} → {o_inst:,}", "journey instances", _delta(b_inst, o_inst, ",.0f", None),
         b_inst != o_inst),
        (f"{friction[0]:,.0f} → {friction[1]:,.0f}", "friction weight", _delta(*friction, ",.0f", False),
         round(friction[0]) != round(friction[1])),
    ]  # fmt: skip
    shown = "".join(
        f"<div class='card'><b>{esc(value)}</b><span>{esc(label)}</span>{delta}</div>"
        for value, label, delta, changed in cards
        if changed
    )
    same = [f"{label} {value.split(' → ')[0]}" for value, label, _, changed in cards if not changed]
    aside = f"<p class='note unchanged'>Unchanged: {esc(' · '.join(same))}.</p>" if same else ""
    return (f"<div class='cards'>{shown}</div>" if shown else "") + aside


def unchanged_note(what: str, names: list[str]) -> str:
    """One line naming what is the same in both scenarios (left out of the charts)."""
    if not names:
        return ""
    return f"<p class='note unchanged'>Unchanged {esc(what)}: {esc(', '.join(names))}.</p>"


def verdict_html(comparison: Comparison) -> str:
    """One sentence: do the scenarios say the same thing?"""
    c = comparison
    if not c.differences:
        return (
            f"<p class='verdict same'>No differences: “{esc(c.other)}” says exactly what “{esc(c.base)}” "
            "says (every projection row identical, versions aside).</p>"
        )
    i = c.instances
    if not i.customers_changed:
        return (
            "<p class='verdict differs'>No customer's journey status, cost or path changes, but some "
            "projection rows differ (deviation details, friction or support attribution): see the "
            "sections and the row-level identity table below. The engine itself may have changed since "
            "the base scenario was computed.</p>"
        )
    return (
        f"<p class='verdict differs'>{i.customers_changed:,} of {i.customers:,} customers would see a "
        f"different journey result: {i.status_changed:,} instances change status, {i.cost_down:,} get "
        f"cheaper and {i.cost_up:,} costlier; {i.only_base + i.only_other:,} instances are cut "
        "differently.</p>"
    )


def definitions_html(
    diff: JourneyDiff, models: tuple[JourneyModel, JourneyModel], names: tuple[str, str]
) -> str:
    """What changed in the journey definitions, then each persona's ideal journeys in both versions."""
    if not diff:
        listed = "<p class='note'>The two scenarios use the same journey definitions.</p>"
    else:
        items = "".join(
            f"<li class='{'warn' if change.kind is ChangeKind.VERSION_NOT_BUMPED else ''}'>"
            f"{esc(change.journey + ': ' if change.journey else '')}{esc(change.text)}</li>"
            for change in diff.changes
        )
        listed = f"<ul class='changes'>{items}</ul>"
    personas = list(dict.fromkeys([*models[0].personas, *models[1].personas]))
    changed_journeys = {change.journey for change in diff.changes if change.journey}
    changed = [
        persona
        for persona in personas
        if any(j.id in changed_journeys for model in models for j in model.by_persona.get(persona, ()))
    ]
    same = [
        f"{persona} ({', '.join(j.key for j in models[1].by_persona.get(persona, ()))})"
        for persona in personas
        if persona not in changed
    ]
    pairs = []
    for persona in changed:
        sides = "".join(
            f"<div><p class='note'><b>{esc(name)}</b></p>"
            + ("".join(ideal_sequence_html(j) for j in model.by_persona.get(persona, ())) or "<p>—</p>")
            + "</div>"
            for model, name in zip(models, names, strict=True)
        )
        pairs.append(f"<h3>{esc(persona)}</h3><div class='pair'>{sides}</div>")
    return listed + "".join(pairs) + unchanged_note("ideal journeys", same)


def _path_html(view: InstanceView) -> str:
    return esc(" › ".join(view.path))


def _changed_instances(customer: CustomerChange) -> set[str]:
    """Ids of the customer's instances whose status, cost or path differ, or that exist on one side."""
    base = {view.instance_id: view for view in customer.base}
    other = {view.instance_id: view for view in customer.other}
    return {
        instance
        for instance in base.keys() | other.keys()
        if instance not in base
        or instance not in other
        or (base[instance].status, base[instance].cost, base[instance].path)
        != (other[instance].status, other[instance].cost, other[instance].path)
    }


def sample_html(comparison: Comparison) -> str:
    """The sampled changed customers: each instance on both sides with path, status, cost, deviations."""
    sample: list[CustomerChange] = comparison.instances.sample
    if not sample:
        return "<p class='note'>No customer's journey result changes.</p>"
    rows = []
    for customer in sample:
        first = True
        changed = _changed_instances(customer)
        for side, views in ((comparison.base, customer.base), (comparison.other, customer.other)):
            for view in views or (None,):
                mark = " class='changed'" if view is not None and view.instance_id in changed else ""
                cells = [
                    f"<td>{esc(customer.customer_id) if first else ''}</td>",
                    f"<td class='side'>{esc(side)}</td>",
                ]
                if view is None:
                    cells.append("<td colspan='5'><i>no instance</i></td>")
                else:
                    cells += [
                        f"<td>{esc(view.journey)}</td>",
                        f"<td>{esc(view.status)}</td>",
                        f"<td class='num'>{view.cost}</td>",
                        f"<td class='path'>{_path_html(view)}</td>",
                        f"<td>{esc(', '.join(view.deviations))}</td>",
                    ]
                rows.append(f"<tr{mark}>" + "".join(cells) + "</tr>")
                first = False
    head = "".join(
        f"<th>{h}</th>" for h in ("customer", "scenario", "journey", "status", "cost", "path", "deviations")
    )
    return f"<table class='sample'><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def identity_html(comparison: Comparison) -> str:
    """Per projection table: rows only in one scenario, and which columns hold the differences."""
    rows = [
        (
            t.table,
            t.only_base,
            t.only_other,
            ", ".join(f"{name} {count:,}" for name, count in t.columns)
            or (
                "(rows are numbered within an instance: one added or removed row renumbers the later ones)"
                if t.only_base or t.only_other
                else ""
            ),
        )
        for t in comparison.tables
    ]
    columns = [
        "table",
        f"rows only in {comparison.base}",
        f"rows only in {comparison.other}",
        "values that differ",
    ]
    return html_table(columns, rows)


TRANSITIONS_SQL = """SELECT pair.1 AS source, pair.2 AS target, count() AS times
FROM journey_instances FINAL
ARRAY JOIN arrayZip(arrayPopBack(path), arrayPopFront(path)) AS pair
WHERE scenario = {scenario:String} AND journey_id = {journey:String}
GROUP BY source, target"""


def transitions_html(
    store: ClickHouseProjectionStore, models: tuple[JourneyModel, JourneyModel], comparison: Comparison
) -> str:
    """Back-to-back touchpoints the new design newly allows or no longer allows, and how often they occur."""
    rows = []
    old_journeys = {journey.id: journey for journey in models[0].journeys}
    for journey in models[1].journeys:
        before = old_journeys.get(journey.id)
        if before is None:
            continue
        allowed, was_allowed = ideal_transitions(journey), ideal_transitions(before)
        if allowed == was_allowed:
            continue
        _, counted = store.query(TRANSITIONS_SQL, {"scenario": comparison.other, "journey": journey.id})
        times = {(str(a), str(b)): int(n) for a, b, n in counted}
        for pair in sorted(allowed ^ was_allowed, key=lambda p: (-times.get(p, 0), p)):
            verdict = "now allowed" if pair in allowed else "no longer allowed"
            rows.append((journey.key, f"{pair[0]} → {pair[1]}", verdict, times.get(pair, 0)))
    if not rows:
        return ""
    return (
        "<p class='note'>Back-to-back touchpoints whose verdict the redesign changes (green vs grey links "
        "below), with how often customers actually went that way:</p>"
        + html_table(["journey", "transition", "in the new design", "times in the history"], rows)
    )


def flows_html(
    store: ClickHouseProjectionStore,
    models: tuple[JourneyModel, JourneyModel],
    comparison: Comparison,
    diff: JourneyDiff,
    embed: FigureEmbedder,
) -> str:
    """Per persona whose journey changed: the actual-vs-ideal flow of each design, one above the other."""
    names = (comparison.base, comparison.other)
    changed = {change.journey for change in diff.changes if change.journey}
    personas = [
        persona
        for persona in dict.fromkeys([*models[0].personas, *models[1].personas])
        if any(j.id in changed for model in models for j in model.by_persona.get(persona, ()))
    ]
    if not personas:
        return (
            "<p class='note'>No persona's journey changed between the designs; the single-scenario report "
            "(touchpath demo --report, streams/reports/scenario.py) shows the flows.</p>"
        )
    parts = [transitions_html(store, models, comparison)]
    # The two designs' Sankeys look alike (same customers, few links change colour): the table above
    # says what changed; the full diagrams stay one click away.
    parts.append(
        "<details class='flows'><summary>Full path diagrams of both designs "
        f"({esc(', '.join(personas))})</summary>"
    )
    for persona in personas:
        parts.append(f"<h3>{esc(persona)}</h3>")
        for model, name in zip(models, names, strict=True):
            figure = sankey_figure(store, model, persona, name)
            keys = ", ".join(journey.key for journey in model.by_persona.get(persona, ()))
            figure.update_layout(title=esc(f"{name} — ideal journey {keys or '(none)'}"))
            parts.append(embed(figure))
    parts.append("</details>")
    # Plotly sizes a figure when it is drawn; a figure drawn closed gets its width on the next resize.
    parts.append(
        "<script>document.querySelectorAll('details.flows').forEach(d => d.addEventListener('toggle', "
        "() => window.dispatchEvent(new Event('resize'))));</script>"
    )
    return "".join(parts)


def friction_html(comparison: Comparison, embed: FigureEmbedder) -> str:
    """The friction chart of the touchpoints whose friction changed, and a line naming the others."""
    same = [f"{f.touchpoint} {f.base_weight:,.1f}" for f in comparison.friction if not _friction_changed(f)]
    changed = any(_friction_changed(f) for f in comparison.friction)
    if not changed and not same:
        return "<p class='note'>No friction signals in either scenario.</p>"
    if not changed:
        return (
            "<p class='note unchanged'>Friction by touchpoint (weighted signals) is the same in both "
            f"scenarios: {esc(', '.join(same))}.</p>"
        )
    return embed(friction_figure(comparison)) + unchanged_note("friction (weight per touchpoint)", same)


def alerts_html(comparison: Comparison, embed: FigureEmbedder) -> str:
    """The alerts chart of the touchpoints whose alert count changed, and a line naming the others."""
    alerts = comparison.alerts or []
    same = [f"{a.touchpoint or '(all)'} {a.base}" for a in alerts if a.base == a.other and a.base]
    changed = any(a.base != a.other for a in alerts)
    if not changed and not same:
        return "<p class='note'>No alerts in either scenario.</p>"
    return (embed(alerts_figure(comparison)) if changed else "") + unchanged_note("alerts", same)


def compare_html(
    store: ClickHouseProjectionStore,
    comparison: Comparison,
    models: tuple[JourneyModel, JourneyModel],
    diff: JourneyDiff,
    sources: tuple[str, str],
) -> str:
    """The whole comparison page as one self-contained HTML string."""
    embed = FigureEmbedder()
    c = comparison
    names = (c.base, c.other)
    generated = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    parts = [
        f"<h1>touchpath scenario comparison — “{esc(c.base)}” vs “{esc(c.other)}”</h1>",
        f"<p class='meta'>{esc(c.base)}: {esc(sources[0])}<br>{esc(c.other)}: {esc(sources[1])}<br>"
        f"store: {esc(store.description)} · generated {esc(generated)}</p>",
        verdict_html(c),
        cards_html(c),
        "<h2>What changed in the journey definitions</h2>",
        definitions_html(diff, models, names),
        "<h2>Conformance</h2>",
        "<p class='note'>Share of journey instances aligned with the ideal at zero cost, and mean fitness "
        "(1 − cost / (path length + shortest ideal length)), per persona and journey in each scenario. "
        "Making a step optional shortens the shortest ideal path, so mean fitness can dip even while "
        "costs only fall: read it together with the cost changes below.</p>",
        embed(conformance_figure(c)),
        "<h2>Deviations per step</h2>",
        "<p class='note'>For each step, the left bar is the base scenario and the right bar the replayed "
        "one. A step made optional loses its missing_step deviations; a new step gains them.</p>",
        embed(deviation_steps_figure(c, models)),
        unchanged_note("deviation counts", _same_personas(c, models)),
        embed(deviation_delta_figure(c)),
        "<h2>Customers whose journey result changes</h2>",
        "<p class='note'>Instances are matched by id (customer + first event). Instances found on one side "
        "only were cut differently by the new definitions.</p>",
        embed(instance_changes_figure(c)),
        f"<h3>A sample of changed customers ({len(c.instances.sample)})</h3>",
        "<p class='note'>Every instance of each sampled customer in both scenarios; highlighted rows are "
        "the instances whose status, cost or path changed.</p>",
        sample_html(c),
        "<h2>Friction</h2>",
        friction_html(c, embed),
        "<h2>Alerts that would have fired</h2>",
        "<p class='note'>Live alerts fired as events arrived; a replay's would-be alerts are judged in "
        "event-time order, so the two can differ even when every projection row agrees.</p>",
        # Built in page order: plotly.js is inlined with the first figure rendered.
        "<p class='note'>This store has no alerts table yet: alerting is not installed.</p>"
        if c.alerts is None
        else alerts_html(c, embed),
        "<h2>Actual vs ideal paths, per design</h2>",
        "<p class='note'>The same customers' paths judged by each design (personas whose journey changed): "
        "green links are transitions the design's ideal journey allows, grey ones are off it, red ones "
        "end in abandonment.</p>",
        sankey_legend_html(models[1]),
        flows_html(store, models, c, diff, embed),
        "<h2>Row-level identity</h2>",
        "<p class='note'>Rows of each projection table found in one scenario and not the other, comparing "
        "every column except scenario, the row version and journey_version (a redesign gives every row "
        "of its journey a new journey_version; that alone is not a change). “Values that differ” counts, "
        "per column, the rows whose value there differs — e.g. fitness changes for every instance whose "
        "shortest ideal path changed length, cost only where an alignment changed. Quarantined input: "
        f"{c.quarantined[0]:,} lines in {esc(c.base)}, {c.quarantined[1]:,} in {esc(c.other)} (not "
        "compared).</p>",
        identity_html(c),
    ]
    return page_html(f"touchpath compare — {c.base} vs {c.other}", parts, EXTRA_CSS)


def write_compare_report(
    store: ClickHouseProjectionStore,
    comparison: Comparison,
    models: tuple[JourneyModel, JourneyModel],
    diff: JourneyDiff,
    path: Path,
    *,
    sources: tuple[str, str] = ("", ""),
) -> None:
    """Write the comparison as one offline HTML file."""
    write_page(path, compare_html(store, comparison, models, diff, sources))
