"""The native journey core (Rust, projections._native) behind the Python engine's types."""

from __future__ import annotations

from collections.abc import Sequence
from types import ModuleType
from typing import NamedTuple, cast

from events.errors import BadReason, Rejection, TouchpathError
from projections.alignment import Deviation, DeviationKind, Move, Op
from projections.journeys import Costs, Journey
from projections.occurrence import Occurrence

BUILD_HINT = (
    "build it from the project root with `pip install -e .` (needs cargo and rustc, "
    "https://rustup.rs) or, for a quick rebuild, `maturin develop --release`; "
    "a wheel of touchpath already contains it"
)


class NativeUnavailableError(TouchpathError):
    """The native engine was asked for, but the extension module is not built or does not load."""


def native_module() -> ModuleType:
    """The extension module; raises NativeUnavailableError saying how to build it."""
    try:
        from projections import _native  # noqa: PLC0415 - only who asks for native pays (or fails)
    except ImportError as error:
        msg = f"the native engine is not available ({error}); {BUILD_HINT}"
        raise NativeUnavailableError(msg) from error
    return _native


def native_available() -> bool:
    """Whether the native extension is built and loads."""
    try:
        native_module()
    except NativeUnavailableError:
        return False
    return True


class NativeEvent(NamedTuple):
    """A validated event as the native decoder returns it (times in UTC microseconds)."""

    event_id: str
    customer_id: str
    occurred_us: int
    channel: str
    touchpoint: str
    persona: str | None
    outcome: str | None
    employee_id: str | None
    survey_kind: str | None
    survey_score: int | None
    survey_comment: str | None
    attributes_json: bytes | None  # the attributes as orjson.dumps writes them
    source: str | None

    @property
    def occurred_ms(self) -> int:
        """Event time as integer milliseconds since the epoch (floor, as TouchpointEvent)."""
        return self.occurred_us // 1000


def check_event(raw: bytes) -> NativeEvent | Rejection:
    """events.codec.check_event in Rust: the event, or the same typed rejection."""
    ok, payload = native_module().check_event(raw)
    if ok:
        return NativeEvent(*payload)
    reason, detail, field = cast(tuple[str, str, str | None], payload)
    return Rejection(BadReason(reason), detail, field)


class NativeJourney:
    """A compiled Journey handed to the native core: the same alignment and deviations."""

    def __init__(self, journey: Journey, channel_of: dict[str, str]) -> None:
        steps = [
            (step.name, sorted(step.touchpoints), step.primary, step.primary_channel,
             step.optional, step.repeatable, step.within_ms, step.goal)
            for step in journey.steps
        ]  # fmt: skip
        self._inner = native_module().Journey(
            steps,
            {touchpoint: list(indexes) for touchpoint, indexes in journey.step_of.items()},
            list(journey.skip_cost),
            list(journey.initial_costs),
            dict(channel_of),
        )

    @property
    def inner(self) -> object:
        """The extension object, for batch calls in measurements."""
        return self._inner

    def advance(self, costs: Costs, touchpoint: str) -> Costs:
        """Journey.advance."""
        return tuple(self._inner.advance(list(costs), touchpoint))

    def cost_table(self, path: Sequence[str]) -> list[Costs]:
        """alignment.cost_table."""
        return [tuple(row) for row in self._inner.cost_table(list(path))]

    def fold(self, path: Sequence[str]) -> list[tuple[int, Costs]]:
        """Journey.advance_cached from the initial costs: (base, relative) after each event."""
        return [(base, tuple(relative)) for base, relative in self._inner.fold(list(path))]

    def align(self, path: Sequence[str], end_state: int | None) -> list[Move]:
        """alignment.align_uncached."""
        moves = self._inner.align(list(path), end_state)
        return [Move(Op(op), step, event, cost) for op, step, event, cost in moves]

    def deviations_of(self, events: Sequence[Occurrence], moves: Sequence[Move]) -> list[Deviation]:
        """alignment.deviations_of (channel_of as given at construction)."""
        raw = self._inner.deviations_of(
            [(e.ts, e.event_id, e.touchpoint, e.channel) for e in events],
            [(m.op.value, m.step, m.event, m.cost) for m in moves],
        )
        return [_deviation(item) for item in raw]

    def deviations(self, events: Sequence[Occurrence], end_state: int | None) -> list[Deviation]:
        """align() then deviations_of() in one native call."""
        raw = self._inner.deviations([(e.ts, e.event_id, e.touchpoint, e.channel) for e in events], end_state)
        return [_deviation(item) for item in raw]


def _deviation(item: tuple[str, str, str, str, int, list[str], str, int]) -> Deviation:
    kind, step, touchpoint, channel, ts, event_ids, detail, cost = item
    return Deviation(DeviationKind(kind), step, touchpoint, channel, ts, tuple(event_ids), detail, cost)
