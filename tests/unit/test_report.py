"""The HTML report: one offline page with every section, built from a small real store."""

from __future__ import annotations

import html
import re
from dataclasses import replace
from pathlib import Path

import orjson

from projections.engine import JourneyEngine
from projections.ideal_path import ideal_ends, ideal_transitions
from streams.common.definitions import load_journeys
from streams.common.settings import example_journeys
from streams.embedded.runner import EmbeddedRunner
from streams.reports.scenario import ideal_sequence_html, write_report
from streams.store.clickhouse import ClickHouseProjectionStore

MODEL = load_journeys(example_journeys())


def _event(n: int, customer: str, minute: int, touchpoint: str, **extra: object) -> bytes:
    body = {
        "event_id": f"ev-{n:03d}",
        "customer_id": customer,
        "occurred_at": f"2026-01-05T{9 + minute // 60:02d}:{minute % 60:02d}:00Z",
        "channel": touchpoint.partition(".")[0],
        "touchpoint": touchpoint,
        **extra,
    }
    return orjson.dumps(body)


LINES = [
    _event(1, "c-online", 0, "email.campaign", persona="online_buyer"),
    _event(2, "c-online", 5, "web.product_page", outcome="success"),
    _event(3, "c-online", 9, "web.cart", outcome="success"),
    _event(4, "c-online", 12, "web.checkout", outcome="failure"),
    _event(5, "c-online", 20, "support.call", outcome="success"),
    _event(6, "c-online", 40, "web.checkout", outcome="success"),
    _event(7, "c-online", 42, "email.order_confirmation"),
    _event(8, "c-online", 90, "email.csat_survey", survey={"kind": "csat", "score": 5}),
    _event(9, "c-store", 0, "store.visit", persona="store_shopper", employee_id="assoc-7"),
    _event(10, "c-store", 15, "store.fitting", employee_id="assoc-7"),
    _event(11, "c-store", 30, "store.purchase", employee_id="assoc-7", outcome="success"),
    _event(12, "c-store", 200, "email.csat_survey", survey={"kind": "csat", "score": 1}),
    _event(13, "c-b2b", 0, "web.landing", persona="business_buyer"),
    _event(14, "c-b2b", 300, "sales.demo", outcome="success"),
    _event(15, "c-b2b", 330, "web.teleport"),  # not in the registry: quarantined
    b"{this is not json",  # quarantined
]


def test_report_is_one_offline_page_with_every_section(tmp_path: Path) -> None:
    store = ClickHouseProjectionStore.embedded(tmp_path / "data")
    try:
        store.create_schema()
        runner = EmbeddedRunner(JourneyEngine(MODEL), store)
        stats = runner.feed(enumerate(LINES, 1), "<b>upload</b>.jsonl")
        assert (stats.accepted, stats.bad) == (14, 2)
        report = tmp_path / "out" / "report.html"
        write_report(store, MODEL, report, scenario="live")
        empty = tmp_path / "empty.html"
        write_report(store, MODEL, empty, scenario="no-such-scenario")
    finally:
        store.close()

    page = report.read_text(encoding="utf-8")
    # Self-contained: plotly.js inlined exactly once, nothing fetched from the network.
    assert re.search(r"<script[^>]*\bsrc=", page) is None
    assert re.search(r"<link[^>]*\bhref=\"?https?:", page) is None
    assert len(re.findall(r"plotly\.js v\d", page)) == 1
    # Every section a user looks for, for the right scenario.
    assert "scenario “live”" in page
    for persona in MODEL.personas:
        assert f"<h3>{persona}</h3>" in page
    assert "Ideal journey <b>online_purchase@1</b>" in page
    for title in (
        "Actual paths of online_buyer",
        "Friction by touchpoint and hour of day (UTC)",
        "Deviations per journey step, by kind",
        "Support-contact drivers",
        "Delight: positive surveys",
    ):
        assert title in page
    assert "<b>14</b><span>events accepted (distinct)</span>" in page
    assert "<b>3</b><span>customers</span>" in page
    # Quarantine table: both reasons, and the user-supplied source name is escaped, not markup.
    assert "<td>unknown_touchpoint</td>" in page
    assert "<td>malformed_json</td>" in page
    assert "'web.teleport' is not in the touchpoint registry" in html.unescape(page)
    assert "&lt;b&gt;upload&lt;/b&gt;.jsonl:15" in page
    assert "<b>upload</b>" not in page

    nothing = empty.read_text(encoding="utf-8")
    assert "No friction signals" in nothing
    assert "No input line was quarantined." in nothing


def test_ideal_transitions_allow_skipping_optional_steps_and_repeating() -> None:
    journey = next(j for j in MODEL.journeys if j.id == "online_purchase")
    allowed = ideal_transitions(journey)
    assert ("email.campaign", "web.product_page") in allowed
    assert ("web.product_page", "web.product_page") in allowed  # browse is repeatable
    assert ("web.checkout", "email.order_confirmation") in allowed
    assert ("web.cart", "web.product_page") not in allowed  # going back
    assert ("web.product_page", "web.checkout") not in allowed  # skips the required cart
    assert ideal_ends(journey) == {"email.order_confirmation", "email.csat_survey"}


def test_step_budgets_read_as_in_journey_files_in_the_ideal_sequence() -> None:
    journey = next(j for j in MODEL.journeys if j.id == "online_purchase")
    shown = ideal_sequence_html(journey)
    assert "within 2d" in shown  # cart
    assert "within 1h" in shown  # checkout
    assert "within 10m" in shown  # confirmation
    # An uneven budget reads in its two largest units (as deviations and journey diffs write it),
    # not as fractional seconds; a whole week reads as one week.
    steps = [replace(step, within_ms=466_370) if step.name == "cart" else step for step in journey.steps]
    steps = [replace(step, within_ms=604_800_000) if step.name == "checkout" else step for step in steps]
    shown = ideal_sequence_html(replace(journey, steps=tuple(steps)))
    assert "within 7m46s" in shown
    assert "within 1w" in shown
