"""compare from plain query rows: what appears, disappears or moves, and when nothing differs."""

from __future__ import annotations

from projections.diff.scenarios import (
    InstanceChanges,
    ScenarioFigures,
    TableIdentity,
    compare_alerts,
    compare_conformance,
    compare_deviations,
    compare_figures,
    compare_friction,
    customer_changes,
)
from streams.replay.compare import render_text

CONFORMANCE = [
    ("online_buyer", "online_purchase", [1], 100, 75, 0.9691, 90, 8),
    ("store_shopper", "store_purchase", [1], 60, 50, 0.96, 55, 5),
]
DEVIATIONS = [
    ("online_buyer", "missing_step", "confirmation", "email.order_confirmation", 31, 30),
    ("online_buyer", "repeated_step", "cart", "web.cart", 12, 12),
    ("store_shopper", "abandoned", "purchase", "store.visit", 9, 9),
]
FRICTION = [("web.checkout", "ecommerce", 40, 52.5, 33), ("store.purchase", "retail", 10, 11.0, 10)]


def figures(name: str, **changes: object) -> ScenarioFigures:
    base = {"conformance": CONFORMANCE, "deviations": DEVIATIONS, "friction": FRICTION}
    return ScenarioFigures(name=name, **{**base, **changes})  # type: ignore[arg-type]


def test_identical_scenarios_report_no_differences() -> None:
    """Two scenarios with the same figures (fitness summed in another order) differ in nothing."""
    again = [(*row[:5], row[5] + 1e-15, *row[6:]) for row in CONFORMANCE]
    comparison = compare_figures(
        figures("live"),
        figures("same", conformance=again),
        InstanceChanges(instances=160, customers=120),
        [TableIdentity("journey_instances", 0, 0)],
        alerts_table=False,
    )
    assert comparison.differences == 0
    text = render_text(comparison)
    assert text.startswith("compare live -> same: no differences")
    assert "Rows identical in every projection table" in text
    assert comparison.as_dict()["differences"] == 0


def test_an_optional_step_makes_its_missing_step_deviations_disappear() -> None:
    """Deviations present only in the base read as 'disappeared', with the largest change first."""
    redesign = [row for row in DEVIATIONS if row[1] != "missing_step"]
    redesign.append(("online_buyer", "unexpected_step", "", "email.nps_survey", 2, 2))
    changes = compare_deviations(DEVIATIONS, redesign)
    first, *rest = changes
    assert (first.kind, first.step, first.base, first.other, first.status) == (
        "missing_step", "confirmation", 31, 0, "disappeared"
    )  # fmt: skip
    assert first.delta == -31
    assert [(c.kind, c.status) for c in rest if c.status != "same"] == [("unexpected_step", "appeared")]


def test_conformance_pairs_versions_of_the_same_journey() -> None:
    """A journey replayed with version 2 is paired with its version 1 and shows both."""
    redesign = [("online_buyer", "online_purchase", [2], 100, 77, 0.968, 90, 8)]
    (online, store) = compare_conformance(CONFORMANCE, redesign)
    assert (online.base.versions, online.other.versions) == ((1,), (2,))
    assert round(online.other.rate - online.base.rate, 2) == 0.02
    assert online.changed
    assert store.other.instances == 0  # the persona's journey is absent from the scenario


def test_friction_and_alerts_pair_by_touchpoint() -> None:
    """Friction and alerts are paired per touchpoint; a touchpoint on one side counts zero on the other."""
    (checkout, purchase) = compare_friction(FRICTION, [("web.checkout", "ecommerce", 30, 40.0, 25)])
    assert (checkout.base_weight, checkout.other_weight, checkout.changed) == (52.5, 40.0, True)
    assert (purchase.base_signals, purchase.other_signals) == (10, 0)
    alerts = compare_alerts([("web.checkout", 3)], [("web.checkout", 1), ("web.cart", 2)])
    assert [(a.touchpoint, a.base, a.other) for a in alerts] == [("web.checkout", 3, 1), ("web.cart", 0, 2)]


def test_changed_customers_group_both_sides_in_time_order() -> None:
    """Sampled customer rows become one entry per customer with each scenario's instances."""
    rows = [
        ("live", "c1", "i1", "online_purchase@1", "completed", 1, 0.8, ["web.cart", "web.checkout"], 1,
         ["missing_step confirmation"]),
        ("redesign", "c1", "i1", "online_purchase@2", "completed", 0, 1.0, ["web.cart", "web.checkout"], 1,
         []),
        ("live", "c2", "i2", "online_purchase@1", "abandoned", 2, 0.5, ["web.cart"], 2, None),
    ]  # fmt: skip
    c1, c2 = customer_changes(rows, "live", "redesign")
    assert c1.customer_id == "c1"
    assert [v.cost for v in c1.base] == [1]
    assert [v.cost for v in c1.other] == [0]
    assert c1.base[0].deviations == ("missing_step confirmation",)
    assert (len(c2.base), len(c2.other)) == (1, 0)


def test_text_names_customers_and_rows_that_change() -> None:
    """A redesign's text report counts changed customers and tables whose rows differ."""
    changes = InstanceChanges(instances=160, customers=120, customers_changed=30, cost_down=31)
    comparison = compare_figures(
        figures("live"),
        figures("redesign", deviations=DEVIATIONS[1:]),
        changes,
        [TableIdentity("deviations", 31, 0)],
        alerts_table=True,
    )
    text = render_text(comparison)
    assert text.startswith("compare live -> redesign: differs: 30 of 120 customers change")
    assert "missing_step" in text
    assert "disappeared" in text
    assert "deviations -31/+0" in text
    assert comparison.differences > 0
