"""What a new user meets first: light start-up, documented options, refused empty data dirs, clear errors."""

from __future__ import annotations

import argparse
import io
import subprocess
import sys
from pathlib import Path

import pytest

from events.errors import DefinitionError
from streams.alerting.detection import AlertMode
from streams.cli.main import ALERT_MODES, build_parser, main
from streams.common.definitions import load_journeys
from streams.common.progress import Progress

HEAVY = ("chdb", "clickhouse_connect", "pyarrow", "faust", "plotly", "fastapi", "structlog", "pydantic")


def _parsers(
    parser: argparse.ArgumentParser, name: str = "touchpath"
) -> list[tuple[str, argparse.ArgumentParser]]:
    """Every parser of the command tree with its command line, e.g. 'touchpath alerts list'."""
    out = [(name, parser)]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub_name, sub in action.choices.items():
                out += _parsers(sub, f"{name} {sub_name}")
    return out


def test_help_and_every_parser_load_no_heavy_library() -> None:
    """Building every command's parser and printing help imports no database, web or model library
    (they made `touchpath --help` take seconds)."""
    code = (
        "import sys\n"
        "from streams.cli.main import build_parser\n"
        "build_parser().format_help()\n"
        f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert loaded.stdout.strip() == ""


def test_every_option_has_a_description_and_says_its_default() -> None:
    """Each option of each command has a help text; a value option shows its default (or where it comes
    from); flags need none."""
    missing = []
    for command, parser in _parsers(build_parser()):
        text = " ".join(parser.format_help().split())
        for action in parser._actions:
            if isinstance(action, argparse._HelpAction | argparse._SubParsersAction):
                continue
            name = "/".join(action.option_strings) or action.dest
            if not action.help:
                missing.append(f"{command} {name}: no description")
            if action.option_strings and not action.required and action.nargs != 0:
                if action.default not in (None, [], argparse.SUPPRESS):
                    expected = f"(default: {action.default})"
                    if expected not in text and "default" not in (action.help or ""):
                        missing.append(f"{command} {name}: default {action.default} not shown")
                elif "default" not in (action.help or ""):
                    missing.append(f"{command} {name}: says nothing about its default")
    assert missing == []


def test_demo_help_shows_the_defaults_a_user_asked_about() -> None:
    """`touchpath demo --help` and `sql --help` print what --customers, --days, --seed, --format mean."""
    parser = build_parser()
    demo = dict(_parsers(parser))["touchpath demo"].format_help()
    flat = " ".join(demo.split())
    assert "--customers CUSTOMERS simulated customers (default: 2000)" in flat
    assert "--days DAYS simulated days" in flat
    assert "(default: 14)" in flat
    assert "(default: 7)" in flat
    sql = " ".join(dict(_parsers(parser))["touchpath sql"].format_help().split())
    assert "--format {table,csv,json} output format (default: table)" in sql


def test_alert_mode_choices_match_the_detector() -> None:
    """The parser spells out the alert modes without importing the detector; they must stay equal."""
    assert tuple(mode.value for mode in AlertMode) == ALERT_MODES


@pytest.mark.parametrize(
    "argv",
    [
        ["sql", "SELECT count() FROM journey_instances"],
        ["alerts", "list"],
        ["scenarios", "list"],
        ["scenarios", "drop", "old"],
        ["compare", "live", "redesign"],
        ["replay", "--journeys", "x.yaml", "--scenario", "redesign"],
        ["digest", "--all"],
        ["erase", "--customer", "cust-1"],
    ],
)
def test_read_commands_refuse_a_data_dir_without_a_store(
    argv: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A mistyped --data-dir exits 1 saying what to run first, and creates nothing there."""
    monkeypatch.delenv("TOUCHPATH_CLICKHOUSE_URL", raising=False)
    typo = tmp_path / "typo"
    assert main([*argv, "--data-dir", str(typo)]) == 1
    err = capsys.readouterr().err
    assert f"{typo} does not exist" in err
    assert "touchpath demo" in err
    assert "touchpath run --input" in err
    assert not typo.exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main([*argv, "--data-dir", str(empty)]) == 1
    assert "holds no touchpath store" in capsys.readouterr().err
    assert list(empty.iterdir()) == []


def test_yaml_syntax_error_points_at_line_and_column_with_the_text(tmp_path: Path) -> None:
    """A YAML syntax error names file:line:column, shows the offending line with a caret under the
    column, and where the unfinished construct began."""
    path = tmp_path / "bad.yaml"
    path.write_text('registry:\n  teams:\n    - {id: a, description: "x"\n  touchpoints: []\n')
    with pytest.raises(DefinitionError) as caught:
        load_journeys(path)
    lines = str(caught.value).splitlines()
    assert lines[0] == "invalid definition: YAML syntax error"
    assert lines[1] == f"{path}:4:3: expected ',' or '}}', but got '<scalar>'"
    assert lines[2] == "    4 |   touchpoints: []"
    assert lines[3] == "      |   ^"
    assert lines[4] == f"{path}:3:7: (while parsing a flow mapping that starts here)"
    assert lines[5] == '    3 |     - {id: a, description: "x"'
    assert caught.value.problems[0][:2] == (4, "(yaml)")


class _Pipe(io.StringIO):
    def isatty(self) -> bool:
        return False


def test_progress_prints_each_line_once_when_not_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    """In a log file or a pipe the final progress line is not a copy of the last running one."""
    clock = iter([0.0, 1.5, 1.6])
    monkeypatch.setattr("streams.common.progress.time.perf_counter", lambda: next(clock))
    stream = _Pipe()
    progress = Progress("events from x", stream=stream)
    progress.update(500)
    progress.done(500)
    assert stream.getvalue().count("events from x: 500") == 1
    assert "\r" not in stream.getvalue()


def test_progress_final_line_after_new_work_is_printed(monkeypatch: pytest.MonkeyPatch) -> None:
    """When work went on after the last running line, the final count is printed."""
    clock = iter([0.0, 1.5, 1.6])
    monkeypatch.setattr("streams.common.progress.time.perf_counter", lambda: next(clock))
    stream = _Pipe()
    progress = Progress("events from x", stream=stream)
    progress.update(500)
    progress.done(620)
    assert [line.split(" at ")[0] for line in stream.getvalue().splitlines()] == [
        "events from x: 500",
        "events from x: 620",
    ]


def test_invalid_field_points_at_line_and_column_with_the_text(tmp_path: Path) -> None:
    """A valid YAML file with a wrong field names file:line:column and shows that line with a caret."""
    path = tmp_path / "bad-field.yaml"
    path.write_text(
        "registry:\n  teams: [{id: a}]\n  touchpoints:\n    - {id: web.x, channel: web, owner: a}\n"
        "personas:\n  - {id: p, colour: red}\ndefault_persona: p\njourneys: []\n"
    )
    with pytest.raises(DefinitionError) as caught:
        load_journeys(path)
    lines = str(caught.value).splitlines()
    at = lines.index(f"{path}:6:13: personas[0].colour: Extra inputs are not permitted")
    assert lines[at + 1] == "    6 |   - {id: p, colour: red}"
    assert lines[at + 2] == "      |             ^"
    assert (6, "personas[0].colour", "Extra inputs are not permitted") in caught.value.problems
