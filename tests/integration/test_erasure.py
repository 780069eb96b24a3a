"""touchpath erase: the customer is gone from every table and every file; everyone else is untouched."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import orjson
import pytest

from projections.alerts.codec import decode_detector
from streams.cli.main import main
from streams.common.settings import example_journeys
from streams.store.clickhouse import ClickHouseProjectionStore
from streams.store.erasure import files_containing
from tests.conftest import event_line

TARGET = "erase-me-7f3a9c2e51"  # distinctive bytes: found by a byte search before the erasure
SPIKE = range(72, 78)  # 5-minute windows after T0 with a checkout failure spike
ALERTS = """
settings:
  alerts:
    window: 5m
"""


def _customer(window: int, j: int) -> str:
    return TARGET if (window, j) == (SPIKE[0], 0) else f"c{window:03d}-{j}"


def _lines(windows: range) -> list[bytes]:
    """Checkouts, six per window, rarely failing, failing 4 in 6 during the spike; the target fails in
    the first spike window, writes a survey comment, and sends a malformed and an unknown-persona line."""
    timed = []
    for window in windows:
        for j in range(6):
            customer = _customer(window, j)
            at = window * 5 + j * 0.8
            failing = (j < 4) if window in SPIKE else (window * 6 + j) % 60 == 0
            timed.append((at - 3, event_line(f"{customer}-p", customer, "web.product_page", at - 3)))
            timed.append((at - 2, event_line(f"{customer}-c", customer, "web.cart", at - 2)))
            outcome = "failure" if failing else "success"
            timed.append((at, event_line(f"{customer}-k", customer, "web.checkout", at, outcome=outcome)))
            if customer == TARGET:
                survey = {"kind": "csat", "score": 1, "comment": f"I am {TARGET} and checkout failed"}
                timed.append((at + 1, event_line(f"{customer}-s", customer, "email.csat_survey", at + 1,
                                                 survey=survey)))  # fmt: skip
                timed.append((at + 1.1, f'{{"customer_id": "{TARGET}", broken'.encode()))
                timed.append((at + 1.2, event_line(f"{customer}-x", customer, "web.cart", at + 1.2,
                                                   persona="vip_buyer")))  # fmt: skip
    timed.sort(key=lambda item: item[0])
    return [line for _, line in timed]


def _store_rows(data_dir: Path, sql: str) -> list[tuple[Any, ...]]:
    store = ClickHouseProjectionStore.embedded(data_dir)
    try:
        return store.query(sql)[1]
    finally:
        store.close()


OTHERS = {
    table: f"SELECT * FROM {table} FINAL WHERE customer_id != '{TARGET}' ORDER BY ALL"
    for table in ("touchpoint_events", "journey_instances", "deviations", "friction_signals",
                  "delight_signals", "support_attribution", "journey_state")
}  # fmt: skip
OTHERS["bad_events"] = "SELECT * FROM bad_events FINAL WHERE position(raw, 'erase-me') = 0 ORDER BY ALL"
OTHERS["alerts"] = (
    "SELECT * EXCEPT (example_customer_ids, example_event_ids, summary) FROM alerts FINAL ORDER BY ALL"
)


def test_erase_leaves_no_trace_of_the_customer_and_everyone_else_unchanged(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Run until the middle of an incident the target is an example of, erase the target, then run
    the rest: no file under the data dir holds the id's bytes, no row mentions it, other customers'
    rows are as they were, the alert keeps its other examples and the detector still resolves it."""
    journeys = tmp_path / "journeys.yaml"
    journeys.write_text(example_journeys().read_text() + ALERTS)
    head, tail = tmp_path / "head.jsonl", tmp_path / "tail.jsonl"
    head.write_bytes(b"\n".join(_lines(range(75))) + b"\n")
    tail.write_bytes(b"\n".join(_lines(range(75, 96))) + b"\n")
    data_dir = tmp_path / "data"
    spool = tmp_path / "spool"
    spool.mkdir()
    others_spooled = [event_line(f"o-{i}", f"other-{i}", "web.cart", i) for i in range(3)]
    target_spooled = event_line("t-1", TARGET, "web.cart", 1)
    (spool / "000000000001.jsonl").write_bytes(
        b"\n".join([others_spooled[0], target_spooled, others_spooled[1]]) + b"\n"
    )
    (spool / "000000000002.jsonl").write_bytes(others_spooled[2] + b"\n")

    run = ["run", "--journeys", str(journeys), "--data-dir", str(data_dir), "--alerts", "record"]
    assert main([*run, "--input", str(head)]) == 0
    before = {table: _store_rows(data_dir, sql) for table, sql in OTHERS.items()}
    (open_alert,) = _store_rows(data_dir, "SELECT example_customer_ids, summary FROM alerts FINAL")
    assert TARGET in open_alert[0]
    assert TARGET in open_alert[1]
    counts = dict(_store_rows(data_dir, "SELECT reason, count() FROM bad_events FINAL GROUP BY reason"))
    assert counts == {"malformed_json": 1, "unknown_persona": 1}
    assert files_containing(data_dir, [TARGET.encode()])  # the byte search can see the id at all

    capsys.readouterr()
    erase = ["erase", "--customer", TARGET, "--data-dir", str(data_dir), "--spool", str(spool), "--json"]
    assert main(erase) == 0
    report = json.loads(capsys.readouterr().out)
    assert set(report["scrubbed"]) == {"alerts", "alert_state"}  # both named the target before
    assert "friction_per_touchpoint_minute" in report["rollups_rebuilt"]

    assert files_containing(data_dir, [TARGET.encode()]) == []
    for table in ("touchpoint_events", "journey_instances", "journey_state", "bad_events", "alerts",
                  "alert_state", "friction_signals", "support_attribution"):  # fmt: skip
        assert _store_rows(
            data_dir, f"SELECT count() FROM {table} WHERE position(toString(tuple(*)), '{TARGET}') > 0"
        ) == [(0,)], table
    after = {table: _store_rows(data_dir, sql) for table, sql in OTHERS.items()}
    assert after == before
    (alert,) = _store_rows(data_dir, "SELECT example_customer_ids, summary FROM alerts FINAL")
    assert alert[0] == [customer for customer in open_alert[0] if customer != TARGET]
    assert "[erased]" in alert[1]
    (audit,) = _store_rows(data_dir, "SELECT id_hash, removed FROM erasure_audit")
    assert audit[0] == hashlib.sha256(TARGET.encode()).hexdigest()
    assert (
        audit[1]["touchpoint_events"] == 4
    )  # product page, cart, checkout, survey (not the quarantined cart)
    assert audit[1]["bad_events"] == 2
    assert audit[1]["spool_lines"] == 1
    for (state,) in _store_rows(data_dir, "SELECT state FROM alert_state FINAL"):
        decode_detector(state.encode() if isinstance(state, str) else state)  # still a valid detector state
    spooled = b"".join(path.read_bytes() for path in sorted(spool.glob("*.jsonl")))
    assert spooled.split(b"\n")[:-1] == others_spooled

    # The detector goes on from its scrubbed state: the incident resolves, nothing opens twice.
    assert main([*run, "--input", str(tail)]) == 0
    actions = _store_rows(data_dir, "SELECT action FROM alerts FINAL ORDER BY detected_at")
    assert actions == [("open",), ("resolve",)]
    assert files_containing(data_dir, [TARGET.encode()]) == []


def test_erase_reports_per_hashed_id_and_an_unknown_customer_removes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--json lists the removed rows per hashed id; an unknown customer removes nothing and says so."""
    source = tmp_path / "events.jsonl"
    source.write_bytes(b"\n".join(_lines(range(3))) + b"\n")
    data_dir = tmp_path / "data"
    assert main(["run", "--input", str(source), "--data-dir", str(data_dir), "--alerts", "off"]) == 0
    capsys.readouterr()
    assert main(["erase", "--customer", "c001-2", "--customer", "nobody", "--data-dir", str(data_dir),
                 "--json"]) == 0  # fmt: skip
    report = json.loads(capsys.readouterr().out)
    removed = report["removed"]
    assert removed[hashlib.sha256(b"nobody").hexdigest()] == {}
    assert removed[hashlib.sha256(b"c001-2").hexdigest()]["touchpoint_events"] == 3
    assert report["remaining_files"] == []
    assert report["remaining_rows"] == {}
    assert orjson.dumps(report).find(b"c001-2") == -1  # the report itself names no id
