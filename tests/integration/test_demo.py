"""`touchpath demo` as a new user runs it: the injected incident is alerted, resolved, delivered, reported."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from streams.cli.main import main
from streams.reports.incidents import incident_rows
from streams.store.clickhouse import ClickHouseProjectionStore


def test_demo_opens_and_resolves_the_injected_incident_and_delivers_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The summary counts an opened and resolved incident at the touchpoint the simulator broke, the
    local webhook receiver got the alerts, the attempts are stored and the report lists the incident."""
    data_dir = tmp_path / "data"
    assert (
        main(["demo", "--customers", "2000", "--days", "14", "--seed", "7", "--data-dir", str(data_dir)]) == 0
    )
    out, err = capsys.readouterr()
    assert "injected incident: web.product_page fails for 80% of customers" in out
    assert "alerts: 2 incidents opened, 2 resolved" in out
    assert "webhook: the local receiver got 4 alert(s)" in out
    assert "friction incidents in this data dir: 2" in out
    assert "web.product_page (team ecommerce): spike from 2026-01-15 16:00 UTC, resolved (21:00 UTC)" in out
    for stage in ("[1/4] simulating", "[2/4] running", "[3/4] summarising", "[4/4] writing"):
        assert stage in err
    received = [json.loads(line) for line in (data_dir / "demo-webhook.jsonl").read_text().splitlines()]
    assert any("Friction spike at web.product_page" in payload["text"] for payload in received)
    assert any("Resolved: friction spike at web.product_page" in payload["text"] for payload in received)

    store = ClickHouseProjectionStore.embedded(data_dir)
    try:
        incidents = {row["touchpoint"]: row for row in incident_rows(store)}
        attempts = store.scalar("SELECT countIf(outcome = 'delivered') FROM alert_deliveries")
    finally:
        store.close()
    product_page = incidents["web.product_page"]
    assert product_page["resolved"] == 1
    assert product_page["delivered"] == 2  # the opening and the resolving alert
    # The incident was injected from 16:00 to 21:00 on day 10 of the simulation.
    assert f"{product_page['started']:%Y-%m-%d}" == "2026-01-15"
    assert 16 <= product_page["started"].hour < 21
    assert attempts == 4
    report = (data_dir / "report.html").read_text()
    assert "<h2>Friction incidents</h2>" in report
    assert "<td>web.product_page</td><td>ecommerce</td>" in report
    assert "2 delivered" in report


def test_blank_lines_are_counted_in_the_lines_read(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A file of 3 events and 2 blank lines reports 5 lines read, 2 of them blank."""
    good = (
        '{"event_id":"e%d","customer_id":"c","occurred_at":"2026-01-01T10:0%d:00Z",'
        '"channel":"web","touchpoint":"web.product_page"}'
    )
    source = tmp_path / "with-blanks.jsonl"
    source.write_text("\n".join([good % (1, 1), "", good % (2, 2), "   ", good % (3, 3)]) + "\n")
    assert main(["run", "--input", str(source), "--data-dir", str(tmp_path / "data"), "--alerts", "off"]) == 0
    out = capsys.readouterr().out
    assert "lines read 5 = accepted 3 (of which 0 duplicates) + bad 0 + blank 2 (skipped)" in out


def test_a_second_demo_on_the_same_data_dir_still_shows_the_incident(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Re-running `make demo` finds its events already processed (nothing new is opened or sent), and
    still lists the incident the data dir holds instead of a bare '0 incidents opened'."""
    argv = ["demo", "--customers", "2000", "--days", "14", "--seed", "7", "--data-dir", str(tmp_path / "d")]
    assert main(argv) == 0
    capsys.readouterr()
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "alerts: 0 incidents opened" in out
    assert "webhook: the local receiver got 0 alert(s)" in out
    assert "friction incidents in this data dir: 2" in out
    assert "web.product_page (team ecommerce)" in out
