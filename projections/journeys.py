"""Ideal journeys per persona: the YAML definition, its validation and its compiled, checked form."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from events.errors import BadReason, DefinitionError, Rejection
from events.model import TouchpointEvent
from events.registry import Registry
from events.yamlsource import LocatedYaml, parse_yaml, validate_located
from projections.durations import DurationMs

Id = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[a-z][a-z0-9_.-]*$")]


class StepDef(BaseModel):
    """One expected step: a touchpoint or alternatives, optional/repeatable, a time budget, the goal."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: Id | None = None
    touchpoint: str | None = None
    any_of: tuple[str, ...] | None = None
    optional: bool = False
    repeatable: bool = False
    within: DurationMs | None = None
    goal: bool = False

    @model_validator(mode="after")
    def _one_target(self) -> Self:
        if (self.touchpoint is None) == (self.any_of is None):
            msg = "a step names exactly one of 'touchpoint' or 'any_of'"
            raise ValueError(msg)
        if self.any_of is not None and len(self.any_of) < 2:
            msg = "'any_of' lists at least two alternative touchpoints"
            raise ValueError(msg)
        if self.goal and self.optional:
            msg = "the goal step cannot be optional"
            raise ValueError(msg)
        return self

    @property
    def touchpoints(self) -> tuple[str, ...]:
        """The step's touchpoints, first choice first."""
        return (self.touchpoint,) if self.touchpoint is not None else tuple(self.any_of or ())


class JourneyDef(BaseModel):
    """An ideal journey of one persona, versioned."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: Id
    persona: Id
    version: Annotated[int, Field(ge=1)]
    description: str = ""
    abandon_after: DurationMs = 14 * 86_400_000
    steps: Annotated[tuple[StepDef, ...], Field(min_length=1, max_length=64)]


class PersonaDef(BaseModel):
    """A customer profile that selects which ideal journeys apply."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: Id
    description: str = ""


class FrictionSettings(BaseModel):
    """Windows used to derive friction signals and support-contact attribution."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    repeat_window: DurationMs = 30 * 60_000
    escalation_lookback: DurationMs = 72 * 3_600_000
    survey_lookback: DurationMs = 72 * 3_600_000


AlertKind = Literal["failure", "repeat", "stall", "escalation", "negative_survey", "abandonment"]
AlertMeasure = Literal["friction_rate", "contact_volume"]


class AlertRule(BaseModel):
    """One touchpoint's alert thresholds; a field left out takes the value of the `alerts` block."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    enabled: bool | None = None
    measure: AlertMeasure | None = None
    min_volume: Annotated[int, Field(ge=1)] | None = None
    min_signals: Annotated[int, Field(ge=1)] | None = None
    min_ratio: Annotated[float, Field(ge=1.0)] | None = None
    sensitivity: Annotated[float, Field(gt=0)] | None = None
    cooldown: DurationMs | None = None


class AlertSettings(BaseModel):
    """Friction spike alerts: the window, the baseline each window is judged against, thresholds."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    enabled: bool = True
    window: DurationMs = 5 * 60_000
    baseline_windows: Annotated[int, Field(ge=1, le=2016)] = 24  # trailing windows before the judged ones
    seasonal_days: Annotated[int, Field(ge=0, le=28)] = 7  # plus the same time of day on previous days
    seasonal_span: DurationMs = 30 * 60_000  # +/- around the same time of day
    min_baseline_volume: Annotated[int, Field(ge=1)] = 100  # baseline traffic needed to judge at all
    lateness: DurationMs = 60 * 60_000  # older windows take no more counts
    span_windows: Annotated[int, Field(ge=1, le=12)] = 3  # judge the last 1..n windows together
    min_volume: Annotated[int, Field(ge=1)] = 10
    min_signals: Annotated[int, Field(ge=1)] = 4
    min_ratio: Annotated[float, Field(ge=1.0)] = 2.0
    sensitivity: Annotated[float, Field(gt=0)] = 5.0  # in standard deviations; lower alerts sooner
    resolve_after: Annotated[int, Field(ge=1)] = 3  # calm windows in a row that end an incident
    resolve_sensitivity: Annotated[float, Field(gt=0)] = 2.0
    cooldown: DurationMs = 30 * 60_000
    update_every: DurationMs | None = None  # re-alert an ongoing incident this often (off by default)
    # Negative surveys (shared among every touchpoint of the days before) and abandonment (known
    # only `abandon_after` later) cannot point at one touchpoint in time: opt in if wanted.
    kinds: tuple[AlertKind, ...] = ("failure", "repeat", "stall", "escalation")
    per_touchpoint: dict[str, AlertRule] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _coherent(self) -> Self:
        day = 86_400_000
        if self.window <= 0 or day % self.window:
            msg = "alerts.window must divide a day evenly (e.g. 1m, 5m, 10m, 15m, 30m, 1h)"
            raise ValueError(msg)
        if self.lateness < self.window:
            msg = "alerts.lateness must be at least one window"
            raise ValueError(msg)
        if self.seasonal_span >= day // 2:
            msg = "alerts.seasonal_span must be shorter than 12h"
            raise ValueError(msg)
        if self.update_every is not None and self.update_every < self.window:
            msg = "alerts.update_every must be at least one window"
            raise ValueError(msg)
        return self


class EngineSettings(BaseModel):
    """Engine-wide settings: how late an event may arrive and still correct its journey."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    allowed_lateness: DurationMs = 30 * 86_400_000
    friction: FrictionSettings = FrictionSettings()
    alerts: AlertSettings = AlertSettings()


class DefinitionsDoc(BaseModel):
    """The whole journey file: registry (inline), personas, default persona, settings, journeys."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    registry: Registry | None = None
    registry_file: str | None = None
    personas: Annotated[tuple[PersonaDef, ...], Field(min_length=1)]
    default_persona: Id
    settings: EngineSettings = EngineSettings()
    journeys: Annotated[tuple[JourneyDef, ...], Field(min_length=1)]


@dataclass(frozen=True, slots=True)
class Step:
    """A compiled step; index is 1-based (state i of the automaton means steps 1..i are done)."""

    index: int
    name: str
    touchpoints: frozenset[str]
    primary: str
    primary_channel: str
    optional: bool
    repeatable: bool
    within_ms: int | None
    goal: bool


Costs = tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Journey:
    """A compiled ideal journey: steps, the goal, and the tables the alignment needs."""

    id: str
    version: int
    persona: str
    abandon_after_ms: int
    steps: tuple[Step, ...]
    goal_index: int
    entry_touchpoints: frozenset[str]
    goal_touchpoints: frozenset[str]
    final_touchpoints: frozenset[str]
    step_of: dict[str, tuple[int, ...]]
    skip_cost: tuple[int, ...]
    initial_costs: Costs
    shortest_ideal_length: int
    _cache: dict[tuple[Costs, str], tuple[int, Costs]] = field(default_factory=dict, compare=False)
    # Memoised alignments (projections.alignment.align) by (path, end state).
    alignments: dict[tuple[tuple[str, ...], int | None], tuple[Any, ...]] = field(
        default_factory=dict, compare=False
    )

    @property
    def key(self) -> str:
        """Journey id and version, as shown to people: 'online_purchase@3'."""
        return f"{self.id}@{self.version}"

    def advance(self, costs: Costs, touchpoint: str) -> Costs:
        """Fold one path event into the alignment cost vector: O(steps), exact.

        costs[i] is the least cost of aligning the path so far with the first i steps done.
        An event can match the next step (0), repeat a repeatable step (0) or be unexpected (1);
        then steps may be skipped (0 if optional, 1 if required).
        """
        new = [cost + 1 for cost in costs]
        for i in self.step_of.get(touchpoint, ()):
            new[i] = min(new[i], costs[i - 1])
            if self.steps[i - 1].repeatable and costs[i] < new[i]:
                new[i] = costs[i]
        skip = self.skip_cost
        for i in range(1, len(new)):
            new[i] = min(new[i], new[i - 1] + skip[i])
        return tuple(new)

    def advance_cached(self, base: int, relative: Costs, touchpoint: str) -> tuple[int, Costs]:
        """advance() on costs kept as base + relative vector, memoised: O(1) for repeated shapes."""
        hit = self._cache.get((relative, touchpoint))
        if hit is None:
            moved = self.advance(relative, touchpoint)
            low = min(moved)
            hit = (low, tuple(cost - low for cost in moved))
            if len(self._cache) > 200_000:
                self._cache.clear()  # bound memory on adversarial input; correctness is unaffected
            self._cache[(relative, touchpoint)] = hit
        return base + hit[0], hit[1]


@dataclass(frozen=True, slots=True)
class JourneyModel:
    """Everything the engine needs: registry, personas, compiled journeys, settings."""

    registry: Registry
    personas: tuple[str, ...]
    default_persona: str
    settings: EngineSettings
    journeys: tuple[Journey, ...]
    by_persona: dict[str, tuple[Journey, ...]]
    channel_of: dict[str, str]
    owner_of: dict[str, str]
    document: DefinitionsDoc

    def journey_for(self, persona: str, touchpoint: str) -> Journey:
        """The persona's journey that this touchpoint enters, else the persona's first journey."""
        candidates = self.by_persona.get(persona) or self.by_persona[self.default_persona]
        for journey in candidates:
            if touchpoint in journey.entry_touchpoints:
                return journey
        return candidates[0]

    def persona_known(self, persona: str | None) -> bool:
        """Whether the persona is defined (events naming an unknown one are rejected by check)."""
        return persona is not None and persona in self.by_persona

    def check(self, event: TouchpointEvent) -> Rejection | None:
        """The registry's verdict (touchpoint, channel), then the persona's: an event naming a persona
        the journey file does not define is `unknown_persona` (no persona at all is fine)."""
        rejection = self.registry.check(event)
        if rejection is None and event.persona is not None and event.persona not in self.by_persona:
            known = ", ".join(sorted(self.by_persona))
            return Rejection(
                BadReason.UNKNOWN_PERSONA,
                f"'{event.persona}' is not a persona of the journey definitions (known: {known}); "
                "add it there and send the event again",
                "persona",
            )
        return rejection


def compile_journey(definition: JourneyDef, channel_of: dict[str, str]) -> Journey:
    """Compile one validated journey definition into its automaton tables."""
    steps: list[Step] = []
    for index, step in enumerate(definition.steps, start=1):
        touchpoints = step.touchpoints
        steps.append(
            Step(
                index=index,
                name=step.name or touchpoints[0],
                touchpoints=frozenset(touchpoints),
                primary=touchpoints[0],
                primary_channel=channel_of[touchpoints[0]],
                optional=step.optional,
                repeatable=step.repeatable,
                within_ms=step.within,
                goal=step.goal,
            )
        )
    goals = [step.index for step in steps if step.goal]
    goal_index = goals[0] if goals else len(steps)
    if not goals:
        last = steps[-1]
        steps[-1] = Step(
            last.index, last.name, last.touchpoints, last.primary, last.primary_channel,
            last.optional, last.repeatable, last.within_ms, goal=True,
        )  # fmt: skip
    step_of: dict[str, list[int]] = {}
    for compiled in steps:
        for touchpoint in sorted(compiled.touchpoints):
            step_of.setdefault(touchpoint, []).append(compiled.index)
    entry: set[str] = set()
    for compiled in steps:
        entry |= compiled.touchpoints
        if not compiled.optional:
            break
    skip_cost = (0, *(0 if step.optional else 1 for step in steps))
    initial = [0]
    for i in range(1, len(steps) + 1):
        initial.append(initial[-1] + skip_cost[i])
    return Journey(
        id=definition.id,
        version=definition.version,
        persona=definition.persona,
        abandon_after_ms=definition.abandon_after,
        steps=tuple(steps),
        goal_index=goal_index,
        entry_touchpoints=frozenset(entry),
        goal_touchpoints=steps[goal_index - 1].touchpoints,
        final_touchpoints=steps[-1].touchpoints,
        step_of={touchpoint: tuple(indexes) for touchpoint, indexes in step_of.items()},
        skip_cost=skip_cost,
        initial_costs=tuple(initial),
        shortest_ideal_length=sum(skip_cost),
    )


def _semantic_problems(doc: DefinitionsDoc, registry: Registry) -> list[tuple[tuple[Any, ...], str]]:
    problems: list[tuple[tuple[Any, ...], str]] = []
    persona_ids = [persona.id for persona in doc.personas]
    if len(set(persona_ids)) != len(persona_ids):
        problems.append((("personas",), "persona ids must be unique"))
    if doc.default_persona not in persona_ids:
        problems.append((("default_persona",), f"'{doc.default_persona}' is not a listed persona"))
    seen: set[str] = set()
    for j, journey in enumerate(doc.journeys):
        here: tuple[Any, ...] = ("journeys", j)
        if journey.id in seen:
            problems.append(((*here, "id"), f"journey '{journey.id}' is defined twice"))
        seen.add(journey.id)
        if journey.persona not in persona_ids:
            problems.append(((*here, "persona"), f"'{journey.persona}' is not a listed persona"))
        names: set[str] = set()
        goals = 0
        for s, step in enumerate(journey.steps):
            name = step.name or step.touchpoints[0]
            if name in names:
                problems.append(((*here, "steps", s, "name"), f"step name '{name}' repeats"))
            names.add(name)
            goals += step.goal
            key = "touchpoint" if step.touchpoint is not None else "any_of"
            for touchpoint in step.touchpoints:
                if registry.touchpoint(touchpoint) is None:
                    problems.append(
                        ((*here, "steps", s, key), f"touchpoint '{touchpoint}' is not registered")
                    )
            if s == 0 and step.within is not None:
                problems.append(
                    ((*here, "steps", s, "within"), "the first step has no previous step to time")
                )
        if goals > 1:
            problems.append(((*here, "steps"), "a journey has at most one goal step"))
        if all(step.optional for step in journey.steps):
            problems.append(((*here, "steps"), "at least one step must be required"))
    for persona in persona_ids:
        if not any(journey.persona == persona for journey in doc.journeys):
            problems.append((("personas",), f"persona '{persona}' has no journey"))
    for touchpoint in doc.settings.alerts.per_touchpoint:
        if registry.touchpoint(touchpoint) is None:
            problems.append(
                (("settings", "alerts", "per_touchpoint", touchpoint),
                 f"touchpoint '{touchpoint}' is not registered")
            )  # fmt: skip
    return problems


def parse_definitions(text: str, source: str = "<string>", registry: Registry | None = None) -> JourneyModel:
    """Parse and validate a journey file; raise DefinitionError listing each problem with its line.

    When the file names a `registry_file`, the caller reads that file and passes the Registry in.
    """
    located = parse_yaml(text, source)
    if not isinstance(located.data, dict):
        raise located.error([((), "the journey file must be a mapping with personas and journeys")])
    doc = validate_located(DefinitionsDoc, located)
    if doc.registry is not None:
        registry = doc.registry
    elif registry is None:
        where = doc.registry_file or "(none given)"
        raise located.error(
            [(("registry",), f"give the registry inline or as registry_file; '{where}' not loaded")]
        )
    problems = _semantic_problems(doc, registry)
    if problems:
        raise located.error(problems)
    return build_model(doc, registry)


def build_model(doc: DefinitionsDoc, registry: Registry) -> JourneyModel:
    """Compile a validated document into the engine's model."""
    channel_of = {touchpoint.id: touchpoint.channel for touchpoint in registry.touchpoints}
    owner_of = {touchpoint.id: touchpoint.owner for touchpoint in registry.touchpoints}
    journeys = tuple(compile_journey(journey, channel_of) for journey in doc.journeys)
    by_persona: dict[str, tuple[Journey, ...]] = {}
    for journey in journeys:
        by_persona[journey.persona] = (*by_persona.get(journey.persona, ()), journey)
    return JourneyModel(
        registry=registry,
        personas=tuple(persona.id for persona in doc.personas),
        default_persona=doc.default_persona,
        settings=doc.settings,
        journeys=journeys,
        by_persona=by_persona,
        channel_of=channel_of,
        owner_of=owner_of,
        document=doc,
    )


def parse_registry(text: str, source: str = "<string>") -> Registry:
    """Parse a standalone registry file (channels, teams, touchpoints)."""
    located: LocatedYaml = parse_yaml(text, source)
    return validate_located(Registry, located)


__all__ = [
    "DefinitionError",
    "Journey",
    "JourneyModel",
    "Step",
    "build_model",
    "parse_definitions",
    "parse_registry",
]
