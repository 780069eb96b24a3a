"""What every `touchpath` subcommand shares, kept light: parser class, common options, settings, store."""

from __future__ import annotations

import argparse
import json
import textwrap
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from events.errors import TouchpathError

# Only light modules at the top: `touchpath --help` and every subcommand's parser are built from this
# module and the *_cli modules before any handler runs, so chDB, clickhouse_connect, pydantic models,
# Faust, FastAPI, plotly and structlog are imported inside the handlers that need them.
if TYPE_CHECKING:
    from streams.common.settings import Settings
    from streams.store.clickhouse import ClickHouseProjectionStore

DEFAULT_DATA_DIR = "./touchpath-data"


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Descriptions keep their line breaks and wrap to the terminal; every option's help ends with
    its default.

    argparse's ArgumentDefaultsHelpFormatter also prints `(default: None)` and `(default: False)`;
    here options without a value of their own say where the default comes from in their help text
    (e.g. an environment variable), and flags are off unless given.
    """

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        return "\n".join(
            textwrap.fill(line, width, initial_indent=indent, subsequent_indent=indent) if line else ""
            for line in text.splitlines()
        )

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "default" in text or action.default in (None, False, [], argparse.SUPPRESS):
            return text
        if action.option_strings and not action.required:
            return f"{text} (default: %(default)s)"
        return text


class TouchpathParser(argparse.ArgumentParser):
    """An ArgumentParser whose subcommand parsers share the help formatter above."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)


@dataclass(frozen=True, slots=True)
class CommandGroups:
    """Where feature modules add their subcommands: top level, `journeys ...` and `bench ...`."""

    top: Any
    journeys: Any
    bench: Any


def journeys_arg(parser: argparse.ArgumentParser) -> None:
    """--journeys: the journey definition file."""
    parser.add_argument(
        "--journeys",
        type=Path,
        metavar="FILE",
        help="journey definition file (default: TOUCHPATH_JOURNEYS, else the shipped example)",
    )


def data_dir_arg(parser: argparse.ArgumentParser) -> None:
    """--data-dir: the embedded chDB data dir."""
    parser.add_argument(
        "--data-dir",
        type=Path,
        metavar="DIR",
        help=f"embedded chDB data dir (default: TOUCHPATH_DATA_DIR, else {DEFAULT_DATA_DIR})",
    )


def settings_of(args: argparse.Namespace, options: Mapping[str, str] | None = None) -> Settings:
    """Settings from the environment, with --data-dir, --journeys and the command's own `options`
    (option dest -> setting name, e.g. {"port": "ingest_port"}) applied where they were given."""
    from streams.common.settings import Settings  # noqa: PLC0415 -- pydantic-settings only when a command runs

    names = {"data_dir": "data_dir", "journeys": "journeys", **(options or {})}
    overrides: dict[str, Any] = {}
    for name, setting in names.items():
        value = getattr(args, name, None)
        if value is not None:
            overrides[setting] = value
    return Settings().model_copy(update=overrides)


def print_figures(figures: Mapping[str, object], *, as_json: bool, digits: int = 1) -> None:
    """A bench's figures: JSON, or one aligned `name value` line each (thousands separated, fractions
    to `digits` places)."""
    if as_json:
        print(json.dumps(figures, indent=2, default=str))
        return
    width = max(map(len, figures), default=0)
    for key, value in figures.items():
        if isinstance(value, bool) or not isinstance(value, int | float):
            text = str(value)
        else:
            text = f"{value:,}" if isinstance(value, int) else f"{value:,.{digits}f}"
        print(f"{key:{width}s} {text}")


def has_store(data_dir: Path) -> bool:
    """True when the data dir holds an embedded touchpath store (its journey_instances table).

    chDB keeps one `metadata/<database>/<table>.sql` file per table; a directory without it was
    never written by `touchpath run`, `demo`, `serve` or `worker`.
    """
    metadata = data_dir / "chdb" / "metadata"
    return metadata.is_dir() and any(metadata.glob("*/journey_instances.sql"))


def require_store(settings: Settings) -> None:
    """Refuse a read command on a data dir without a store, before anything is created there."""
    if settings.clickhouse_url or has_store(settings.data_dir):
        return
    where = settings.data_dir
    what = "does not exist" if not where.exists() else "holds no touchpath store"
    msg = (
        f"{where} {what}. Write a store there first with `touchpath demo --data-dir {where}` or "
        f"`touchpath run --input EVENTS.jsonl --data-dir {where}`, or point at an existing one with "
        "--data-dir or TOUCHPATH_DATA_DIR (a ClickHouse server: TOUCHPATH_CLICKHOUSE_URL)."
    )
    raise TouchpathError(msg)


@contextmanager
def open_store(settings: Settings) -> Iterator[ClickHouseProjectionStore]:
    """The configured store with its schema in place; closed on exit."""
    from streams.store.clickhouse import ClickHouseProjectionStore  # noqa: PLC0415 -- chDB loads only when used

    if settings.clickhouse_url:
        store = ClickHouseProjectionStore.server(settings.clickhouse_url, settings.clickhouse_cluster)
    else:
        store = ClickHouseProjectionStore.embedded(settings.data_dir)
    try:
        store.create_schema()
        yield store
    finally:
        store.close()


@contextmanager
def open_existing_store(settings: Settings) -> Iterator[ClickHouseProjectionStore]:
    """The configured store for a read command: refused (nothing created) when the data dir has none."""
    require_store(settings)
    with open_store(settings) as store:
        yield store
