"""FrictionDetector.observe_all raises the alerts and keeps the states of observe() fed one by one."""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from projections.alerts.codec import encode_detector
from projections.alerts.config import DetectorConfig, detector_config
from projections.alerts.detector import FrictionDetector, advance, observe
from projections.alerts.model import DAY, NEVER, AlertEvent, Observation, ObservationKind, observation_order
from projections.alerts.state import TouchpointWindowState, new_state
from projections.journeys import AlertRule, AlertSettings
from streams.common.definitions import load_journeys
from streams.common.settings import example_journeys

W = 300_000
T0 = 1_767_225_600_000  # on a window boundary
TOUCHPOINTS = ("web.checkout", "web.cart", "support.call", "web.nowhere")  # the last has no rule
KINDS = ("failure", "repeat", "stall", "escalation")
MODEL = load_journeys(example_journeys())


def eager_config(seasonal_days: int, update_every: int | None) -> DetectorConfig:
    """Thresholds low enough that small random streams open, update and resolve incidents."""
    alerts = AlertSettings(
        window=W, baseline_windows=4, seasonal_days=seasonal_days, seasonal_span=W, min_baseline_volume=3,
        lateness=2 * W, span_windows=3, min_volume=2, min_signals=1, min_ratio=1.0, sensitivity=1.0,
        resolve_after=2, resolve_sensitivity=1.0, cooldown=2 * W, update_every=update_every,
        per_touchpoint={"web.cart": AlertRule(enabled=False)},
    )  # fmt: skip
    return detector_config(MODEL, alerts)


@st.composite
def observations(draw: st.DrawFn) -> Observation:
    touchpoint = draw(st.sampled_from(TOUCHPOINTS))
    # Mostly within a few hours; sometimes a day later (seasonal baselines, jumps in time).
    half = draw(st.integers(0, 60))
    ts = T0 + half * W // 2 + draw(st.sampled_from((0, 0, 0, DAY))) + draw(st.integers(0, 9))
    # Calm at first, then friction and contacts more often: spikes.
    calm = 12 if half < 30 else 3
    kind = draw(st.sampled_from((ObservationKind.TRAFFIC,) * calm + tuple(ObservationKind)))
    key = f"k{draw(st.integers(0, 30))}"  # re-emitted rows: the same key again
    customer = f"c{draw(st.integers(0, 6))}"
    persona = draw(st.sampled_from((None, "buyer")))
    if kind is ObservationKind.TRAFFIC:
        return Observation(kind, touchpoint, ts, key, customer, persona, event_ids=(key,))
    if kind is ObservationKind.FRICTION:
        return Observation(
            kind,
            touchpoint,
            ts,
            key,
            customer,
            persona,
            "j@1",
            draw(st.sampled_from(KINDS)),
            event_ids=(key,),
        )
    upstream = draw(st.sampled_from((None, "web.checkout")))
    return Observation(kind, touchpoint, ts, key, customer, persona, upstream=upstream, event_ids=(key, "e"))


@dataclass
class OneByOne:
    """The detector's specification: each observation through observe(), every touchpoint advanced
    at each window crossing and to the watermark."""

    config: DetectorConfig
    states: dict[str, TouchpointWindowState]
    clock: int = NEVER

    def observe_all(self, batch: list[Observation], watermark: int | None) -> list[AlertEvent]:
        window = self.config.window
        alerts: list[AlertEvent] = []
        for observation in sorted(batch, key=observation_order):
            if self.config.rule(observation.touchpoint) is None:
                continue
            if observation.ts // window > self.clock // window and self.clock != NEVER:
                alerts.extend(self._advance_all(observation.ts))
            self.clock = max(self.clock, observation.ts)
            state = self.states.setdefault(observation.touchpoint, new_state(observation.touchpoint))
            alerts.extend(observe(state, observation, self.clock, self.config)[1])
        if watermark is not None and watermark > self.clock:
            self.clock = watermark
            alerts.extend(self._advance_all(watermark))
        return alerts

    def _advance_all(self, now: int) -> list[AlertEvent]:
        return [
            alert for name in sorted(self.states) for alert in advance(self.states[name], now, self.config)[1]
        ]


batches = st.lists(
    st.tuples(
        st.lists(observations(), max_size=120), st.none() | st.integers(0, 50).map(lambda w: T0 + w * W)
    ),
    min_size=1,
    max_size=6,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batches, st.sampled_from((0, 1)), st.sampled_from((None, W)), st.booleans())
def test_observe_all_matches_observe_one_by_one(
    stream: list[tuple[list[Observation], int | None]],
    seasonal_days: int,
    update_every: int | None,
    ordered: bool,
) -> None:
    """Random batches (late rows, re-emitted keys, day jumps, watermarks, a disabled and an unknown
    touchpoint): the same alerts in the same order, the same encoded states, the same clock."""
    config = eager_config(seasonal_days, update_every)
    fast = FrictionDetector(config)
    spec = OneByOne(config, {})
    for batch, watermark in stream:
        given_batch = sorted(batch, key=observation_order) if ordered else batch
        assert fast.observe_all(given_batch, watermark, ordered=ordered) == spec.observe_all(batch, watermark)
        assert fast.clock == spec.clock
        assert sorted(fast.states) == sorted(spec.states)
        for name, state in spec.states.items():
            assert encode_detector(fast.states[name]) == encode_detector(state), name


def test_random_streams_raise_alerts() -> None:
    """The eager settings do open incidents on a spike (else the comparison above proves little)."""
    config = eager_config(0, W)
    calm = [
        Observation(ObservationKind.TRAFFIC, "web.checkout", T0 + i * W // 4, f"e{i}", f"c{i % 5}")
        for i in range(80)
    ]
    spike = [
        Observation(ObservationKind.FRICTION, "web.checkout", T0 + i * W // 4, f"s{i}", f"c{i % 5}", None,
                    "j@1", "failure")
        for i in range(60, 70)
    ]  # fmt: skip
    alerts = FrictionDetector(config).observe_all(calm + spike, T0 + 40 * W)
    assert [alert.action.value for alert in alerts][:1] == ["open"]
