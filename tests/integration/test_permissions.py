"""Customer data on disk is private: the data dir is 0700 and every file in it 0600 (umask configurable)."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from projections.journeys import JourneyModel
from streams.cli.main import main
from streams.common.settings import example_journeys
from streams.sim.simulator import SimulationConfig, simulate


def _modes(root: Path) -> dict[str, int]:
    return {
        str(path.relative_to(root)): stat.S_IMODE(path.stat().st_mode) for path in [root, *root.rglob("*")]
    }


def _run(model: JourneyModel, tmp_path: Path) -> Path:
    events = tmp_path / "events.jsonl"
    events.write_bytes(b"\n".join(simulate(model, SimulationConfig(customers=20, days=2, seed=2)).lines))
    data_dir = tmp_path / "data"
    assert main(["run", "--input", str(events), "--data-dir", str(data_dir), "--alerts", "off"]) == 0
    return data_dir


def test_data_dir_and_files_are_private_by_default(model: JourneyModel, tmp_path: Path) -> None:
    """After a run nothing under the data dir is readable, writable or listable by group or others."""
    data_dir = _run(model, tmp_path)
    modes = _modes(data_dir)
    assert len(modes) > 10  # chDB's own files are covered, not only the dir
    assert modes["."] == 0o700
    wide = {name: oct(mode) for name, mode in modes.items() if mode & 0o077}
    assert wide == {}


def test_the_umask_is_configurable(
    model: JourneyModel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """TOUCHPATH_UMASK=027 lets the group read (never write); a bad value is refused naming the setting."""
    monkeypatch.setenv("TOUCHPATH_UMASK", "027")
    data_dir = _run(model, tmp_path)
    modes = _modes(data_dir)
    assert any(mode & 0o040 for mode in modes.values())
    assert not any(mode & 0o027 for mode in modes.values())
    monkeypatch.setenv("TOUCHPATH_UMASK", "999")
    assert main(["journeys", "check", str(example_journeys())]) == 1
    assert "TOUCHPATH_UMASK must be octal" in capsys.readouterr().err
