"""Journey definition files: the shipped example, and errors that name line and field."""

from __future__ import annotations

import pytest

from events.errors import DefinitionError
from projections.journeys import JourneyModel, parse_definitions
from streams.common.settings import example_journeys


def test_example_covers_three_personas_all_channels_support_and_a_survey(model: JourneyModel) -> None:
    """The shipped example is a realistic starting point for a CX team."""
    assert len(model.personas) >= 3
    used = {tp for journey in model.journeys for step in journey.steps for tp in step.touchpoints}
    channels = {model.channel_of[tp] for tp in used} | {
        tp.channel for tp in model.registry.touchpoints if tp.channel == "support"
    }
    assert channels == {"email", "store", "web", "sales", "support"}
    assert any(tp.endswith("_survey") for tp in used)
    assert any(len(step.touchpoints) > 1 for journey in model.journeys for step in journey.steps)


def _errors(text: str) -> list[tuple[int | None, str, str]]:
    with pytest.raises(DefinitionError) as caught:
        parse_definitions(text, "bad.yaml")
    return caught.value.problems


def test_unknown_touchpoint_in_a_step_is_reported_with_its_line() -> None:
    """A misspelt touchpoint names the file line and the step field."""
    text = example_journeys().read_text()
    line = next(i for i, row in enumerate(text.splitlines(), 1) if "touchpoint: sales.proposal" in row)
    problems = _errors(text.replace("touchpoint: sales.proposal", "touchpoint: sales.propsal"))
    assert problems == [
        (line, "journeys[2].steps[2].touchpoint", "touchpoint 'sales.propsal' is not registered")
    ]


def test_bad_duration_and_unknown_keys_are_each_reported() -> None:
    """Every problem is listed, not just the first."""
    text = example_journeys().read_text()
    broken = text.replace("within: 3d, goal: true", "within: 3days, goal: true").replace(
        "id: online_buyer, description", "id: online_buyer, colour: red, description"
    )
    fields = [field for _, field, _ in _errors(broken)]
    assert "personas[0].colour" in fields
    assert "journeys[1].steps[3].within" in fields


def test_yaml_syntax_error_names_the_line() -> None:
    """Broken YAML is reported with the line the parser stopped at."""
    problems = _errors("personas:\n  - id: x\n  bad: [unclosed\n")
    assert problems[0][0] == 4 or problems[0][0] == 3
    assert problems[0][1] == "(yaml)"


def test_a_journey_needs_a_required_step() -> None:
    """A journey made only of optional steps is rejected."""
    text = example_journeys().read_text()
    broken = text.replace(
        "{name: interest, touchpoint: web.landing}",
        "{name: interest, touchpoint: web.landing, optional: true}",
    )
    broken = broken.replace(
        "{name: demo, touchpoint: sales.demo, within: 7d}",
        "{name: demo, touchpoint: sales.demo, optional: true}",
    )
    broken = broken.replace(
        "{name: proposal, touchpoint: sales.proposal, within: 7d}",
        "{name: proposal, touchpoint: sales.proposal, optional: true}",
    )
    broken = broken.replace(
        "{name: contract, touchpoint: sales.contract, within: 14d, goal: true}",
        "{name: contract, touchpoint: sales.contract, optional: true}",
    )
    broken = broken.replace(
        "{name: handoff, touchpoint: web.onboarding, within: 3d}",
        "{name: handoff, touchpoint: web.onboarding, optional: true}",
    )
    assert any("required" in message for _, _, message in _errors(broken))
