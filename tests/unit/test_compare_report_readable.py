"""The comparison report as a CX lead reads it: what changed first, honest axes, labels not cut."""

from __future__ import annotations

from test_compare import CONFORMANCE, DEVIATIONS, FRICTION, figures

from projections.diff.scenarios import Comparison, InstanceChanges, TableIdentity, compare_figures
from projections.journeys import JourneyModel
from streams.reports.comparison import (
    cards_html,
    conformance_figure,
    deviation_delta_figure,
    deviation_steps_figure,
    friction_html,
    identity_html,
)
from streams.reports.html import FigureEmbedder
from streams.reports.scenario import node_label


def _redesign() -> Comparison:
    """online_buyer's confirmation made optional: its missing_step deviations vanish, one cart deviation
    appears; store_shopper and friction are untouched."""
    deviations = [row for row in DEVIATIONS if row[1] != "missing_step"]
    deviations.append(("online_buyer", "abandoned", "cart", "support.call", 1, 1))
    conformance = [("online_buyer", "online_purchase", [2], 100, 95, 0.9682, 90, 8), CONFORMANCE[1]]
    changes = InstanceChanges(instances=160, customers=120, customers_changed=20, cost_down=20)
    tables = [
        TableIdentity("journey_instances", 35, 35, (("fitness", 35), ("cost", 20))),
        TableIdentity("friction_signals", 0, 0),
    ]
    return compare_figures(
        figures("live"),
        figures("confirm-optional", conformance=conformance, deviations=deviations, friction=FRICTION),
        changes,
        tables,
        alerts_table=False,
    )


def test_fitness_and_conformance_axes_start_at_zero_and_labels_are_not_clipped() -> None:
    """A 0.001 change in mean fitness is drawn on an axis from 0, with the exact values as labels."""
    figure = conformance_figure(_redesign())
    assert figure.layout.yaxis.range[0] == 0
    assert figure.layout.yaxis2.range[0] == 0
    assert figure.layout.yaxis2.range[1] >= 1.0
    fitness = [trace for trace in figure.data if trace.yaxis == "y2"]
    assert [list(trace.text) for trace in fitness] == [["0.969", "0.960"], ["0.968", "0.960"]]
    assert all(trace.cliponaxis is False for trace in figure.data)


def test_delta_labels_have_room_beyond_the_bars() -> None:
    """The bar labels ('+1 (appeared)', '-31 (disappeared)') sit outside the bars, inside the axis range."""
    figure = deviation_delta_figure(_redesign())
    bar = figure.data[0]
    assert list(bar.text) == ["+1 (appeared)", "-31 (disappeared)"]
    assert bar.textposition == "outside"
    assert bar.cliponaxis is False
    low, high = figure.layout.xaxis.range
    assert low < -31 - 5
    assert high > 1 + 5


def test_cards_lead_with_what_changed_and_put_the_unchanged_aside() -> None:
    """Changed customers, cheaper instances and deviations come first; unchanged totals go in one line."""
    page = cards_html(_redesign())
    cards, aside = page.split("Unchanged: ")
    assert cards.index("customers change") < cards.index("instances cheaper") < cards.index("deviations")
    assert "friction weight" not in cards
    assert "journey instances 160" in aside
    assert "friction weight 64" in aside


def test_step_chart_leaves_out_personas_without_changes(model: JourneyModel) -> None:
    """Only online_buyer's steps are charted; store_shopper's deviations are the same in both."""
    figure = deviation_steps_figure(_redesign(), (model, model))
    titles = [annotation.text for annotation in figure.layout.annotations]
    assert titles == ["online_buyer"]


def test_unchanged_friction_is_one_line_not_a_chart() -> None:
    """When no touchpoint's friction changes, the page says so with the figures, without a chart."""
    html = friction_html(_redesign(), FigureEmbedder())
    assert "<div class='figure'>" not in html
    assert "Friction by touchpoint (weighted signals) is the same in both scenarios" in html
    assert "web.checkout 52.5, store.purchase 11.0" in html


def test_row_identity_names_the_columns_that_differ() -> None:
    """The identity table says which values differ (fitness, cost), not only how many rows."""
    html = identity_html(_redesign())
    assert "<td>fitness 35, cost 20</td>" in html
    assert '<td class="num">35</td>' in html


def test_sankey_node_labels_fit_a_column() -> None:
    """A node label is two short lines (channel, touchpoint name) instead of one cut-off line."""
    assert node_label(5, "email.order_confirmation") == "5. email<br>order_confirmation"
    assert node_label(2, "kiosk") == "2. kiosk"
    assert node_label(1, "web.<b>") == "1. web<br>&lt;b&gt;"
