"""`touchpath bench native` runs both engines on the same events and prints comparable figures."""

from __future__ import annotations

import json

import pytest

from streams.cli.main import main


def test_bench_native_prints_both_engines_and_ratios(capsys: pytest.CaptureFixture[str]) -> None:
    """The JSON has events/s for each stage of both engines, their ratios and the machine load."""
    assert main(["bench", "native", "--events", "3000", "--json"]) == 0
    figures = json.loads(capsys.readouterr().out)
    assert figures["events"] == 3000
    for stage in ("decode_validate", "incremental_cost", "align_and_classify"):
        assert figures[f"{stage}_python_per_s"] > 0
        assert figures[f"{stage}_native_per_s"] > 0
        assert figures[f"{stage}_ratio"] > 0
    assert "CPUs" in figures["load_average_1m_before_after"]
