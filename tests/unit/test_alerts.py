"""Friction spike detection: one alert per incident, baselines, de-duplication, state round trips."""

from __future__ import annotations

from collections.abc import Iterable

import pytest

from events.codec import decode_event
from events.errors import DefinitionError
from projections import schema
from projections.alerts.codec import decode_detector, decode_observation, encode_detector, encode_observation
from projections.alerts.config import DetectorConfig, detector_config
from projections.alerts.detector import FrictionDetector, advance, observe, poisson_sigma
from projections.alerts.model import AlertAction, AlertEvent, Observation, ObservationKind
from projections.alerts.model import test_alert as labelled_test_alert  # not a test: aliased for pytest
from projections.alerts.rows import alert_row, observations_of
from projections.alerts.slack.message import slack_payload
from projections.alerts.state import TouchpointWindowState, new_state
from projections.engine import JourneyEngine
from projections.journeys import AlertSettings, JourneyModel, parse_definitions
from streams.common.settings import example_journeys
from tests.conftest import event_line

W = 300_000  # the default 5-minute window
T0 = 1_767_225_600_000  # 2026-01-01 00:00 UTC, on a window boundary
CHECKOUT = "web.checkout"


def traffic(
    windows: Iterable[int], per_window: int = 20, fails: float = 0.025, touchpoint: str = CHECKOUT
) -> list[Observation]:
    """Evenly spread events at a touchpoint; a fixed share of them fail (deterministic, no randomness)."""
    out: list[Observation] = []
    owed = 0.0
    for window in windows:
        for i in range(per_window):
            ts = T0 + window * W + i * (W // per_window)
            event_id = f"{touchpoint}-e{window}-{i}"
            customer = f"c{window}-{i}"
            out.append(
                Observation(
                    ObservationKind.TRAFFIC, touchpoint, ts, event_id, customer, event_ids=(event_id,)
                )
            )
            owed += fails
            if owed >= 1.0:
                owed -= 1.0
                out.append(
                    Observation(
                        ObservationKind.FRICTION, touchpoint, ts, f"sig-{event_id}", customer, "online_buyer",
                        "online_purchase@1", "failure", event_ids=(event_id,),
                    )
                )  # fmt: skip
    return out


def spike_story(spike_windows: range = range(72, 78), hours: int = 9) -> list[Observation]:
    """Six steady hours, a half-hour failure spike, then calm again."""
    calm = [window for window in range(hours * 12) if window not in spike_windows]
    return sorted(traffic(calm) + traffic(spike_windows, fails=0.5), key=lambda item: item.ts)


def run(config: DetectorConfig, observations: list[Observation]) -> list[AlertEvent]:
    return FrictionDetector(config).observe_all(observations)


def test_a_spike_gives_one_open_and_one_resolve_routed_to_the_owner(model: JourneyModel) -> None:
    """A half-hour failure spike is one incident: an open within two windows, a resolve after it."""
    alerts = run(detector_config(model), spike_story())
    assert [alert.action for alert in alerts] == [AlertAction.OPEN, AlertAction.RESOLVE]
    opened, resolved = alerts
    assert opened.touchpoint == CHECKOUT
    assert opened.owner_team == "ecommerce"
    assert (opened.detected_at - T0) // W - 72 <= 2
    assert opened.trigger in {"failure", "*"}
    assert opened.ratio > 5
    assert opened.sigma >= 5
    assert dict(opened.kinds)["failure"] >= 4
    assert dict(opened.personas) == {"online_buyer": dict(opened.kinds)["failure"]}
    assert dict(opened.journeys) == {"online_purchase@1": dict(opened.kinds)["failure"]}
    assert 0 < len(opened.customer_ids) <= 5
    assert opened.event_ids
    assert resolved.incident_id == opened.incident_id
    assert (resolved.window_end - T0) // W >= 77
    assert resolved.signals > opened.signals


def test_alert_ids_are_the_same_when_the_same_input_is_replayed(model: JourneyModel) -> None:
    """Replays and restarts produce identical alert ids, so stores and receivers can de-duplicate."""
    config = detector_config(model)
    first = [alert.alert_id for alert in run(config, spike_story())]
    second = [alert.alert_id for alert in run(config, spike_story())]
    assert first == second
    assert len(set(first)) == 2


def test_an_evening_peak_at_the_usual_rate_is_not_an_incident(model: JourneyModel) -> None:
    """Traffic quadrupling at the same friction rate raises nothing."""
    quiet = traffic(range(72), per_window=20)
    peak = traffic(range(72, 108), per_window=80)
    assert run(detector_config(model), quiet + peak) == []


def test_a_spike_on_too_little_traffic_is_not_alerted(model: JourneyModel) -> None:
    """Below min_volume a touchpoint is not judged, however bad its few events look."""
    settings = AlertSettings(min_volume=200)
    story = spike_story()
    assert run(detector_config(model, settings), story) == []


def test_re_emitted_friction_rows_are_counted_once(model: JourneyModel) -> None:
    """The engine re-emits a signal each time its journey changes; counting it again changes nothing."""
    config = detector_config(model)
    story = spike_story()
    friction = [item for item in story if item.kind is ObservationKind.FRICTION]
    replayed = sorted(story + friction, key=lambda item: item.ts)
    assert [alert.alert_id for alert in run(config, replayed)] == [
        alert.alert_id for alert in run(config, story)
    ]


def test_a_second_spike_inside_the_cooldown_is_suppressed_and_after_it_alerted(model: JourneyModel) -> None:
    """Cooldown stops flapping: a relapse right after resolution is held back; a later one is new."""
    config = detector_config(model, AlertSettings(cooldown="1h"))
    spikes = [*range(72, 78), *range(84, 88), *range(120, 126)]
    calm = [window for window in range(13 * 12) if window not in spikes]
    story = sorted(traffic(calm) + traffic(spikes, fails=0.5), key=lambda item: item.ts)
    alerts = run(config, story)
    opens = [alert for alert in alerts if alert.action is AlertAction.OPEN]
    assert len(opens) == 2
    assert [(alert.incident_start - T0) // W for alert in opens][1] >= 118


def test_an_outage_without_events_stays_open(model: JourneyModel) -> None:
    """No traffic is no evidence of recovery: the incident is not resolved while the touchpoint is silent."""
    config = detector_config(model)
    story = traffic(range(72)) + traffic(range(72, 76), fails=0.6)
    detector = FrictionDetector(config)
    alerts = detector.observe_all(story, watermark=T0 + 100 * W)
    assert [alert.action for alert in alerts] == [AlertAction.OPEN]
    assert detector.states[CHECKOUT].incident is not None


def test_events_later_than_the_lateness_are_not_counted(model: JourneyModel) -> None:
    """Windows more than `lateness` behind the touchpoint's clock take no more counts."""
    config = detector_config(model)
    state = new_state(CHECKOUT)
    late = traffic([0], per_window=5)
    observe(state, traffic([20], per_window=1)[0], T0 + 20 * W, config)
    for item in late:
        observe(state, item, T0 + 20 * W, config)
    assert T0 not in state.buckets


def test_state_survives_encode_and_decode_mid_incident_without_a_duplicate(model: JourneyModel) -> None:
    """A worker restarted mid-incident (state from its changelog, messages redelivered) alerts once."""
    config = detector_config(model)
    story = spike_story()

    def fold(state: TouchpointWindowState, items: list[Observation]) -> list[AlertEvent]:
        out: list[AlertEvent] = []
        for item in items:
            _, alerts = observe(state, item, item.ts, config)
            out.extend(alerts)
        return out

    straight = fold(new_state(CHECKOUT), story)
    cut = next(i for i, item in enumerate(story) if item.ts >= T0 + 75 * W)
    state = new_state(CHECKOUT)
    before = fold(state, story[:cut])
    restored = decode_detector(encode_detector(state))
    redelivered = [item for item in story[cut - 40 : cut] if item.kind is ObservationKind.FRICTION]
    after = fold(restored, redelivered + story[cut:])
    assert [alert.action for alert in before] == [AlertAction.OPEN]
    assert [alert.alert_id for alert in before + after] == [alert.alert_id for alert in straight]
    assert encode_detector(decode_detector(encode_detector(restored))) == encode_detector(restored)


def test_observations_survive_their_wire_form() -> None:
    """An observation re-keyed through a topic comes back equal."""
    item = traffic([3], fails=1.0)[1]
    assert decode_observation(encode_observation(item)) == item


def test_support_contact_spikes_name_the_upstream_touchpoints(model: JourneyModel) -> None:
    """A surge of support calls is measured as contact volume and lists where the contacts came from."""
    config = detector_config(model)
    assert config.rules["support.call"].measure == "contact_volume"
    days = 2 * 288
    normal = [window for window in range(days) if window % 3 == 0]
    story: list[Observation] = []
    for window in [*normal, *[days + i for i in range(0, 24, 3)]]:
        story.extend(_calls(window, 1, "web.product_page"))
    for window in range(days + 24, days + 27):
        story.extend(_calls(window, 8, CHECKOUT))
    for window in range(days + 27, days + 48, 3):
        story.extend(_calls(window, 1, "web.product_page"))
    alerts = FrictionDetector(config).observe_all(sorted(story, key=lambda item: (item.ts, item.kind)))
    opened = [alert for alert in alerts if alert.action is AlertAction.OPEN]
    assert len(opened) == 1
    assert opened[0].touchpoint == "support.call"
    assert opened[0].owner_team == "support"
    assert opened[0].upstream[0][0] == CHECKOUT
    assert "Attributed upstream: web.checkout" in opened[0].summary()


def _calls(window: int, count: int, upstream: str) -> list[Observation]:
    out = []
    for i in range(count):
        ts = T0 + window * W + i * 1000
        event_id = f"call-{window}-{i}"
        customer = f"caller-{window}-{i}"
        out.append(
            Observation(
                ObservationKind.TRAFFIC, "support.call", ts, event_id, customer, event_ids=(event_id,)
            )
        )
        out.append(
            Observation(ObservationKind.CONTACT, "support.call", ts, event_id, customer, "online_buyer",
                        upstream=upstream, event_ids=(event_id, f"up-{event_id}"))
        )  # fmt: skip
    return out


def test_engine_rows_become_observations_without_tombstones_or_excluded_kinds(model: JourneyModel) -> None:
    """Accepted events are traffic; live friction rows of counted kinds are friction; tombstones are not."""
    engine = JourneyEngine(model)
    for i, (touchpoint, minutes, extra) in enumerate(
        [("web.product_page", 0, {}), ("web.cart", 1, {"outcome": "failure"}), ("support.call", 2, {})]
    ):
        engine.accept(decode_event(event_line(f"e{i}", "c1", touchpoint, minutes, **extra)))
    batch = engine.drain()
    friction_row = next(row for row in batch.rows[schema.FRICTION_SIGNALS.name])
    tombstone = (*friction_row[:-1], 1)
    batch.rows[schema.FRICTION_SIGNALS.name].append(tombstone)
    observations = observations_of(batch.rows, detector_config(model))
    kinds = [(item.kind.value, item.touchpoint, item.friction_kind) for item in observations]
    assert ("traffic", "web.cart", None) in kinds
    assert ("friction", "web.cart", "failure") in kinds
    assert ("contact", "support.call", None) in kinds
    assert (
        sum(
            1
            for item in observations
            if item.kind is ObservationKind.FRICTION and item.key == friction_row[3]
        )
        <= 1
    )
    assert [item.ts for item in observations] == sorted(item.ts for item in observations)


def test_the_payload_is_slack_compatible_and_carries_the_whole_alert(model: JourneyModel) -> None:
    """Slack shows `text`/`blocks`; machines read the alert from the message metadata."""
    opened = run(detector_config(model), spike_story())[0]
    payload = slack_payload(opened, "live")
    assert payload["text"].startswith(":rotating_light: Friction spike at web.checkout (team ecommerce)")
    assert payload["blocks"][0]["type"] == "section"
    event = payload["metadata"]["event_payload"]
    assert payload["metadata"]["event_type"] == "touchpath_alert"
    assert event["alert_id"] == opened.alert_id
    assert event["owner_team"] == "ecommerce"
    assert event["kinds"]["failure"] >= 4


def test_time_only_moves_forward_by_advance(model: JourneyModel) -> None:
    """advance() with an older time changes nothing (the detector never reads a clock)."""
    config = detector_config(model)
    state = new_state(CHECKOUT)
    advance(state, T0 + 10 * W, config)
    before = encode_detector(state)
    assert advance(state, T0, config) == (state, [])
    assert encode_detector(state) == before


def test_poisson_sigma_grows_with_surprise() -> None:
    """More events than expected is more unusual; fewer is not unusual at all."""
    assert poisson_sigma(2, 3.0) == 0.0
    assert 1.0 < poisson_sigma(6, 2.0) < poisson_sigma(10, 2.0) < poisson_sigma(20, 2.0)
    assert poisson_sigma(5000, 1.0) == pytest.approx(37.0)


def test_alert_settings_default_when_absent_and_overrides_are_checked() -> None:
    """Journey files without `alerts` keep working; per-touchpoint overrides must name real touchpoints."""
    text = example_journeys().read_text()
    start = text.index("  # Friction spike alerts")
    without = text[:start] + text[text.index("\njourneys:", start) :]
    assert parse_definitions(without, "old.yaml").settings.alerts == AlertSettings()
    broken = text.replace("      web.checkout: {", "      web.chekout: {", 1)
    with pytest.raises(DefinitionError) as caught:
        parse_definitions(broken, "bad.yaml")
    (problem,) = caught.value.problems
    assert problem[1] == "settings.alerts.per_touchpoint.web.chekout"
    assert "not registered" in problem[2]
    assert broken.splitlines()[problem[0] - 1].startswith("      web.chekout: {")
    custom = text.replace("      web.checkout: {min_volume: 10", "      web.checkout: {min_volume: 30", 1)
    rules = detector_config(parse_definitions(custom, "ok.yaml")).rules
    assert rules[CHECKOUT].min_volume == 30
    assert rules["web.cart"].min_volume == 10


def test_a_window_that_does_not_divide_a_day_is_refused() -> None:
    """Seasonal baselines compare the same time of day, so windows must tile a day."""
    with pytest.raises(ValueError, match="divide a day"):
        AlertSettings(window="7m")


def test_an_alert_row_puts_each_value_under_its_column() -> None:
    """The alerts table row is built by column name: a reader of the table sees the alert's values."""
    alert = labelled_test_alert("web.checkout", "ecommerce", T0)
    row = dict(zip(schema.ALERTS.column_names, alert_row(alert, "live"), strict=True))
    assert row["scenario"] == "live"
    assert row["action"] == "test"
    assert row["owner_team"] == "ecommerce"
    assert row["detected_at"] == T0
    assert row["summary"] == alert.summary()
    with pytest.raises(ValueError, match=r"missing \['summary'\], unknown \['note'\]"):
        schema.ALERTS.row(**{**{name: row[name] for name in row if name != "summary"}, "note": "x"})
