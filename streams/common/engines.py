"""Which journey engine a shell runs: the native core (default) or the Python reference (TOUCHPATH_ENGINE)."""

from __future__ import annotations

from collections.abc import MutableMapping

from projections.customer import CustomerState
from projections.engine import JourneyEngine
from projections.journeys import JourneyModel
from projections.native import NativeUnavailableError
from projections.native_engine import NativeEngine
from streams.common.settings import DEFAULT_ENGINE, EngineKind

__all__ = ["DEFAULT_ENGINE", "EngineKind", "journey_engine"]


def journey_engine(
    model: JourneyModel,
    scenario: str,
    kind: EngineKind,
    states: MutableMapping[str, CustomerState] | None = None,
) -> JourneyEngine | NativeEngine:
    """A fresh engine of the chosen kind; the native one raises NativeUnavailableError saying how
    to build it (or how to choose the Python reference) when the extension is missing. states: where
    the Python engine keeps its customer states (the native one keeps them in the core)."""
    if kind == "native":
        try:
            return NativeEngine(model, scenario)
        except NativeUnavailableError as error:
            msg = f"{error}; or set TOUCHPATH_ENGINE=python to run the Python reference engine"
            raise NativeUnavailableError(msg) from error
    return JourneyEngine(model, scenario, states)
