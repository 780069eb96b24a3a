"""survey_conformance against a computation by hand on five customers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from streams.cli.main import main
from streams.reports.surveys import survey_conformance_html
from streams.store.clickhouse import ClickHouseProjectionStore
from tests.conftest import event_line


def _view(store: ClickHouseProjectionStore, scenario: str) -> list[dict[str, Any]]:
    columns, rows = store.query("SELECT * FROM survey_conformance(scenario={s:String})", {"s": scenario})
    return [dict(zip(columns, row, strict=True)) for row in rows]


def test_survey_conformance_on_a_hand_computed_fixture(tmp_path: Path) -> None:
    """Five online buyers answer the CSAT survey: three followed the ideal journey and scored 5, 4, 4;
    two skipped the cart (missing_step at 'cart') and scored 2 and 1. By hand:
    conformed: n 3, mean 13/3, s = sqrt(((2/3)² + 2·(1/3)²)/2) = sqrt(1/3), 95% t (df 2: 4.303)
    half-width 4.303·sqrt(1/3)/sqrt(3) = 1.434333; deviated: n 2, mean 1.5, s = sqrt(0.5),
    df 1: 12.706 → half-width 12.706·sqrt(0.5)/sqrt(2) = 6.353."""
    lines = []
    for number, (score, skip_cart) in enumerate([(5, False), (4, False), (4, False), (2, True), (1, True)]):
        customer, start = f"c{number}", number * 600.0
        steps = ["email.campaign", "web.product_page", "web.cart", "web.checkout", "email.order_confirmation"]
        if skip_cart:
            steps.remove("web.cart")
        for i, touchpoint in enumerate(steps):
            extra: dict[str, Any] = {"persona": "online_buyer"} if i == 0 else {}
            lines.append(event_line(f"{customer}-{i}", customer, touchpoint, start + i, **extra))
        lines.append(
            event_line(
                f"{customer}-s",
                customer,
                "email.csat_survey",
                start + 30,
                survey={"kind": "csat", "score": score},
            )
        )
    source = tmp_path / "surveys.jsonl"
    source.write_bytes(b"\n".join(lines) + b"\n")
    data_dir = tmp_path / "data"
    assert main(["run", "--input", str(source), "--data-dir", str(data_dir), "--alerts", "off"]) == 0
    opened = ClickHouseProjectionStore.embedded(data_dir)
    try:
        rows = _view(opened, "live")
        other = _view(opened, "elsewhere")
        section = survey_conformance_html(opened, "live")
    finally:
        opened.close()
    table = {(r["comparison"], r["deviation_kind"], r["step"], r["grp"]): r for r in rows}
    assert set(table) == {
        ("conformance", "", "", "conformed"),
        ("conformance", "", "", "deviated"),
        ("deviation", "missing_step", "cart", "with"),
        ("deviation", "missing_step", "cart", "without"),
    }
    conformed, deviated = (
        table[("conformance", "", "", "conformed")],
        table[("conformance", "", "", "deviated")],
    )
    assert (conformed["responses"], conformed["instances"], deviated["responses"]) == (3, 3, 2)
    assert conformed["mean_score"] == pytest.approx(13 / 3)
    assert conformed["stddev"] == pytest.approx(0.577350, abs=1e-6)
    assert (conformed["ci_low"], conformed["ci_high"]) == (
        pytest.approx(13 / 3 - 1.434333, abs=1e-5),
        pytest.approx(13 / 3 + 1.434333, abs=1e-5),
    )
    assert (deviated["mean_score"], deviated["ci_low"], deviated["ci_high"]) == (
        pytest.approx(1.5),
        pytest.approx(1.5 - 6.353, abs=1e-5),
        pytest.approx(1.5 + 6.353, abs=1e-5),
    )
    # Here the deviation comparison is the same split: with the missing cart = the deviated ones.
    with_, without = (
        table[("deviation", "missing_step", "cart", "with")],
        table[("deviation", "missing_step", "cart", "without")],
    )
    assert (with_["responses"], with_["mean_score"], without["responses"], without["mean_score"]) == (
        2,
        pytest.approx(1.5),
        3,
        pytest.approx(13 / 3),
    )
    assert other == []  # another scenario has none of these rows
    # The report section shows the same numbers: mean [interval] (n), and the difference.
    assert "<td>4.33 [2.90, 5.77] (n 3)</td><td>1.50 [-4.85, 7.85] (n 2)</td><td>-2.83</td>" in section
