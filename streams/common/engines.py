"""Which journey engine a shell runs: the Python reference or the native core (TOUCHPATH_ENGINE)."""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Literal

from projections.customer import CustomerState
from projections.engine import JourneyEngine
from projections.journeys import JourneyModel
from projections.native_engine import NativeEngine

EngineKind = Literal["python", "native"]


def journey_engine(
    model: JourneyModel,
    scenario: str,
    kind: EngineKind,
    states: MutableMapping[str, CustomerState] | None = None,
) -> JourneyEngine | NativeEngine:
    """A fresh engine of the chosen kind; the native one raises NativeUnavailableError saying how
    to build it when the extension is missing. states: where the Python engine keeps its customer
    states (the native one keeps them in the core)."""
    if kind == "native":
        return NativeEngine(model, scenario)
    return JourneyEngine(model, scenario, states)
