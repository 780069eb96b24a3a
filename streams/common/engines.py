"""Which journey engine a shell runs: the Python reference or the native core (TOUCHPATH_ENGINE)."""

from __future__ import annotations

from typing import Literal

from projections.engine import JourneyEngine
from projections.journeys import JourneyModel
from projections.native_engine import NativeEngine

EngineKind = Literal["python", "native"]


def journey_engine(model: JourneyModel, scenario: str, kind: EngineKind) -> JourneyEngine | NativeEngine:
    """A fresh engine of the chosen kind; the native one raises NativeUnavailableError saying how
    to build it when the extension is missing."""
    if kind == "native":
        return NativeEngine(model, scenario)
    return JourneyEngine(model, scenario)
