"""What changed between two journey definitions: personas, journeys, steps, budgets, alternatives."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, get_args, get_origin

from pydantic import BaseModel

from projections.durations import format_duration, parse_duration
from projections.journeys import Journey, JourneyModel, Step


class ChangeKind(StrEnum):
    """One kind of difference between an old and a new journey file."""

    PERSONA_ADDED = "persona_added"
    PERSONA_REMOVED = "persona_removed"
    DEFAULT_PERSONA_CHANGED = "default_persona_changed"
    JOURNEY_ADDED = "journey_added"
    JOURNEY_REMOVED = "journey_removed"
    JOURNEY_PERSONA_CHANGED = "journey_persona_changed"
    VERSION_CHANGED = "version_changed"
    VERSION_NOT_BUMPED = "version_not_bumped"
    ABANDON_AFTER_CHANGED = "abandon_after_changed"
    STEP_ADDED = "step_added"
    STEP_REMOVED = "step_removed"
    STEP_RENAMED = "step_renamed"
    STEP_MOVED = "step_moved"
    STEP_MADE_OPTIONAL = "step_made_optional"
    STEP_MADE_REQUIRED = "step_made_required"
    STEP_MADE_REPEATABLE = "step_made_repeatable"
    STEP_MADE_SINGLE = "step_made_single"
    TIME_BUDGET_ADDED = "time_budget_added"
    TIME_BUDGET_REMOVED = "time_budget_removed"
    TIME_BUDGET_CHANGED = "time_budget_changed"
    GOAL_MOVED = "goal_moved"
    ALTERNATIVE_ADDED = "alternative_added"
    ALTERNATIVE_REMOVED = "alternative_removed"
    FIRST_CHOICE_CHANGED = "first_choice_changed"
    TOUCHPOINT_ADDED = "touchpoint_added"
    TOUCHPOINT_REMOVED = "touchpoint_removed"
    TOUCHPOINT_CHANNEL_CHANGED = "touchpoint_channel_changed"
    TOUCHPOINT_OWNER_CHANGED = "touchpoint_owner_changed"
    SETTING_CHANGED = "setting_changed"


@dataclass(frozen=True, slots=True)
class Change:
    """One difference; journey and step are empty when the change is not about one."""

    kind: ChangeKind
    journey: str
    step: str
    old: str
    new: str
    text: str

    def as_dict(self) -> dict[str, str]:
        """A JSON-ready mapping."""
        return {
            "kind": self.kind.value,
            "journey": self.journey,
            "step": self.step,
            "old": self.old,
            "new": self.new,
            "text": self.text,
        }


@dataclass(frozen=True, slots=True)
class JourneyDiff:
    """Every change from an old to a new journey model, grouped in file order."""

    changes: tuple[Change, ...]

    def __bool__(self) -> bool:
        return bool(self.changes)

    def of_journey(self, journey_id: str) -> tuple[Change, ...]:
        """The changes that concern one journey."""
        return tuple(change for change in self.changes if change.journey == journey_id)

    def steps_changed(self, journey_id: str) -> set[str]:
        """Names of the new journey's steps that were added or changed in any way."""
        return {change.step for change in self.of_journey(journey_id) if change.step}

    @property
    def warnings(self) -> tuple[Change, ...]:
        """Changes that need attention before a rollout (a changed journey that kept its version)."""
        return tuple(change for change in self.changes if change.kind is ChangeKind.VERSION_NOT_BUMPED)


def _budget(ms: int | None) -> str:
    return "" if ms is None else format_duration(ms)


def _targets(step: Step) -> str:
    return " | ".join([step.primary, *sorted(step.touchpoints - {step.primary})])


def _common_order(old: list[str], new: list[str]) -> set[str]:
    """Names in a longest common subsequence of two orders: the steps that did not move."""
    table = [[0] * (len(new) + 1) for _ in range(len(old) + 1)]
    for i in range(len(old) - 1, -1, -1):
        for j in range(len(new) - 1, -1, -1):
            table[i][j] = (
                table[i + 1][j + 1] + 1 if old[i] == new[j] else max(table[i + 1][j], table[i][j + 1])
            )
    kept: set[str] = set()
    i = j = 0
    while i < len(old) and j < len(new):
        if old[i] == new[j]:
            kept.add(old[i])
            i, j = i + 1, j + 1
        elif table[i + 1][j] >= table[i][j + 1]:
            i += 1
        else:
            j += 1
    return kept


def _step_changes(journey_id: str, old: Step, new: Step) -> list[Change]:
    out: list[Change] = []
    name = new.name

    def add(kind: ChangeKind, before: str, after: str, text: str) -> None:
        out.append(Change(kind, journey_id, name, before, after, text))

    if old.optional != new.optional:
        kind = ChangeKind.STEP_MADE_OPTIONAL if new.optional else ChangeKind.STEP_MADE_REQUIRED
        state = "optional" if new.optional else "required"
        add(kind, str(old.optional).lower(), str(new.optional).lower(), f"step '{name}' is now {state}")
    if old.repeatable != new.repeatable:
        kind = ChangeKind.STEP_MADE_REPEATABLE if new.repeatable else ChangeKind.STEP_MADE_SINGLE
        state = "may now be repeated" if new.repeatable else "may no longer be repeated"
        add(kind, str(old.repeatable).lower(), str(new.repeatable).lower(), f"step '{name}' {state}")
    if old.within_ms != new.within_ms:
        before, after = _budget(old.within_ms), _budget(new.within_ms)
        if old.within_ms is None:
            add(
                ChangeKind.TIME_BUDGET_ADDED, before, after, f"step '{name}' now has a time budget of {after}"
            )
        elif new.within_ms is None:
            add(ChangeKind.TIME_BUDGET_REMOVED, before, after, f"step '{name}' lost its {before} time budget")
        else:
            add(
                ChangeKind.TIME_BUDGET_CHANGED,
                before,
                after,
                f"step '{name}' time budget {before} -> {after}",
            )
    for touchpoint in sorted(new.touchpoints - old.touchpoints):
        add(
            ChangeKind.ALTERNATIVE_ADDED,
            "",
            touchpoint,
            f"step '{name}' may now be done through {touchpoint}",
        )
    for touchpoint in sorted(old.touchpoints - new.touchpoints):
        add(
            ChangeKind.ALTERNATIVE_REMOVED,
            touchpoint,
            "",
            f"step '{name}' may no longer be done through {touchpoint}",
        )
    if old.primary != new.primary and {old.primary, new.primary} <= old.touchpoints & new.touchpoints:
        add(
            ChangeKind.FIRST_CHOICE_CHANGED,
            old.primary,
            new.primary,
            f"step '{name}' first choice {old.primary} -> {new.primary} (channel switches follow)",
        )
    return out


def _journey_changes(old: Journey, new: Journey) -> list[Change]:
    out: list[Change] = []

    def add(kind: ChangeKind, step: str, before: str, after: str, text: str) -> None:
        out.append(Change(kind, new.id, step, before, after, text))

    if old.persona != new.persona:
        add(
            ChangeKind.JOURNEY_PERSONA_CHANGED,
            "",
            old.persona,
            new.persona,
            f"journey '{new.id}' now serves persona {new.persona} (was {old.persona})",
        )
    if old.abandon_after_ms != new.abandon_after_ms:
        before, after = format_duration(old.abandon_after_ms), format_duration(new.abandon_after_ms)
        add(ChangeKind.ABANDON_AFTER_CHANGED, "", before, after, f"abandon_after {before} -> {after}")
    old_steps = {step.name: step for step in old.steps}
    new_steps = {step.name: step for step in new.steps}
    removed = [step for step in old.steps if step.name not in new_steps]
    added = [step for step in new.steps if step.name not in old_steps]
    renamed: dict[str, Step] = {}  # new name -> the removed step with the same touchpoints
    for step in added:
        twin = next((gone for gone in removed if gone.touchpoints == step.touchpoints), None)
        if twin is not None:
            removed.remove(twin)
            renamed[step.name] = twin
            add(
                ChangeKind.STEP_RENAMED,
                step.name,
                twin.name,
                step.name,
                f"step '{twin.name}' renamed to '{step.name}'",
            )
    for step in removed:
        add(
            ChangeKind.STEP_REMOVED,
            step.name,
            _targets(step),
            "",
            f"step {step.index} '{step.name}' ({_targets(step)}) removed",
        )
    for step in added:
        if step.name not in renamed:
            flags = [
                text
                for flag, text in (
                    (step.optional, "optional"),
                    (step.repeatable, "repeatable"),
                    (step.within_ms is not None, f"within {_budget(step.within_ms)}"),
                )
                if flag
            ]
            what = ", ".join([_targets(step), *flags])
            add(
                ChangeKind.STEP_ADDED,
                step.name,
                "",
                _targets(step),
                f"step '{step.name}' ({what}) added at position {step.index}",
            )
    matched = [
        (was, step)
        for step in new.steps
        if (was := renamed.get(step.name) or old_steps.get(step.name)) is not None
    ]
    old_order = [was.name for was, _ in sorted(matched, key=lambda pair: pair[0].index)]
    kept = _common_order(old_order, [was.name for was, _ in matched])
    for was, now in matched:
        if was.name not in kept:
            add(
                ChangeKind.STEP_MOVED,
                now.name,
                str(was.index),
                str(now.index),
                f"step '{now.name}' moved from position {was.index} to {now.index}",
            )
        out.extend(_step_changes(new.id, was, now))
    old_goal, new_goal = old.steps[old.goal_index - 1].name, new.steps[new.goal_index - 1].name
    new_name_of = {twin.name: name for name, twin in renamed.items()}
    if new_name_of.get(old_goal, old_goal) != new_goal:
        add(
            ChangeKind.GOAL_MOVED,
            new_goal,
            old_goal,
            new_goal,
            f"the goal is now step '{new_goal}' (was '{old_goal}')",
        )
    return out


def _registry_changes(old: JourneyModel, new: JourneyModel) -> list[Change]:
    out: list[Change] = []

    def add(kind: ChangeKind, before: str, after: str, text: str) -> None:
        out.append(Change(kind, "", "", before, after, text))

    for touchpoint in sorted(set(new.channel_of) - set(old.channel_of)):
        add(
            ChangeKind.TOUCHPOINT_ADDED,
            "",
            touchpoint,
            f"touchpoint {touchpoint} registered "
            f"({new.channel_of[touchpoint]}, owned by {new.owner_of[touchpoint]})",
        )
    for touchpoint in sorted(set(old.channel_of) - set(new.channel_of)):
        add(
            ChangeKind.TOUCHPOINT_REMOVED,
            touchpoint,
            "",
            f"touchpoint {touchpoint} is no longer "
            "registered: its recorded events are quarantined when replayed",
        )
    for touchpoint in sorted(set(old.channel_of) & set(new.channel_of)):
        before, after = old.channel_of[touchpoint], new.channel_of[touchpoint]
        if before != after:
            add(
                ChangeKind.TOUCHPOINT_CHANNEL_CHANGED,
                before,
                after,
                f"touchpoint {touchpoint} channel {before} -> {after}",
            )
        before, after = old.owner_of[touchpoint], new.owner_of[touchpoint]
        if before != after:
            add(
                ChangeKind.TOUCHPOINT_OWNER_CHANGED,
                before,
                after,
                f"touchpoint {touchpoint} now owned by {after} (was {before})",
            )
    return out


def _is_duration(annotation: object, metadata: Iterable[object] = ()) -> bool:
    """Whether a settings field holds a DurationMs (possibly optional): shown as 30m, not 1800000."""
    if any(getattr(item, "func", None) is parse_duration for item in metadata):
        return True
    if get_origin(annotation) is Annotated:
        base, *extras = get_args(annotation)
        return _is_duration(base, extras)
    return any(_is_duration(arg) for arg in get_args(annotation))


def _flatten(prefix: str, value: object, duration: bool = False) -> dict[str, str]:
    """Every leaf setting as 'dotted.name' -> display text."""
    out: dict[str, str] = {}
    if isinstance(value, BaseModel):
        for name, info in type(value).model_fields.items():
            is_duration = _is_duration(info.annotation, info.metadata)
            out.update(_flatten(f"{prefix}.{name}", getattr(value, name), is_duration))
    elif isinstance(value, dict):
        for key, inner in value.items():
            out.update(_flatten(f"{prefix}.{key}", inner, duration))
    elif value is None:
        out[prefix] = "(unset)"
    elif duration and isinstance(value, int) and not isinstance(value, bool):
        out[prefix] = format_duration(value)
    elif isinstance(value, tuple | list):
        out[prefix] = ", ".join(map(str, value))
    else:
        out[prefix] = str(value).lower() if isinstance(value, bool) else str(value)
    return out


def _setting_changes(old: JourneyModel, new: JourneyModel) -> list[Change]:
    before, after = _flatten("settings", old.settings), _flatten("settings", new.settings)
    out = []
    for key in sorted(before.keys() | after.keys()):
        old_text, new_text = before.get(key, "(unset)"), after.get(key, "(unset)")
        if old_text != new_text:
            out.append(
                Change(
                    ChangeKind.SETTING_CHANGED, "", "", old_text, new_text, f"{key} {old_text} -> {new_text}"
                )
            )
    return out


def diff_models(old: JourneyModel, new: JourneyModel) -> JourneyDiff:
    """Every change from the old definitions to the new ones (journeys are matched by id, steps by name)."""
    changes: list[Change] = []
    for persona in new.personas:
        if persona not in old.personas:
            changes.append(Change(ChangeKind.PERSONA_ADDED, "", "", "", persona, f"persona {persona} added"))
    for persona in old.personas:
        if persona not in new.personas:
            changes.append(
                Change(ChangeKind.PERSONA_REMOVED, "", "", persona, "", f"persona {persona} removed")
            )
    if old.default_persona != new.default_persona:
        changes.append(
            Change(
                ChangeKind.DEFAULT_PERSONA_CHANGED,
                "",
                "",
                old.default_persona,
                new.default_persona,
                f"default persona {old.default_persona} -> {new.default_persona}",
            )
        )
    old_journeys = {journey.id: journey for journey in old.journeys}
    new_ids = {journey.id for journey in new.journeys}
    for journey in new.journeys:
        before = old_journeys.get(journey.id)
        if before is None:
            changes.append(
                Change(
                    ChangeKind.JOURNEY_ADDED,
                    journey.id,
                    "",
                    "",
                    journey.key,
                    f"journey {journey.key} added for persona {journey.persona}",
                )
            )
            continue
        inner = _journey_changes(before, journey)
        if before.version != journey.version:
            changes.append(
                Change(
                    ChangeKind.VERSION_CHANGED,
                    journey.id,
                    "",
                    str(before.version),
                    str(journey.version),
                    f"journey {journey.id} version {before.version} -> {journey.version}",
                )
            )
        elif inner:
            changes.append(
                Change(
                    ChangeKind.VERSION_NOT_BUMPED,
                    journey.id,
                    "",
                    str(before.version),
                    str(journey.version),
                    f"journey {journey.id} changed but kept version {journey.version}: bump "
                    "the version so results of the two designs can be told apart",
                )
            )
        changes.extend(inner)
    for journey in old.journeys:
        if journey.id not in new_ids:
            changes.append(
                Change(
                    ChangeKind.JOURNEY_REMOVED,
                    journey.id,
                    "",
                    journey.key,
                    "",
                    f"journey {journey.key} removed",
                )
            )
    changes.extend(_registry_changes(old, new))
    changes.extend(_setting_changes(old, new))
    return JourneyDiff(tuple(changes))


def render_diff(diff: JourneyDiff, old: JourneyModel, new: JourneyModel) -> str:
    """The diff as text: per journey its version and changes, then registry and settings."""
    if not diff:
        return "no differences"
    lines: list[str] = []
    general = [change for change in diff.changes if not change.journey]
    journeys = list(dict.fromkeys(change.journey for change in diff.changes if change.journey))
    new_by_id = {journey.id: journey for journey in new.journeys}
    old_by_id = {journey.id: journey for journey in old.journeys}
    for journey_id in journeys:
        after, before = new_by_id.get(journey_id), old_by_id.get(journey_id)
        either = after or before
        persona = either.persona if either is not None else ""
        versions = f"{before.key if before else '(new)'} -> {after.key if after else '(removed)'}"
        lines.append(f"{journey_id} ({persona}): {versions}")
        for change in diff.of_journey(journey_id):
            marker = "!" if change.kind is ChangeKind.VERSION_NOT_BUMPED else _MARKERS.get(change.kind, "~")
            lines.append(f"  {marker} {change.text}")
    if general:
        lines.append("registry, personas and settings:")
        lines.extend(f"  {_MARKERS.get(change.kind, '~')} {change.text}" for change in general)
    return "\n".join(lines)


_MARKERS = {
    ChangeKind.PERSONA_ADDED: "+",
    ChangeKind.JOURNEY_ADDED: "+",
    ChangeKind.STEP_ADDED: "+",
    ChangeKind.ALTERNATIVE_ADDED: "+",
    ChangeKind.TOUCHPOINT_ADDED: "+",
    ChangeKind.PERSONA_REMOVED: "-",
    ChangeKind.JOURNEY_REMOVED: "-",
    ChangeKind.STEP_REMOVED: "-",
    ChangeKind.ALTERNATIVE_REMOVED: "-",
    ChangeKind.TOUCHPOINT_REMOVED: "-",
}
