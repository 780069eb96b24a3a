"""YAML text to plain data plus a map from each value's path to its line, for errors that say where."""

from __future__ import annotations

from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from events.errors import DefinitionError

Path = tuple[str | int, ...]
M = TypeVar("M", bound=BaseModel)


class LocatedYaml:
    """Parsed YAML data with the source line (1-based) of every mapping key and sequence item."""

    def __init__(
        self,
        data: Any,
        lines: dict[Path, int],
        source: str,
        text: str = "",
        columns: dict[Path, int] | None = None,
    ) -> None:
        self.data = data
        self.lines = lines
        self.source = source
        self.text = text
        self.columns = columns if columns is not None else {}

    def line_of(self, path: Path) -> int | None:
        """The line of the deepest known prefix of path (a missing key points at its parent)."""
        return self.position_of(path)[0]

    def position_of(self, path: Path) -> tuple[int | None, int | None]:
        """(line, column), 1-based, of the deepest known prefix of path."""
        for cut in range(len(path), -1, -1):
            line = self.lines.get(tuple(path[:cut]))
            if line is not None:
                return line, self.columns.get(tuple(path[:cut]))
        return None, None

    def error(self, problems: list[tuple[Path, str]]) -> DefinitionError:
        """A DefinitionError listing each (path, message) with its line; its message also gives the
        column and shows the offending line of the file."""
        located = [(path, self.position_of(path), message) for path, message in problems]
        error = DefinitionError(
            self.source,
            [(line, _dotted(path) or "(top)", message) for path, (line, _), message in located],
        )
        lines = self.text.splitlines()
        out = ["invalid definition"]
        for path, (line, column), message in located:
            where = f"{line if line is not None else '?'}" + (f":{column}" if column else "")
            out.append(f"{self.source}:{where}: {_dotted(path) or '(top)'}: {message}")
            if line is not None and column:
                out += _excerpt_at(lines, line - 1, column - 1)
        error.args = ("\n".join(out),)
        return error


def _dotted(path: Path) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


class YamlSyntaxError(DefinitionError):
    """A YAML syntax error: `file:line:column: problem`, the offending line with a caret under the
    column, and where the construct that could not be finished started (when YAML says)."""

    def __init__(self, source: str, text: str, error: yaml.YAMLError) -> None:
        mark = getattr(error, "problem_mark", None)
        problem = str(getattr(error, "problem", None) or error).strip()
        context = getattr(error, "context", None)
        context_mark = getattr(error, "context_mark", None)
        line = mark.line + 1 if mark is not None else None
        super().__init__(source, [(line, "(yaml)", problem)])
        lines = text.splitlines()
        out = ["invalid definition: YAML syntax error"]
        if mark is None:
            out.append(f"{source}: {problem}")
        else:
            out += [f"{source}:{mark.line + 1}:{mark.column + 1}: {problem}", *_excerpt(lines, mark)]
        if context and context_mark is not None and (mark is None or context_mark.line != mark.line):
            where = f"{source}:{context_mark.line + 1}:{context_mark.column + 1}"
            out += [f"{where}: ({context} that starts here)", *_excerpt(lines, context_mark)]
        elif context:
            out.append(f"  ({context})")
        self.args = ("\n".join(out),)

    def __str__(self) -> str:
        return str(self.args[0])


def _excerpt(lines: list[str], mark: Any) -> list[str]:
    """The source line of a YAML mark and a caret under its column (nothing past the end of text)."""
    return _excerpt_at(lines, mark.line, mark.column)


def _excerpt_at(lines: list[str], line: int, column: int) -> list[str]:
    """Line `line` (0-based) of the text and a caret under `column` (0-based)."""
    if not 0 <= line < len(lines):
        return []
    number = f"{line + 1:>5} | "
    return [f"{number}{lines[line]}", f"{' ' * (len(number) - 2)}| {' ' * column}^"]


def parse_yaml(text: str, source: str = "<string>") -> LocatedYaml:
    """Parse YAML text; a syntax error becomes a YamlSyntaxError pointing at line and column."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as error:
        raise YamlSyntaxError(source, text, error) from error
    lines: dict[Path, int] = {}
    columns: dict[Path, int] = {}
    loader = yaml.SafeLoader("")
    try:
        data = _build(node, (), (lines, columns), loader) if node is not None else None
    finally:
        loader.dispose()
    return LocatedYaml(data, lines, source, text, columns)


def _build(
    node: yaml.Node, path: Path, where: tuple[dict[Path, int], dict[Path, int]], loader: yaml.SafeLoader
) -> Any:
    lines, columns = where
    if path not in lines:
        lines[path] = node.start_mark.line + 1
        columns[path] = node.start_mark.column + 1
    if isinstance(node, yaml.MappingNode):
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            key = str(key_node.value)
            lines[(*path, key)] = key_node.start_mark.line + 1
            columns[(*path, key)] = key_node.start_mark.column + 1
            out[key] = _build(value_node, (*path, key), where, loader)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_build(item, (*path, index), where, loader) for index, item in enumerate(node.value)]
    return loader.construct_object(node, deep=True)


def validate_located(model: type[M], located: LocatedYaml, base: Path = ()) -> M:
    """Validate located data against a pydantic model; every error carries its YAML line."""
    data: Any = located.data
    for part in base:
        data = data[part]
    try:
        return model.model_validate(data)
    except ValidationError as error:
        problems: list[tuple[Path, str]] = []
        for item in error.errors(include_url=False):
            problems.append((_data_path(data, base, item["loc"]), item["msg"]))
        raise located.error(problems) from error


def _data_path(data: Any, base: Path, loc: tuple[str | int, ...]) -> Path:
    """Keep the parts of a pydantic error location that name real keys or items of the data
    (validator and union-branch labels are dropped)."""
    path: list[str | int] = list(base)
    here = data
    for part in loc:
        if isinstance(here, dict) and part in here:  # noqa: SIM114 -- separate so mypy narrows `part`
            path.append(part)
            here = here[part]
        elif isinstance(here, list) and isinstance(part, int) and 0 <= part < len(here):
            path.append(part)
            here = here[part]
        elif isinstance(here, dict) and isinstance(part, str) and not part.endswith("]"):
            path.append(part)  # a missing or unexpected key: name it, line of its parent
            here = None
    return tuple(path)
