"""journeys diff: every kind of redesign is named, at its journey and step, and nothing else is."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from projections.diff.journeys import ChangeKind, diff_models, render_diff
from projections.journeys import JourneyModel, parse_definitions
from streams.cli.main import main
from streams.common.settings import example_journeys

EXAMPLE = example_journeys().read_text(encoding="utf-8")
ONLINE = EXAMPLE[EXAMPLE.index("  - id: online_purchase") : EXAMPLE.index("  - id: store_purchase")]


def redesigned(*edits: tuple[str, str], bump: bool = True) -> JourneyModel:
    """The example with edits applied inside the online_purchase journey (version 2 unless told)."""
    block = ONLINE.replace("version: 1", "version: 2", 1) if bump else ONLINE
    for old, new in edits:
        assert old in block, old
        block = block.replace(old, new, 1)
    return parse_definitions(EXAMPLE.replace(ONLINE, block), "redesign.yaml")


def kinds(old: JourneyModel, new: JourneyModel) -> list[tuple[str, str, str]]:
    return [(change.kind.value, change.journey, change.step) for change in diff_models(old, new).changes]


def test_identical_definitions_have_no_differences(model: JourneyModel) -> None:
    """The same file diffed against itself reports nothing."""
    diff = diff_models(model, parse_definitions(EXAMPLE, "copy.yaml"))
    assert not diff
    assert render_diff(diff, model, model) == "no differences"


def test_step_made_optional_with_a_version_bump(model: JourneyModel) -> None:
    """Making confirmation optional reads as a version change plus that one step change."""
    new = redesigned(("within: 10m}", "within: 10m, optional: true}"))
    assert kinds(model, new) == [
        ("version_changed", "online_purchase", ""),
        ("step_made_optional", "online_purchase", "confirmation"),
    ]
    text = render_diff(diff_models(model, new), model, new)
    assert "online_purchase (online_buyer): online_purchase@1 -> online_purchase@2" in text
    assert "step 'confirmation' is now optional" in text


def test_a_changed_journey_that_kept_its_version_is_flagged(model: JourneyModel) -> None:
    """Changing a journey without bumping its version is reported as something to fix."""
    new = redesigned(
        ("{name: cart, touchpoint: web.cart, within: 2d}", "{name: cart, touchpoint: web.cart}"), bump=False
    )
    diff = diff_models(model, new)
    assert [change.kind for change in diff.warnings] == [ChangeKind.VERSION_NOT_BUMPED]
    assert ("time_budget_removed", "online_purchase", "cart") in kinds(model, new)
    assert "! journey online_purchase changed but kept version 1" in render_diff(diff, model, new)


def test_time_budgets_alternatives_and_first_choice(model: JourneyModel) -> None:
    """Budgets changed/added, alternatives added/removed and a new first choice are each named."""
    new = redesigned(
        (
            "{name: checkout, touchpoint: web.checkout, within: 1h, goal: true}",
            "{name: checkout, any_of: [store.purchase, web.checkout], within: 2h, goal: true}",
        ),
        (
            "{name: browse, touchpoint: web.product_page, repeatable: true}",
            "{name: browse, touchpoint: web.product_page, repeatable: true, within: 3d}",
        ),
    )
    changes = {(c.kind.value, c.step): (c.old, c.new) for c in diff_models(model, new).changes}
    assert changes[("time_budget_changed", "checkout")] == ("1h", "2h")
    assert changes[("time_budget_added", "browse")] == ("", "3d")
    assert changes[("alternative_added", "checkout")] == ("", "store.purchase")
    store_model = redesigned(
        (
            "{name: checkout, touchpoint: web.checkout, within: 1h, goal: true}",
            "{name: checkout, any_of: [web.checkout, store.purchase], within: 1h, goal: true}",
        ),
    )
    swapped = redesigned(
        (
            "{name: checkout, touchpoint: web.checkout, within: 1h, goal: true}",
            "{name: checkout, any_of: [store.purchase, web.checkout], within: 1h, goal: true}",
        ),
    )
    assert ("first_choice_changed", "online_purchase", "checkout") in kinds(store_model, swapped)
    assert ("alternative_removed", "online_purchase", "checkout") in kinds(store_model, model)


def test_steps_added_removed_renamed_moved_and_goal(model: JourneyModel) -> None:
    """Structural redesigns: a new step, a dropped step, a renamed step, a moved step, a moved goal."""
    new = redesigned(
        ("      - {name: campaign, touchpoint: email.campaign, optional: true}\n", ""),
        (
            "{name: cart, touchpoint: web.cart, within: 2d}",
            "{name: basket, touchpoint: web.cart, within: 2d}",
        ),
        (
            "{name: checkout, touchpoint: web.checkout, within: 1h, goal: true}",
            "{name: checkout, touchpoint: web.checkout, within: 1h}",
        ),
        (
            "{name: confirmation, touchpoint: email.order_confirmation, within: 10m}",
            "{name: confirmation, touchpoint: email.order_confirmation, within: 10m, goal: true}\n"
            "      - {name: landing, touchpoint: web.landing, optional: true}",
        ),
    )
    found = kinds(model, new)
    assert ("step_removed", "online_purchase", "campaign") in found
    assert ("step_renamed", "online_purchase", "basket") in found
    assert ("step_added", "online_purchase", "landing") in found
    assert ("goal_moved", "online_purchase", "confirmation") in found
    moved = redesigned(
        ("      - {name: feedback, touchpoint: email.csat_survey, optional: true}\n", ""),
        (
            "      - {name: campaign, touchpoint: email.campaign, optional: true}\n",
            "      - {name: feedback, touchpoint: email.csat_survey, optional: true}\n"
            "      - {name: campaign, touchpoint: email.campaign, optional: true}\n",
        ),
    )
    assert [k for k in kinds(model, moved) if k[0] == "step_moved"] == [
        ("step_moved", "online_purchase", "feedback")
    ]


def test_registry_personas_and_settings(model: JourneyModel) -> None:
    """A dropped touchpoint, a new owner, a new persona and a changed setting are listed apart."""
    text = EXAMPLE.replace(
        '    - {id: support.chat, channel: support, owner: support, description: "Chat with support"}\n', ""
    ).replace('owner: marketing, description: "Campaign landing page"', 'owner: ecommerce, description: "x"')
    text = text.replace("repeat_window: 30m", "repeat_window: 45m")
    text = text.replace(
        '  - {id: business_buyer, description: "Business customer buying through sales"}\n',
        '  - {id: business_buyer, description: "Business customer buying through sales"}\n'
        '  - {id: walk_in, description: "Walks in"}\n',
    ).replace(
        "journeys:\n",
        "journeys:\n  - {id: walk_in_buy, persona: walk_in, version: 1, steps: "
        "[{touchpoint: store.purchase}]}\n",
        1,
    )
    new = parse_definitions(text, "new.yaml")
    found = kinds(model, new)
    assert ("touchpoint_removed", "", "") in found
    assert ("touchpoint_owner_changed", "", "") in found
    assert ("persona_added", "", "") in found
    assert ("journey_added", "walk_in_buy", "") in found
    assert ("setting_changed", "", "") in found
    assert "settings.friction.repeat_window 30m -> 45m" in render_diff(diff_models(model, new), model, new)


def test_cli_prints_the_diff_and_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`touchpath journeys diff OLD NEW` prints the changes; --json gives one object per change."""
    new = tmp_path / "redesign.yaml"
    block = ONLINE.replace("version: 1", "version: 2", 1).replace(
        "within: 10m}", "within: 10m, optional: true}"
    )
    new.write_text(EXAMPLE.replace(ONLINE, block), encoding="utf-8")
    assert main(["journeys", "diff", str(example_journeys()), str(new)]) == 0
    assert "step 'confirmation' is now optional" in capsys.readouterr().out
    assert main(["journeys", "diff", "--json", str(example_journeys()), str(new)]) == 0
    changes = json.loads(capsys.readouterr().out)
    assert [c["kind"] for c in changes] == ["version_changed", "step_made_optional"]
