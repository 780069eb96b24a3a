"""Reading journey definition files from disk (and the registry file they may point to)."""

from __future__ import annotations

from pathlib import Path

from events.errors import TouchpathError
from events.yamlsource import parse_yaml
from projections.journeys import JourneyModel, parse_definitions, parse_registry


def load_journeys(path: Path) -> JourneyModel:
    """Load and validate a journey file; a `registry_file` is resolved next to it."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        msg = f"cannot read journey file {path}: {error.strerror}"
        raise TouchpathError(msg) from error
    located = parse_yaml(text, str(path))
    registry = None
    if isinstance(located.data, dict) and isinstance(located.data.get("registry_file"), str):
        registry_path = path.parent / located.data["registry_file"]
        try:
            registry_text = registry_path.read_text(encoding="utf-8")
        except OSError as error:
            msg = f"{path}: cannot read registry_file {registry_path}: {error.strerror}"
            raise TouchpathError(msg) from error
        registry = parse_registry(registry_text, str(registry_path))
    return parse_definitions(text, str(path), registry)
